//! Running arm64 code on an x86_64 host: find `qemu-aarch64-static` and build an arm64 sysroot
//! (glibc, libstdc++) from Debian 12's arm64 packages without installing anything system-wide.
//!
//! The recipe (docs/architecture.md §13): give apt a private state directory and the
//! arm64 architecture, `apt-get update`, list the dependency closure with `apt-cache depends
//! --recurse`, `apt-get download` the packages and `dpkg -x` each into the sysroot. qemu's `-L
//! SYSROOT` then resolves absolute paths (the ELF interpreter `/lib/ld-linux-aarch64.so.1`,
//! `/opt/python`) inside the sysroot first. Debian 12 ships glibc 2.36, newer than Lambda's 2.34:
//! a wheel needing glibc 2.35 or 2.36 would pass here and fail on Lambda, which is why `layer`
//! only admits wheels up to `manylinux_2_34`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::progress::Progress;

/// The user-mode emulator for arm64 binaries.
pub const QEMU_AARCH64: &str = "qemu-aarch64-static";

/// How to install it.
pub(crate) const QEMU_FIX: &str = "apt-get install qemu-user-static";

/// An existing arm64 sysroot to use instead of building one.
pub(crate) const SYSROOT_ENV: &str = "XTASK_ARM64_SYSROOT";

/// The packages `verify` needs in the sysroot: the C and C++ runtimes wheels link against, and zlib
/// (present on every Lambda image).
pub(crate) const VERIFY_PACKAGES: &[&str] = &["libc6", "libstdc++6", "libgcc-s1", "zlib1g"];

/// Packages the closure drags in that a sysroot never needs (and whose maintainer scripts we
/// would never run anyway).
const SKIPPED_PACKAGES: &[&str] = &["dpkg", "perl", "perl-base", "tar", "install-info", "debconf"];

/// Debian 12's archive, whatever distribution the host runs (Ubuntu's arm64 packages live on a
/// different mirror, so the host's own source list cannot be reused). `--debian-mirror` of `verify`
/// reads this variable; the test fixtures pass it on themselves.
pub const DEBIAN_MIRROR_ENV: &str = "XTASK_DEBIAN_MIRROR";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The keyring apt checks Debian's signed `Release` files against (package `debian-archive-keyring`).
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Written last into a finished sysroot; a directory without it is an interrupted build.
const COMPLETE_MARKER: &str = ".xtask-sysroot-complete";

