//! `cargo xtask test`: every test of the repository (Rust, Node, end-to-end), with the set-up a
//! fresh machine needs (the service's npm dependencies).
//!
//! Suites: `lint` (rustfmt, clippy, actionlint on the workflows), `rust` (unit and end-to-end tests of the xtask crate, which
//! include the runtime, lock and layer end-to-end tests), `node` (the service's `node --test`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags::{GlobalArgs, TestArgs};
use crate::progress::Progress;

/// Every suite, in the order they run.
pub const SUITES: &[&str] = &["lint", "rust", "node"];

pub fn run(_global: &GlobalArgs, args: &TestArgs) -> Result<()> {
    for suite in &args.only {
        if !SUITES.contains(&suite.as_str()) {
            bail!("unknown suite {suite:?} for --only; suites: {}", SUITES.join(", "));
        }
    }
    let selected: Vec<&str> =
        SUITES.iter().copied().filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s)).collect();
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let progress = Progress::new();
    let started = Instant::now();
    for suite in selected {
        progress.step(format!("{suite} tests"), || match suite {
            "lint" => {
                cmd!(sh, "{cargo} fmt --all --check")
                    .run()
                    .context("rustfmt found unformatted code: run `cargo fmt`")?;
                cmd!(sh, "{cargo} clippy --workspace --all-targets -- -D warnings")
                    .run()
                    .context("clippy found problems (see above)")?;
                run_npm_tests(&sh, ".github/lint", "workflow lint")
            }
            "rust" => {
                cmd!(sh, "{cargo} test --workspace --no-fail-fast").run().context("Rust tests failed (see above)")
            }
            "node" => run_npm_tests(&sh, "amplify-lambda-js", "the service's Node tests"),
            _ => unreachable!("suites are checked above"),
        })?;
    }
    eprintln!("all tests passed in {:.0}s ({})", started.elapsed().as_secs_f64(), progress.timing_summary());
    Ok(())
}

/// Install a Node project's npm dependencies when missing (`npm ci`, from its committed lock),
/// then run its `npm test`.
fn run_npm_tests(sh: &Shell, dir: &str, what: &str) -> Result<()> {
    let project = crate::project_root().join(dir);
    let _dir = sh.push_dir(&project);
    cmd!(sh, "node --version").quiet().run().context("node is not installed: install Node.js 20 or newer")?;
    if !project.join("node_modules").exists() {
        cmd!(sh, "npm ci --no-audit --no-fund")
            .run()
            .with_context(|| format!("installing npm dependencies in {dir}"))?;
    }
    cmd!(sh, "npm test").run().with_context(|| format!("{what} failed (see above)"))
}
