//! `cargo xtask bench`: lock, install, rebuild and import times against uv and pip.

pub mod import_time;
pub mod install;
pub mod lock;

use anyhow::Result;

use crate::flags::{BenchArgs, GlobalArgs};

pub fn run(_global: &GlobalArgs, _args: &BenchArgs) -> Result<()> {
    Err(crate::not_yet("bench", "issue 8"))
}
