//! Benchmark: `cargo xtask lock` against `uv pip compile` for the same requirements, cold and warm
//! cache, measured in the same run; medians of several runs, printed as a Markdown table.
//!
//! Both tools resolve both Lambda arches (uv once per `--python-platform`, back to back, as one
//! measurement), wheels only, for the CPython minor version of `layer.toml`, against the same
//! index. Cold = a fresh cache directory per run; warm = a cache filled by a first, unmeasured
//! run. uv is installed with pip into a private virtualenv under the work directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::spec::LayerSpec;

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) label: String,
    pub(crate) median: Duration,
    pub(crate) runs: Vec<Duration>,
}

/// Run the benchmark and return the Markdown table. `xtask_bin` is the (release) xtask binary,
/// `spec` the layer.toml to lock, `work_dir` a scratch directory (uv's venv and caches go there).
pub fn bench_lock(xtask_bin: &Path, spec: &Path, work_dir: &Path, runs: u32) -> Result<String> {
    let runs = runs.max(1);
    let sh = Shell::new()?;
    let layer = LayerSpec::load(spec)?;
    fs_err::create_dir_all(work_dir)?;
    let uv = install_uv(&sh, work_dir)?;
    let requirements_in = work_dir.join("requirements.in");
    fs_err::write(&requirements_in, layer.packages.requirements.join("\n") + "\n")?;
    let index_url = layer.index.url.clone();
    let python_version = layer.python.version.dotted();

    let xtask_lock = |cache: &Path, n: u32| -> Result<()> {
        let output = work_dir.join(format!("pylock-{n}.toml"));
        let _ = fs_err::remove_file(&output);
        cmd!(sh, "{xtask_bin} --spec {spec} --cache-dir {cache} lock --output {output}")
            .env("XTASK_INDEX_URL", &index_url)
            .quiet()
            .ignore_stderr()
            .run()
            .context("running `xtask lock`")?;
        Ok(())
    };
    let uv_compile = |cache: &Path| -> Result<()> {
        for platform in ["aarch64-manylinux_2_34", "x86_64-manylinux_2_34"] {
            let output = work_dir.join(format!("requirements-{platform}.txt"));
            cmd!(
                sh,
                "{uv} pip compile {requirements_in} --python-platform {platform} --python-version {python_version}
                 --only-binary :all: --index-url {index_url} --cache-dir {cache} --no-header --quiet -o {output}"
            )
            .quiet()
            .ignore_stderr()
            .run()
            .context("running `uv pip compile`")?;
        }
        Ok(())
    };

    let mut rows = Vec::new();
    let warm_xtask = work_dir.join("xtask-warm-cache");
    let warm_uv = work_dir.join("uv-warm-cache");
    xtask_lock(&warm_xtask, 0)?;
    uv_compile(&warm_uv)?;
    // Interleave the tools so both see the same network conditions.
    let (mut xc, mut xw, mut uc, mut uw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 0..runs {
        let cold = work_dir.join(format!("xtask-cold-{n}"));
        xc.push(time(|| xtask_lock(&cold, n))?);
        let _ = fs_err::remove_dir_all(&cold);
        let cold = work_dir.join(format!("uv-cold-{n}"));
        uc.push(time(|| uv_compile(&cold))?);
        let _ = fs_err::remove_dir_all(&cold);
        xw.push(time(|| xtask_lock(&warm_xtask, n))?);
        uw.push(time(|| uv_compile(&warm_uv))?);
    }
    for (label, times) in [
        ("xtask lock, cold cache", xc),
        ("uv pip compile, cold cache", uc),
        ("xtask lock, warm cache", xw),
        ("uv pip compile, warm cache", uw),
    ] {
        rows.push(Measurement { label: label.to_string(), median: median(&times), runs: times });
    }
    Ok(table(&rows, runs, &layer.packages.requirements))
}

fn time(body: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    body()?;
    Ok(started.elapsed())
}

fn median(times: &[Duration]) -> Duration {
    crate::stats::median_duration(times)
}

/// Install uv with pip into `<work_dir>/uv-venv` (once) and return the `uv` binary.
fn install_uv(sh: &Shell, work_dir: &Path) -> Result<PathBuf> {
    let venv = work_dir.join("uv-venv");
    let uv = venv.join("bin/uv");
    if uv.exists() {
        return Ok(uv);
    }
    cmd!(sh, "python3 -m venv {venv}").quiet().run().context("creating a virtualenv for uv (is python3 installed?)")?;
    let pip = venv.join("bin/pip");
    cmd!(sh, "{pip} install --quiet uv").quiet().run().context("installing uv from PyPI with pip")?;
    if !uv.exists() {
        bail!("pip installed uv but {} is missing", uv.display());
    }
    Ok(uv)
}

/// The Markdown table: medians, all runs, and ratios xtask / uv.
pub(crate) fn table(rows: &[Measurement], runs: u32, requirements: &[String]) -> String {
    let mut out = format!(
        "### lock: `cargo xtask lock` vs `uv pip compile` ({}; both arches, wheels only; median of {runs})\n\n\
         | measurement | median | runs |\n|---|---:|---|\n",
        requirements.join(", ")
    );
    for row in rows {
        let all: Vec<String> = row.runs.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect();
        out.push_str(&format!("| {} | {:.2} s | {} |\n", row.label, row.median.as_secs_f64(), all.join(", ")));
    }
    let find = |label: &str| rows.iter().find(|r| r.label == label).map(|r| r.median.as_secs_f64());
    out.push('\n');
    for kind in ["cold", "warm"] {
        if let (Some(ours), Some(uv)) =
            (find(&format!("xtask lock, {kind} cache")), find(&format!("uv pip compile, {kind} cache")))
        {
            out.push_str(&format!("- {kind}: xtask / uv = {:.2}x\n", ours / uv.max(1e-9)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_reports_medians_and_ratios() {
        let rows = vec![
            Measurement {
                label: "xtask lock, cold cache".into(),
                median: Duration::from_secs(2),
                runs: vec![Duration::from_secs(3), Duration::from_secs(2), Duration::from_secs(1)],
            },
            Measurement {
                label: "uv pip compile, cold cache".into(),
                median: Duration::from_secs(4),
                runs: vec![Duration::from_secs(4)],
            },
        ];
        let text = table(&rows, 3, &["litellm==1.78.7".into()]);
        assert!(text.contains("| xtask lock, cold cache | 2.00 s | 3.00, 2.00, 1.00 |"), "{text}");
        assert!(text.contains("- cold: xtask / uv = 0.50x"), "{text}");
        assert_eq!(
            median(&[Duration::from_secs(5), Duration::from_secs(1), Duration::from_secs(3)]),
            Duration::from_secs(3)
        );
    }
}
