//! The committed lock, `litellm-layer/pylock.toml`, installs with pip and with uv, and each installs
//! exactly the lock's distributions for the arch: the packages `[packages] exclude` keeps out of
//! the layer included, because the lock pins them for these installers (docs/architecture.md §2).
//!
//! pip and uv come from `xtask/test_data/pylock-installers/requirements.txt` (pinned, hashed),
//! installed once into a private venv under `target/test-fixtures/`; their download caches live
//! beside it, so a second run downloads nothing.
//!
//! How each reads a lock (PEP 751, <https://packaging.python.org/en/latest/specifications/pylock-toml/>):
//! - pip (`-r pylock.toml`) selects the lock's packages for the interpreter it runs on, and refuses
//!   `--platform`/`--python-version`/`--abi`/`--implementation` with a lock. It then resolves the
//!   selected packages' dependencies in hash-checking mode, so each one must be pinned in the lock.
//!   It therefore runs on the host's CPython 3.11 (the lock's `requires-python`) and installs the
//!   host arch's wheels: the test is skipped, with a message, when `python3` is not 3.11.
//! - uv (`uv pip install -r pylock.toml`) installs the selected entries as they are, for any target:
//!   `--python-platform {aarch64,x86_64}-manylinux_2_34 --python-version 3.11` is Lambda (glibc
//!   2.34, CPython 3.11), so the test checks both arches and that each wheel is the one `layer`
//!   picks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use xtask::arch::Arch;
use xtask::layer::bytecode::BuildPython;
use xtask::layer::install::{Target, select_wheels};
use xtask::packaging::pylock::Pylock;
use xtask::packaging::wheel_name::normalize_name;
use xtask::spec::LayerSpec;

use crate::support::moto::{build_fixture_once, fixtures_dir, run};

/// The pinned pip and uv, relative to the repository root.
const REQUIREMENTS: &str = "xtask/test_data/pylock-installers/requirements.txt";

/// The longest one installer run may take (a cold download of the ~50 wheels included).
const INSTALL_TIMEOUT_SECS: &str = "600";

/// name → (version, the wheel's tags), of a lock selection or of an installed tree.
type Distributions = BTreeMap<String, (pep440_rs::Version, BTreeSet<String>)>;

#[test]
fn committed_lock_installs_with_pip_and_uv_exactly_as_locked() {
    let Some(_) = BuildPython::host_if_minor("3.11") else { return };
    let Some(host) = host_arch() else {
        eprintln!("skipping: pip installs a lock for the host, and this host is not Linux on arm64 or x86_64");
        return;
    };
    let root = xtask::project_root();
    let lock_path = root.join("litellm-layer/pylock.toml");
    let lock = Pylock::load(&lock_path).unwrap();
    let installers = installers_venv(&root).unwrap();
    let caches = fixtures_dir().join("pylock-installers-cache");
    let scratch = tempfile::tempdir().unwrap();

    // pip, for the host's arch.
    let target = scratch.path().join("pip");
    let mut pip = installer_command(&installers.join("bin/python"));
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--no-compile",
        "--only-binary=:all:",
    ])
    .arg("--cache-dir")
    .arg(caches.join("pip"))
    .arg("--target")
    .arg(&target)
    .arg("-r")
    .arg(&lock_path);
    run_installer(&mut pip).unwrap();
    assert_installs_the_lock(&installed(&target, "pip").unwrap(), &locked(&lock, host), &format!("pip on {host}"));

    // uv, for each Lambda arch.
    for arch in Arch::ALL {
        let target = scratch.path().join(format!("uv-{arch}"));
        let mut uv = installer_command(&installers.join("bin/uv"));
        uv.args(["pip", "install", "--no-config", "--quiet", "--python-version", "3.11"])
            .arg("--python-platform")
            .arg(format!("{}-manylinux_2_34", arch.manylinux_name()))
            .arg("--python")
            .arg(installers.join("bin/python"))
            .arg("--cache-dir")
            .arg(caches.join("uv"))
            .arg("--target")
            .arg(&target)
            .arg("-r")
            .arg(&lock_path);
        run_installer(&mut uv).unwrap();
        assert_installs_the_lock(&installed(&target, "uv").unwrap(), &locked(&lock, arch), &format!("uv for {arch}"));
    }
}

/// The Lambda arch of this machine, when it is Linux on one.
fn host_arch() -> Option<Arch> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some(Arch::X86_64),
        ("linux", "aarch64") => Some(Arch::Arm64),
        _ => None,
    }
}

/// What `layer` selects from `lock` for `arch`, before leaving excluded packages out: every package
/// with the tags of its wheel for the arch.
fn locked(lock: &Pylock, arch: Arch) -> Distributions {
    let spec = LayerSpec::load(&xtask::project_root().join("litellm-layer/layer.toml")).unwrap();
    let target = Target::new(arch, &spec, lock).unwrap();
    select_wheels(lock, &target)
        .unwrap()
        .into_iter()
        .map(|choice| {
            let file = &choice.filename;
            let tag =
                format!("{}-{}-{}", file.python_tags.join("."), file.abi_tags.join("."), file.platform_tags.join("."));
            (normalize_name(&choice.package.name), (file.version.clone(), expand_tags(&tag)))
        })
        .collect()
}

