//! `cargo xtask verify`: run the built layer the way Lambda would and smoke-test LiteLLM.

use anyhow::Result;

use crate::flags::{GlobalArgs, VerifyArgs};

pub fn run(_global: &GlobalArgs, _args: &VerifyArgs) -> Result<()> {
    Err(crate::not_yet("verify", "issue 7"))
}
