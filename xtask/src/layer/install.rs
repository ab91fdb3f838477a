//! The install step: exactly the lock, for one arch, into site-packages. Never resolves.
//!
//! For each locked package whose marker holds on the target (docs/architecture.md §1: Linux,
//! CPython 3.X, `aarch64` or `x86_64`), pick the best wheel for the arch, fetch it through the shared
//! content-addressed cache (sha256 checked against the lock while streaming and again on read),
//! plan every wheel (names, `WHEEL`, `RECORD`), refuse conflicts and startup hooks, then unpack
//! all of them in parallel into a staging directory that replaces site-packages only when every
//! wheel installed. A refused wheel leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};

use crate::arch::Arch;
use crate::cache::{Cache, Fetched, Sha256Hex, Source};
use crate::http::{Http, redact_url};
use crate::layer::dist::InstalledDist;
use crate::layer::resolved;
use crate::layer::wheel::{self, WheelPlan};
use crate::packaging::pylock::{LockedPackage, LockedWheel, Pylock};
use crate::packaging::tags::TargetTags;
use crate::packaging::wheel_name::{WheelFilename, normalize_name};
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

mod content_checks;

use content_checks::{check_conflicts, check_secret_files, check_startup_hooks};

/// Concurrent downloads.
const DOWNLOAD_THREADS: usize = 8;

/// At least this many threads unpack wheels.
const EXTRACT_THREADS: usize = 8;

/// Files per unpack job.
const EXTRACT_CHUNK_FILES: usize = 256;

/// One locked package chosen for the target, with the wheel to install.
#[derive(Debug, Clone)]
pub struct SelectedWheel<'a> {
    pub package: &'a LockedPackage,
    pub(crate) wheel: &'a LockedWheel,
    pub filename: WheelFilename,
    pub(crate) sha256: Sha256Hex,
}

/// The target environment of the layer: what markers and tags are evaluated against.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) arch: Arch,
    /// The layer's minor version.
    pub(crate) python: PythonVersion,
    /// e.g. "3.11.14".
    pub(crate) python_full_version: String,
}

impl Target {
    /// The target of a build: the spec's Python minor version, the full version the lock was made
    /// for (or `<minor>.0` when the lock does not say).
    pub fn new(arch: Arch, spec: &LayerSpec, lock: &Pylock) -> Result<Target> {
        let python = spec.python.version;
        let python_full_version = lock
            .inputs()
            .map(|inputs| inputs.python_full_version.clone())
            .unwrap_or_else(|| format!("{}.0", spec.python.version));
        Ok(Target { arch, python, python_full_version })
    }

    /// The PEP 508 marker environment of Lambda's Python (docs/architecture.md §1).
    /// <https://packaging.python.org/en/latest/specifications/dependency-specifiers/#environment-markers>
    pub(crate) fn marker_environment(&self) -> Result<pep508_rs::MarkerEnvironment> {
        crate::packaging::markers::lambda_environment(self.arch, self.python, &self.python_full_version)
    }
}

