//! Benchmark `import litellm`: our layout against the floor (a plain directory with valid `.pyc`)
//! and the old bash layout (a zip of `.py` files, no bytecode). Our layout follows the spec's
//! `[pack]` keys and the import profile, as `cargo xtask layer` does.
//!
//! Every measurement is a fresh process (`python -c "import litellm"`, with
//! `LITELLM_LOCAL_MODEL_COST_MAP=True`) run from a `venv --without-pip`, so the host's own
//! site-packages stay out of the way; rounds interleave the layouts so noise hits them alike,
//! and each layout gets one warm-up run first (which also checks that it imports at all).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fs_err as fs;

use crate::layer::bytecode::{self, BuildPython, CompileJob};
use crate::layer::dist::InstalledDist;
use crate::layer::pack::{self, EntryKind, PackRequest, ZipEntry, ZipPosition};
use crate::layer::profile::BytecodePlan;
use crate::layer::report::{Contributor, SizeReport};
use crate::packaging::wheel_name::normalize_name;
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;

/// One layout's timings.
#[derive(Debug, Clone)]
pub(crate) struct LayoutTiming {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) samples: Vec<Duration>,
}

impl LayoutTiming {
    pub(crate) fn median(&self) -> Duration {
        crate::stats::median_duration(&self.samples)
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone)]
pub struct ImportTimeReport {
    pub(crate) runs: u32,
    /// floor, ours (zip after site-packages), ours (zip before site-packages), old.
    pub(crate) layouts: Vec<LayoutTiming>,
    pub(crate) layer_zipped: u64,
    pub(crate) layer_unzipped: u64,
    pub(crate) zipped_distributions: usize,
    pub(crate) on_disk_distributions: usize,
    pub(crate) top_contributors: Vec<Contributor>,
}

impl ImportTimeReport {
    fn timing(&self, name: &str) -> Option<&LayoutTiming> {
        self.layouts.iter().find(|l| l.name == name)
    }

    /// Median of our default layout over the median of the floor (goal: at most 1.15).
    pub(crate) fn ours_over_floor(&self) -> f64 {
        ratio(self.timing("ours"), self.timing("floor"))
    }

    /// Median of the old layout over ours (goal: at least 2).
    pub(crate) fn old_over_ours(&self) -> f64 {
        ratio(self.timing("old"), self.timing("ours"))
    }
}

fn ratio(numerator: Option<&LayoutTiming>, denominator: Option<&LayoutTiming>) -> f64 {
    match (numerator, denominator) {
        (Some(n), Some(d)) => n.median().as_secs_f64() / d.median().as_secs_f64().max(1e-9),
        _ => f64::NAN,
    }
}

impl fmt::Display for ImportTimeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "`import litellm`, median of {} fresh processes per layout:\n", self.runs)?;
        writeln!(f, "| layout | median | min | max |")?;
        writeln!(f, "|---|---:|---:|---:|")?;
        for layout in &self.layouts {
            let min = layout.samples.iter().min().copied().unwrap_or_default();
            let max = layout.samples.iter().max().copied().unwrap_or_default();
            writeln!(
                f,
                "| {} ({}) | {:.0} ms | {:.0} ms | {:.0} ms |",
                layout.name,
                layout.description,
                layout.median().as_secs_f64() * 1e3,
                min.as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            )?;
        }
        writeln!(
            f,
            "\nours / floor = {:.2} (goal <= 1.15); old / ours = {:.2} (goal >= 2)",
            self.ours_over_floor(),
            self.old_over_ours()
        )?;
        writeln!(
            f,
            "layout: {} zipped, {} unzipped; {} distributions in site-packages.zip, {} in site-packages/\n",
            human_bytes(self.layer_zipped),
            human_bytes(self.layer_unzipped),
            self.zipped_distributions,
            self.on_disk_distributions
        )?;
        writeln!(f, "| top contributor | zipped | unzipped |")?;
        writeln!(f, "|---|---:|---:|")?;
        for contributor in &self.top_contributors {
            writeln!(
                f,
                "| {} | {} | {} |",
                contributor.name,
                human_bytes(contributor.sizes.zipped),
                human_bytes(contributor.sizes.unzipped)
            )?;
        }
        Ok(())
    }
}

