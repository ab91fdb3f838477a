//! `cargo xtask deploy`: rebuild the layer if stale, patch serverless.yml, run serverless deploy.

use anyhow::Result;

use crate::flags::{DeployArgs, GlobalArgs};

pub fn run(_global: &GlobalArgs, _args: &DeployArgs) -> Result<()> {
    Err(crate::not_yet("deploy", "issue 7"))
}
