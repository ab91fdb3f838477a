//! `cargo xtask verify`: run the built layer the way Lambda would and smoke-test LiteLLM.
//!
//! The layer is copied into a sandbox standing for `/opt` (fixed mtimes, as unzipped from the
//! deterministic layer zip), and its own `python3.11` runs with the Lambda environment
//! (`PYTHONHOME=/opt/python`, `PYTHONPATH=/opt/python/lib/python3.11`,
//! `LITELLM_LOCAL_MODEL_COST_MAP=True`, nothing else from the host): natively when the target is the
//! host's architecture, under `qemu-aarch64-static -L SYSROOT` for arm64 on x86_64. Checks, one line
//! each: every import of `[verify] imports`, offline token counting, a completion and a streaming
//! completion against a local OpenAI-compatible server, no network beyond loopback, no file written
//! into the layer tree (a writable probe run, then read-only runs, each compared with a manifest),
//! every `.so` and the interpreter built for the target machine, and the `import litellm` time
//! (median of `--runs` fresh processes), which is also written into `size-report.json`.
//!
//! Where the arm64 sysroot comes from: `$XTASK_ARM64_SYSROOT` if set (a directory holding
//! `lib/ld-linux-aarch64.so.1` and the arm64 libc/libstdc++), else one built on first use from
//! Debian 12's arm64 `libc6 libstdc++6 libgcc-s1 zlib1g` into `<cache>/sysroot/debian12-arm64`
//! (see `verify/sysroot.rs`).

pub mod elf;
pub mod loopback;
pub mod openai_server;
pub mod sandbox;
pub mod sysroot;

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::arch::Arch;
use crate::cache::Cache;
use crate::flags::{GlobalArgs, VerifyArgs};
use crate::progress::{Progress, human_bytes};
use crate::spec::LayerSpec;
use crate::verify::openai_server::{OpenAiServer, echo_text};
pub use sandbox::Isolation;
use sandbox::Mount;

/// The checks run inside the layer's interpreter.
const CHECK_SCRIPT: &str = include_str!("verify/check_layer.py");

/// How the target's code is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The host runs the target's binaries.
    Native,
    /// `qemu -L sysroot` runs arm64 binaries on an x86_64 host.
    Qemu { qemu: PathBuf, sysroot: PathBuf },
}

impl Runner {
    pub fn mode(&self) -> &'static str {
        match self {
            Runner::Native => "native",
            Runner::Qemu { .. } => "qemu",
        }
    }
}

/// What `verify` can do on this host for a target architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Native,
    /// Emulate with this `qemu-aarch64-static`.
    Qemu(PathBuf),
    /// Cannot run the target here; the message says why and how to fix it.
    Skip(String),
}

/// Decide how to run `arch` on `host`, given where `qemu-aarch64-static` is (if anywhere).
/// Without a way to run it, `require_arch_run` turns the skip into an error carrying the fix.
pub fn plan(arch: Arch, host: Option<Arch>, qemu_aarch64: Option<PathBuf>, require_arch_run: bool) -> Result<Plan> {
    let reason = match (arch, host) {
        (target, Some(host)) if target == host => return Ok(Plan::Native),
        (Arch::Arm64, Some(Arch::X86_64)) => match qemu_aarch64 {
            Some(qemu) => return Ok(Plan::Qemu(qemu)),
            None => format!(
                "cannot run the arm64 layer on this x86_64 host: {} is not on PATH; install it with `{}`",
                sysroot::QEMU_AARCH64,
                sysroot::QEMU_FIX
            ),
        },
        (target, host) => format!(
            "cannot run the {target} layer on this {} host (only arm64 on x86_64 is emulated); verify it on a {target} machine",
            host.map(|h| h.lambda_name()).unwrap_or(std::env::consts::ARCH)
        ),
    };
    if require_arch_run {
        bail!("{reason} (--require-arch-run was given)");
    }
    Ok(Plan::Skip(format!("verify {arch}: skipped, nothing was verified: {reason}")))
}

