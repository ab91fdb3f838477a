//! Test fixture (never shipped): an arm64 sysroot from Debian 12's packages, and from it a
//! python-build-standalone-shaped arm64 CPython 3.11 `install_only` tree and archive.
//!
//! Debian's arm64 CPython (3.11.2) needs glibc 2.35+, newer than Lambda's 2.34, so it can only
//! stand in for the pinned python-build-standalone build in tests, run under
//! `qemu-aarch64-static -L SYSROOT`. Everything is built once per machine under
//! `target/test-fixtures/` behind a lock file, in temporary directories renamed into place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use xtask::progress::Progress;
use xtask::verify::sysroot::{self, QEMU_AARCH64};

/// The Debian packages of the fixture sysroot: the interpreter with its standard library, and the
/// C++ runtime arm64 wheels (tokenizers, ...) link against.
pub const FIXTURE_PACKAGES: &[&str] = &["python3.11", "libstdc++6", "libgcc-s1"];

/// The arm64 fixtures, all under `target/test-fixtures/`.
#[derive(Debug, Clone)]
pub struct Arm64Fixture {
    /// The sysroot for `qemu-aarch64-static -L`. It also holds the PBS-shaped interpreter at
    /// `opt/python`, so `-L SYSROOT` runs it the way Lambda lays out a layer.
    pub sysroot: PathBuf,
    /// The directory holding `python/` (`bin/python3.11`, `lib/python3.11/` with an empty
    /// `site-packages/`):
    /// `sysroot/opt`. Copy it; never modify it.
    pub layer_root: PathBuf,
    /// `python/...` as a PBS `install_only`-shaped `.tar.gz`.
    pub archive: PathBuf,
}

/// `target/test-fixtures` of this repository.
pub fn fixtures_dir() -> PathBuf {
    xtask::project_root().join("target").join("test-fixtures")
}

/// `qemu-aarch64-static` from `PATH`, if installed.
pub fn qemu() -> Option<PathBuf> {
    sysroot::find_on_path(QEMU_AARCH64, std::env::var_os("PATH").as_deref())
}

/// Build (once) and return the arm64 fixtures.
pub fn arm64_fixture() -> Result<Arm64Fixture> {
    let dir = fixtures_dir();
    fs_err::create_dir_all(&dir)?;
    let progress = Progress::new();
    let sysroot = sysroot::ensure_sysroot(
        &dir.join("arm64-sysroot"),
        FIXTURE_PACKAGES,
        std::env::var(sysroot::DEBIAN_MIRROR_ENV).ok().as_deref(),
        &progress,
    )?;
    let fixture = Arm64Fixture {
        layer_root: sysroot.join("opt"),
        archive: dir.join("cpython-3.11-debian12-aarch64-install_only.tar.gz"),
        sysroot: sysroot.clone(),
    };
    let lock_path = dir.join(".arm64-python.lock");
    let lock = fs_err::File::create(&lock_path)?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    if !fixture.layer_root.join("python/bin/python3.11").exists() {
        let staging = tempfile::Builder::new().prefix(".opt-").tempdir_in(&sysroot)?;
        assemble_python(&sysroot, &staging.path().join("python"))?;
        fs_err::rename(staging.path(), &fixture.layer_root)?;
        // The directory was renamed away; forget it instead of deleting it.
        let _ = staging.keep();
    }
    if !fixture.archive.exists() {
        let temp = tempfile::NamedTempFile::new_in(&dir)?;
        write_archive(&fixture.layer_root, temp.as_file())?;
        temp.persist(&fixture.archive).with_context(|| format!("writing {}", fixture.archive.display()))?;
    }
    Ok(fixture)
}

/// Lay out Debian's interpreter the way python-build-standalone's `install_only` does.
fn assemble_python(sysroot: &Path, python: &Path) -> Result<()> {
    fs_err::create_dir_all(python.join("bin"))?;
    fs_err::copy(sysroot.join("usr/bin/python3.11"), python.join("bin/python3.11"))?;
    std::os::unix::fs::symlink("python3.11", python.join("bin/python3"))?;
    let stdlib_from = sysroot.join("usr/lib/python3.11");
    let stdlib = python.join("lib/python3.11");
    for entry in walkdir::WalkDir::new(&stdlib_from).sort_by_file_name() {
        let entry = entry?;
        let relative = entry.path().strip_prefix(&stdlib_from)?;
        let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        // Debian's `sitecustomize.py` is a link to `/etc/python3.11/`, outside any layer.
        if matches!(first.as_deref(), Some("dist-packages" | "EXTERNALLY-MANAGED" | "sitecustomize.py"))
            || relative.components().any(|c| c.as_os_str() == "__pycache__")
        {
            continue;
        }
        let target = stdlib.join(relative);
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(&target)?;
        } else if entry.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(entry.path())?, &target)?;
        } else {
            fs_err::copy(entry.path(), &target)?;
        }
    }
    // Debian patches `site.py` to look in `dist-packages` (and 3.11 runs the frozen copy of it, so
    // the file cannot simply be replaced); python-build-standalone uses upstream's
    // `lib/python3.11/site-packages`. A `.pth` in the first directory Debian's `site` reads points
    // it at `site-packages`, so packages live where the real layer puts them.
    fs_err::create_dir_all(stdlib.join("site-packages"))?;
    let dist_packages = python.join("lib/python3/dist-packages");
    fs_err::create_dir_all(&dist_packages)?;
    fs_err::write(dist_packages.join("pbs-layout.pth"), "../../python3.11/site-packages\n")?;
    Ok(())
}

/// `python/...` of `layer_root` as a gzip'd tar, sorted, with fixed mtimes and owners.
fn write_archive(layer_root: &Path, file: &std::fs::File) -> Result<()> {
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    builder.append_dir_all("python", layer_root.join("python"))?;
    builder.into_inner()?.finish()?;
    Ok(())
}

/// Run `python3.11 -c code` from `<sysroot>/opt/python` under qemu with `-L sysroot`, the
/// Lambda environment and nothing else; returns (success, stdout + stderr).
pub fn run_under_qemu(qemu: &Path, sysroot: &Path, code: &str) -> Result<(bool, String)> {
    let output = Command::new(qemu)
        .arg("-L")
        .arg(sysroot)
        .arg(sysroot.join("opt/python/bin/python3.11"))
        .args(["-c", code])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PYTHONHOME", "/opt/python")
        .env("PYTHONPATH", "/opt/python/lib/python3.11")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .with_context(|| format!("running {}", qemu.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}