/// Build the layouts from `site_packages` (litellm and its dependencies installed, e.g. by
/// `pip install --target`) under `work_dir`, then time `import litellm` in each, `runs` times.
pub fn measure(
    python: &BuildPython,
    site_packages: &Path,
    work_dir: &Path,
    runs: u32,
    plan: &BytecodePlan,
    progress: &Progress,
) -> Result<ImportTimeReport> {
    if runs == 0 {
        bail!("the import benchmark needs at least one run");
    }
    // The layouts are built for the minor version of the python that runs the benchmark.
    let version: PythonVersion = python.minor_version()?.parse().context("the benchmark's python")?;
    if work_dir.exists() {
        fs::remove_dir_all(work_dir)?;
    }
    fs::create_dir_all(work_dir)?;
    let venv = work_dir.join("venv");
    let status = python.command().args(["-m", "venv", "--without-pip"]).arg(&venv).status()?;
    if !status.success() {
        bail!("creating the benchmark venv {} failed ({status})", venv.display());
    }
    let venv_python = venv.join("bin/python");

    // Every layout starts from the same tree, with what the default prune rules remove removed.
    let pruned = work_dir.join("pruned");
    copy_tree(site_packages, &pruned)?;
    remove_bytecode_dirs(&pruned)?;
    let pruned_files = approximate_safe_prune(&pruned)?;
    progress.note(format!("removed {pruned_files} type-stub, C-source and test files (as the safe prune rules do)"));
    let site_packages = pruned.as_path();
    // litellm points tiktoken at a cache inside its own package; a zip cannot serve it, so every
    // layout gets the on-disk copy (the old layout otherwise downloads it at import time).
    let tiktoken_cache = pruned.join("litellm/litellm_core_utils/tokenizers");

    // (a) The floor: the same packages as a plain directory, compiled the usual way.
    let floor = work_dir.join("floor");
    progress.step("bench: floor layout (plain directory, timestamp .pyc)", || -> Result<()> {
        copy_tree(site_packages, &floor)?;
        remove_bytecode_dirs(&floor)?;
        let status = Command::new(&venv_python).args(["-m", "compileall", "-q", "-j0"]).arg(&floor).status()?;
        // compileall exits 1 when a file has a syntax error; that file is not imported.
        if status.code().is_none_or(|code| code > 1) {
            bail!("compileall on {} failed ({status})", floor.display());
        }
        Ok(())
    })?;

    // (b) Our layout, built by the pack step.
    let ours = work_dir.join("ours");
    let lib = ours.join("layer/python").join(version.stdlib_dir());
    let (outcome, dists) = progress.step("bench: our layout (site-packages.zip + site-packages/)", || {
        build_ours(python, version, site_packages, &ours, plan, progress)
    })?;
    let report = SizeReport::compute(&outcome, &dists, Vec::new())?;
    // (b') The same with the zip before site-packages on sys.path.
    let ours_before = work_dir.join("ours-before");
    copy_tree(&lib, &ours_before)?;
    fs::write(ours_before.join("sitecustomize.py"), pack::sitecustomize_source(ZipPosition::BeforeSitePackages))?;
    bytecode::compile(
        python,
        &[CompileJob {
            source: ours_before.join("sitecustomize.py"),
            pyc: ours_before.join(bytecode::pycache_path("sitecustomize.py", &version.cache_tag())),
            co_filename: format!("{}/sitecustomize.py", crate::lambda::pythonpath(version)),
        }],
    )?;

    // (c) The old bash layout: every distribution that can be imported from a zip in a zip of
    // sources, the rest in a directory, no bytecode anywhere (and none written: /opt is read-only).
    let old = work_dir.join("old");
    progress.step("bench: old layout (zip of .py, no bytecode)", || build_old(site_packages, &old))?;

    let join = |paths: &[PathBuf]| std::env::join_paths(paths).context("joining PYTHONPATH");
    let layouts: Vec<(&'static str, &'static str, std::ffi::OsString, bool)> = vec![
        ("floor", "plain directory, valid .pyc", join(std::slice::from_ref(&floor))?, false),
        ("ours", "zip after site-packages", join(&[lib.clone(), lib.join("site-packages")])?, false),
        (
            "ours-zip-first",
            "zip before site-packages",
            join(&[ours_before.clone(), ours_before.join("site-packages")])?,
            false,
        ),
        ("old", "zip of .py, no bytecode", join(&[old.join("site-packages.zip"), old.join("native")])?, true),
    ];
    let before = tree_fingerprint(&ours)?;
    let mut timings: Vec<LayoutTiming> = layouts
        .iter()
        .map(|(name, description, _, _)| LayoutTiming { name, description, samples: Vec::new() })
        .collect();
    progress.step(format!("bench: import litellm, {runs} rounds"), || -> Result<()> {
        for round in 0..=runs {
            for (index, (name, _, python_path, read_only)) in layouts.iter().enumerate() {
                let took = time_import(&venv_python, python_path, &tiktoken_cache, *read_only)
                    .with_context(|| format!("importing litellm from the {name} layout"))?;
                // Round 0 is the warm-up.
                if round > 0 {
                    timings[index].samples.push(took);
                }
            }
        }
        Ok(())
    })?;
    if tree_fingerprint(&ours)? != before {
        bail!("importing litellm wrote files into our layout {}: some module has no valid .pyc", ours.display());
    }
    Ok(ImportTimeReport {
        runs,
        layouts: timings,
        layer_zipped: report.total.zipped,
        layer_unzipped: report.total.unzipped,
        zipped_distributions: report.distributions.iter().filter(|d| d.placement == pack::Placement::Zip).count(),
        on_disk_distributions: report.distributions.iter().filter(|d| d.placement == pack::Placement::Dir).count(),
        top_contributors: report.top_contributors(10, true),
    })
}

