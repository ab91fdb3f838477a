//! `cargo xtask layer`: build `layer-build-<arch>/` step by step.
//!
//! Steps, one module each, in pipeline order: interpreter → install → prune → SBOM → bytecode →
//! pack (then the SBOM's subject: the zip's sha256) → size report → freshness stamp; then the
//! wiring serverless.yml reads (`crate::serverless::LayerWiring`, `serverless-layer.json` beside
//! the zip; no tracked file is edited). `dist` (an installed distribution) and `wheel` (unpacking
//! one wheel) serve the install step.
//!
//! The build goes into a staging directory beside the output (`.layer-build-<arch>.staging-*`)
//! and is swapped into place only when every step succeeded, so a failed build leaves the
//! previous output exactly as it was.

pub mod bytecode;
pub mod freshness;
pub mod install;
pub(crate) mod interpreter;
pub(crate) mod output_record;
pub mod pack;
pub mod profile;
pub mod prune;
pub mod report;
pub(crate) mod resolved;
pub mod sbom;
pub(crate) mod share;
pub(crate) mod strip;

pub mod dist;
pub(crate) mod wheel;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use std::time::Instant;

use crate::arch::Arch;
use crate::archive::Limits;
use crate::cache::{Cache, LockKind, RunLock};
use crate::flags::{GlobalArgs, LayerArgs, PythonDistArgs};
use crate::http::Http;
use crate::layer::interpreter::{RuntimeOutput, RuntimeRequest};
use crate::layer::pack::{PackRequest, ZipPosition};
use crate::layer::report::{RuleSavings, SizeReport};
use crate::packaging::pylock::Pylock;
use crate::progress::{Progress, human_bytes};
use crate::source_date::SourceDateEpoch;
use crate::spec::{LayerSpec, Upload};

/// A file in every build directory, so `layer` only ever replaces a directory it made itself.
pub(crate) const BUILD_MARKER: &str = ".xtask-layer-build";

/// What one layer build is asked for: by `cargo xtask layer` (from its flags) or by `deploy`
/// (rebuilding a stale layer).
#[derive(Debug, Clone)]
pub(crate) struct BuildOptions {
    pub(crate) arch: Arch,
    /// `--python-dist` and friends; all empty means the pinned interpreter.
    pub(crate) python: PythonDistArgs,
    /// Build only the interpreter step.
    pub(crate) runtime_only: bool,
    /// Where the build goes; `None` is `layer-build-<arch>` at the repository root.
    pub(crate) out_dir: Option<PathBuf>,
    /// Rebuild even when the output is up to date (docs/architecture.md §14).
    pub(crate) force: bool,
}

impl From<&LayerArgs> for BuildOptions {
    fn from(args: &LayerArgs) -> BuildOptions {
        BuildOptions {
            arch: args.arch,
            python: args.python.clone(),
            runtime_only: args.runtime_only,
            out_dir: args.out_dir.clone(),
            force: args.force,
        }
    }
}

/// `cargo xtask layer`.
pub fn run(global: &GlobalArgs, args: &LayerArgs) -> Result<()> {
    build(global, &BuildOptions::from(args))
}

