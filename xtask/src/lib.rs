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
pub(crate) mod python_version;
pub mod serverless;
pub(crate) mod sha256;
pub(crate) mod source_date;
pub mod spec;
pub(crate) mod stats;
pub mod test_suite;
pub mod verify;

#[cfg(test)]
mod pipeline_tests;

/// `--project-root` / `XTASK_PROJECT_ROOT` as parsed by `main.rs`, handed over once before the
/// command runs.
static PROJECT_ROOT_OVERRIDE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Remember the parsed `--project-root` for [`project_root`]; only the first call counts, and it
/// must come before the first [`project_root`] call to take effect.
pub fn set_project_root_override(root: Option<PathBuf>) {
    let _ = PROJECT_ROOT_OVERRIDE.set(root);
}

/// The repository root, found at run time and remembered for the rest of the process.
///
/// Never a compile-time constant: with a shared `CARGO_TARGET_DIR`, one binary serves every clone,
/// and each run must work on the clone it was started from. A root that cannot be found is a
/// clear error on stderr and exit status 2 (there is no sensible place to write to).
pub fn project_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let cwd = std::env::current_dir().unwrap_or_default();
        match find_project_root(
            PROJECT_ROOT_OVERRIDE.get().and_then(|root| root.as_deref()).map(std::path::Path::as_os_str),
            std::env::var_os("CARGO_MANIFEST_DIR").as_deref(),
            &cwd,
        ) {
            Ok(root) => root,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::exit(2)
            }
        }
    })
    .clone()
}

/// Where the repository is, in this order: `XTASK_PROJECT_ROOT` (tests point commands at a
/// temporary copy); the parent of cargo's run-time `CARGO_MANIFEST_DIR` when that is this
/// workspace's `xtask` crate (`cargo xtask` is `cargo run --package xtask`, and cargo sets it for
/// the process it runs); else the nearest directory at or above `cwd` that holds `xtask/Cargo.toml`
/// beside a `Cargo.toml`.
pub(crate) fn find_project_root(
    explicit: Option<&std::ffi::OsStr>,
    cargo_manifest_dir: Option<&std::ffi::OsStr>,
    cwd: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    if let Some(root) = explicit.filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    let is_workspace =
        |dir: &std::path::Path| dir.join("Cargo.toml").is_file() && dir.join("xtask/Cargo.toml").is_file();
    if let Some(manifest_dir) = cargo_manifest_dir.filter(|value| !value.is_empty()).map(PathBuf::from)
        && manifest_dir.file_name().is_some_and(|name| name == "xtask")
        && let Some(parent) = manifest_dir.parent()
        && is_workspace(parent)
    {
        return Ok(parent.to_path_buf());
    }
    match cwd.ancestors().find(|dir| is_workspace(dir)) {
        Some(root) => Ok(root.to_path_buf()),
        None => anyhow::bail!(
            "cannot find the repository: no directory at or above {} holds xtask/Cargo.toml beside a Cargo.toml; \
             run `cargo xtask` inside a checkout (or set XTASK_PROJECT_ROOT to one)",
            cwd.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// A directory shaped like a checkout: `Cargo.toml` and `xtask/Cargo.toml`.
    fn checkout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("xtask/src")).unwrap();
        fs_err::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
        fs_err::write(dir.path().join("xtask/Cargo.toml"), "[package]\nname = \"xtask\"\n").unwrap();
        dir
    }

    #[test]
    fn the_explicit_root_wins() {
        let clone = checkout();
        let found = find_project_root(
            Some(OsStr::new("/elsewhere")),
            Some(clone.path().join("xtask").as_os_str()),
            clone.path(),
        );
        assert_eq!(found.unwrap(), PathBuf::from("/elsewhere"));
    }

    #[test]
    fn cargo_run_time_manifest_dir_beats_the_current_directory() {
        let (first, second) = (checkout(), checkout());
        let found = find_project_root(None, Some(second.path().join("xtask").as_os_str()), first.path()).unwrap();
        assert_eq!(found, second.path());
    }

    #[test]
    fn a_manifest_dir_of_another_crate_is_ignored() {
        let clone = checkout();
        let other = tempfile::tempdir().unwrap();
        let found = find_project_root(None, Some(other.path().as_os_str()), &clone.path().join("xtask/src")).unwrap();
        assert_eq!(found, clone.path());
    }

    #[test]
    fn the_root_is_found_from_a_subdirectory() {
        let clone = checkout();
        let found = find_project_root(None, None, &clone.path().join("xtask/src")).unwrap();
        assert_eq!(found, clone.path());
    }

    #[test]
    fn outside_a_checkout_the_error_says_what_to_do() {
        let outside = tempfile::tempdir().unwrap();
        let err = find_project_root(None, None, outside.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot find the repository: no directory at or above {} holds xtask/Cargo.toml beside a Cargo.toml; \
                 run `cargo xtask` inside a checkout (or set XTASK_PROJECT_ROOT to one)",
                outside.path().display()
            )
        );
    }
}
