//! `cargo xtask verify`: run the built layer the way Lambda would and smoke-test LiteLLM.
//!
//! The layer is copied into a sandbox standing for `/opt` (fixed mtimes, as unzipped from the
//! deterministic layer zip), and its own `python3.X` runs with the Lambda environment
//! (`PYTHONHOME=/opt/python`, `PYTHONPATH=/opt/python/lib/python3.X`,
//! `LITELLM_LOCAL_MODEL_COST_MAP=True`, nothing else from the host): natively when the target is the
//! host's architecture, under `qemu-aarch64-static -L SYSROOT` for arm64 on x86_64. Checks, one line
//! each: every import of `[verify] imports`, offline token counting, a completion and a streaming
//! completion against a local OpenAI-compatible server, the same against a local mock of each
//! other enabled provider's wire format (Azure OpenAI, Anthropic, Bedrock with SigV4 and the AWS
//! event stream; `verify/mocks.rs`, docs/architecture.md §15), no network beyond loopback, no file written
//! into the layer tree (a writable probe run, then read-only runs, each compared with a manifest),
//! every `.so` and the interpreter built for the target machine, and the `import litellm` time
//! (median of `--runs` fresh processes), which is also written into `size-report.json`.
//!
//! Where the arm64 sysroot comes from: `$XTASK_ARM64_SYSROOT` if set (a directory holding
//! `lib/ld-linux-aarch64.so.1` and the arm64 libc/libstdc++), else one built on first use from
//! Debian 12's arm64 `libc6 libstdc++6 libgcc-s1 zlib1g` into `<cache>/sysroot/debian12-arm64`
//! (see `verify/sysroot.rs`).

pub(crate) mod anthropic_mock;
pub(crate) mod azure_mock;
pub(crate) mod bedrock_mock;
pub(crate) mod elf;
pub(crate) mod event_stream;
pub mod loopback;
pub(crate) mod mock;
pub(crate) mod mocks;
pub(crate) mod openai_server;
pub(crate) mod profile;
pub(crate) mod report;
pub(crate) mod runner;
pub(crate) mod sandbox;
pub(crate) mod sigv4;
pub mod sysroot;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::arch::Arch;
use crate::cache::Cache;
use crate::flags::{GlobalArgs, VerifyArgs};
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;
use crate::source_date::SourceDateEpoch;
use crate::spec::LayerSpec;
use crate::stats::median;
use crate::verify::openai_server::{OpenAiServer, echo_text};
pub use report::{CheckResult, VerifyReport, record_in_size_report};
pub use runner::{Plan, Runner, default_timeout, plan};
pub use sandbox::Isolation;

use report::{check_results, server_checks, writes_check};
use runner::{Sandbox, link_sysroot, run_with_timeout};

/// The checks run inside the layer's interpreter.
const CHECK_SCRIPT: &str = include_str!("verify/check_layer.py");

/// Everything one verification needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub arch: Arch,
    /// The layer interpreter's minor version (`[python] version`).
    pub python: PythonVersion,
    /// The directory holding `python/` (`layer-build-<arch>/layer`).
    pub layer_dir: PathBuf,
    /// Modules to import; `litellm` is always first.
    pub imports: Vec<String>,
    /// The enabled providers (`[providers] enabled`): each one's workload runs against its mock.
    pub providers: Vec<String>,
    /// Fresh processes timing `import litellm`.
    pub runs: u32,
    pub runner: Runner,
    /// Where to record the timing (`size-report.json`); `None` records nothing.
    pub size_report: Option<PathBuf>,
    /// Limit for each Python process.
    pub timeout: Duration,
    /// How to make the sandbox read-only; `None` picks the strongest this host allows.
    pub isolation: Option<Isolation>,
    /// The mtime of the unpacked layer, as the layer zip carries it.
    pub source_date_epoch: SourceDateEpoch,
}