/// The packages of the lock that apply to the target, each with its best wheel, sorted by name.
/// A package whose marker does not hold is skipped; a package with no wheel for the target is an
/// error naming it.
pub fn select_wheels<'a>(lock: &'a Pylock, target: &Target) -> Result<Vec<SelectedWheel<'a>>> {
    let environment = target.marker_environment()?;
    let tags = TargetTags::lambda(target.arch, target.python);
    let python = pep440_rs::Version::from_str(&target.python_full_version)
        .map_err(|e| anyhow!("python version {:?}: {e}", target.python_full_version))?;
    let mut selected: BTreeMap<String, SelectedWheel<'a>> = BTreeMap::new();
    for package in &lock.packages {
        if let Some(marker) = &package.marker {
            let tree = pep508_rs::MarkerTree::from_str(marker)
                .map_err(|e| anyhow!("lock: package {} has an invalid marker {marker:?}: {e}", package.name))?;
            if !tree.evaluate(&environment, &[]) {
                continue;
            }
        }
        if let Some(requires_python) = &package.requires_python {
            let specifiers = pep440_rs::VersionSpecifiers::from_str(requires_python).map_err(|e| {
                anyhow!("lock: package {} has an invalid requires-python {requires_python:?}: {e}", package.name)
            })?;
            if !specifiers.contains(&python) {
                bail!(
                    "lock: {} {} requires python {requires_python}, but the layer's python is {}; \
                     re-run `cargo xtask lock`",
                    package.name,
                    package.version,
                    target.python_full_version
                );
            }
        }
        let mut candidates = Vec::with_capacity(package.wheels.len());
        for locked in &package.wheels {
            let filename =
                WheelFilename::from_str(&locked.name).map_err(|e| anyhow!("lock: package {}: {e}", package.name))?;
            let version_matches =
                pep440_rs::Version::from_str(&package.version).is_ok_and(|version| version == filename.version);
            if filename.normalized_name() != normalize_name(&package.name) || !version_matches {
                bail!(
                    "lock: package {} {} lists wheel {}, which is a different distribution or version; \
                     re-run `cargo xtask lock`",
                    package.name,
                    package.version,
                    locked.name
                );
            }
            candidates.push((filename, locked));
        }
        let Some((filename, locked)) = tags.best(candidates.iter().map(|(filename, locked)| (filename, *locked)))
        else {
            bail!(
                "no wheel of {} {} fits Lambda {} (CPython {}, manylinux_2_{} {}); the lock has: {}. \
                 Pin a version that publishes such a wheel, or exclude the package in layer.toml",
                package.name,
                package.version,
                target.arch,
                target.python,
                crate::packaging::tags::TARGET_GLIBC_MINOR,
                target.arch.manylinux_name(),
                package.wheels.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        };
        let sha256 = Sha256Hex::parse(&locked.hashes.sha256)
            .with_context(|| format!("lock: package {} wheel {}", package.name, locked.name))?;
        let name = normalize_name(&package.name);
        let chosen = SelectedWheel { package, wheel: locked, filename: filename.clone(), sha256 };
        if let Some(previous) = selected.insert(name.clone(), chosen) {
            bail!(
                "lock: {name} is locked twice for {} ({} and {}); their markers must not overlap",
                target.arch,
                previous.package.version,
                package.version
            );
        }
    }
    Ok(selected.into_values().collect())
}

/// One warning per selected package the lock records as yanked (PEP 592: a yanked version is still
/// installed when pinned exactly, which the lock does, but the user should hear of it).
pub fn yanked_warnings(selected: &[SelectedWheel]) -> Vec<String> {
    selected
        .iter()
        .filter_map(|choice| {
            let package = choice.package;
            let reason = package.yanked()?;
            let reason = reason.map(|r| format!(" (reason: {r})")).unwrap_or_default();
            Some(format!(
                "{name} {} is yanked on the index{reason}: it is installed because the lock pins it; run `cargo \
                 xtask lock --upgrade-package {name}` (`{name}==VERSION` when layer.toml pins it) to move off it",
                package.version,
                name = package.name
            ))
        })
        .collect()
}

/// Split `selected` into what the layer ships and one note per package it leaves out: the lock
/// pins excluded packages (and what only they need) so that pip and uv can install it, and the
/// layer skips them (docs/architecture.md §2). The exclusions in force are the lock's
/// recorded inputs, which `layer` has already checked against layer.toml, else layer.toml's own.
pub fn leave_out_excluded<'a>(
    lock: &Pylock,
    selected: Vec<SelectedWheel<'a>>,
    spec: &LayerSpec,
    target: &Target,
) -> Result<(Vec<SelectedWheel<'a>>, Vec<String>)> {
    let (top_level, exclude) = requirements_and_exclusions(lock, spec);
    let left_out = crate::packaging::exclusion::left_out(
        lock,
        &crate::packaging::pylock::requirement_names(top_level),
        exclude,
        &target.marker_environment()?,
    )?;
    let (skipped, shipped): (Vec<SelectedWheel>, Vec<SelectedWheel>) =
        selected.into_iter().partition(|choice| left_out.contains_key(&normalize_name(&choice.package.name)));
    let notes = skipped
        .iter()
        .map(|choice| {
            let reason = &left_out[&normalize_name(&choice.package.name)];
            format!("skipped {} {} ({reason})", choice.package.name, choice.package.version)
        })
        .collect();
    Ok((shipped, notes))
}

