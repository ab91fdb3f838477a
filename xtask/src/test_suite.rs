//! `cargo xtask test`: every test of the repository (Rust, Node, end-to-end), with the set-up a
//! fresh machine needs (the service's npm dependencies).
//!
//! Suites: `lint` (rustfmt, clippy, actionlint on the workflows), `rust` (unit and end-to-end tests of the xtask crate, which
//! include the runtime, lock and layer end-to-end tests), `node` (the service's `node --test`).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::flags::{GlobalArgs, Suite, TestArgs};
use crate::progress::Progress;

pub(crate) mod actionlint;
pub(crate) mod node22;

pub fn run(global: &GlobalArgs, args: &TestArgs) -> Result<()> {
    let selected: Vec<Suite> =
        Suite::ALL.into_iter().filter(|s| args.only.is_empty() || args.only.contains(s)).collect();
    let sh = Shell::new()?;
    sh.change_dir(crate::project_root());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let progress = Progress::new();
    let started = Instant::now();
    // Every suite runs Node (npm ci, the Serverless Framework, node --test): Node 22 as on Lambda.
    let cache = crate::cache::Cache::locate(global.cache_dir.as_deref())?;
    let node_bin = progress.step("node 22", || node22::ensure_node22(&cache, &progress))?;
    let _path = match &node_bin {
        Some(bin) => Some(sh.push_env("PATH", node22::path_with(bin)?)),
        None => None,
    };
    for suite in selected {
        let name = match suite {
            Suite::Lint => "lint",
            Suite::Rust => "rust",
            Suite::Node => "node",
        };
        progress.step(format!("{name} tests"), || match suite {
            Suite::Lint => {
                cmd!(sh, "{cargo} fmt --all --check")
                    .run()
                    .context("rustfmt found unformatted code: run `cargo fmt`")?;
                cmd!(sh, "{cargo} clippy --workspace --all-targets -- -D warnings")
                    .run()
                    .context("clippy found problems (see above)")?;
                let binary = actionlint::actionlint(&cache, &progress)?;
                actionlint::lint(&binary, &crate::project_root().join(".github/workflows"))
            }
            Suite::Rust => {
                cmd!(sh, "{cargo} test --workspace --no-fail-fast").run().context("Rust tests failed (see above)")
            }
            Suite::Node => {
                let python = prepare_node_python(global, &progress)?;
                let _python = sh.push_env("LITELLM_PYTHON", &python);
                run_npm_tests(&sh, "amplify-lambda-js", "the service's Node tests")
            }
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
    cmd!(sh, "node --version").quiet().run().context("node does not run (cargo xtask test provides Node 22)")?;
    if !project.join("node_modules").exists() {
        cmd!(sh, "npm ci --no-audit --no-fund")
            .run()
            .with_context(|| format!("installing npm dependencies in {dir}"))?;
    }
    cmd!(sh, "npm test").run().with_context(|| format!("{what} failed (see above)"))
}

/// The Python the Node tests run the bridge on: the host's CPython, of the layer's minor version,
/// with exactly the locked packages for the host arch, installed by our own installer into
/// `target/test-fixtures/node-python/site-packages`, behind a small wrapper script.
pub(crate) fn prepare_node_python(global: &GlobalArgs, progress: &Progress) -> Result<std::path::PathBuf> {
    use crate::layer::install::install_lock;
    let arch = crate::arch::Arch::host().context("the Node tests need an x86_64 or arm64 host")?;
    let spec = crate::spec::LayerSpec::load(&global.spec_path())?;
    let lock = crate::packaging::pylock::Pylock::load(&crate::lock::default_lock_path(&spec.path))?;
    let host_python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"])
        .output()
        .context("running python3 (the Node tests need a CPython on PATH)")?;
    let text = String::from_utf8_lossy(&host_python.stdout).to_string();
    let mut lines = text.lines();
    let (Some(executable), Some(minor)) = (lines.next(), lines.next()) else {
        bail!("python3 did not report its version: {}", String::from_utf8_lossy(&host_python.stderr));
    };
    if minor != spec.python.version.dotted() {
        bail!(
            "the Node tests run LiteLLM on the host python3, which is {minor}; the lock is for {}: put a CPython {} \
             on PATH first, or set LITELLM_PYTHON and run `npm test` in amplify-lambda-js",
            spec.python.version,
            spec.python.version
        );
    }
    let dir = crate::project_root().join("target/test-fixtures/node-python");
    fs_err::create_dir_all(&dir)?;
    let site_packages = dir.join("site-packages");
    let cache = crate::cache::Cache::locate(global.cache_dir.as_deref())?;
    let http = crate::http::Http::new()?;
    progress.note(format!("installing the locked packages for {arch} into {}", site_packages.display()));
    install_lock(&lock, arch, &spec, &cache, &http, &site_packages, progress)?;
    for path in [site_packages.to_string_lossy(), executable.into()] {
        if path.contains('\'') {
            bail!(
                "{path} contains a single quote, which the Python wrapper for the Node tests cannot hold; move the checkout"
            );
        }
    }
    let wrapper = dir.join("python3");
    let script = format!(
        "#!/bin/sh\n# Host CPython with the packages of litellm-layer/pylock.toml (written by `cargo xtask test`).\n\
         PYTHONPATH='{}'\"${{PYTHONPATH:+:$PYTHONPATH}}\" exec '{}' -s \"$@\"\n",
        site_packages.display(),
        executable
    );
    fs_err::write(&wrapper, script)?;
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
}
