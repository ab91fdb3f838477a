//! The chat service's benchmarks (`bench/*.mjs` at the repository root), run with Node: cold start
//! with the bridge started eagerly or lazily, `import litellm` with and without the bridge's GC
//! tuning, and the warm overhead of a request through the handler against a direct HTTP call.
//!
//! Each script prints its own Markdown section (with the load average it was measured under);
//! they run LiteLLM on `LITELLM_PYTHON` when set, else on the built host-arch layer (what Lambda
//! runs), else on the host CPython with exactly the locked packages that `cargo xtask test`
//! prepares for the Node tests (no bytecode there, so every import compiles from source).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The Node benchmarks: `--only` name, script under `bench/`, default runs per side.
pub(crate) const NODE_BENCHMARKS: &[(&str, &str, u32)] = &[
    ("cold-start", "cold-start.mjs", 5),
    ("import-gc", "import-gc.mjs", 10),
    ("warm-overhead", "warm-overhead.mjs", 300),
];

/// Runs `bench/<script>` with `--runs runs` and returns the Markdown it printed. `python` becomes
/// `LITELLM_PYTHON`; without it the scripts use the built host-arch layer.
pub(crate) fn run_script(root: &Path, script: &str, runs: u32, python: Option<&Path>) -> Result<String> {
    let path = root.join("bench").join(script);
    let mut command = Command::new("node");
    command.arg(&path).args(["--runs", &runs.to_string()]).current_dir(root);
    match python {
        Some(python) => command.env("LITELLM_PYTHON", python),
        None => command.env_remove("LITELLM_PYTHON"),
    };
    let output = command
        .output()
        .with_context(|| format!("running node {} (is Node.js 20 or newer installed?)", path.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        bail!(
            "node {} failed ({}):\n{}",
            path.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("node {} printed text that is not UTF-8", path.display()))
}