/// Everything one verification needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub arch: Arch,
    /// The directory holding `python/` (`layer-build-<arch>/layer`).
    pub layer_dir: PathBuf,
    /// Modules to import; `litellm` is always first.
    pub imports: Vec<String>,
    /// Fresh processes timing `import litellm`.
    pub runs: u32,
    pub runner: Runner,
    /// Where to record the timing (`size-report.json`); `None` records nothing.
    pub size_report: Option<PathBuf>,
    /// Limit for each Python process.
    pub timeout: Duration,
    /// How to make the sandbox read-only; `None` picks the strongest this host allows.
    pub isolation: Option<Isolation>,
}

/// One line of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    /// A path, count or figure when it passed; the traceback or the offending files when not.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub arch: Arch,
    pub mode: &'static str,
    pub isolation: Isolation,
    pub checks: Vec<CheckResult>,
    /// `import litellm` inside each timed process, in milliseconds.
    pub import_litellm_ms: Vec<f64>,
    /// Wall time of each whole timed process (start-up included), in milliseconds.
    pub process_ms: Vec<f64>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    pub fn import_litellm_ms_median(&self) -> Option<f64> {
        median(&self.import_litellm_ms)
    }

    /// One line per check (failures followed by their detail, indented), then the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            let first = if check.ok || !check.detail.contains('\n') { check.detail.as_str() } else { "" };
            out.push_str(format!("{mark} {}  {first}", check.name).trim_end());
            out.push('\n');
            if !check.ok && check.detail.contains('\n') {
                for line in check.detail.trim_end().lines() {
                    out.push_str(&format!("       {line}\n"));
                }
            }
        }
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }

    pub fn verdict(&self) -> String {
        let how = format!("{}, {}", self.mode, self.isolation.describe());
        if self.passed() {
            format!("verify {}: PASSED, {} checks ({how})", self.arch, self.checks.len())
        } else {
            let names: Vec<&str> = self.failed().iter().map(|c| c.name.as_str()).collect();
            format!(
                "verify {}: FAILED {} of {} checks: {} ({how})",
                self.arch,
                names.len(),
                self.checks.len(),
                names.join("; ")
            )
        }
    }
}

/// The median of some measurements.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
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
        Plan::Qemu(qemu) => Runner::Qemu { qemu, sysroot: locate_sysroot(global, &progress)? },
        Plan::Skip(_) => unreachable!("handled above"),
    };
    let options = VerifyOptions {
        arch: args.arch,
        layer_dir,
        imports: spec.verify.imports.clone(),
        runs: args.runs,
        timeout: default_timeout(&runner),
        runner,
        size_report: Some(build_dir.join("size-report.json")),
        isolation: None,
    };
    let report = verify_layer(&options, &progress)?;
    print!("{}", report.render());
    if report.passed() {
        Ok(())
    } else {
        let names: Vec<&str> = report.failed().iter().map(|c| c.name.as_str()).collect();
        bail!("verify failed for {}: {}", args.arch, names.join("; "))
    }
}

/// Generous limits: LiteLLM's import takes ~11 s under emulation on a busy machine.
pub fn default_timeout(runner: &Runner) -> Duration {
    match runner {
        Runner::Native => Duration::from_secs(180),
        Runner::Qemu { .. } => Duration::from_secs(900),
    }
}

/// `$XTASK_ARM64_SYSROOT`, else the cached Debian 12 sysroot, built on first use.
pub fn locate_sysroot(global: &GlobalArgs, progress: &Progress) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(sysroot::SYSROOT_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
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
    sysroot::ensure_sysroot(&dir, sysroot::VERIFY_PACKAGES, progress)
}

/// The sandbox of one verification; removed when dropped.
struct Sandbox {
    dir: tempfile::TempDir,
    isolation: Isolation,
    runner: Runner,
}

impl Sandbox {
    /// `<sandbox>/root`, standing for `/` (qemu's `-L`); the layer is at `root/opt/python`.
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn opt(&self) -> PathBuf {
        self.root().join("opt")
    }

