//! `cargo xtask layer`: build `layer-build-<arch>/` step by step.
//!
//! Steps, one module each: runtime (`crate::runtime`) → install → prune → bytecode → pack →
//! report; then the SBOM (`crate::sbom`) and the serverless.yml patch (`crate::serverless`).
//!
//! The build goes into a staging directory beside the output (`.layer-build-<arch>.staging-*`)
//! and is swapped into place only when every step succeeded, so a failed build leaves the
//! previous output exactly as it was.

pub mod bytecode;
pub mod dist;
pub mod install;
pub mod pack;
pub mod prune;
pub mod record;
pub mod report;
pub mod wheel;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::archive::Limits;
use crate::cache::Cache;
use crate::flags::{GlobalArgs, LayerArgs};
use crate::http::Http;
use crate::progress::{Progress, human_bytes};
use crate::runtime::{self, RuntimeRequest};
use crate::spec::LayerSpec;

/// A file in every build directory, so `layer` only ever replaces a directory it made itself.
pub const BUILD_MARKER: &str = ".xtask-layer-build";

pub fn run(global: &GlobalArgs, args: &LayerArgs) -> Result<()> {
    let progress = Progress::new();
    let cache = Cache::locate(global.cache_dir.as_deref())?;
    let spec_path =
        if global.spec.is_absolute() { global.spec.clone() } else { crate::project_root().join(&global.spec) };
    let spec = LayerSpec::load(&spec_path)?;
    let out_dir = match &args.out_dir {
        Some(dir) => std::path::absolute(dir).with_context(|| format!("resolving --out-dir {}", dir.display()))?,
        None => crate::project_root().join(args.arch.build_dir_name()),
    };
    let staging = StagedOutput::begin(&out_dir)?;
    let http = Http::new()?;
    let previous = staging.previous().map(Path::to_path_buf);
    let request = RuntimeRequest {
        spec: &spec,
        arch: args.arch,
        cache: &cache,
        http: &http,
        python: &args.python,
        out_dir: staging.path(),
        previous_out_dir: previous.as_deref(),
        limits: Limits::default(),
    };
    let mut runtime = runtime::build(&request, &progress)?;
    if !args.runtime_only {
        bail!(
            "the runtime step finished, but the install step (issue 4) has not landed yet, so no layer was built \
             and {} was left as it was; pass --runtime-only to keep just the interpreter",
            out_dir.display()
        );
    }
    let staged_at = staging.path().to_path_buf();
    staging.commit()?;
    runtime.relocate(&staged_at, &out_dir);

    println!("built the runtime for {} in {}", args.arch, out_dir.display());
    println!(
        "  interpreter: {} (CPython {}{})",
        runtime.interpreter.display(),
        runtime.version,
        if runtime.reused { ", reused" } else { "" }
    );
    println!(
        "  python tree: {} -> {} after the stdlib prune ({} archive, sha256 {})",
        human_bytes(runtime.prune.bytes_before),
        human_bytes(runtime.prune.bytes_after),
        human_bytes(runtime.archive_bytes),
        runtime.sha256
    );
    println!("  steps: {}", progress.timing_summary());
    Ok(())
}

/// A build directory under construction beside the real output, swapped in by `commit`.
struct StagedOutput {
    out_dir: PathBuf,
    staging: tempfile::TempDir,
    has_previous: bool,
}

impl StagedOutput {
    /// Check `out_dir` may be replaced (missing, empty, or made by `layer`) and create the staging
    /// directory beside it.
    fn begin(out_dir: &Path) -> Result<StagedOutput> {
        let name = out_dir.file_name().context("--out-dir must name a directory")?.to_string_lossy().to_string();
        let parent = out_dir.parent().context("--out-dir must have a parent directory")?;
        let has_previous = match fs_err::symlink_metadata(out_dir) {
            Err(_) => false,
            Ok(meta) if !meta.is_dir() => {
                bail!("{} exists and is not a directory; remove it or pick another --out-dir", out_dir.display())
            }
            Ok(_) => {
                let empty = fs_err::read_dir(out_dir)?.next().is_none();
                if !empty && !out_dir.join(BUILD_MARKER).is_file() {
                    bail!(
                        "refusing to replace {}: it is not empty and was not made by `cargo xtask layer` (no {BUILD_MARKER}); \
                         remove it or pick another --out-dir",
                        out_dir.display()
                    );
                }
                !empty
            }
        };
        fs_err::create_dir_all(parent)?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.staging-"))
            .tempdir_in(parent)
            .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
        fs_err::write(
            staging.path().join(BUILD_MARKER),
            "made by `cargo xtask layer`; the whole directory is replaced on every build\n",
        )?;
        Ok(StagedOutput { out_dir: out_dir.to_path_buf(), staging, has_previous })
    }

    fn path(&self) -> &Path {
        self.staging.path()
    }

    fn previous(&self) -> Option<&Path> {
        self.has_previous.then_some(self.out_dir.as_path())
    }

    /// Swap the staging directory in: move the old output away, move the new one in, delete the old.
    fn commit(self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(self.staging.path(), std::fs::Permissions::from_mode(0o755))?;
        let parent = self.out_dir.parent().context("output has a parent")?;
        let name = self.out_dir.file_name().context("output has a name")?.to_string_lossy().to_string();
        let new = self.staging.keep();
        let old = if fs_err::symlink_metadata(&self.out_dir).is_ok() {
            let old = tempfile::Builder::new().prefix(&format!(".{name}.old-")).tempdir_in(parent)?.keep();
            // Renaming a directory over an empty one replaces it.
            fs_err::rename(&self.out_dir, &old)?;
            Some(old)
        } else {
            None
        };
        if let Err(error) = fs_err::rename(&new, &self.out_dir) {
            if let Some(old) = &old {
                let _ = fs_err::rename(old, &self.out_dir);
            }
            let _ = fs_err::remove_dir_all(&new);
            return Err(error).context("moving the new build into place (the previous output was restored)");
        }
        if let Some(old) = old
            && let Err(error) = fs_err::remove_dir_all(&old)
        {
            eprintln!("warning: could not delete the previous build at {}: {error}", old.display());
        }
        Ok(())
    }
}