fn time_import(
    python: &Path,
    python_path: &std::ffi::OsStr,
    tiktoken_cache: &Path,
    dont_write_bytecode: bool,
) -> Result<Duration> {
    let mut command = Command::new(python);
    command.args(["-c", "import litellm"]).env_clear().env("PYTHONPATH", python_path);
    command.env("LITELLM_LOCAL_MODEL_COST_MAP", "True").env("CUSTOM_TIKTOKEN_CACHE_DIR", tiktoken_cache);
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if dont_write_bytecode {
        command.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    let started = Instant::now();
    let output = command.output()?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!("`import litellm` failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(took)
}

fn build_ours(
    python: &BuildPython,
    version: PythonVersion,
    site_packages: &Path,
    ours: &Path,
    plan: &BytecodePlan,
    progress: &Progress,
) -> Result<(pack::PackOutcome, Vec<InstalledDist>)> {
    let layer = ours.join("layer");
    let target = layer.join("python").join(version.site_packages_dir());
    copy_tree(site_packages, &target)?;
    let mut dists = dists_from_records(&target)?;
    let out_zip = ours.join("python-litellm-bench.zip");
    let request = PackRequest {
        layer_dir: &layer,
        python_minor: version,
        build_python: python,
        out_zip: &out_zip,
        source_date_epoch: None,
        zip_position: ZipPosition::AfterSitePackages,
        bytecode_plan: plan,
        previous_out_dir: None,
        compression: Default::default(),
    };
    let outcome = pack::build(&request, &mut dists, progress)?;
    Ok((outcome, dists))
}

fn build_old(site_packages: &Path, old: &Path) -> Result<()> {
    let dists = dists_from_records(site_packages)?;
    // Distributions with extension modules, and every one sharing a top-level name with them,
    // cannot be imported from a zip: they stay in a directory (the old layout broke them instead).
    let mut native_top_levels: BTreeSet<String> = BTreeSet::new();
    for dist in dists.iter().filter(|d| d.has_extension_modules()) {
        native_top_levels.extend(dist.top_level());
    }
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    for dist in &dists {
        let native = dist.top_level().iter().any(|t| native_top_levels.contains(t));
        for file in dist.files.iter().filter(|f| !f.ends_with(".pyc")) {
            let source = site_packages.join(file);
            if native {
                let target = old.join("native").join(file);
                fs::create_dir_all(target.parent().context("no parent")?)?;
                fs::copy(&source, &target)?;
            } else {
                let mut parent = file.as_str();
                while let Some((dir, _)) = parent.rsplit_once('/') {
                    dirs.insert(dir.to_string());
                    parent = dir;
                }
                entries
                    .push(ZipEntry { name: file.clone(), kind: EntryKind::File { path: source, executable: false } });
            }
        }
    }
    fs::create_dir_all(old.join("native"))?;
    entries.extend(dirs.into_iter().map(|name| ZipEntry { name, kind: EntryKind::Dir }));
    pack::write_zip(entries, &old.join("site-packages.zip"), pack::zip_mtime(None)?)
}

/// The installed distributions of a `pip install --target` tree, from each `.dist-info/RECORD`:
/// files outside the tree (`../bin/...`) and bytecode are left out, as are files that are gone.
pub(crate) fn dists_from_records(site_packages: &Path) -> Result<Vec<InstalledDist>> {
    let mut dists = Vec::new();
    let mut names: Vec<PathBuf> =
        fs::read_dir(site_packages)?.map(|entry| entry.map(|e| e.path())).collect::<std::io::Result<_>>()?;
    names.sort();
    for dist_info_path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "dist-info")) {
        let dist_info = bytecode::relative_posix(site_packages, dist_info_path)?;
        let metadata = fs::read_to_string(dist_info_path.join("METADATA"))?;
        let field = |key: &str| {
            metadata.lines().find_map(|line| line.strip_prefix(key)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        let (name, version) = (normalize_name(&field("Name:")), field("Version:"));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(dist_info_path.join("RECORD"))
            .with_context(|| format!("reading {dist_info}/RECORD"))?;
        let mut files = Vec::new();
        for record in reader.records() {
            let record = record.with_context(|| format!("reading {dist_info}/RECORD"))?;
            let Some(path) = record.get(0) else { continue };
            if path.starts_with("..") || path.starts_with('/') || path.contains("__pycache__") || path.ends_with(".pyc")
            {
                continue;
            }
            if site_packages.join(path).is_file() {
                files.push(path.to_string());
            }
        }
        files.sort();
        files.dedup();
        dists.push(InstalledDist {
            wheel_name: format!("{name}-{version} (from RECORD)"),
            wheel_sha256: String::new(),
            wheel_url: String::new(),
            name,
            version,
            dist_info,
            files,
        });
    }
    Ok(dists)
}

/// Copy a tree (files, directories, symlinks), skipping a top-level `bin/` (console scripts).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let relative = entry.path().strip_prefix(from)?;
        if relative.starts_with("bin") {
            continue;
        }
        let target = to.join(relative);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target)?;
        } else if entry.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)
                .with_context(|| format!("linking {}", target.display()))?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Remove what the default (safe) prune rules would: type stubs (`.pyi`), Cython and C sources