    /// The `/opt` the interpreter sees, the mount for it, and the program to run.
    fn view(&self, read_only: bool) -> (PathBuf, Mount, PathBuf) {
        let opt = self.opt();
        match (&self.runner, self.isolation) {
            (Runner::Native, Isolation::MountNamespace) if Path::new("/opt").is_dir() => {
                let mount = Mount { source: opt, target: PathBuf::from("/opt"), read_only };
                (PathBuf::from("/opt"), mount, PathBuf::from("/opt/python/bin/python3.11"))
            }
            (Runner::Native, _) => {
                let mount = Mount { source: opt.clone(), target: opt.clone(), read_only };
                (opt.clone(), mount, opt.join("python/bin/python3.11"))
            }
            (Runner::Qemu { qemu, .. }, _) => {
                let mount = Mount { source: opt.clone(), target: opt, read_only };
                (PathBuf::from("/opt"), mount, qemu.clone())
            }
        }
    }

    /// A command running the layer's interpreter with `args`, in the Lambda environment.
    fn python(&self, read_only: bool, args: &[OsString]) -> Command {
        let (opt, mount, program) = self.view(read_only);
        let mut full_args: Vec<OsString> = Vec::new();
        if let Runner::Qemu { .. } = self.runner {
            full_args.push("-L".into());
            full_args.push(self.root().into());
            full_args.push(self.opt().join("python/bin/python3.11").into());
        }
        full_args.extend(args.iter().cloned());
        let mut command = sandbox::command(self.isolation, &mount, &program, &full_args);
        let python_home = opt.join("python");
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("LANG", "C.UTF-8")
            .env("PYTHONHOME", &python_home)
            .env("PYTHONPATH", python_home.join("lib/python3.11"))
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .current_dir(self.dir.path().join("tmp"))
            .stdin(Stdio::null());
        command
    }
}

/// The output of one Python process.
struct PythonRun {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    wall: Duration,
}

impl PythonRun {
    /// The `@@verify` lines, parsed.
    fn results(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("@@verify "))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }

    fn finished(&self) -> bool {
        self.results().iter().any(|r| r["check"] == "done" || r["check"] == "time")
    }

    /// What went wrong with the process itself, for a failing check's detail.
    fn explain(&self, timeout: Duration) -> String {
        let status = match self.status {
            Some(status) => format!("exited with {status}"),
            None => format!("killed after {} s (timeout)", timeout.as_secs()),
        };
        let tail: Vec<&str> = self.stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("the interpreter {status}\n{}", tail.join("\n"))
    }
}

/// Run `command` to completion or until `timeout`, capturing its output.
fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<PythonRun> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let mut stdout = child.stdout.take().context("child stdout")?;
    let mut stderr = child.stderr.take().context("child stderr")?;
    let out_thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err_thread = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the interpreter")? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap_or_default()).into_owned();
    Ok(PythonRun { status, stdout, stderr, wall })
}