/// Build the layer as `options` say.
pub(crate) fn build(global: &GlobalArgs, options: &BuildOptions) -> Result<()> {
    let started = Instant::now();
    let progress = Progress::new();
    let arch = options.arch;
    let cache = Cache::locate(global.cache_dir.as_deref())?;
    let spec_path = global.spec_path();
    let spec = LayerSpec::load(&spec_path)?;
    let out_dir = match &options.out_dir {
        Some(dir) => std::path::absolute(dir).with_context(|| format!("resolving --out-dir {}", dir.display()))?,
        None => crate::project_root().join(arch.build_dir_name()),
    };
    // A model the service is configured for must be servable by the layer: refused before building.
    if !options.runtime_only
        && let Some(checked) = spec.check_model_config()?
    {
        progress.note(format!(
            "models: every model of {} goes to an enabled provider ({})",
            checked.display(),
            spec.providers.enabled.join(", ")
        ));
    }
    // The layer installs exactly the lock; a lock made from other inputs is refused up front.
    let lock = if options.runtime_only { None } else { Some(load_current_lock(&spec, global.index_override())?) };

    // One run per output directory at a time; every run holds the cache shared (see `Cache::lock_for_run`).
    let _cache_lock =
        cache.lock_for_run(&format!("`cargo xtask layer --arch {arch}`"), global.lock_timeout(), &progress)?;
    let _out_lock = lock_output_dir(&cache, &out_dir, arch, global.lock_timeout(), &progress)?;
    // What the output record vouches for; an interpreter-only build has no lock and writes no record.
    let inputs_digest =
        if options.runtime_only { None } else { Some(build_inputs(global, options, &spec_path, &out_dir)?.digest()) };
    if let Some(inputs_digest) = inputs_digest.as_deref()
        && !options.force
    {
        let checked = progress.step("check the previous output", || output_record::up_to_date(&out_dir, inputs_digest));
        match checked {
            Ok(files) => {
                let zip = out_dir.join(arch.layer_zip_name());
                println!(
                    "the layer for {arch} is up to date in {}: nothing changed since the last build",
                    out_dir.display()
                );
                println!(
                    "  layer: {} ({} zipped); {files} files checked against {}; --force rebuilds",
                    zip.display(),
                    human_bytes(fs_err::metadata(&zip)?.len()),
                    output_record::RECORD_FILE,
                );
                println!("  steps: {} (total {:.1}s)", progress.timing_summary(), started.elapsed().as_secs_f64());
                return Ok(());
            }
            Err(reason) => progress.note(format!("rebuilding: {reason}")),
        }
    }
    let staging = StagedOutput::begin(&out_dir, &progress)?;
    let http = Http::new()?;
    let previous = staging.previous().map(Path::to_path_buf);
    let request = RuntimeRequest {
        spec: &spec,
        arch,
        cache: &cache,
        http: &http,
        python: &options.python,
        pbs_mirror: global.pbs_mirror_override(),
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
            options,
            source_date_epoch: global.source_date_epoch,
            pbs_mirror: global.pbs_mirror_override(),
            cache: &cache,
            http: &http,
            runtime: &runtime,
            staging: staging.path(),
            previous_out_dir: previous.as_deref(),
            progress: &progress,
        })?),
        None => None,
    };
    if let (Some(_), Some(inputs_digest)) = (&built, &inputs_digest) {
        // serverless.yml reads this file; the tracked service file is never edited by a build.
        crate::serverless::LayerWiring::new(&spec, arch, runtime.minor, &out_dir).write(staging.path())?;
        // Last, so a record only ever describes a complete output.
        progress
            .step("record the output", || output_record::write(staging.path(), inputs_digest, spec.pack.compression))?;
    }
    if let Some(previous) = &previous {
        // Deleting the previous output then frees only what changed (layer/share.rs).
        let shared = progress.step("share unchanged files with the previous output", || {
            share::share_unchanged_files(staging.path(), previous)
        })?;
        progress.note(format!(
            "{} files ({}) linked to the previous output's",
            shared.files,
            human_bytes(shared.bytes)
        ));
    }
    let staged_at = staging.path().to_path_buf();
    progress.step("replace the previous output", || staging.commit())?;
    runtime.relocate(&staged_at, &out_dir);

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

/// Everything the bytes of the output depend on, for the output record (docs/architecture.md §14): the
/// inputs deploy's freshness stamp covers, the interpreter archives and their hashes (their paths
/// or URLs appear in the SBOM), the mirror and index overrides, `SOURCE_DATE_EPOCH`, the output
/// path (the wiring file names it) and the xtask binary. The download cache is not an input: every
/// read from it is checked against a pinned hash.
fn build_inputs(
    global: &GlobalArgs,
    options: &BuildOptions,
    spec_path: &Path,
    out_dir: &Path,
) -> Result<output_record::BuildInputs> {
    let python = &options.python;
    let mut inputs = output_record::BuildInputs::default();
    inputs
        .add("layer inputs", freshness::layer_inputs_digest(&crate::project_root(), spec_path, options.arch)?)
        .add("python dist", format!("{:?} {:?}", python.python_dist, python.python_sha256))
        .add("build python dist", format!("{:?} {:?}", python.build_python_dist, python.build_python_sha256))
        .add("pbs mirror", format!("{:?}", global.pbs_mirror_override()))
        .add("index", format!("{:?}", global.index_override()))
        .add("SOURCE_DATE_EPOCH", format!("{:?}", global.source_date_epoch.seconds()))
        .add("out dir", out_dir.display().to_string())
        .add("xtask", output_record::xtask_build()?);
    Ok(inputs)
}

/// The lock beside the spec, refused when it was made from other inputs than the spec's now.
fn load_current_lock(spec: &LayerSpec, index_url: Option<&str>) -> Result<Pylock> {
    let lock_path = crate::lock::default_lock_path(&spec.path);
    let inputs = crate::lock::expected_inputs(spec, index_url.unwrap_or(&spec.index.url))?;
    crate::lock::check(&lock_path, &inputs).context("the layer installs exactly the lock; run `cargo xtask lock`")?;
    Pylock::load(&lock_path)
}

/// Everything the package steps read.
struct BuildContext<'a> {
    spec: &'a LayerSpec,
    spec_path: &'a Path,
    lock: &'a Pylock,
    arch: Arch,
    options: &'a BuildOptions,
    source_date_epoch: SourceDateEpoch,
    pbs_mirror: Option<&'a str>,
    cache: &'a Cache,
    http: &'a Http,
    runtime: &'a RuntimeOutput,
    /// The staging output directory (`<staging>/layer/python/...`).
    staging: &'a Path,
    /// The output being replaced, if any.
    previous_out_dir: Option<&'a Path>,
    progress: &'a Progress,
}

/// What the package steps produced, for the summary.
struct Built {
    report: SizeReport,
    distributions: usize,
    zipped_distributions: usize,
    directory_distributions: usize,
}

