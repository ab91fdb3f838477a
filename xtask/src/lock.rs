//! `cargo xtask lock`: resolve layer.toml against the index into a PEP 751 pylock.toml.

pub mod pylock;
pub mod tags;
pub mod wheel_name;

use anyhow::Result;

use crate::flags::{GlobalArgs, LockArgs};

pub fn run(_global: &GlobalArgs, _args: &LockArgs) -> Result<()> {
    Err(crate::not_yet("lock", "issue 3"))
}