/// Verify the layer at `options.layer_dir`.
pub fn verify_layer(options: &VerifyOptions, progress: &Progress) -> Result<VerifyReport> {
    let interpreter = options.layer_dir.join("python/bin/python3.11");
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
    let sandbox = Sandbox { dir, isolation, runner: options.runner.clone() };
    let copied = progress.step(format!("copy the layer into a sandbox /opt ({})", options.arch), || {
        sandbox::copy_layer(&options.layer_dir, &sandbox.opt(), sandbox::fixed_mtime())
    })?;
    progress.note(format!("{} copied to {}", human_bytes(copied), sandbox.opt().display()));
    if let Runner::Qemu { sysroot, .. } = &options.runner {
        link_sysroot(sysroot, &sandbox.root())?;
    }
    let script = sandbox.dir.path().join("check_layer.py");
    fs_err::write(&script, CHECK_SCRIPT)?;

    let mut checks = Vec::new();
    let (count, problems) = elf::check_tree(&sandbox.opt(), options.arch)?;
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

    let server = OpenAiServer::start();
    let config = |mode: &str, prompt: &str| -> Vec<OsString> {
        let config = json!({
            "mode": mode,
            "imports": imports,
            "api_base": server.api_base(),
            "prompt": prompt,
            "expect": echo_text(prompt),
        });
        vec![script.clone().into(), config.to_string().into()]
    };
    let pid = std::process::id();

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
    if !probe.finished() {
        checks.push(CheckResult { name: "write probe ran".into(), ok: false, detail: probe.explain(options.timeout) });
    }
    checks.extend(server_checks(&server, &main, &prompt));

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

/// Link every top-level entry of the sysroot (except `opt`) into the sandbox root, so qemu's
/// `-L <sandbox root>` finds the arm64 libraries there and the layer at `/opt/python`.
fn link_sysroot(sysroot: &Path, root: &Path) -> Result<()> {
    for entry in fs_err::read_dir(sysroot)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "opt" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), root.join(&name))
            .with_context(|| format!("linking {} into the sandbox", entry.path().display()))?;
    }
    Ok(())
}

/// Turn the `@@verify` lines of the main run into checks.
fn check_results(run: &PythonRun, timeout: Duration) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    for result in run.results() {
        let ok = result["ok"].as_bool().unwrap_or(false);
        let detail = result["detail"].as_str().unwrap_or("").to_string();
        let name = match result["check"].as_str().unwrap_or("") {
            "python" => "interpreter starts".to_string(),
            "import" => format!("import {}", result["name"].as_str().unwrap_or("?")),
            "token_counter" => "token_counter offline (gpt-3.5-turbo)".to_string(),
            "completion" => "completion".to_string(),
            "stream" => "streaming completion".to_string(),
            "network" => "no network beyond 127.0.0.1".to_string(),
            _ => continue,
        };
        let detail = if name.starts_with("no network") && !ok {
            format!("tried to reach {detail}")
        } else if name.starts_with("no network") {
            "none attempted".to_string()
        } else {
            detail
        };
        checks.push(CheckResult { name, ok, detail });
    }
    if !run.finished() {
        checks.push(CheckResult {
            name: "interpreter finished the checks".into(),
            ok: false,
            detail: run.explain(timeout),
        });
    }
    checks
}

/// The local server must have seen both completions, with the prompt, one of them streaming.
fn server_checks(server: &OpenAiServer, run: &PythonRun, prompt: &str) -> Vec<CheckResult> {
    let chats: Vec<_> = server.chat_requests().into_iter().filter(|c| c.last_message == prompt).collect();
    let python_ok = |name: &str| run.results().iter().any(|r| r["check"] == name && r["ok"].as_bool() == Some(true));
    if !python_ok("completion") && !python_ok("stream") {
        return Vec::new();
    }
    let plain = chats.iter().filter(|c| !c.stream).count();
    let streamed = chats.iter().filter(|c| c.stream).count();
    vec![CheckResult {
        name: "answers came from the local server".into(),
        ok: plain >= 1 && streamed >= 1,
        detail: format!("{} ({plain} plain, {streamed} streaming request(s) with the prompt)", server.api_base()),
    }]
}

fn writes_check(probe: &[String], read_only: &[String], entries: usize) -> CheckResult {
    let ok = probe.is_empty() && read_only.is_empty();
    let detail = if ok {
        format!("{entries} paths unchanged (writable probe and read-only runs)")
    } else {
        let mut lines = Vec::new();
        if !probe.is_empty() {
            lines.push(format!(
                "{} change(s) when the tree was writable (stale or missing .pyc, or a library writing into its package):",
                probe.len()
            ));
            lines.extend(probe.iter().take(20).map(|c| format!("  {c}")));
            if probe.len() > 20 {
                lines.push(format!("  ... and {} more", probe.len() - 20));
            }
        }
        if !read_only.is_empty() {
            lines.push(format!("{} change(s) during the read-only runs:", read_only.len()));
            lines.extend(read_only.iter().take(20).map(|c| format!("  {c}")));
        }
        lines.join("\n") + "\n"
    };
    CheckResult { name: "no file written into the layer tree".into(), ok, detail }
}

