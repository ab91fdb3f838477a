//! `cargo xtask layer`: build `layer-build-<arch>/` step by step.
//!
//! Steps, one module each, in pipeline order: interpreter → install → prune → SBOM → bytecode →
//! pack → size report → freshness stamp; then the serverless.yml patch (`crate::serverless`).
//! `dist` (an installed distribution) and `wheel` (unpacking one wheel) serve the install step.
//!
//! The build goes into a staging directory beside the output (`.layer-build-<arch>.staging-*`)
//! and is swapped into place only when every step succeeded, so a failed build leaves the
//! previous output exactly as it was.

pub mod bytecode;
pub mod freshness;
pub mod install;
pub mod interpreter;
pub mod pack;
pub mod prune;
pub mod report;
pub mod sbom;

pub mod dist;
pub mod wheel;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use std::time::Instant;

use crate::arch::Arch;
use crate::archive::Limits;
use crate::cache::Cache;
use crate::flags::{GlobalArgs, LayerArgs};
use crate::http::Http;
use crate::layer::interpreter::{RuntimeOutput, RuntimeRequest};
use crate::layer::pack::{PackRequest, ZipPosition};
use crate::layer::report::{RuleSavings, SizeReport};
use crate::packaging::pylock::Pylock;
use crate::progress::{Progress, human_bytes};
use crate::spec::{LayerSpec, Upload};

/// A file in every build directory, so `layer` only ever replaces a directory it made itself.
pub const BUILD_MARKER: &str = ".xtask-layer-build";