/// The tags of a compressed tag set, `py2.py3-none-any` → `py2-none-any`, `py3-none-any`.
/// <https://packaging.python.org/en/latest/specifications/platform-compatibility-tags/#compressed-tag-sets>
fn expand_tags(compressed: &str) -> BTreeSet<String> {
    let parts: Vec<Vec<&str>> = compressed.splitn(3, '-').map(|part| part.split('.').collect()).collect();
    let [pythons, abis, platforms] = parts.as_slice() else { return BTreeSet::from([compressed.to_string()]) };
    let mut tags = BTreeSet::new();
    for python in pythons {
        for abi in abis {
            for platform in platforms {
                tags.insert(format!("{python}-{abi}-{platform}"));
            }
        }
    }
    tags
}

/// Fail with the differences only (name: installed → locked) when `installed` is not `locked`.
fn assert_installs_the_lock(installed: &Distributions, locked: &Distributions, what: &str) {
    let names: BTreeSet<&String> = installed.keys().chain(locked.keys()).collect();
    let differences: Vec<String> = names
        .into_iter()
        .filter(|name| installed.get(*name) != locked.get(*name))
        .map(|name| format!("  {name}: installed {:?}, locked {:?}", installed.get(name), locked.get(name)))
        .collect();
    assert!(differences.is_empty(), "{what} did not install exactly the lock:\n{}", differences.join("\n"));
    assert!(!locked.is_empty());
}

/// The distributions installed in `target`, each checked to be installed by `installer`.
fn installed(target: &Path, installer: &str) -> Result<Distributions> {
    let mut found = Distributions::new();
    for entry in fs_err::read_dir(target)? {
        let dist_info = entry?.path();
        if dist_info.extension().is_none_or(|ext| ext != "dist-info") {
            continue;
        }
        let by = fs_err::read_to_string(dist_info.join("INSTALLER"))?;
        if by.trim() != installer {
            bail!("{}: INSTALLER says {:?}, expected {installer}", dist_info.display(), by.trim());
        }
        let metadata = fs_err::read_to_string(dist_info.join("METADATA"))?;
        let header = |key: &str| {
            metadata
                .lines()
                .take_while(|line| !line.is_empty())
                .find_map(|line| line.strip_prefix(key).map(str::trim))
                .with_context(|| format!("{}/METADATA has no {key}", dist_info.display()))
        };
        let name = normalize_name(header("Name:")?);
        let version = pep440_rs::Version::from_str(header("Version:")?)
            .map_err(|e| anyhow::anyhow!("{}/METADATA: {e}", dist_info.display()))?;
        let wheel = fs_err::read_to_string(dist_info.join("WHEEL"))?;
        // `Tag` lines should each be one tag, but some wheels write a compressed set.
        let tags =
            wheel.lines().filter_map(|line| line.strip_prefix("Tag:")).flat_map(|t| expand_tags(t.trim())).collect();
        if found.insert(name.clone(), (version, tags)).is_some() {
            bail!("{name} is installed twice in {}", target.display());
        }
    }
    Ok(found)
}

/// A venv with the pinned pip and uv, built once per version of the requirements file.
fn installers_venv(root: &Path) -> Result<PathBuf> {
    let requirements = root.join(REQUIREMENTS);
    let digest = Sha256::digest(fs_err::read(&requirements)?);
    let dir = fixtures_dir().join(format!("venv-pylock-installers-{}", &hex::encode(digest)[..12]));
    build_fixture_once(&dir, |dir| {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir))?;
        run(Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--require-hashes"])
            .args(["--only-binary=:all:", "-r"])
            .arg(&requirements))
    })
}

/// Settings of the caller that only say how to reach the network (a proxy's CA, timeouts); every
/// other `PIP_*` and `UV_*` variable could change what is installed (`PIP_FIND_LINKS`,
/// `PIP_NO_DEPS`, `UV_INDEX_URL`, ...) and is dropped.
const NETWORK_SETTINGS: &[&str] = &[
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_PROXY",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
];

/// `program` bounded in time (`timeout`), with no user or site configuration.
fn installer_command(program: &Path) -> Command {
    let mut command = Command::new("timeout");
    command.args(["--kill-after=10", INSTALL_TIMEOUT_SECS]).arg(program);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        let configures_install = text.starts_with("PIP_") || text.starts_with("UV_") || text.starts_with("PYTHON");
        if configures_install && !NETWORK_SETTINGS.contains(&&*text) {
            command.env_remove(&name);
        }
    }
    command.env("PIP_CONFIG_FILE", "/dev/null").env("PYTHONNOUSERSITE", "1").stdin(Stdio::null());
    command
}

/// Run an installer; its output is shown only when it fails.
fn run_installer(command: &mut Command) -> Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
