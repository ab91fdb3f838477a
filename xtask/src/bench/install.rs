//! Benchmark of the install step against `uv pip install --target` and `pip install --target` for
//! the same locked wheels, with cold (fresh) and warm caches. Medians of several runs.
//!
//! uv and pip come from PyPI into a private venv under the work directory; nothing is installed
//! system-wide. All three tools install the same pinned wheels without resolving (`--no-deps`,
//! hashes from the lock).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::arch::Arch;
use crate::cache::{Cache, sha256_file};
use crate::http::Http;
use crate::layer::install::{Target, install_lock, shipped_wheels};
use crate::packaging::pylock::{Hashes, LockedPackage, LockedWheel, Pylock};
use crate::packaging::wheel_name::WheelFilename;
use crate::progress::Progress;
use crate::spec::LayerSpec;

/// One measured case: a tool with a cold or warm cache.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) tool: &'static str,
    pub(crate) cache: &'static str,
    pub(crate) runs: Vec<Duration>,
    /// Files the tool left in its target directory (last run).
    pub(crate) files: usize,
}

impl Measurement {
    pub(crate) fn median(&self) -> Duration {
        crate::stats::median_duration(&self.runs)
    }
}

/// `pip`'s `--platform` values for the arch: glibc 2.34 down to manylinux2014 (old pips do not
/// expand a `manylinux_2_34` tag to older ones themselves).
fn pip_platforms(arch: Arch) -> Vec<String> {
    let machine = arch.manylinux_name();
    ["manylinux_2_34", "manylinux_2_28", "manylinux_2_17", "manylinux2014"]
        .iter()
        .map(|tag| format!("{tag}_{machine}"))
        .collect()
}

/// `name==version --hash=sha256:...` for every package the layer installs for the arch (excluded
/// packages left out, as `layer` leaves them out), listing the hashes of all of the package's
/// locked wheels (pip and uv pick the file themselves).
pub(crate) fn requirements_with_hashes(lock: &Pylock, spec: &LayerSpec, target: &Target) -> Result<String> {
    let mut text = String::new();
    for selected in shipped_wheels(lock, spec, target)? {
        text.push_str(&format!("{}=={}", selected.package.name, selected.package.version));
        for wheel in &selected.package.wheels {
            text.push_str(&format!(" --hash=sha256:{}", wheel.hashes.sha256));
        }
        text.push('\n');
    }
    Ok(text)
}

/// The tools [`bench_install`] can measure.
/// `uv-copy` is uv with `--link-mode copy`: it copies files out of its cache as xtask must,
/// instead of hard-linking them (uv's default on Linux).
pub(crate) const TOOLS: &[&str] = &["xtask", "uv", "uv-copy", "pip"];

