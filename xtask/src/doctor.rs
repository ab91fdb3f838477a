//! `cargo xtask doctor`: what the workflow needs, what is missing, how to fix it.

use anyhow::Result;

use crate::flags::{DoctorArgs, GlobalArgs};

pub fn run(_global: &GlobalArgs, _args: &DoctorArgs) -> Result<()> {
    Err(crate::not_yet("doctor", "issue 7"))
}