pub fn run(global: &GlobalArgs, args: &LayerArgs) -> Result<()> {
    let started = Instant::now();
    let progress = Progress::new();
    let arch = args.arch;
    let cache = Cache::locate(global.cache_dir.as_deref())?;
    let spec_path = global.spec_path();
    let spec = LayerSpec::load(&spec_path)?;
    let out_dir = match &args.out_dir {
        Some(dir) => std::path::absolute(dir).with_context(|| format!("resolving --out-dir {}", dir.display()))?,
        None => crate::project_root().join(arch.build_dir_name()),
    };
    // A model the service is configured for must be servable by the layer: refused before building.
    if !args.runtime_only
        && let Some(checked) = spec.check_model_config()?
    {
        progress.note(format!(
            "models: every model of {} goes to an enabled provider ({})",
            checked.display(),
            spec.providers.enabled.join(", ")
        ));
    }
    // The layer installs exactly the lock; a lock made from other inputs is refused up front.
    let lock = if args.runtime_only { None } else { Some(load_current_lock(&spec)?) };

    let staging = StagedOutput::begin(&out_dir)?;
    let http = Http::new()?;
    let previous = staging.previous().map(Path::to_path_buf);
    let request = RuntimeRequest {
        spec: &spec,
        arch,
        cache: &cache,
        http: &http,
        python: &args.python,
        out_dir: staging.path(),
        previous_out_dir: previous.as_deref(),
        limits: Limits::default(),
    };
    let mut runtime = interpreter::build(&request, &progress)?;
    let built = match &lock {
        Some(lock) => Some(build_packages(&BuildContext {
            spec: &spec,
            spec_path: &spec_path,
            lock,
            arch,
            args,
            cache: &cache,
            http: &http,
            runtime: &runtime,
            staging: staging.path(),
            progress: &progress,
        })?),
        None => None,
    };
    let staged_at = staging.path().to_path_buf();
    staging.commit()?;
    runtime.relocate(&staged_at, &out_dir);
    if built.is_some() && !args.no_patch {
        crate::serverless::patch_after_build(&spec, arch, args.allow_public_layer, false, &progress)?;
    }

    println!("built the {} for {arch} in {}", if built.is_some() { "layer" } else { "runtime" }, out_dir.display());
    println!(
        "  interpreter: CPython {} from {}{}",
        runtime.version,
        runtime.archive_name,
        if runtime.reused { " (reused the previous extraction)" } else { "" }
    );
    println!(
        "  python tree: {} -> {} after the stdlib prune ({} archive)",
        human_bytes(runtime.prune.bytes_before),
        human_bytes(runtime.prune.bytes_after),
        human_bytes(runtime.archive_bytes),
    );
    if let Some(built) = &built {
        println!(
            "  layer: {} ({} zipped, {} unzipped; budget {} MB / {} MB)",
            out_dir.join(arch.layer_zip_name()).display(),
            human_bytes(built.report.total.zipped),
            human_bytes(built.report.total.unzipped),
            spec.budget.zipped_mb,
            spec.budget.unzipped_mb
        );
        println!(
            "  {} distributions: {} in site-packages.zip, {} in site-packages/",
            built.distributions, built.zipped_distributions, built.directory_distributions
        );
        println!("  SBOM: {}", out_dir.join(sbom::sbom_file_name(arch)).display());
        println!("  size report: {}", out_dir.join("size-report.md").display());
    }
    println!("  steps: {} (total {:.1}s)", progress.timing_summary(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The lock beside the spec, refused when it was made from other inputs than the spec's now.
fn load_current_lock(spec: &LayerSpec) -> Result<Pylock> {
    let lock_path = crate::lock::default_lock_path(&spec.path);
    let index_url = std::env::var("XTASK_INDEX_URL").ok().filter(|u| !u.trim().is_empty());
    let inputs = crate::lock::expected_inputs(spec, index_url.as_deref().unwrap_or(&spec.index.url))?;
    crate::lock::check(&lock_path, &inputs).context("the layer installs exactly the lock; run `cargo xtask lock`")?;
    Pylock::load(&lock_path)
}

/// Everything the package steps read.
struct BuildContext<'a> {
    spec: &'a LayerSpec,
    spec_path: &'a Path,
    lock: &'a Pylock,
    arch: Arch,
    args: &'a LayerArgs,
    cache: &'a Cache,
    http: &'a Http,
    runtime: &'a RuntimeOutput,
    /// The staging output directory (`<staging>/layer/python/...`).
    staging: &'a Path,
    progress: &'a Progress,
}

/// What the package steps produced, for the summary.
struct Built {
    report: SizeReport,
    distributions: usize,
    zipped_distributions: usize,
    directory_distributions: usize,
}

/// install → prune → SBOM → bytecode + pack → size report + budget → input stamp.
fn build_packages(cx: &BuildContext<'_>) -> Result<Built> {
    let BuildContext { spec, lock, arch, cache, http, runtime, staging, progress, .. } = *cx;
    let site_packages = runtime.python_root.join("lib").join(format!("python{}", runtime.minor)).join("site-packages");
    let mut dists = progress.step(format!("install ({arch}, {} locked packages)", lock.packages.len()), || {
        install::install_lock(lock, arch, spec, cache, http, &site_packages, progress)
    })?;
    let pruned = progress.step("prune", || prune::prune(&site_packages, &mut dists, &spec.prune, progress))?;

    // The SBOM describes what ships after pruning; written while every METADATA is still on disk.
    let cpython = sbom::CpythonInfo {
        version: runtime.version.clone(),
        url: runtime.source.clone(),
        sha256: runtime.sha256.clone(),
    };
    let dropped: Vec<String> =
        spec.prune.drop_packages.iter().map(|name| crate::packaging::wheel_name::normalize_name(name)).collect();
    let site_packages_dirs = [site_packages.clone()];
    progress.step("sbom", || {
        sbom::write_sbom(
            &sbom::SbomInput {
                arch,
                cpython: &cpython,
                lock,
                dists: &dists,
                metadata: sbom::MetadataSource::SitePackages(&site_packages_dirs),
                dropped: &dropped,
            },
            &staging.join(sbom::sbom_file_name(arch)),
        )
    })?;

    let build_python = interpreter::build_python(spec, arch, runtime, &cx.args.python, cache, http, progress)?;
    let layer_dir = staging.join("layer");
    let out_zip = staging.join(arch.layer_zip_name());
    let pack_request = PackRequest {
        layer_dir: &layer_dir,
        python_minor: &runtime.minor,
        build_python: &build_python,
        out_zip: &out_zip,
        source_date_epoch: pack::source_date_epoch_from_env()?,
        zip_position: ZipPosition::default(),
    };
    let packed = progress.step("bytecode + pack", || pack::build(&pack_request, &mut dists, progress))?;

    let mut savings: Vec<RuleSavings> = runtime
        .prune
        .rules
        .iter()
        .map(|rule| RuleSavings { rule: format!("stdlib: {}", rule.rule), files: rule.files, bytes: rule.bytes })
        .collect();
    savings.extend(pruned.iter().map(|outcome| RuleSavings {
        rule: outcome.rule.clone(),
        files: outcome.files,
        bytes: outcome.bytes,
    }));
    let report = progress.step("size report", || -> Result<SizeReport> {
        let report = SizeReport::compute(&packed, &dists, savings)?;
        report.write(staging)?;
        report::check_budget(
            &report,
            spec.budget.zipped_mb,
            spec.budget.unzipped_mb,
            spec.budget.upload == Upload::Direct,
        )?;
        Ok(report)
    })?;
    freshness::write_stamp(staging, &freshness::layer_inputs_digest(&crate::project_root(), cx.spec_path, arch)?)?;
    let zipped_distributions = packed.placements.iter().filter(|p| p.placement == pack::Placement::Zip).count();
    Ok(Built {
        report,
        distributions: dists.len(),
        zipped_distributions,
        directory_distributions: packed.placements.len() - zipped_distributions,
    })
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