pub fn run(global: &GlobalArgs, args: &VerifyArgs) -> Result<()> {
    let progress = Progress::new();
    let qemu = sysroot::find_on_path(sysroot::QEMU_AARCH64, std::env::var_os("PATH").as_deref());
    let runner_plan = plan(args.arch, Arch::host(), qemu, args.require_arch_run)?;
    if let Plan::Skip(message) = &runner_plan {
        println!("{message}");
        return Ok(());
    }
    if args.runs == 0 {
        bail!("--runs 0: time `import litellm` at least once (--runs 1 or more)");
    }
    let root = crate::project_root();
    let spec = LayerSpec::load(&global.spec_path())?;
    let build_dir = root.join(args.arch.build_dir_name());
    let layer_dir = build_dir.join("layer");
    if !layer_dir.join("python").is_dir() {
        bail!(
            "no built layer at {}: run `cargo xtask layer --arch {}` first",
            layer_dir.display(),
            args.arch.lambda_name()
        );
    }
    let runner = match runner_plan {
        Plan::Native => Runner::Native,
        Plan::Qemu(qemu) => Runner::Qemu { qemu, sysroot: locate_sysroot(global, args, &progress)? },
        Plan::Skip(_) => unreachable!("handled above"),
    };
    let options = VerifyOptions {
        arch: args.arch,
        python: spec.python.version,
        layer_dir,
        imports: spec.verify_imports()?,
        providers: spec.providers.enabled.clone(),
        runs: args.runs,
        timeout: default_timeout(&runner),
        runner,
        size_report: Some(build_dir.join("size-report.json")),
        isolation: args.no_unshare.then_some(Isolation::PermissionBits),
        source_date_epoch: global.source_date_epoch,
    };
    let report = verify_layer(&options, &progress)?;
    print!("{}", report.render());
    profile_after_verify(&spec, &report, args.arch, args.record_profile)?;
    if report.passed() {
        Ok(())
    } else {
        let names: Vec<&str> = report.failed().iter().map(|c| c.name.as_str()).collect();
        bail!("verify failed for {}: {}", args.arch, names.join("; "))
    }
}

/// Say whether the import profile beside the lock matches this lock and workload, and with
/// `--record-profile` write it from the modules this run loaded. A run whose workload failed
/// records nothing; one that failed only for want of bytecode (a stale profile) does.
pub(crate) fn profile_after_verify(
    spec: &LayerSpec,
    report: &VerifyReport,
    arch: crate::arch::Arch,
    record: bool,
) -> Result<()> {
    use crate::layer::profile::{ImportProfile, file_sha256, profile_path, workload_sha256};
    let lock_path = crate::lock::default_lock_path(&spec.path);
    let path = profile_path(&lock_path);
    let lock_sha256 = file_sha256(&lock_path)?;
    let mut imports = vec!["litellm".to_string()];
    imports.extend(spec.verify_imports()?.into_iter().filter(|i| *i != "litellm"));
    let workload = workload_sha256(CHECK_SCRIPT, &imports);
    if !record {
        match ImportProfile::load(&path)? {
            None => println!(
                "no import profile at {}; write one with `cargo xtask verify --record-profile`",
                path.display()
            ),
            Some(profile) => {
                let stale = profile.staleness(&lock_sha256, Some(&workload));
                if !stale.is_empty() {
                    println!(
                        "the import profile {} is stale ({}); rewrite it with `cargo xtask verify --record-profile`",
                        path.display(),
                        stale.join(", ")
                    );
                }
            }
        }
        return Ok(());
    }
    let bytecode_only = ["every loaded module had bytecode", "no file written into the layer tree"];
    let workload_failures: Vec<&str> =
        report.failed().iter().map(|c| c.name.as_str()).filter(|n| !bytecode_only.contains(n)).collect();
    let loaded = match &report.loaded_modules {
        Some(loaded) if workload_failures.is_empty() => loaded,
        _ => bail!(
            "not recording the import profile: the workload did not pass ({}); fix the layer first",
            if workload_failures.is_empty() { "no module list".to_string() } else { workload_failures.join("; ") }
        ),
    };
    let mut profile = ImportProfile {
        lock_sha256,
        workload_sha256: workload,
        recorded_on: arch.lambda_name().to_string(),
        modules: loaded.profile_names(),
        keep_source: loaded.keep_source_names(),
    };
    // A profile for the same lock is extended, not replaced: a layer built from it may ship
    // modules sourceless, and a module that reads its own source cannot say so then. Its modules
    // are kept only when the workload is the same too; keeping a source is always safe.
    if let Some(existing) = ImportProfile::load(&path)?
        && existing.lock_sha256 == profile.lock_sha256
    {
        profile.keep_source.extend(existing.keep_source);
        if existing.workload_sha256 == profile.workload_sha256 {
            profile.modules.extend(existing.modules);
            if existing.recorded_on != profile.recorded_on {
                profile.recorded_on = format!("{} and {}", existing.recorded_on, profile.recorded_on);
            }
        }
    }
    profile.write(&path)?;
    println!(
        "wrote the import profile {} ({} modules, {} of them keep their source; recorded on {arch}); rebuild the layer to use it",
        path.display(),
        profile.modules.len(),
        profile.keep_source.len()
    );
    Ok(())
}

