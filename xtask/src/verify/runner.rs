//! How `verify` runs the layer's interpreter: natively or under qemu, inside the sandbox standing
//! for `/opt`, with Lambda's environment and a time limit.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::arch::Arch;
use crate::python_version::PythonVersion;
use crate::verify::sandbox::{self, Isolation, Mount};
use crate::verify::sysroot;
/// How the target's code is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    /// The host runs the target's binaries.
    Native,
    /// `qemu -L sysroot` runs arm64 binaries on an x86_64 host.
    Qemu { qemu: PathBuf, sysroot: PathBuf },
}

impl Runner {
    pub(crate) fn mode(&self) -> &'static str {
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

/// Generous limits: LiteLLM's import takes ~11 s under emulation on a busy machine.
pub fn default_timeout(runner: &Runner) -> Duration {
    match runner {
        Runner::Native => Duration::from_secs(180),
        Runner::Qemu { .. } => Duration::from_secs(900),
    }
}

/// The sandbox of one verification; removed when dropped.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) python: PythonVersion,
    pub(crate) isolation: Isolation,
    pub(crate) runner: Runner,
}

impl Sandbox {
    /// `<sandbox>/root`, standing for `/` (qemu's `-L`); the layer is at `root/opt/python`.
    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn opt(&self) -> PathBuf {
        self.root().join("opt")
    }

    /// The `/opt` the interpreter sees, the mount for it, and the program to run.
    pub(crate) fn view(&self, read_only: bool) -> (PathBuf, Mount, PathBuf) {
        let opt = self.opt();
        match (&self.runner, self.isolation) {
            (Runner::Native, Isolation::MountNamespace) if Path::new("/opt").is_dir() => {
                let mount = Mount { source: opt, target: PathBuf::from("/opt"), read_only };
                (PathBuf::from("/opt"), mount, PathBuf::from(crate::lambda::interpreter(self.python)))
            }
            (Runner::Native, _) => {
                let mount = Mount { source: opt.clone(), target: opt.clone(), read_only };
                (opt.clone(), mount, opt.join("python/bin").join(self.python.interpreter_name()))
            }
            (Runner::Qemu { qemu, .. }, _) => {
                let mount = Mount { source: opt.clone(), target: opt, read_only };
                (PathBuf::from("/opt"), mount, qemu.clone())
            }
        }
    }

    /// A command running the layer's interpreter with `args`, in the Lambda environment.
    pub(crate) fn python(&self, read_only: bool, args: &[OsString]) -> Command {
        let (opt, mount, program) = self.view(read_only);
        let mut full_args: Vec<OsString> = Vec::new();
        if let Runner::Qemu { .. } = self.runner {
            full_args.push("-L".into());
            full_args.push(self.root().into());
            full_args.push(self.opt().join("python/bin").join(self.python.interpreter_name()).into());
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
            .env("PYTHONPATH", python_home.join(self.python.stdlib_dir()))
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .current_dir(self.dir.path().join("tmp"))
            .stdin(Stdio::null());
        command
    }
}

/// The output of one Python process.
pub(crate) struct PythonRun {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) wall: Duration,
}

impl PythonRun {
    /// The `@@verify` lines, parsed.
    pub(crate) fn results(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix("@@verify "))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }

    pub(crate) fn finished(&self) -> bool {
        self.results().iter().any(|r| r["check"] == "done" || r["check"] == "time")
    }

    /// What went wrong with the process itself, for a failing check's detail.
    pub(crate) fn explain(&self, timeout: Duration) -> String {
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
pub(crate) fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<PythonRun> {
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

/// Link every top-level entry of the sysroot (except `opt`) into the sandbox root, so qemu's
/// `-L <sandbox root>` finds the arm64 libraries there and the layer at `/opt/python`.
pub(crate) fn link_sysroot(sysroot: &Path, root: &Path) -> Result<()> {
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
}
