//! `cargo xtask bench`: lock, install and import times against uv and pip, measured in one run on
//! this machine, written as Markdown tables (medians; ratios against the tools users would pick).
//!
//! uv and pip are installed into a private venv under the work directory; nothing system-wide.

pub mod import_time;
pub mod install;
pub mod lock;
pub mod node;

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};

use crate::arch::Arch;
use crate::flags::{BenchArgs, GlobalArgs};
use crate::layer::bytecode::BuildPython;
use crate::packaging::pylock::Pylock;
use crate::progress::Progress;
use crate::spec::LayerSpec;

/// The benchmarks, in the order they run.
pub const BENCHMARKS: &[&str] = &["lock", "install", "rebuild", "import", "cold-start", "import-gc", "warm-overhead"];

pub fn run(global: &GlobalArgs, args: &BenchArgs) -> Result<()> {
    for name in &args.only {
        if !BENCHMARKS.contains(&name.as_str()) {
            bail!("unknown benchmark {name:?} for --only; benchmarks: {}", BENCHMARKS.join(", "));
        }
    }
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let root = crate::project_root();
    let progress = Progress::new();
    let spec_path = global.spec_path();
    let spec = LayerSpec::load(&spec_path)?;
    let lock = Pylock::load(&crate::lock::default_lock_path(&spec.path))?;
    let arch = Arch::host().context("benchmarks need an x86_64 or arm64 host")?;
    let work = root.join(&args.work_dir);
    fs_err::create_dir_all(&work)?;
    let mut out = format!(
        "# Benchmarks\n\n`cargo xtask bench --runs {}` on {} ({} cores), {}.\n",
        args.runs,
        arch,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        spec.packages.requirements.join(" ")
    );
    if selected("lock") {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let table = progress.step("bench: lock vs uv pip compile", || {
            lock::bench_lock(&exe, &spec_path, &work.join("lock"), args.runs)
        })?;
        let _ = write!(out, "\n## lock\n\n{table}\n");
    }
    if selected("install") {
        let table = progress.step("bench: install vs uv and pip", || {
            install::bench_install(&lock, &spec, arch, args.runs, install::TOOLS, &work.join("install"), &progress)
        })?;
        let _ = write!(out, "\n## install\n\n{table}\n");
    }
    if selected("rebuild") {
        let table =
            progress.step("bench: warm layer rebuild", || rebuild(global, args, arch, &work.join("rebuild")))?;
        let _ = write!(out, "\n## layer rebuild\n\n{table}\n");
    }
    if selected("import") {
        let report = progress.step("bench: import litellm, three layouts", || -> Result<String> {
            let site_packages = work.join("import/site-packages");
            let cache = crate::cache::Cache::locate(global.cache_dir.as_deref())?;
            let http = crate::http::Http::new()?;
            crate::layer::install::install_lock(&lock, arch, &spec, &cache, &http, &site_packages, &progress)?;
            let report = import_time::measure(
                &BuildPython::host(),
                &site_packages,
                &work.join("import/layouts"),
                args.runs.max(10),
                &progress,
            )?;
            Ok(report.to_string())
        })?;
        let _ = write!(out, "\n## import litellm\n\n{report}\n");
    }
    let node_selected: Vec<_> = node::NODE_BENCHMARKS.iter().filter(|(name, _, _)| selected(name)).collect();
    if !node_selected.is_empty() {
        let python = match std::env::var_os("LITELLM_PYTHON") {
            Some(python) => std::path::PathBuf::from(python),
            None => crate::test_suite::prepare_node_python(global, &progress)?,
        };
        for (name, script, default_runs) in node_selected {
            // `--runs` (default 5) scales each Node benchmark's own default number of runs.
            let runs = (default_runs * args.runs / 5).max(1);
            let section = progress.step(format!("bench: {name} (node bench/{script})"), || {
                node::run_script(&root, script, runs, &python)
            })?;
            let _ = write!(out, "\n## {name}\n\n{section}\n");
        }
    }
    let output = root.join(&args.output);
    if let Some(parent) = output.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::write(&output, &out)?;
    println!("{out}");
    eprintln!("wrote {} ({})", output.display(), progress.timing_summary());
    Ok(())
}

/// `cargo xtask layer --arch <host>` into a scratch directory: one build to warm the caches, then
/// `runs` timed rebuilds over the previous output (what a developer re-running the command sees).
fn rebuild(global: &GlobalArgs, args: &BenchArgs, arch: Arch, work: &std::path::Path) -> Result<String> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let out_dir = work.join(arch.build_dir_name());
    let mut command_args: Vec<std::ffi::OsString> = vec!["--spec".into(), global.spec_path().into()];
    if let Some(cache) = &global.cache_dir {
        command_args.extend(["--cache-dir".into(), cache.into()]);
    }
    command_args.extend(
        ["layer", "--arch", arch.lambda_name(), "--no-patch", "--out-dir"].into_iter().map(std::ffi::OsString::from),
    );
    command_args.push(out_dir.clone().into());
    if let (Some(dist), Some(sha256)) = (&args.python.python_dist, &args.python.python_sha256) {
        command_args.extend(["--python-dist".into(), dist.into(), "--python-sha256".into(), sha256.into()]);
    }
    let mut samples = Vec::new();
    for round in 0..=args.runs {
        let started = std::time::Instant::now();
        let output = std::process::Command::new(&exe).args(&command_args).output().context("running xtask layer")?;
        if !output.status.success() {
            bail!(
                "`xtask layer` failed in the rebuild benchmark (pass --python-dist/--python-sha256 if the pinned \
                 interpreter cannot be downloaded here):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if round > 0 {
            samples.push(started.elapsed());
        }
    }
    let median = import_time::median(&samples);
    let zip = out_dir.join(arch.layer_zip_name());
    let report: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(out_dir.join("size-report.json"))?)
        .context("reading the rebuilt layer's size report")?;
    let runs: Vec<String> = samples.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect();
    Ok(format!(
        "| measurement | median | runs (s) |\n|---|---:|---|\n| `cargo xtask layer --arch {arch}`, warm (caches and previous output present) | {:.1} s | {} |\n\n\
         Layer: {} zipped, {} unzipped ({}).\n",
        median.as_secs_f64(),
        runs.join(", "),
        crate::progress::human_bytes(report["total"]["zipped"].as_u64().unwrap_or(0)),
        crate::progress::human_bytes(report["total"]["unzipped"].as_u64().unwrap_or(0)),
        zip.display()
    ))
}