/// Add (or replace) the `"verify"` key of the size report, creating the file if absent. The file
/// is replaced atomically (temp file in the same directory, then rename).
pub fn record_in_size_report(path: &Path, verify: Value) -> Result<()> {
    let mut report = if path.exists() {
        let text = fs_err::read_to_string(path)?;
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!("{}: not valid JSON; rebuild it with `cargo xtask layer` or delete it", path.display())
        })?;
        if !value.is_object() {
            bail!("{}: expected a JSON object at the top; rebuild it with `cargo xtask layer`", path.display());
        }
        value
    } else {
        json!({})
    };
    report["verify"] = verify;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a temp file in {}", parent.display()))?;
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    std::io::Write::write_all(&mut temp, text.as_bytes())
        .with_context(|| format!("writing {}", temp.path().display()))?;
    temp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_per_host_and_target() {
        let qemu = PathBuf::from("/usr/bin/qemu-aarch64-static");
        assert_eq!(plan(Arch::X86_64, Some(Arch::X86_64), None, true).unwrap(), Plan::Native);
        assert_eq!(plan(Arch::Arm64, Some(Arch::Arm64), None, true).unwrap(), Plan::Native);
        assert_eq!(plan(Arch::Arm64, Some(Arch::X86_64), Some(qemu.clone()), false).unwrap(), Plan::Qemu(qemu));
        let Plan::Skip(message) = plan(Arch::Arm64, Some(Arch::X86_64), None, false).unwrap() else {
            panic!("expected a skip")
        };
        assert!(message.contains("skipped") && message.contains("apt-get install qemu-user-static"), "{message}");
        let error = plan(Arch::Arm64, Some(Arch::X86_64), None, true).unwrap_err().to_string();
        assert!(error.contains("qemu-aarch64-static is not on PATH"), "{error}");
        assert!(error.contains("apt-get install qemu-user-static"), "{error}");
        let error = plan(Arch::X86_64, Some(Arch::Arm64), None, true).unwrap_err().to_string();
        assert!(error.contains("verify it on a x86_64 machine"), "{error}");
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn size_report_gains_a_verify_key_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("size-report.json");
        fs_err::write(&path, r#"{"totals": {"zipped": 123}}"#).unwrap();
        record_in_size_report(&path, json!({"import_litellm_ms_median": 512.5, "runs": 3})).unwrap();
        let value: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["totals"]["zipped"], 123);
        assert_eq!(value["verify"]["import_litellm_ms_median"], 512.5);
        let fresh = dir.path().join("new/size-report.json");
        record_in_size_report(&fresh, json!({"runs": 1})).unwrap();
        assert!(fs_err::read_to_string(&fresh).unwrap().contains("\"runs\": 1"));
        fs_err::write(&path, "[1, 2]").unwrap();
        let error = format!("{:#}", record_in_size_report(&path, json!({})).unwrap_err());
        assert!(error.contains("expected a JSON object"), "{error}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "[1, 2]");
    }

    #[test]
    fn render_shows_tracebacks_under_the_failing_line() {
        let report = VerifyReport {
            arch: Arch::X86_64,
            mode: "native",
            isolation: Isolation::PermissionBits,
            checks: vec![
                CheckResult { name: "import litellm".into(), ok: true, detail: "/opt/x.py".into() },
                CheckResult {
                    name: "import tokenizers".into(),
                    ok: false,
                    detail: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'tokenizers'\n"
                        .into(),
                },
            ],
            import_litellm_ms: vec![],
            process_ms: vec![],
        };
        let text = report.render();
        assert!(text.contains("ok   import litellm  /opt/x.py\n"), "{text}");
        assert!(text.contains("FAIL import tokenizers\n       Traceback"), "{text}");
        assert!(text.contains("verify x86_64: FAILED 1 of 2 checks: import tokenizers"), "{text}");
    }
}
