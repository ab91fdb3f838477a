//! Pack the layer: site-packages.zip for pure-Python distributions, sitecustomize.py, and the deterministic layer zip.
//!
//! Layout (docs/architecture.md §5): zipimport cannot load extension modules, ignores `__pycache__/`, uses a
//! `.pyc` only beside its `.py`, and finds namespace packages only through explicit directory
//! entries; code reading data files through `__file__` cannot read them from a zip. So a
//! distribution goes into `site-packages.zip` only when it holds nothing but `.py` files (plus
//! `py.typed` and its `.dist-info`); the rest stay in `site-packages/` with `__pycache__/`.
//! Distributions sharing a top-level name go to the same place.
//!
//! Zips are reproducible (docs/architecture.md §8): entries sorted by name, one fixed mtime
//! (`SOURCE_DATE_EPOCH`, else 1980-01-01 00:00:00), modes 0644/0755, no extra fields, deflate at
//! a fixed level (a nested `.zip` is stored, not deflated again), symlinks stored as in-archive symlinks (unix mode `S_IFLNK`, the relative target
//! as content; Lambda extracts them as links).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fs_err as fs;
use serde::{Deserialize, Serialize};

mod reuse;
mod zip_writer;

use crate::layer::bytecode::{self, BuildPython, CompileJob, SkippedFile};
use crate::layer::dist::InstalledDist;
use crate::layer::profile::BytecodePlan;
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;
use crate::spec::Compression;
use reuse::{PreviousZip, Reused};
pub(crate) use zip_writer::{EntryKind, ZipEntry, tree_entries, write_zip, write_zip_reusing, zip_mtime};

/// Deflate level of every zip we write. Fixed, so the bytes do not depend on a default.
pub(crate) const DEFLATE_LEVEL: i64 = 9;

/// The first line of the `sitecustomize.py` we write; one without it is not ours and is refused.
const SITECUSTOMIZE_MARKER: &str = "\"\"\"Put site-packages.zip on sys.path; written by `cargo xtask layer`.";

/// Where a distribution ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// In `lib/python3.X/site-packages.zip`, with legacy-location `.pyc`.
    Zip,
    /// In `lib/python3.X/site-packages/`, with `__pycache__/`.
    Dir,
}

/// The layout decision for one distribution, with the reason when it stays on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistPlacement {
    pub name: String,
    pub placement: Placement,
    /// Why it stays in `site-packages/` (empty for the zip), e.g. `extension module x.so`.
    pub(crate) reason: String,
}

/// Where `sitecustomize.py` puts `site-packages.zip` on `sys.path`, relative to `site-packages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZipPosition {
    /// Right after the `site-packages` entry (the default; see the benchmark in the report).
    #[default]
    AfterSitePackages,
    /// Right before it.
    BeforeSitePackages,
}

/// Why a distribution cannot go into the zip, if it cannot.
fn zip_blocker(site_packages: &Path, dist: &InstalledDist) -> Result<Option<String>> {
    let dist_info_prefix = format!("{}/", dist.dist_info);
    for file in &dist.files {
        if crate::files::enclosed_relative_path(file).is_err() {
            return Ok(Some(format!("file {file} lies outside site-packages")));
        }
        if file.split('/').any(|part| part == "__pycache__") {
            continue;
        }
        let name = file.rsplit('/').next().unwrap_or(file);
        let allowed = file.starts_with(&dist_info_prefix) || file.ends_with(".py") || name == "py.typed";
        if !allowed {
            return Ok(Some(if file.ends_with(".so") || file.contains(".so.") {
                format!("extension module {file}")
            } else {
                format!("data file {file}")
            }));
        }
        let path = site_packages.join(file);
        let metadata = fs::symlink_metadata(&path)
            .with_context(|| format!("{} lists {file} but it is not in site-packages", dist.name))?;
        if !metadata.file_type().is_file() {
            return Ok(Some(format!("{file} is not a regular file")));
        }
    }
    Ok(None)
}