/// Run the benchmark for `arch` and return a Markdown table. `tools` is a subset of [`TOOLS`];
/// `work_dir` holds the tool venv, caches and targets; it is reused between calls (the venv is
/// kept).
pub fn bench_install(
    lock: &Pylock,
    spec: &LayerSpec,
    arch: Arch,
    runs: u32,
    tools: &[&str],
    work_dir: &Path,
    progress: &Progress,
) -> Result<String> {
    if let Some(unknown) = tools.iter().find(|t| !TOOLS.contains(t)) {
        bail!("unknown tool {unknown:?}; known: {}", TOOLS.join(", "));
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    fs_err::create_dir_all(work_dir)?;
    let sh = Shell::new()?;
    let venv = work_dir.join("tools-venv");
    tools_venv(&sh, &venv, progress)?;
    let python = venv.join("bin/python");
    let uv = venv.join("bin/uv");
    let pip = venv.join("bin/pip");
    let uv_version = cmd!(sh, "{uv} --version").read()?;
    let pip_version = cmd!(sh, "{pip} --version").read()?;
    let pip_version = pip_version.split(" from ").next().unwrap_or(&pip_version).to_string();

    let target = Target::new(arch, spec, lock)?;
    let requirements = work_dir.join("requirements.txt");
    fs_err::write(&requirements, requirements_with_hashes(lock, spec, &target)?)?;
    let http = Http::new()?;
    let quiet = Progress::new();
    let uv_platform = format!("{}-manylinux_2_34", arch.manylinux_name());
    let pip_platforms: Vec<String> = pip_platforms(arch).into_iter().flat_map(|p| ["--platform".into(), p]).collect();
    let python_version = spec.python.version.dotted();

    let tool_args = ToolArgs {
        uv: &uv,
        pip: &pip,
        python: &python,
        requirements: &requirements,
        uv_platform: &uv_platform,
        pip_platforms: &pip_platforms,
        python_version: &python_version,
    };
    let mut measurements = Vec::new();
    for tool in TOOLS.iter().copied().filter(|t| tools.contains(t)) {
        for cache_state in ["cold", "warm"] {
            let mut measurement = Measurement { tool, cache: cache_state, runs: Vec::new(), files: 0 };
            let cache_dir = work_dir.join(format!("cache-{tool}"));
            let target_dir = work_dir.join(format!("target-{tool}"));
            for run in 0..runs {
                if cache_state == "cold" {
                    remove_if_exists(&cache_dir)?;
                } else if run == 0 {
                    // Warm the cache once, untimed, so every timed run finds it full.
                    remove_if_exists(&target_dir)?;
                    run_tool(tool, &sh, lock, spec, arch, &http, &quiet, &cache_dir, &target_dir, &tool_args)?;
                }
                remove_if_exists(&target_dir)?;
                // Flush earlier runs' writes so each run starts from the same disk state (as
                // `hyperfine --prepare sync` would); otherwise writeback of the previous run's
                // ~100 MB lands on the next one.
                cmd!(sh, "sync").run().context("running sync")?;
                let started = Instant::now();
                run_tool(tool, &sh, lock, spec, arch, &http, &quiet, &cache_dir, &target_dir, &tool_args)?;
                let took = started.elapsed();
                progress.note(format!("{tool} {cache_state} run {}: {:.2}s", run + 1, took.as_secs_f64()));
                measurement.runs.push(took);
            }
            measurement.files = count_files(&target_dir);
            measurements.push(measurement);
        }
    }
    Ok(markdown(&measurements, lock, spec, &target, &uv_version, &pip_version, runs))
}

/// A private venv at `venv` with the newest uv and pip from PyPI (created on first use).
pub(crate) fn tools_venv(sh: &Shell, venv: &Path, progress: &Progress) -> Result<()> {
    let python = venv.join("bin/python");
    if !python.exists() {
        progress.note(format!("creating {} with uv and pip from PyPI", venv.display()));
        cmd!(sh, "python3 -m venv {venv}").run().context("creating the tool venv (needs python3 with venv)")?;
    }
    cmd!(sh, "{python} -m pip install -q --upgrade pip uv").run().context("installing pip and uv from PyPI")?;
    Ok(())
}

struct ToolArgs<'a> {
    uv: &'a Path,
    pip: &'a Path,
    python: &'a Path,
    requirements: &'a Path,
    uv_platform: &'a str,
    pip_platforms: &'a [String],
    python_version: &'a str,
}

#[allow(clippy::too_many_arguments)]
fn run_tool(
    tool: &str,
    sh: &Shell,
    lock: &Pylock,
    spec: &LayerSpec,
    arch: Arch,
    http: &Http,
    progress: &Progress,
    cache_dir: &Path,
    target_dir: &Path,
    args: &ToolArgs,
) -> Result<()> {
    let ToolArgs { uv, pip, python, requirements, uv_platform, pip_platforms, python_version } = args;
    let pip_platforms = pip_platforms.iter();
    match tool {
        "xtask" => {
            install_lock(lock, arch, spec, &Cache::at(cache_dir), http, target_dir, progress)?;
        }
        "uv" | "uv-copy" => {
            let link_mode: &[&str] = if tool == "uv-copy" { &["--link-mode", "copy"] } else { &[] };
            cmd!(
                sh,
                "{uv} pip install --quiet --target {target_dir} --python {python} --python-platform {uv_platform}
                 --python-version {python_version} --only-binary :all: --no-deps --cache-dir {cache_dir}
                 {link_mode...} -r {requirements}"
            )
            .run()
            .context("uv pip install")?;
        }
        "pip" => {
            cmd!(
                sh,
                "{pip} install --quiet --disable-pip-version-check --target {target_dir} --no-deps --only-binary :all:
                 {pip_platforms...} --python-version {python_version} --implementation cp --cache-dir {cache_dir}
                 -r {requirements}"
            )
            .run()
            .context("pip install")?;
        }
        _ => bail!("unknown tool {tool}"),
    }
    Ok(())
}