/// Look `program` up in a `PATH`-style list of directories.
pub fn find_on_path(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let path_var = path_var?;
    std::env::split_paths(path_var).map(|dir| dir.join(program)).find(|candidate| {
        use std::os::unix::fs::PermissionsExt;
        fs_err::metadata(candidate).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// Whether `dir` is a finished sysroot.
pub(crate) fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

/// Return the sysroot at `dir`, building it from the dependency closure of `packages` if it is not
/// there yet. Safe against concurrent callers: a lock file beside `dir` serialises builders, the
/// build happens in a temporary directory beside it, and only a finished sysroot is renamed into
/// place.
pub fn ensure_sysroot(dir: &Path, packages: &[&str], mirror: Option<&str>, progress: &Progress) -> Result<PathBuf> {
    // The marker holds the package list: a sysroot built from another list is built again.
    let built_from = |dir: &Path| fs_err::read_to_string(dir.join(COMPLETE_MARKER)).ok() == Some(packages.join(" "));
    if built_from(dir) {
        return Ok(dir.to_path_buf());
    }
    let parent = dir.parent().with_context(|| format!("{} has no parent directory", dir.display()))?;
    fs_err::create_dir_all(parent)?;
    let lock_path =
        parent.join(format!(".{}.lock", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let lock = fs_err::File::create(&lock_path)?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    if built_from(dir) {
        return Ok(dir.to_path_buf());
    }
    if dir.exists() {
        progress.note(format!("removing the unfinished or outdated sysroot {}", dir.display()));
        fs_err::remove_dir_all(dir)?;
    }
    let work = tempfile::Builder::new()
        .prefix(".sysroot-build-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a build directory in {}", parent.display()))?;
    let root = work.path().join("root");
    build_sysroot(work.path(), &root, packages, mirror, progress)
        .with_context(|| format!("building an arm64 sysroot for {}", dir.display()))?;
    fs_err::write(root.join(COMPLETE_MARKER), packages.join(" "))?;
    fs_err::rename(&root, dir)?;
    Ok(dir.to_path_buf())
}

fn apt_options(state: &Path) -> Vec<String> {
    let state = state.display();
    vec![
        "-o".into(),
        format!("Dir::Etc::SourceList={state}/sources.list"),
        "-o".into(),
        "Dir::Etc::SourceParts=/dev/null".into(),
        "-o".into(),
        "Dir::Etc::Preferences=/dev/null".into(),
        "-o".into(),
        "Dir::Etc::PreferencesParts=/dev/null".into(),
        "-o".into(),
        "APT::Architecture=arm64".into(),
        "-o".into(),
        "APT::Architectures::=arm64".into(),
        "-o".into(),
        format!("Dir::State::Lists={state}/lists"),
        "-o".into(),
        format!("Dir::Cache={state}/cache"),
        "-o".into(),
        "Dir::State::status=/dev/null".into(),
        "-o".into(),
        "APT::Sandbox::User=root".into(),
        "-o".into(),
        "Debug::NoLocking=1".into(),
    ]
}

/// Run a tool of the recipe, with its stderr in the error.
fn run_tool(command: &mut Command, what: &str) -> Result<String> {
    let output = command.output().with_context(|| {
        format!("running {what}: is it installed? (the arm64 sysroot is built with apt-get, apt-cache and dpkg)")
    })?;
    if !output.status.success() {
        bail!("{what} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr).trim_end());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One signed source: Debian 12 (bookworm) `main`, arm64 only.
fn sources_list(mirror: &str) -> String {
    format!("deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {} bookworm main\n", mirror.trim_end_matches('/'))
}

/// The package names of `apt-cache depends --recurse` output (one unindented name per package;
/// `<virtual>` names and the skipped packages left out), sorted.
pub(crate) fn closure_from_depends(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter(|line| !line.starts_with(' ') && !line.starts_with('<') && !line.trim().is_empty())
        .map(|line| line.trim().to_string())
        .filter(|name| !SKIPPED_PACKAGES.contains(&name.as_str()) && !name.starts_with("perl-modules"))
        .filter(|name| !name.starts_with("libperl"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The recipe itself: apt state under `work/apt`, packages into `work/debs`, extracted into `root`.
fn build_sysroot(work: &Path, root: &Path, packages: &[&str], mirror: Option<&str>, progress: &Progress) -> Result<()> {
    let state = work.join("apt");
    for dir in ["lists/partial", "cache/archives/partial"] {
        fs_err::create_dir_all(state.join(dir))?;
    }
    if !Path::new(DEBIAN_KEYRING).exists() {
        bail!(
            "{DEBIAN_KEYRING} is missing: install it with `apt-get install debian-archive-keyring` (apt checks Debian's signatures with it)"
        );
    }
    let mirror = mirror.filter(|m| !m.is_empty()).unwrap_or(DEBIAN_MIRROR);
    fs_err::write(state.join("sources.list"), sources_list(mirror))?;
    let options = apt_options(&state);
    progress.note("apt-get update (arm64 package lists, private state directory)");
    run_tool(Command::new("apt-get").args(&options).args(["-qq", "update"]), "apt-get update")?;
    let depends = run_tool(
        Command::new("apt-cache")
            .args(&options)
            .args([
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ])
            .args(packages),
        &format!("apt-cache depends {}", packages.join(" ")),
    )?;
    let closure = closure_from_depends(&depends);
    if closure.is_empty() {
        bail!("apt-cache found no arm64 packages for {}", packages.join(" "));
    }
    progress.note(format!("downloading {} arm64 packages: {}", closure.len(), closure.join(" ")));
    let debs = work.join("debs");
    fs_err::create_dir_all(&debs)?;
    run_tool(
        Command::new("apt-get").args(&options).args(["-qq", "download"]).args(&closure).current_dir(&debs),
        "apt-get download",
    )?;
    fs_err::create_dir_all(root)?;
    let mut files: Vec<PathBuf> = fs_err::read_dir(&debs)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension() == Some(OsStr::new("deb")))
        .collect();
    files.sort();
    for deb in &files {
        run_tool(Command::new("dpkg").arg("-x").arg(deb).arg(root), &format!("dpkg -x {}", deb.display()))?;
    }
    if !root.join("lib/ld-linux-aarch64.so.1").exists() {
        bail!("the sysroot has no /lib/ld-linux-aarch64.so.1 after extracting {} packages", files.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_keeps_real_packages_only() {
        let output = "libc6\n  Depends: libgcc-s1\n  Breaks: <libc6-x>\nlibgcc-s1\n<debconf-2.0>\ndpkg\nperl-base\nlibperl5.36\nlibstdc++6\nlibc6\n";
        assert_eq!(closure_from_depends(output), ["libc6", "libgcc-s1", "libstdc++6"]);
    }

    #[test]
    fn sources_list_is_signed_debian_12_arm64() {
        assert_eq!(
            sources_list("http://deb.debian.org/debian/"),
            "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main\n"
        );
    }

    #[test]
    fn finds_programs_on_a_path_list() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("tool");
        fs_err::write(&program, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(find_on_path("tool", Some(&path_var)), Some(program));
        assert_eq!(find_on_path("tool", Some(OsStr::new("/nonexistent"))), None);
        assert_eq!(find_on_path("tool", None), None);
    }
}