/// Decide where each distribution goes (same order as `dists`). A distribution goes into the zip
/// only when it and every distribution sharing one of its top-level names qualify.
pub(crate) fn plan_layout(site_packages: &Path, dists: &[InstalledDist]) -> Result<Vec<DistPlacement>> {
    let mut placements = Vec::with_capacity(dists.len());
    for dist in dists {
        let blocker = zip_blocker(site_packages, dist)?;
        placements.push(match blocker {
            None => DistPlacement { name: dist.name.clone(), placement: Placement::Zip, reason: String::new() },
            Some(reason) => DistPlacement { name: dist.name.clone(), placement: Placement::Dir, reason },
        });
    }
    // Distributions sharing a top-level name (namespace packages such as `google`) share a place:
    // one that stays on disk pulls the others with it, until nothing changes.
    let top_levels: Vec<BTreeSet<String>> = dists.iter().map(|d| d.top_level().into_iter().collect()).collect();
    loop {
        let mut changed = false;
        for i in 0..dists.len() {
            if placements[i].placement != Placement::Zip {
                continue;
            }
            let on_disk_sibling = (0..dists.len())
                .find(|&j| placements[j].placement == Placement::Dir && !top_levels[i].is_disjoint(&top_levels[j]));
            if let Some(j) = on_disk_sibling {
                let shared = top_levels[i].intersection(&top_levels[j]).next().cloned().unwrap_or_default();
                placements[i].placement = Placement::Dir;
                placements[i].reason = format!("shares top-level {shared} with {}, which stays on disk", dists[j].name);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(placements)
}

/// The text of `sitecustomize.py`.
pub(crate) fn sitecustomize_source(position: ZipPosition) -> String {
    let offset = match position {
        ZipPosition::AfterSitePackages => " + 1",
        ZipPosition::BeforeSitePackages => "",
    };
    format!(
        r#"{SITECUSTOMIZE_MARKER}

Pure-Python distributions live in site-packages.zip (a .pyc beside each .py, as zipimport wants);
distributions with extension modules or data files stay in site-packages/. importlib.metadata finds
the .dist-info of both, because it searches every sys.path entry, zips included.
"""
import os as _os
import sys as _sys


def _add_site_packages_zip():
    here = _os.path.dirname(_os.path.abspath(__file__))
    archive = _os.path.join(here, "site-packages.zip")
    directory = _os.path.join(here, "site-packages")
    if archive in _sys.path or not _os.path.isfile(archive):
        return
    try:
        position = _sys.path.index(directory){offset}
    except ValueError:
        position = len(_sys.path)
    _sys.path.insert(position, archive)


_add_site_packages_zip()
del _add_site_packages_zip, _os, _sys
"#
    )
}

/// What the lead's `layer` command passes to [`build`].
#[derive(Debug, Clone)]
pub struct PackRequest<'a> {
    /// `<out>/layer`, holding `python/bin/python3.X` and `python/lib/python3.X/`.
    pub layer_dir: &'a Path,
    /// The layer interpreter's minor version.
    pub python_minor: PythonVersion,
    /// A CPython of that minor version that runs here.
    pub build_python: &'a BuildPython,
    /// `<out>/python-litellm-<arch>.zip` (see `Arch::layer_zip_name`); must be outside `layer_dir`.
    pub out_zip: &'a Path,
    /// `SOURCE_DATE_EPOCH` as the CLI parsed it (`crate::source_date`).
    pub source_date_epoch: Option<u64>,
    pub zip_position: ZipPosition,
    /// Which modules get bytecode and which ship without source (`BytecodePlan::default()`:
    /// every module, with source, no bytecode cache).
    pub bytecode_plan: &'a BytecodePlan,
    /// The previous output directory, whose zips' unchanged entries are copied instead of
    /// deflated again (when its output record vouches for them; `reuse.rs`).
    pub previous_out_dir: Option<&'a Path>,
    /// `[pack] compression`.
    pub compression: Compression,
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct PackOutcome {
    pub layer_dir: PathBuf,
    pub layer_zip: PathBuf,
    pub layer_zip_bytes: u64,
    /// `layer/python/lib/python3.X/site-packages.zip`, when any distribution went there.
    pub site_packages_zip: Option<PathBuf>,
    pub(crate) python_minor: PythonVersion,
    /// One per distribution, in the order given.
    pub placements: Vec<DistPlacement>,
    pub compiled: usize,
    /// How many of `compiled` came from the bytecode cache.
    pub from_cache: usize,
    pub skipped: Vec<SkippedFile>,
}

/// Byte-compile, lay out and zip the layer. Updates each dist's `files` (new `.pyc` files, removed
/// stale bytecode); the files of zipped distributions then live in `site-packages.zip`.
pub fn build(request: &PackRequest<'_>, dists: &mut [InstalledDist], progress: &Progress) -> Result<PackOutcome> {
    let PackRequest {
        layer_dir,
        python_minor,
        build_python,
        out_zip,
        source_date_epoch,
        zip_position,
        bytecode_plan,
        previous_out_dir,
        compression,
    } = request.clone();
    // The zips' paths inside the output directory, which holds both the layer tree and the zip.
    let out_root = out_zip.parent().context("the layer zip has a parent directory")?;
    let previous_zip = |zip: &Path| -> Option<PreviousZip> {
        let relative = bytecode::relative_posix(out_root, zip).ok()?;
        let previous = PreviousZip::open(previous_out_dir?, &relative, compression);
        if previous.is_none() {
            progress
                .note(format!("{relative}: no previous zip vouched for by its output record; deflating every entry"));
        }
        previous
    };
    let note_reused = |zip: &Path, reused: Reused| {
        progress.note(format!(
            "{}: {} entries ({}) copied still compressed from the previous build",
            zip.file_name().unwrap_or_default().to_string_lossy(),
            reused.entries,
            human_bytes(reused.bytes)
        ));
    };
    let lib_dir = layer_dir.join("python").join(python_minor.stdlib_dir());
    let site_packages = lib_dir.join("site-packages");
    if !site_packages.is_dir() {
        bail!("{} is missing: run the install step first", site_packages.display());
    }
    if out_zip.starts_with(layer_dir) {
        bail!("the layer zip {} must not be inside the layer tree {}", out_zip.display(), layer_dir.display());
    }
    let mtime = zip_mtime(source_date_epoch)?;
    let tag = python_minor.cache_tag();
    build_python.require_minor(python_minor)?;

    // Check the whole tree (symlinks, special files) before changing anything in it.
    tree_entries(layer_dir, "")?;
    let placements = plan_layout(&site_packages, dists)?;
    let zipped: Vec<usize> = (0..dists.len()).filter(|&i| placements[i].placement == Placement::Zip).collect();
    for placement in placements.iter().filter(|p| p.placement == Placement::Dir) {
        progress.note(format!("{} stays in site-packages/: {}", placement.name, placement.reason));
    }

    let sitecustomize = lib_dir.join("sitecustomize.py");
    if sitecustomize.exists() {
        let existing = fs::read_to_string(&sitecustomize).unwrap_or_default();
        if !existing.starts_with(SITECUSTOMIZE_MARKER) {
            bail!(
                "{} exists and was not written by xtask; the layout needs its own sitecustomize.py: remove it",
                sitecustomize.display()
            );
        }
        fs::remove_file(&sitecustomize)?;
    }
    if !zipped.is_empty() {
        fs::write(&sitecustomize, sitecustomize_source(zip_position))?;
        bytecode::set_mode(&sitecustomize, 0o644)?;
    }

    // Bytecode: drop what must not ship, then compile the .py files the plan selects (every one
    // without an import profile) under lib/python3.X.
    let removed = bytecode::remove_stale_bytecode(&lib_dir)?;
    let removed_in_site_packages: BTreeSet<&str> =
        removed.iter().filter_map(|r| r.strip_prefix("site-packages/")).collect();
    for dist in dists.iter_mut() {
        dist.files.retain(|f| !removed_in_site_packages.contains(f.as_str()));
    }
    let zipped_files: BTreeSet<String> = zipped.iter().flat_map(|&i| dists[i].files.iter().cloned()).collect();
    let lib_prefix = crate::lambda::pythonpath(python_minor);
    let mut jobs = Vec::new();
    let mut sourceless_jobs = BTreeSet::new();
    let mut source_only = 0usize;
    for entry in walkdir::WalkDir::new(&lib_dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", lib_dir.display()))?;
        if !entry.file_type().is_file() || entry.path().extension().is_none_or(|e| e != "py") {
            continue;
        }
        let relative = bytecode::relative_posix(&lib_dir, entry.path())?;
        if !bytecode_plan.compiles(&relative) {
            source_only += 1;
            continue;
        }
        let in_zip = relative.strip_prefix("site-packages/").filter(|rel| zipped_files.contains(*rel));
        let drops_source = bytecode_plan.drops_source(&relative);
        // A sourceless module's .pyc must sit where its .py was: the path finder and zipimport
        // only load a .pyc without source from there (PEP 3147, "Case 4").
        let (pyc, co_filename) = match in_zip {
            Some(rel) => (bytecode::legacy_pyc_path(&relative), format!("{lib_prefix}/site-packages.zip/{rel}")),
            None if drops_source => (bytecode::legacy_pyc_path(&relative), format!("{lib_prefix}/{relative}")),
            None => (bytecode::pycache_path(&relative, &tag), format!("{lib_prefix}/{relative}")),
        };
        if drops_source {
            sourceless_jobs.insert(entry.path().to_path_buf());
        }
        jobs.push(CompileJob { source: entry.path().to_path_buf(), pyc: lib_dir.join(pyc), co_filename });
    }
    let cache = match &bytecode_plan.cache_dir {
        Some(dir) => Some(bytecode::BytecodeCache::open(dir, build_python)?),
        None => None,
    };
    let compiled = progress.step(format!("bytecode ({} modules)", jobs.len()), || {
        bytecode::compile_cached(build_python, &jobs, cache.as_ref())
    })?;
    for skipped in &compiled.skipped {
        progress.warn(format!(
            "skipped byte-compiling {} ({}); importing it fails on Lambda too",
            skipped.source.display(),
            skipped.error
        ));
    }
    progress.note(format!(
        "bytecode: {} .pyc ({} from the bytecode cache), {} modules left as .py only{}",
        compiled.compiled,
        compiled.from_cache,
        source_only,
        if sourceless_jobs.is_empty() {
            String::new()
        } else {
            format!(", {} shipped without source", sourceless_jobs.len())
        }
    ));
    let skipped_sources: BTreeSet<&Path> = compiled.skipped.iter().map(|s| s.source.as_path()).collect();
    let compiled_sources: BTreeSet<&Path> =
        jobs.iter().map(|j| j.source.as_path()).filter(|s| !skipped_sources.contains(s)).collect();
    for (i, dist) in dists.iter_mut().enumerate() {
        let mut added = Vec::new();
        let mut dropped = BTreeSet::new();
        for file in dist.files.iter().filter(|f| f.ends_with(".py")) {
            let source = site_packages.join(file);
            if !compiled_sources.contains(source.as_path()) {
                continue;
            }
            if sourceless_jobs.contains(&source) {
                fs::remove_file(&source)?;
                dropped.insert(file.clone());
                added.push(bytecode::legacy_pyc_path(file));
                continue;
            }
            added.push(match placements[i].placement {
                Placement::Zip => bytecode::legacy_pyc_path(file),
                Placement::Dir => bytecode::pycache_path(file, &tag),
            });
        }
        dist.files.retain(|f| !dropped.contains(f));
        dist.files.extend(added);
        dist.files.sort();
        dist.files.dedup();
    }

    // site-packages.zip: the zipped distributions' files with every directory as an entry.
    let site_packages_zip = lib_dir.join("site-packages.zip");
    if site_packages_zip.exists() {
        fs::remove_file(&site_packages_zip)?;
    }
    let site_packages_zip = if zipped.is_empty() {
        None
    } else {
        let mut entries = Vec::new();
        let mut dirs = BTreeSet::new();
        for &i in &zipped {
            for file in &dists[i].files {
                let mut parent = file.as_str();
                while let Some((dir, _)) = parent.rsplit_once('/') {
                    dirs.insert(dir.to_string());
                    parent = dir;
                }
                entries.push(ZipEntry {
                    name: file.clone(),
                    kind: EntryKind::File { path: site_packages.join(file), executable: false },
                });
            }
        }
        entries.extend(dirs.into_iter().map(|name| ZipEntry { name, kind: EntryKind::Dir }));
        let reused = progress.step("site-packages.zip", || {
            write_zip_reusing(
                entries,
                &site_packages_zip,
                mtime,
                compression.zip_level(),
                previous_zip(&site_packages_zip),
            )
        })?;
        note_reused(&site_packages_zip, reused);
        for &i in &zipped {
            for file in &dists[i].files {
                remove_file_and_empty_parents(&site_packages, file)?;
            }
        }
        Some(site_packages_zip)
    };

    let layer_entries = tree_entries(layer_dir, "")?;
    let reused = progress.step(format!("zip the layer ({})", compression.label()), || {
        write_zip_reusing(layer_entries, out_zip, mtime, compression.zip_level(), previous_zip(out_zip))
    })?;
    note_reused(out_zip, reused);
    let layer_zip_bytes = fs::metadata(out_zip)?.len();
    Ok(PackOutcome {
        layer_dir: layer_dir.to_path_buf(),
        layer_zip: out_zip.to_path_buf(),
        layer_zip_bytes,
        site_packages_zip,
        python_minor,
        placements,
        compiled: compiled.compiled,
        from_cache: compiled.from_cache,
        skipped: compiled.skipped,
    })
}

/// Remove `root/relative` and then each parent directory that became empty, up to `root`.
fn remove_file_and_empty_parents(root: &Path, relative: &str) -> Result<()> {
    let path = root.join(relative);
    if fs::symlink_metadata(&path).is_ok() {
        fs::remove_file(&path)?;
    }
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || !current.starts_with(root) {
            break;
        }
        if fs::read_dir(current)?.next().is_some() {
            break;
        }
        fs::remove_dir(current)?;
        dir = current.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
