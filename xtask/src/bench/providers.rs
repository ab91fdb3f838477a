//! Benchmark of what each provider costs: the layer locked and built with OpenAI alone, with
//! OpenAI and each other provider, and with all four, in one run, from the committed layer.toml
//! with only `[providers] enabled` changed. Each set is locked fresh (so every layer has the same
//! index state) into its own directory, built with `cargo xtask layer` from the same interpreter,
//! and the OpenAI-only and all-providers layers are verified offline against the mocks. The goal
//! of issue 17: all four providers add at most 8 MB zipped to the OpenAI-only layer.
//!
//! No import profile is copied next to the fresh locks, so every layer first byte-compiles all its
//! modules (`[pack] bytecode = "profile"` without a profile): the sets differ only in providers.
//! The two verified layers then record their import profile (`verify --record-profile`), are
//! rebuilt with it, and verified again: their sizes as `layer` ships them by default.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::arch::Arch;
use crate::flags::PythonDistArgs;
use crate::progress::{Progress, human_bytes};
use crate::spec::LayerSpec;
use crate::verify::{self, Runner, VerifyOptions};

/// The goal: the layer with every provider is at most this much bigger, zipped, than OpenAI's.
pub const GOAL_EXTRA_ZIPPED_BYTES: u64 = 8_000_000;

/// The provider sets built, the first being the baseline; the last is every provider.
pub const PROVIDER_SETS: [&[&str]; 5] = [
    &["openai"],
    &["openai", "azure"],
    &["openai", "anthropic"],
    &["openai", "bedrock"],
    &["anthropic", "azure", "bedrock", "openai"],
];

/// What [`bench_providers`] needs.
pub struct ProvidersBench<'a> {
    /// The xtask binary to run `lock` and `layer` with.
    pub exe: &'a Path,
    /// The committed layer.toml; copies differ only in `[providers] enabled`.
    pub spec_path: &'a Path,
    pub arch: Arch,
    pub python: &'a PythonDistArgs,
    pub work_dir: &'a Path,
    pub progress: &'a Progress,
}

/// One built provider set.
#[derive(Debug, Clone, PartialEq)]
pub struct SetResult {
    pub providers: Vec<String>,
    pub zipped: u64,
    pub unzipped: u64,
    /// Zipped bytes per distribution, by name.
    pub distributions: Vec<(String, u64)>,
    /// Bytes and files the `botocore-services` prune rule removed, when it ran.
    pub botocore_pruned: Option<(u64, u64)>,
    /// The verify verdict (`passed, N checks`), for the sets that were verified.
    pub verify: Option<String>,
    /// Zipped bytes once rebuilt with the import profile its verify recorded (verified sets).
    pub zipped_with_profile: Option<u64>,
    pub build_seconds: f64,
}

/// Lock, build and (for the first and last set) verify every provider set; a Markdown section.
pub fn bench_providers(bench: &ProvidersBench<'_>) -> Result<String> {
    let committed = fs_err::read_to_string(bench.spec_path)?;
    let cache = bench.work_dir.join("xtask-cache");
    let mut results = Vec::new();
    for (index, providers) in PROVIDER_SETS.iter().enumerate() {
        let slug = providers.join("-");
        let dir = bench.work_dir.join(&slug);
        fs_err::create_dir_all(&dir)?;
        let spec_path = dir.join("layer.toml");
        fs_err::write(&spec_path, with_providers(&committed, providers)?)?;
        for stale in ["pylock.toml", "import-profile.toml"] {
            if dir.join(stale).exists() {
                fs_err::remove_file(dir.join(stale))?;
            }
        }
        let mut global: Vec<OsString> = vec!["--spec".into(), spec_path.clone().into()];
        global.extend(["--cache-dir".into(), cache.clone().into()]);
        bench.progress.step(format!("providers bench: lock {}", providers.join(", ")), || {
            run_xtask(bench.exe, &global, &["lock".into()])
        })?;
        let out_dir = dir.join(bench.arch.build_dir_name());
        let mut layer: Vec<OsString> =
            ["layer", "--arch", bench.arch.lambda_name(), "--no-patch", "--out-dir"].map(OsString::from).to_vec();
        layer.push(out_dir.clone().into());
        if let (Some(dist), Some(sha256)) = (&bench.python.python_dist, &bench.python.python_sha256) {
            layer.extend(["--python-dist".into(), dist.into(), "--python-sha256".into(), sha256.into()]);
        }
        let started = Instant::now();
        let build = || -> Result<Value> {
            bench.progress.step(format!("providers bench: layer {}", providers.join(", ")), || {
                run_xtask(bench.exe, &global, &layer)
            })?;
            let path = out_dir.join("size-report.json");
            serde_json::from_str(&fs_err::read_to_string(&path)?).with_context(|| format!("reading {}", path.display()))
        };
        let report = build()?;
        let mut result = set_result(providers, &report, started.elapsed().as_secs_f64());
        if index == 0 || index == PROVIDER_SETS.len() - 1 {
            let spec = LayerSpec::load(&spec_path)?;
            let checks = verify_set(&spec, &out_dir, bench, true)?;
            let report = build()?;
            result.zipped_with_profile = Some(report["total"]["zipped"].as_u64().unwrap_or(0));
            let with_profile = verify_set(&spec, &out_dir, bench, false)?;
            result.verify = Some(format!("passed, {checks} checks; rebuilt with its profile: passed, {with_profile}"));
        }
        results.push(result);
    }
    Ok(markdown(&results, bench.arch))
}

