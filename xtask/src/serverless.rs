//! Patch `amplify-lambda-js/serverless.yml` for the layer, keeping everything else byte for byte.

use anyhow::Result;

use crate::flags::{GlobalArgs, PatchArgs};

pub fn run(_global: &GlobalArgs, _args: &PatchArgs) -> Result<()> {
    Err(crate::not_yet("patch", "issue 5"))
}
