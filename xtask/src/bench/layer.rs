//! Benchmark of `cargo xtask layer` against the script a user would write for the same lock:
//! `uv pip install --target … --python-platform … --compile-bytecode` followed by `zip -r -9`,
//! each with a cold cache (fresh download cache, fresh output) and a warm one (the caches and,
//! for `layer`, the previous output present), in the same run. `layer` is measured warm twice:
//! with nothing changed (it finds its output up to date) and with `--force` (a full rebuild over
//! the previous output, reusing what it can; docs/architecture.md §14).
//!
//! The script installs the same pinned wheels (`--no-deps`, hashes from the lock) for the target
//! platform and zips them; it ships no interpreter, prunes nothing and compiles every module, so
//! its zip is listed beside ours for scale, not as a like-for-like size.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::arch::Arch;
use crate::flags::PythonDistArgs;
use crate::layer::install::Target;
use crate::packaging::pylock::Pylock;
use crate::progress::{Progress, human_bytes};
use crate::spec::LayerSpec;
use crate::stats::median_duration as median;

/// What [`bench_layer`] needs.
pub(crate) struct LayerBench<'a> {
    /// The xtask binary to run `layer` with.
    pub(crate) exe: &'a Path,
    pub(crate) spec_path: &'a Path,
    pub(crate) spec: &'a LayerSpec,
    pub(crate) lock: &'a Pylock,
    pub(crate) arch: Arch,
    pub(crate) runs: u32,
    pub(crate) python: &'a PythonDistArgs,
    /// A venv holding `uv` (see [`crate::bench::install::tools_venv`]).
    pub(crate) uv: &'a Path,
    pub(crate) work_dir: &'a Path,
    pub(crate) progress: &'a Progress,
}

/// Medians of the four cases and the zip sizes, as a Markdown section.
pub(crate) fn bench_layer(bench: &LayerBench<'_>) -> Result<String> {
    let LayerBench { exe, spec_path, spec, lock, arch, runs, python, uv, work_dir, progress } = *bench;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    fs_err::create_dir_all(work_dir)?;
    let sh = Shell::new()?;
    let requirements = work_dir.join("requirements.txt");
    let target = Target::new(arch, spec, lock)?;
    fs_err::write(&requirements, crate::bench::install::requirements_with_hashes(lock, spec, &target)?)?;
    let uv_version = cmd!(sh, "{uv} --version").read()?;

    let xtask_cache = work_dir.join("xtask-cache");
    let xtask_out = work_dir.join(arch.build_dir_name());
    let uv_cache = work_dir.join("uv-cache");
    let uv_target = work_dir.join("uv-layer");
    let uv_zip = work_dir.join("uv-layer.zip");
    let mut layer_args: Vec<OsString> =
        vec!["--spec".into(), spec_path.into(), "--cache-dir".into(), xtask_cache.clone().into()];
    layer_args.extend(["layer", "--arch", arch.lambda_name(), "--no-patch", "--out-dir"].map(OsString::from));
    layer_args.push(xtask_out.clone().into());
    if let (Some(dist), Some(sha256)) = (&python.python_dist, &python.python_sha256) {
        layer_args.extend(["--python-dist".into(), dist.into(), "--python-sha256".into(), sha256.into()]);
    }
    // The time, and what the run said: up to date or why it rebuilt, and its step timings.
    let run_layer = |force: bool| -> Result<(Duration, String)> {
        let started = Instant::now();
        let output = std::process::Command::new(exe)
            .args(&layer_args)
            .args(force.then_some("--force"))
            .output()
            .context("running xtask layer")?;
        if !output.status.success() {
            bail!(
                "`xtask layer` failed in the layer benchmark (pass --python-dist/--python-sha256 if the pinned \
                 interpreter cannot be downloaded here):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let took = started.elapsed();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let said: Vec<&str> = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .filter(|line| {
                line.starts_with("rebuilding: ") || line.contains("is up to date") || line.starts_with("steps: ")
            })
            .collect();
        Ok((took, said.join("; ")))
    };
    let platform = format!("{}-manylinux_2_34", arch.manylinux_name());
    let version = spec.python.version.dotted();
    let run_script = || -> Result<Duration> {
        remove_if_exists(&uv_target)?;
        remove_if_exists(&uv_zip)?;
        let site = uv_target.join("python");
        let started = Instant::now();
        cmd!(
            sh,
            "{uv} pip install --quiet --target {site} --python-platform {platform} --python-version {version}
             --only-binary :all: --no-deps --compile-bytecode --cache-dir {uv_cache} -r {requirements}"
        )
        .run()
        .context("uv pip install --compile-bytecode")?;
        let _dir = sh.push_dir(&uv_target);
        cmd!(sh, "zip -q -r -9 {uv_zip} python").run().context("zip -r -9 (install zip with apt-get install zip)")?;
        Ok(started.elapsed())
    };

    let mut cases: Vec<(&str, &str, Vec<Duration>)> = Vec::new();
    for (tool, cache_state) in
        [("xtask", "cold"), ("script", "cold"), ("xtask", "warm"), ("xtask", "forced"), ("script", "warm")]
    {
        let mut samples = Vec::new();
        for round in 0..runs {
            // A cold run starts without its own tool's caches and output, and nothing else: the
            // script's cold runs must not wipe what the warm `layer` runs after them start from.
            if cache_state == "cold" {
                let own: &[&PathBuf] = if tool == "xtask" { &[&xtask_cache, &xtask_out] } else { &[&uv_cache] };
                for dir in own {
                    remove_if_exists(dir)?;
                }
            }
            cmd!(sh, "sync").run().context("running sync")?;
            let (took, said) =
                if tool == "xtask" { run_layer(cache_state == "forced")? } else { (run_script()?, String::new()) };
            progress.note(format!(
                "layer bench: {tool} {cache_state} run {}: {:.2}s {said}",
                round + 1,
                took.as_secs_f64()
            ));
            samples.push(took);
        }
        cases.push((tool, cache_state, samples));
    }
    let report: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(xtask_out.join("size-report.json"))?)
        .context("reading the benchmarked layer's size report")?;
    let ours_zip = report["total"]["zipped"].as_u64().unwrap_or(0);
    let script_zip = fs_err::metadata(&uv_zip)?.len();
    Ok(markdown(&cases, arch, runs, &uv_version, ours_zip, script_zip))
}

