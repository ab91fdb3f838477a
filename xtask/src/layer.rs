//! `cargo xtask layer`: build `layer-build-<arch>/` step by step.
//!
//! Steps, one module each: runtime (`crate::runtime`) → install → prune → bytecode → pack →
//! report; then the SBOM (`crate::sbom`) and the serverless.yml patch (`crate::serverless`).

pub mod bytecode;
pub mod dist;
pub mod install;
pub mod pack;
pub mod prune;
pub mod record;
pub mod report;
pub mod wheel;

use anyhow::Result;

use crate::flags::{GlobalArgs, LayerArgs};

pub fn run(_global: &GlobalArgs, _args: &LayerArgs) -> Result<()> {
    Err(crate::not_yet("layer", "issue 2"))
}