/// The wheels the layer installs for `target`: [`select_wheels`] less what [`leave_out_excluded`]
/// leaves out.
pub(crate) fn shipped_wheels<'a>(
    lock: &'a Pylock,
    spec: &LayerSpec,
    target: &Target,
) -> Result<Vec<SelectedWheel<'a>>> {
    Ok(leave_out_excluded(lock, select_wheels(lock, target)?, spec, target)?.0)
}

/// The top-level requirements and `[packages] exclude` the lock was made from, else layer.toml's.
fn requirements_and_exclusions<'a>(lock: &'a Pylock, spec: &'a LayerSpec) -> (&'a [String], &'a [String]) {
    match lock.inputs() {
        Some(inputs) => (&inputs.requirements, &inputs.exclude),
        None => (&spec.packages.requirements, &spec.packages.exclude),
    }
}

/// Install exactly the lock for `arch` into `site_packages`, which is replaced as a whole when
/// every wheel installed (and untouched otherwise). Returns the installed distributions, sorted by
/// name.
pub fn install_lock(
    lock: &Pylock,
    arch: Arch,
    spec: &LayerSpec,
    cache: &Cache,
    http: &Http,
    site_packages: &Path,
    progress: &Progress,
) -> Result<Vec<InstalledDist>> {
    let target = Target::new(arch, spec, lock)?;
    resolved::check_dependency_edges(lock)?;
    let (selected, skipped) = leave_out_excluded(lock, select_wheels(lock, &target)?, spec, &target)?;
    for note in skipped {
        progress.note(note);
    }
    for warning in yanked_warnings(&selected) {
        progress.warn(warning);
    }

    // Fetch and plan every wheel, several at a time.
    let started = std::time::Instant::now();
    let fetched = crate::files::parallel_map(
        &selected,
        DOWNLOAD_THREADS,
        |choice| -> Result<(PathBuf, Fetched, WheelPlan)> {
            let (path, how) = cache
                .fetch(http, &Source::parse(&choice.wheel.url), &choice.sha256, &choice.wheel.name, progress)
                .with_context(|| {
                    format!("fetching {} {} ({})", choice.package.name, choice.package.version, choice.wheel.name)
                })?;
            // The lock's size is the index's `size` (PEP 700); the hash already matched, so a
            // difference means the lock was edited or the index lied about the file.
            let received = fs_err::metadata(&path)?.len();
            if let Some(size) = choice.wheel.size
                && size != received
            {
                bail!(
                    "{}: the lock says {size} bytes (the index's size), the file has {received}; re-run `cargo xtask lock`",
                    choice.wheel.name
                );
            }
            let plan = wheel::plan(&path, &choice.filename)?;
            Ok((path, how, plan))
        },
    )?;
    let downloaded: Vec<&(PathBuf, Fetched, WheelPlan)> =
        fetched.iter().filter(|(_, how, _)| *how == Fetched::Downloaded).collect();
    let downloaded_bytes: u64 =
        downloaded.iter().filter_map(|(path, _, _)| fs_err::metadata(path).ok()).map(|m| m.len()).sum();
    progress.note(format!(
        "{} wheels for {arch}: {} from cache, {} downloaded ({}); fetched and checked in {:.2}s",
        fetched.len(),
        fetched.len() - downloaded.len(),
        downloaded.len(),
        human_bytes(downloaded_bytes),
        started.elapsed().as_secs_f64()
    ));

    for (_, _, plan) in &fetched {
        for warning in &plan.warnings {
            progress.warn(warning);
        }
        if !plan.dropped.is_empty() {
            let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, why) in &plan.dropped {
                *reasons.entry(why).or_default() += 1;
            }
            for (why, count) in reasons {
                progress.note(format!("{}: {count} file(s) not installed: {why}", plan.wheel));
            }
        }
    }
    let plans: Vec<(&SelectedWheel, &WheelPlan)> = selected.iter().zip(fetched.iter().map(|(_, _, p)| p)).collect();
    let candidates: Vec<resolved::InstallCandidate> = plans
        .iter()
        .map(|(choice, plan)| resolved::InstallCandidate {
            name: &choice.package.name,
            version: &choice.package.version,
            wheel: &plan.wheel,
            dependencies: choice.package.dependencies.iter().map(|d| d.name.as_str()).collect(),
            metadata: &plan.metadata,
        })
        .collect();
    let (top_level, exclude) = requirements_and_exclusions(lock, spec);
    resolved::check_metadata_matches_lock(&candidates, top_level, exclude, &target.marker_environment()?)?;
    check_startup_hooks(&plans, &spec.packages.allow_startup_hooks, progress)?;
    check_secret_files(&plans, &spec.allowed_secret_files()?)?;
    check_conflicts(&plans)?;

    // Unpack into a staging directory beside site-packages, then swap it into place.
    let parent = match site_packages.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".site-packages.staging-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    // Creating thousands of small files is bound by file-system latency more than CPU, so large
    // wheels are split into chunks and more threads than cores run them.
    let jobs: Vec<(&PathBuf, &WheelPlan, &[wheel::PlannedFile])> = fetched
        .iter()
        .flat_map(|(path, _, plan)| plan.files.chunks(EXTRACT_CHUNK_FILES).map(move |chunk| (path, plan, chunk)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(EXTRACT_THREADS);
    let started = std::time::Instant::now();
    crate::files::parallel_map(&jobs, threads, |(path, plan, files)| {
        wheel::extract_files(path, plan, files, staging.path())
    })?;
    replace_dir(staging, site_packages)?;
    let unpack_seconds = started.elapsed().as_secs_f64();

    let dists: Vec<InstalledDist> = plans
        .iter()
        .map(|(choice, plan)| {
            let mut files: Vec<String> = plan.files.iter().map(|f| f.destination.clone()).collect();
            files.sort();
            InstalledDist {
                name: normalize_name(&choice.package.name),
                version: choice.package.version.clone(),
                wheel_name: choice.wheel.name.clone(),
                wheel_sha256: choice.sha256.to_string(),
                wheel_url: redact_url(&choice.wheel.url),
                dist_info: plan.dist_info.clone(),
                files,
            }
        })
        .collect();
    let files: usize = dists.iter().map(|d| d.files.len()).sum();
    let bytes: u64 = plans.iter().map(|(_, plan)| plan.unpacked_size()).sum();
    progress.note(format!(
        "installed {} distributions, {files} files, {} into {} (unpacked in {unpack_seconds:.2}s)",
        dists.len(),
        human_bytes(bytes),
        site_packages.display()
    ));
    Ok(dists)
}

/// Move `staging` to `destination`, replacing what is there only now that everything succeeded.
fn replace_dir(staging: tempfile::TempDir, destination: &Path) -> Result<()> {
    let staged = staging.keep();
    if destination.exists() {
        let old = destination.with_file_name(format!(
            ".{}.old-{}",
            destination.file_name().and_then(|n| n.to_str()).unwrap_or("site-packages"),
            std::process::id()
        ));
        fs_err::rename(destination, &old)?;
        fs_err::rename(&staged, destination)?;
        fs_err::remove_dir_all(&old)?;
    } else {
        fs_err::rename(&staged, destination)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::content_checks::{is_secret_shaped, is_startup_hook};

    #[test]
    fn startup_hooks_are_recognised() {
        for hook in [
            "evil.pth",
            "sitecustomize.py",
            "usercustomize.py",
            "sitecustomize/__init__.py",
            "sitecustomize.cpython-311-x86_64-linux-gnu.so",
        ] {
            assert!(is_startup_hook(hook), "{hook}");
        }
        for fine in ["pkg/data.pth", "pkg/sitecustomize.py", "six.py", "litellm/__init__.py"] {
            assert!(!is_startup_hook(fine), "{fine}");
        }
    }

    #[test]
    fn secret_shaped_files_are_recognised() {
        for secret in [
            "pkg/.env",
            "pkg/.env.production",
            "certifi/cacert.pem",
            "pkg/server.KEY",
            "pkg/keys/id_rsa",
            "pkg/id_ed25519",
            ".netrc",
            "pkg/.pypirc",
            "pkg/store.p12",
            "pkg/.aws/credentials",
        ] {
            assert!(is_secret_shaped(secret), "{secret}");
        }
        for fine in ["pkg/id_rsa.pub", "pkg/env.py", "pkg/.envrc.sample", "pkg/keys.py", "pkg/.pem", "pkg/monkey.py"] {
            assert!(!is_secret_shaped(fine), "{fine}");
        }
    }
}