/// Verify the layer built in `out_dir` natively, offline, against the enabled providers' mocks;
/// with `record`, write its import profile beside the set's lock. Returns the number of checks.
fn verify_set(spec: &LayerSpec, out_dir: &Path, bench: &ProvidersBench<'_>, record: bool) -> Result<usize> {
    let options = VerifyOptions {
        arch: bench.arch,
        python: spec.python.version,
        layer_dir: out_dir.join("layer"),
        imports: spec.verify_imports()?,
        providers: spec.providers.enabled.clone(),
        runs: 1,
        timeout: verify::default_timeout(&Runner::Native),
        runner: Runner::Native,
        size_report: None,
        isolation: None,
        source_date_epoch: Default::default(),
    };
    let report = verify::verify_layer(&options, bench.progress)?;
    eprint!("{}", report.render());
    if !report.passed() {
        bail!("providers bench: verify failed for {}:\n{}", spec.providers.enabled.join(", "), report.render());
    }
    if record {
        verify::profile_after_verify(spec, &report, bench.arch, true)?;
    }
    Ok(report.checks.len())
}

/// The committed spec text with `[providers] enabled` set to `providers` (comments kept).
pub fn with_providers(spec_text: &str, providers: &[&str]) -> Result<String> {
    let mut document: toml_edit::DocumentMut = spec_text.parse().context("parsing layer.toml")?;
    let mut array = toml_edit::Array::new();
    for provider in providers {
        array.push(*provider);
    }
    document["providers"]["enabled"] = toml_edit::value(array);
    Ok(document.to_string())
}

