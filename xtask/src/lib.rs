//! The LiteLLM layer workflow: build a small, fast-starting, reproducible Python layer for a
//! Node.js 22 Lambda, verify it the way Lambda runs it, and deploy it.
//!
//! Data flow (docs/architecture.md): `layer.toml` ─lock─▶ `pylock.toml`;
//! pinned python-build-standalone ─runtime─▶ interpreter; lock ─install─▶ site-packages ─prune─▶
//! ─bytecode─▶ ─pack─▶ layer zip ─▶ size report ─▶ SBOM ─▶ serverless.yml patch ─▶ deploy.
//!
//! `main.rs` only dispatches; each command lives in its own module, and a command with steps has a
//! folder of step modules.

use std::path::PathBuf;

pub mod arch;
pub mod archive;
pub mod bench;
pub mod cache;
pub mod deploy;
pub mod doctor;
pub(crate) mod files;
pub mod flags;
pub mod http;
pub(crate) mod lambda;
pub mod layer;
pub mod lock;
pub mod manifest;
pub mod packaging;
pub mod progress;
pub mod providers;
pub mod python_version;
pub mod serverless;
pub mod source_date;
pub mod spec;
pub(crate) mod stats;
pub mod test_suite;
pub mod verify;

#[cfg(test)]
mod pipeline_tests;

/// The repository root: `XTASK_PROJECT_ROOT` when set (tests point commands at a temporary copy),
/// else the parent of the `xtask` crate.
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("XTASK_PROJECT_ROOT").filter(|value| !value.is_empty()) {
        return PathBuf::from(root);
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}
