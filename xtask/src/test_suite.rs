//! `cargo xtask test`: every test of the repository (Rust, Node, end-to-end), with set-up.

use anyhow::Result;

use crate::flags::{GlobalArgs, TestArgs};

pub fn run(_global: &GlobalArgs, _args: &TestArgs) -> Result<()> {
    Err(crate::not_yet("test", "issue 2"))
}