/// install → prune → SBOM → bytecode + pack (reusing the previous zips' unchanged entries) → size report + budget → input stamp.
fn build_packages(cx: &BuildContext<'_>) -> Result<Built> {
    let BuildContext { spec, lock, arch, cache, http, runtime, staging, progress, .. } = *cx;
    let site_packages = runtime.python_root.join(runtime.minor.site_packages_dir());
    for warning in &lock.warnings {
        progress.warn(warning);
    }
    crate::layer::resolved::check_against_build(lock, &runtime.version, arch)?;
    let mut dists = progress.step(format!("install ({arch}, {} locked packages)", lock.packages.len()), || {
        install::install_lock(lock, arch, spec, cache, http, &site_packages, progress)
    })?;
    let pruned = progress.step("prune", || prune::prune(&site_packages, &mut dists, &spec.prune, progress))?;
    let stripped = progress.step("strip", || strip::strip_distributions(&site_packages, &dists, progress))?;

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
                source_date_epoch: cx.source_date_epoch,
            },
            &staging.join(sbom::sbom_file_name(arch)),
        )
    })?;

    let build_python =
        interpreter::build_python(spec, arch, runtime, &cx.options.python, cx.pbs_mirror, cache, http, progress)?;
    let layer_dir = staging.join("layer");
    let out_zip = staging.join(arch.layer_zip_name());
    let mut bytecode_plan =
        profile::BytecodePlan::for_build(spec, &crate::lock::default_lock_path(&spec.path), progress)?;
    bytecode_plan.cache_dir = Some(cache.subdir("bytecode")?);
    let pack_request = PackRequest {
        layer_dir: &layer_dir,
        python_minor: runtime.minor,
        build_python: &build_python,
        out_zip: &out_zip,
        source_date_epoch: cx.source_date_epoch.seconds().map(|seconds| seconds.unsigned_abs()),
        zip_position: ZipPosition::default(),
        bytecode_plan: &bytecode_plan,
        previous_out_dir: cx.previous_out_dir,
        compression: spec.pack.compression,
    };
    progress.step("size estimate", || -> Result<()> {
        let estimate = SizeReport::estimate(&layer_dir, runtime.minor, &dists, &bytecode_plan)?;
        progress.note(format!(
            "estimated before byte-compiling: {} zipped, {} unzipped",
            human_bytes(estimate.total.zipped),
            human_bytes(estimate.total.unzipped)
        ));
        report::check_budget(
            &estimate,
            spec.budget.zipped_mb,
            spec.budget.unzipped_mb,
            spec.budget.upload == Upload::Direct,
        )
        .context("estimated before byte-compiling (the exact size is checked after packing)")
    })?;
    // Its steps (bytecode, site-packages.zip, zip) time themselves.
    let packed = pack::build(&pack_request, &mut dists, progress)?;
    // The SBOM's subject is the zip: deploy checks the uploaded artifact against this hash.
    crate::layer::sbom::subject::record(&staging.join(crate::layer::sbom::sbom_file_name(arch)), &out_zip)?;

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
    savings.extend(stripped);
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

/// Hold `<cache>/locks/output-<hash of the output path>.lock` exclusively for the whole build: a
/// second build of the same output waits (saying for what) and then fails with a clear timeout,
/// instead of both swapping directories under each other. The lock file lives in the cache so
/// nothing but the output appears beside it.
fn lock_output_dir(
    cache: &Cache,
    out_dir: &Path,
    arch: Arch,
    timeout: std::time::Duration,
    progress: &Progress,
) -> Result<RunLock> {
    use std::os::unix::ffi::OsStrExt;
    let digest = crate::cache::sha256_bytes(out_dir.as_os_str().as_bytes());
    let path = cache.subdir("locks")?.join(format!("output-{}.lock", &digest.as_str()[..16]));
    let purpose = format!("`cargo xtask layer --arch {arch}` building {}", out_dir.display());
    RunLock::acquire(&path, LockKind::Exclusive, &purpose, timeout, progress)
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
    fn begin(out_dir: &Path, progress: &Progress) -> Result<StagedOutput> {
        let name = out_dir.file_name().context("--out-dir must name a directory")?.to_string_lossy().to_string();
        let parent = out_dir.parent().context("--out-dir must have a parent directory")?;
        // The caller holds the output's lock, so staging and old directories of this output are
        // leftovers of a killed run: remove them (only those holding the build marker).
        if parent.is_dir() {
            for entry in fs_err::read_dir(parent)? {
                let entry = entry?;
                let entry_name = entry.file_name().to_string_lossy().to_string();
                let leftover = entry_name.starts_with(&format!(".{name}.staging-"))
                    || entry_name.starts_with(&format!(".{name}.old-"));
                let path = entry.path();
                if leftover && entry.file_type()?.is_dir() && !path.is_symlink() {
                    let marked = path.join(BUILD_MARKER).is_file() || fs_err::read_dir(&path)?.next().is_none();
                    if marked {
                        fs_err::remove_dir_all(&path)?;
                        progress.note(format!("removed {} left by an interrupted build", path.display()));
                    }
                }
            }
        }
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
