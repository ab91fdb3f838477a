//! `cargo xtask layer`: build `layer-build-<arch>/` step by step.

use anyhow::Result;

use crate::flags::{GlobalArgs, LayerArgs};

pub fn run(_global: &GlobalArgs, _args: &LayerArgs) -> Result<()> {
    Err(crate::not_yet("layer", "issue 2"))
}
