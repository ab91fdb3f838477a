//! The PEP 508 marker environment of the layer's platform: what `lock` resolves for and what
//! `layer` installs for (docs/architecture.md §1).
//! <https://packaging.python.org/en/latest/specifications/dependency-specifiers/#environment-markers>

use anyhow::{Result, anyhow};
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};

use crate::arch::Arch;
use crate::python_version::PythonVersion;

/// The marker environment of CPython `python` (full version `python_full`, e.g. `3.11.14`) from
/// python-build-standalone on Lambda's Amazon Linux for `arch`.
pub(crate) fn lambda_environment(arch: Arch, python: PythonVersion, python_full: &str) -> Result<MarkerEnvironment> {
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: python_full,
        os_name: "posix",
        platform_machine: arch.manylinux_name(),
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: python_full,
        python_version: &python.dotted(),
        sys_platform: "linux",
    })
    .map_err(|e| anyhow!("python version {python_full:?} is not a version: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_environment_names_the_platform_and_the_version() {
        let python: PythonVersion = "3.12".parse().unwrap();
        let environment = lambda_environment(Arch::Arm64, python, "3.12.7").unwrap();
        for (marker, holds) in [
            ("platform_machine == 'aarch64' and sys_platform == 'linux'", true),
            ("python_version == '3.12' and python_full_version >= '3.12.7'", true),
            ("implementation_name == 'cpython' and os_name == 'posix' and platform_system == 'Linux'", true),
            ("platform_machine == 'x86_64'", false),
            ("python_version < '3.12'", false),
        ] {
            let tree = pep508_rs::MarkerTree::from_str(marker).unwrap();
            assert_eq!(tree.evaluate(&environment, &[]), holds, "{marker}");
        }
        assert_eq!(
            lambda_environment(Arch::X86_64, python, "3.12.x").unwrap_err().to_string().split(':').next(),
            Some("python version \"3.12.x\" is not a version")
        );
    }
}