fn run_xtask(exe: &Path, global: &[OsString], args: &[OsString]) -> Result<()> {
    let output = std::process::Command::new(exe)
        .args(global)
        .args(args)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !output.status.success() {
        bail!(
            "`xtask {}` failed in the providers benchmark (pass --python-dist/--python-sha256 if the pinned \
             interpreter cannot be downloaded here):\n{}",
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The figures of one build's size-report.json.
pub fn set_result(providers: &[&str], report: &Value, build_seconds: f64) -> SetResult {
    let bytes = |value: &Value| value.as_u64().unwrap_or(0);
    let distributions = report["distributions"]
        .as_array()
        .map(|dists| {
            dists.iter().map(|d| (d["name"].as_str().unwrap_or("?").to_string(), bytes(&d["zipped"]))).collect()
        })
        .unwrap_or_default();
    let botocore_pruned = report["prune_rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule"] == "botocore-services"))
        .map(|rule| (bytes(&rule["bytes"]), bytes(&rule["files"])));
    SetResult {
        providers: providers.iter().map(|p| p.to_string()).collect(),
        zipped: bytes(&report["total"]["zipped"]),
        unzipped: bytes(&report["total"]["unzipped"]),
        distributions,
        botocore_pruned,
        verify: None,
        zipped_with_profile: None,
        build_seconds,
    }
}

/// The table: each set's sizes and what it adds to the first (OpenAI alone), then the goal.
pub fn markdown(results: &[SetResult], arch: Arch) -> String {
    let Some(base) = results.first() else { return String::new() };
    let mb = |bytes: f64| format!("{:+.2} MB", bytes / 1e6);
    let mut out = format!(
        "### providers: the layer per enabled provider set ({arch}, same run, each set locked fresh)\n\n\
         | `[providers] enabled` | zipped | added to OpenAI alone | unzipped | distributions added (zipped) | with its import profile | verify |\n\
         |---|---:|---:|---:|---|---:|---|\n"
    );
    for result in results {
        let added: Vec<String> = result
            .distributions
            .iter()
            .filter(|(name, _)| !base.distributions.iter().any(|(b, _)| b == name))
            .map(|(name, zipped)| format!("{name} {}", human_bytes(*zipped)))
            .collect();
        let profiled = match (result.zipped_with_profile, base.zipped_with_profile) {
            (Some(ours), Some(base)) => format!("{} ({})", human_bytes(ours), mb(ours as f64 - base as f64)),
            (Some(ours), None) => human_bytes(ours),
            _ => "—".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {profiled} | {} |\n",
            result.providers.join(", "),
            human_bytes(result.zipped),
            mb(result.zipped as f64 - base.zipped as f64),
            human_bytes(result.unzipped),
            if added.is_empty() { "none".to_string() } else { added.join(", ") },
            result.verify.as_deref().unwrap_or("not run (built only)"),
        ));
    }
    if let Some(all) = results.last() {
        let extra = all.zipped as f64 - base.zipped as f64;
        let profiled_extra = match (all.zipped_with_profile, base.zipped_with_profile) {
            (Some(ours), Some(base)) => Some(ours as f64 - base as f64),
            _ => None,
        };
        let met = extra.max(profiled_extra.unwrap_or(extra)) <= GOAL_EXTRA_ZIPPED_BYTES as f64;
        out.push_str(&format!(
            "\n- all providers add {} zipped to OpenAI alone{} (goal <= +{:.0} MB): {}\n",
            mb(extra),
            profiled_extra.map(|e| format!(", {} when both ship with their import profile", mb(e))).unwrap_or_default(),
            GOAL_EXTRA_ZIPPED_BYTES as f64 / 1e6,
            if met { "met" } else { "MISSED" }
        ));
        if let Some((bytes, files)) = all.botocore_pruned {
            out.push_str(&format!(
                "- the botocore-services prune rule removed {} in {files} files (unzipped) from the last layer\n",
                human_bytes(bytes)
            ));
        }
    }
    let builds: Vec<String> = results.iter().map(|r| format!("{:.0} s", r.build_seconds)).collect();
    out.push_str(&format!("- build times (fresh lock, shared download cache): {}\n", builds.join(", ")));
    out
}

/// The directory the benchmark works in, under `--work-dir`.
pub fn work_dir(bench_work: &Path) -> PathBuf {
    bench_work.join("providers")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_spec_copy_changes_only_the_providers() {
        let text = "[python]\nversion = \"3.11\"\n\n[providers]\n# which ones\nenabled = [\"openai\"]\n";
        assert_eq!(
            with_providers(text, &["openai", "bedrock"]).unwrap(),
            "[python]\nversion = \"3.11\"\n\n[providers]\n# which ones\nenabled = [\"openai\", \"bedrock\"]\n"
        );
    }

    #[test]
    fn the_table_shows_what_each_set_adds_and_the_goal() {
        let report = |zipped: u64, dists: Value, rules: Value| json!({"total": {"zipped": zipped, "unzipped": zipped * 3}, "distributions": dists, "prune_rules": rules});
        let mut base = set_result(
            &["openai"],
            &report(40_000_000, json!([{"name": "litellm", "zipped": 8_000_000}]), json!([])),
            60.0,
        );
        base.zipped_with_profile = Some(30_000_000);
        let mut all = set_result(
            &["anthropic", "azure", "bedrock", "openai"],
            &report(
                43_500_000,
                json!([{"name": "litellm", "zipped": 8_000_000}, {"name": "botocore", "zipped": 3_000_000}]),
                json!([{"rule": "botocore-services", "bytes": 15_000_000, "files": 1200}]),
            ),
            70.0,
        );
        all.verify = Some("passed, 40 checks".into());
        all.zipped_with_profile = Some(33_000_000);
        let text = markdown(&[base, all], Arch::X86_64);
        assert!(
            text.contains(
                "| openai | 40.0 MB | +0.00 MB | 120.0 MB | none | 30.0 MB (+0.00 MB) | not run (built only) |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| anthropic, azure, bedrock, openai | 43.5 MB | +3.50 MB | 130.5 MB | botocore 3.0 MB | 33.0 MB (+3.00 MB) | passed, 40 checks |\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "- all providers add +3.50 MB zipped to OpenAI alone, +3.00 MB when both ship with their import \
                 profile (goal <= +8 MB): met\n"
            ),
            "{text}"
        );
        assert!(text.contains("- the botocore-services prune rule removed 15.0 MB in 1200 files"), "{text}");
        assert!(text.contains("- build times (fresh lock, shared download cache): 60 s, 70 s\n"), "{text}");
    }
}