fn markdown(
    measurements: &[Measurement],
    lock: &Pylock,
    spec: &LayerSpec,
    target: &Target,
    uv_version: &str,
    pip_version: &str,
    runs: u32,
) -> String {
    let packages = shipped_wheels(lock, spec, target).map(|s| s.len()).unwrap_or(0);
    let median = |tool: &str, cache: &str| {
        measurements.iter().find(|m| m.tool == tool && m.cache == cache).map(|m| m.median().as_secs_f64())
    };
    let files = |tool: &str| {
        measurements.iter().find(|m| m.tool == tool).map_or_else(|| "-".to_string(), |m| m.files.to_string())
    };
    let mut out = format!(
        "### install step: {packages} locked wheels for {} (median of {runs} runs)\n\n\
         | cache | xtask | uv | uv --link-mode copy | pip | xtask / uv | xtask / uv copy | xtask / pip |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        target.arch
    );
    for cache in ["cold", "warm"] {
        let (ours, uv, uv_copy, pip) =
            (median("xtask", cache), median("uv", cache), median("uv-copy", cache), median("pip", cache));
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} s"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "| {cache} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(ours),
            cell(uv),
            cell(uv_copy),
            cell(pip),
            ratio(ours, uv),
            ratio(ours, uv_copy),
            ratio(ours, pip)
        ));
    }
    out.push_str(&format!(
        "\nFiles in the target directory: xtask {}, uv {}, pip {} (uv and pip add INSTALLER/REQUESTED and \
         console scripts; xtask drops `.data/scripts`). Tools: {uv_version}, {pip_version}.\n",
        files("xtask"),
        files("uv"),
        files("pip")
    ));
    out
}

fn remove_if_exists(path: &Path) -> Result<()> {
    if path.exists() {
        fs_err::remove_dir_all(path)?;
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()).filter(|e| e.file_type().is_file()).count()
}

/// A lock for the bench (and tests) made from a directory of wheels, e.g. what
/// `pip download --only-binary :all: ...` saved: one package per wheel, `file://` URLs, sha256
/// computed. Used when `litellm-layer/pylock.toml` is not available.
pub fn pylock_from_wheel_dir(dir: &Path) -> Result<Pylock> {
    let mut paths: Vec<PathBuf> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    paths.sort();
    let mut packages: Vec<LockedPackage> = Vec::new();
    for path in paths {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let filename: WheelFilename = file_name.parse()?;
        let wheel = LockedWheel {
            name: file_name,
            url: format!("file://{}", path.canonicalize()?.display()),
            size: Some(fs_err::metadata(&path)?.len()),
            upload_time: None,
            hashes: Hashes { sha256: sha256_file(&path)?.to_string() },
        };
        let name = filename.normalized_name();
        match packages.iter_mut().find(|p| p.name == name) {
            Some(package) => package.wheels.push(wheel),
            None => packages.push(LockedPackage {
                name,
                version: filename.version.to_string(),
                marker: None,
                requires_python: None,
                dependencies: Vec::new(),
                index: None,
                wheels: vec![wheel],
                tool: None,
            }),
        }
    }
    Ok(Pylock::of_packages("xtask bench (from a wheel directory)", packages))
}

/// A lock made from `pip install --dry-run --report FILE` output: the URLs and sha256 pip chose.
pub fn pylock_from_pip_report(report: &Path) -> Result<Pylock> {
    let text = fs_err::read_to_string(report)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not a pip report", report.display()))?;
    let mut packages = Vec::new();
    for item in json["install"].as_array().into_iter().flatten() {
        let url = item["download_info"]["url"].as_str().unwrap_or_default().to_string();
        let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"].as_str().unwrap_or_default();
        let file_name = url.rsplit('/').next().unwrap_or_default().to_string();
        let filename: WheelFilename = file_name.parse().with_context(|| format!("{}: {url}", report.display()))?;
        packages.push(LockedPackage {
            name: filename.normalized_name(),
            version: filename.version.to_string(),
            marker: None,
            requires_python: None,
            dependencies: Vec::new(),
            index: None,
            wheels: vec![LockedWheel {
                name: file_name,
                url,
                size: None,
                upload_time: None,
                hashes: Hashes { sha256: sha256.to_string() },
            }],
            tool: None,
        });
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Pylock::of_packages("xtask bench (from a pip report)", packages))
}