fn markdown(
    cases: &[(&str, &str, Vec<Duration>)],
    arch: Arch,
    runs: u32,
    uv_version: &str,
    ours_zip: u64,
    script_zip: u64,
) -> String {
    let get =
        |tool: &str, cache: &str| cases.iter().find(|c| c.0 == tool && c.1 == cache).map(|c| &c.2[..]).unwrap_or(&[]);
    let secs = |samples: &[Duration]| median(samples).as_secs_f64();
    let list =
        |samples: &[Duration]| samples.iter().map(|d| format!("{:.1}", d.as_secs_f64())).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "### layer: `cargo xtask layer --arch {arch}` vs `uv pip install --target … --compile-bytecode` + `zip -r -9` (same lock, median of {runs})\n\n\
         | cache | xtask layer | runs (s) | uv + zip script | runs (s) | xtask / script |\n|---|---:|---|---:|---|---:|\n"
    );
    for (label, cache, script_cache) in [
        ("cold", "cold", "cold"),
        ("warm (nothing changed: up to date)", "warm", "warm"),
        ("warm, `--force` (rebuilt over the previous output)", "forced", "warm"),
    ] {
        let (ours, script) = (get("xtask", cache), get("script", script_cache));
        out.push_str(&format!(
            "| {label} | {:.1} s | {} | {:.1} s | {} | {:.2}× |\n",
            secs(ours),
            list(ours),
            secs(script),
            list(script),
            secs(ours) / secs(script).max(1e-9)
        ));
    }
    let over_cold = |cache: &str| secs(get("xtask", cache)) / secs(get("xtask", "cold")).max(1e-9);
    out.push_str(&format!(
        "\n- warm / cold layer = {:.2}× (goal <= 0.25×); warm layer {:.1} s (goal <= 3 s); \
         forced rebuild / cold = {:.2}×\n\
         - zips: xtask {} (interpreter included, pruned, bytecode per the import profile); script {} \
         (packages only, every module compiled). Script tool: {uv_version}.\n",
        over_cold("warm"),
        secs(get("xtask", "warm")),
        over_cold("forced"),
        human_bytes(ours_zip),
        human_bytes(script_zip),
    ));
    out
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs_err::remove_dir_all(path)?,
        Ok(_) => fs_err::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

/// The `uv` binary of the tool venv at `venv` (created by [`crate::bench::install::tools_venv`]).
pub(crate) fn uv_in(venv: &Path) -> PathBuf {
    venv.join("bin/uv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_medians_ratios_and_goals() {
        let s = Duration::from_secs;
        let cases = vec![
            ("xtask", "cold", vec![s(40), s(44), s(42)]),
            ("script", "cold", vec![s(50), s(50), s(50)]),
            ("xtask", "warm", vec![s(2), s(3), s(2)]),
            ("xtask", "forced", vec![s(8), s(10), s(9)]),
            ("script", "warm", vec![s(20), s(20), s(20)]),
        ];
        let text = markdown(&cases, Arch::X86_64, 3, "uv 0.13.9", 40_000_000, 90_000_000);
        assert!(text.contains("| cold | 42.0 s | 40.0, 44.0, 42.0 | 50.0 s | 50.0, 50.0, 50.0 | 0.84× |\n"), "{text}");
        assert!(
            text.contains(
                "| warm (nothing changed: up to date) | 2.0 s | 2.0, 3.0, 2.0 | 20.0 s | 20.0, 20.0, 20.0 | 0.10× |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| warm, `--force` (rebuilt over the previous output) | 9.0 s | 8.0, 10.0, 9.0 | 20.0 s | 20.0, 20.0, 20.0 | 0.45× |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "- warm / cold layer = 0.05× (goal <= 0.25×); warm layer 2.0 s (goal <= 3 s); forced rebuild / cold = 0.21×\n"
            ),
            "{text}"
        );
    }
}