/// `--arm64-sysroot` / `$XTASK_ARM64_SYSROOT`, else the cached Debian 12 sysroot, built on first use.
pub(crate) fn locate_sysroot(global: &GlobalArgs, args: &VerifyArgs, progress: &Progress) -> Result<PathBuf> {
    if let Some(dir) = args.arm64_sysroot.clone().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.join("lib/ld-linux-aarch64.so.1").exists() {
            bail!(
                "{}={}: not an arm64 sysroot (no lib/ld-linux-aarch64.so.1); unset it to build one in the cache",
                sysroot::SYSROOT_ENV,
                dir.display()
            );
        }
        return Ok(dir);
    }
    let cache = Cache::locate(global.cache_dir.as_deref())?;
    let dir = cache.root().join("sysroot").join("debian12-arm64");
    if !sysroot::is_complete(&dir) {
        progress.note(format!("building the arm64 sysroot in {} (once)", dir.display()));
    }
    sysroot::ensure_sysroot(&dir, sysroot::VERIFY_PACKAGES, args.debian_mirror.as_deref(), progress)
}

/// Verify the layer at `options.layer_dir`.
pub fn verify_layer(options: &VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    let interpreter = options.layer_dir.join("python/bin").join(options.python.interpreter_name());
    if !interpreter.exists() {
        bail!(
            "{}: no interpreter in the layer; is this a built layer? (run `cargo xtask layer --arch {}`)",
            interpreter.display(),
            options.arch.lambda_name()
        );
    }
    if options.runs == 0 {
        bail!("runs = 0: time `import litellm` at least once");
    }
    let mut imports = vec!["litellm".to_string()];
    for name in &options.imports {
        if !imports.contains(name) {
            imports.push(name.clone());
        }
    }
    let dir = tempfile::Builder::new().prefix("xtask-verify-").tempdir().context("creating the verify sandbox")?;
    for sub in ["root", "home", "tmp"] {
        fs_err::create_dir_all(dir.path().join(sub))?;
    }
    let isolation = options.isolation.unwrap_or_else(|| Isolation::detect(dir.path()));
    let sandbox = Sandbox { dir, python: options.python, isolation, runner: options.runner.clone() };
    let copied = progress.step(format!("copy the layer into a sandbox /opt ({})", options.arch), || {
        sandbox::copy_layer(&options.layer_dir, &sandbox.opt(), sandbox::fixed_mtime(options.source_date_epoch))
    })?;
    progress.note(format!("{} copied to {}", human_bytes(copied), sandbox.opt().display()));
    if let Runner::Qemu { sysroot, .. } = &options.runner {
        link_sysroot(sysroot, &sandbox.root())?;
    }
    let script = sandbox.dir.path().join("check_layer.py");
    fs_err::write(&script, CHECK_SCRIPT)?;

    let mut checks = Vec::new();
    let (count, problems) = elf::check_tree(&sandbox.opt(), options.arch, options.python)?;
    let machine = elf::machine_name(options.arch.elf_machine());
    checks.push(CheckResult {
        name: format!("native files are {machine} ELF"),
        ok: problems.is_empty() && count > 0,
        detail: if problems.is_empty() {
            format!("{count} files (interpreter and every .so)")
        } else {
            problems.iter().map(|p| format!("{}: {}\n", p.path.display(), p.message)).collect()
        },
    });

    let pid = std::process::id();
    let catalog = crate::providers::Catalog::builtin();
    let providers = catalog.enabled(&options.providers)?;
    let openai = providers.iter().any(|p| p.workload == "openai");
    let server = OpenAiServer::start();
    // The sandbox's random name makes this run's fake keys and secrets its own.
    let secret = sandbox.dir.path().file_name().unwrap_or_default().to_string_lossy().into_owned();
    let mocks = mocks::start_all(&providers, &secret)?;
    let config = |mode: &str, prompt: &str| -> Vec<OsString> {
        let config = json!({
            "mode": mode,
            "imports": imports,
            "openai": openai,
            "api_base": server.api_base(),
            "prompt": prompt,
            "expect": echo_text(prompt),
            "providers": mocks.iter().map(|m| m.workload(prompt)).collect::<Vec<_>>(),
        });
        vec![script.clone().into(), config.to_string().into()]
    };

    // The write probe: the tree writable, so anything that would write (a stale or missing .pyc,
    // a cache file) does, and the manifest shows it.
    let before = sandbox::manifest(&sandbox.opt())?;
    let probe_prompt = format!("probe {pid}");
    let probe = progress
        .step(format!("write probe: imports on a writable copy ({})", options.runner.mode()), || {
            run_with_timeout(sandbox.python(false, &config("checks", &probe_prompt)), options.timeout)
        })?;
    let after_probe = sandbox::manifest(&sandbox.opt())?;
    let probe_writes = sandbox::diff(&before, &after_probe);

    sandbox::make_read_only(&sandbox.opt())?;
    let prompt = format!("verify {pid} {}", options.arch);
    let main = progress.step(format!("checks on the read-only /opt ({})", options.runner.mode()), || {
        run_with_timeout(sandbox.python(true, &config("checks", &prompt)), options.timeout)
    })?;
    checks.extend(check_results(&main, options.timeout));
    let loaded_modules = profile::LoadedModules::from_results(&main.results());
    if let Some(loaded) = &loaded_modules {
        let prefixes = ["/opt/python/".to_string(), format!("{}/", sandbox.opt().join("python").display())];
        checks.push(profile::bytecode_check(&options.layer_dir, &prefixes, loaded)?);
    }
    if !probe.finished() {
        checks.push(CheckResult { name: "write probe ran".into(), ok: false, detail: probe.explain(options.timeout) });
    }
    if openai {
        checks.extend(server_checks(&server, &main, &prompt));
    }
    for mock in &mocks {
        checks.extend(mock.checks(&main, &prompt));
    }

    let mut import_litellm_ms = Vec::new();
    let mut process_ms = Vec::new();
    progress.step(format!("time `import litellm` ({} fresh processes)", options.runs), || -> Result<()> {
        for _ in 0..options.runs {
            let timed = run_with_timeout(sandbox.python(true, &config("time", "")), options.timeout)?;
            match timed.results().iter().find(|r| r["check"] == "time").and_then(|r| r["ms"].as_f64()) {
                Some(ms) => {
                    import_litellm_ms.push(ms);
                    process_ms.push(timed.wall.as_secs_f64() * 1000.0);
                }
                None => {
                    checks.push(CheckResult {
                        name: "import litellm time".into(),
                        ok: false,
                        detail: timed.explain(options.timeout),
                    });
                    break;
                }
            }
        }
        Ok(())
    })?;
    if let Some(ms) = median(&import_litellm_ms) {
        checks.push(CheckResult {
            name: "import litellm time".into(),
            ok: true,
            detail: format!(
                "{ms:.0} ms median of {} fresh processes (whole process {:.0} ms; {})",
                import_litellm_ms.len(),
                median(&process_ms).unwrap_or(0.0),
                options.runner.mode()
            ),
        });
    }

    let after = sandbox::manifest(&sandbox.opt())?;
    let read_only_writes = sandbox::diff(&after_probe, &after);
    checks.push(writes_check(&probe_writes, &read_only_writes, before.len()));
    sandbox::make_writable(&sandbox.opt())?;

    let report = VerifyReport {
        arch: options.arch,
        mode: options.runner.mode(),
        isolation,
        checks,
        import_litellm_ms,
        process_ms,
        loaded_modules,
    };
    if let (Some(path), Some(ms)) = (&options.size_report, report.import_litellm_ms_median()) {
        let entry = json!({
            "import_litellm_ms_median": (ms * 10.0).round() / 10.0,
            "process_ms_median": median(&report.process_ms).map(|p| (p * 10.0).round() / 10.0),
            "runs": report.import_litellm_ms.len(),
            "mode": report.mode,
            "read_only": match isolation { Isolation::MountNamespace => "bind-mount", Isolation::PermissionBits => "permission-bits" },
            "passed": report.passed(),
        });
        record_in_size_report(path, entry)?;
    }
    Ok(report)
}