/// and headers, and `tests`/`test` package directories. Returns the number of files removed.
/// The prune step owns the real rules; this only keeps the benchmark's inputs realistic.
fn approximate_safe_prune(root: &Path) -> Result<usize> {
    let mut doomed = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(2) {
        let entry = entry?;
        let path = entry.path();
        let in_tests =
            path.strip_prefix(root)?.components().any(|c| c.as_os_str() == "tests" || c.as_os_str() == "test");
        let inert = path.extension().is_some_and(|e| ["pyi", "pxd", "pyx", "c", "h", "cpp"].iter().any(|x| e == *x));
        if entry.file_type().is_file() && (in_tests || inert) {
            doomed.push(path.to_path_buf());
        }
    }
    for path in &doomed {
        fs::remove_file(path)?;
    }
    Ok(doomed.len())
}

fn remove_bytecode_dirs(root: &Path) -> Result<()> {
    bytecode::remove_stale_bytecode(root).map(|_| ())
}

/// Paths, sizes and mtimes under `root`: equal before and after means nothing was written.
fn tree_fingerprint(root: &Path) -> Result<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>> {
    let mut all = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry?;
        let metadata = entry.path().symlink_metadata()?;
        all.push((entry.path().to_path_buf(), metadata.len(), metadata.modified().ok()));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_name("a-_.b"), "a-b");
    }

    #[test]
    fn dists_from_a_pip_target_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("Six_Pkg-1.0.dist-info")).unwrap();
        fs::write(root.join("Six_Pkg-1.0.dist-info/METADATA"), "Metadata-Version: 2.1\nName: Six_Pkg\nVersion: 1.0\n")
            .unwrap();
        fs::write(
            root.join("Six_Pkg-1.0.dist-info/RECORD"),
            "six.py,sha256=x,10\n__pycache__/six.cpython-311.pyc,,\n../../bin/six,,\nSix_Pkg-1.0.dist-info/METADATA,,\nSix_Pkg-1.0.dist-info/RECORD,,\n",
        )
        .unwrap();
        fs::write(root.join("six.py"), "").unwrap();
        let dists = dists_from_records(root).unwrap();
        assert_eq!(dists.len(), 1);
        assert_eq!((dists[0].name.as_str(), dists[0].version.as_str()), ("six-pkg", "1.0"));
        assert_eq!(dists[0].files, ["Six_Pkg-1.0.dist-info/METADATA", "Six_Pkg-1.0.dist-info/RECORD", "six.py"]);
    }
}
