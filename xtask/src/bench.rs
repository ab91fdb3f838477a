//! `cargo xtask bench`: lock, install and import times against uv and pip, measured in one run on
//! this machine, written as Markdown tables (medians; ratios against the tools users would pick).
//!
//! uv and pip are installed into a private venv under the work directory; nothing system-wide.

pub mod import_time;
pub mod install;
pub(crate) mod layer;
pub mod lock;
pub(crate) mod node;
pub(crate) mod providers;

use std::fmt::Write as _;

use anyhow::{Context, Result};

use crate::arch::Arch;
use crate::flags::{BenchArgs, Benchmark, GlobalArgs};
use crate::layer::bytecode::BuildPython;
use crate::packaging::pylock::Pylock;
use crate::progress::Progress;
use crate::spec::LayerSpec;

pub fn run(global: &GlobalArgs, args: &BenchArgs) -> Result<()> {
    let selected = |benchmark: Benchmark| args.only.is_empty() || args.only.contains(&benchmark);
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
    if selected(Benchmark::Lock) {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let table = progress.step("bench: lock vs uv pip compile", || {
            lock::bench_lock(&exe, &spec_path, &work.join("lock"), args.runs)
        })?;
        let _ = write!(out, "\n## lock\n\n{table}\n");
    }
    if selected(Benchmark::Install) {
        let table = progress.step("bench: install vs uv and pip", || {
            install::bench_install(&lock, &spec, arch, args.runs, install::TOOLS, &work.join("install"), &progress)
        })?;
        let _ = write!(out, "\n## install\n\n{table}\n");
    }
    if selected(Benchmark::Layer) {
        let table = progress.step("bench: layer, cold and warm, vs uv + zip", || -> Result<String> {
            let venv = work.join("install/tools-venv");
            crate::bench::install::tools_venv(&xshell::Shell::new()?, &venv, &progress)?;
            let exe = std::env::current_exe().context("locating the xtask binary")?;
            layer::bench_layer(&layer::LayerBench {
                exe: &exe,
                spec_path: &spec_path,
                spec: &spec,
                lock: &lock,
                arch,
                runs: args.runs,
                python: &args.python,
                uv: &layer::uv_in(&venv),
                work_dir: &work.join("layer"),
                progress: &progress,
            })
        })?;
        let _ = write!(out, "\n## layer\n\n{table}\n");
    }
    // Five locks and layers: only when asked for by name (`--only providers`).
    if args.only.contains(&Benchmark::Providers) {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let table = progress.step("bench: the layer per provider set", || {
            providers::bench_providers(&providers::ProvidersBench {
                exe: &exe,
                spec_path: &spec_path,
                arch,
                python: &args.python,
                work_dir: &providers::work_dir(&work),
                progress: &progress,
            })
        })?;
        let _ = write!(out, "\n## providers\n\n{table}\n");
    }
    if selected(Benchmark::Import) {
        let report = progress.step("bench: import litellm, three layouts", || -> Result<String> {
            let site_packages = work.join("import/site-packages");
            let cache = crate::cache::Cache::locate(global.cache_dir.as_deref())?;
            let http = crate::http::Http::new()?;
            crate::layer::install::install_lock(&lock, arch, &spec, &cache, &http, &site_packages, &progress)?;
            let plan = crate::layer::profile::BytecodePlan::for_build(
                &spec,
                &crate::lock::default_lock_path(&spec.path),
                &progress,
            )?;
            let report = import_time::measure(
                &BuildPython::host(),
                &site_packages,
                &work.join("import/layouts"),
                args.runs.max(10),
                &plan,
                &progress,
            )?;
            Ok(report.to_string())
        })?;
        let _ = write!(out, "\n## import litellm\n\n{report}\n");
    }
    let node_selected: Vec<_> = node::NODE_BENCHMARKS
        .iter()
        .filter(|(name, _, _)| args.only.is_empty() || args.only.iter().any(|b| b.name() == *name))
        .collect();
    if !node_selected.is_empty() {
        // What the function runs: `LITELLM_PYTHON` when set, else the host-arch layer when built
        // (found by the scripts themselves), else the locked packages the Node tests use.
        let layer_python =
            root.join(arch.build_dir_name()).join("layer/python/bin").join(spec.python.version.interpreter_name());
        let python = match std::env::var_os("LITELLM_PYTHON") {
            Some(python) => Some(std::path::PathBuf::from(python)),
            None if layer_python.exists() => None,
            None => Some(crate::test_suite::prepare_node_python(global, &progress)?),
        };
        for (name, script, default_runs) in node_selected {
            // `--runs` (default 5) scales each Node benchmark's own default number of runs.
            let runs = (default_runs * args.runs / 5).max(1);
            let section = progress.step(format!("bench: {name} (node bench/{script})"), || {
                node::run_script(&root, script, runs, python.as_deref())
            })?;
            let _ = write!(out, "\n## {name}\n\n{section}\n");
        }
    }
    let output = root.join(&args.output);
    crate::files::write_atomically(&output, out.as_bytes())?;
    println!("{out}");
    eprintln!("wrote {} ({})", output.display(), progress.timing_summary());
    Ok(())
}
