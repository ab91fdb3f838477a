//! Install what was resolved: each wheel's own `METADATA` must say what the lock says about it.
//!
//! The lock step reads one wheel's metadata per version (often through PEP 658 or range requests),
//! while the install step unpacks the wheel for the target arch. A wheel whose `Name`, `Version`
//! or `Requires-Dist` differs from the lock would ship code or dependencies the lock and the SBOM
//! never listed, so the differences are refused before anything is written:
//!
//! - `Name` and `Version` must be the locked package's (names compared after PEP 503
//!   normalisation, versions as PEP 440 versions).
//! - Every requirement active on the target (markers evaluated with the extras the closure asks
//!   for) must name a package the lock lists as a dependency of this one and installs for the
//!   target, at a version the requirement allows; excluded distributions (`packages.exclude`)
//!   are not checked: the lock pins them for pip and uv, but the layer leaves them out
//!   (docs/architecture.md §2).
//! - Every dependency the lock lists must be required by `Requires-Dist` (under some marker: the
//!   lock's edges are the union over the target arches).
//!
//! A lock dependency naming a package that is not in the lock at all is an error of its own, and
//! the lock's `requires-python` and `environments` must hold for the interpreter and the
//! architecture being built (PEP 751: they say where a lock may be installed).
//!
//! Core metadata: <https://packaging.python.org/en/latest/specifications/core-metadata/>;
//! dependency specifiers: <https://packaging.python.org/en/latest/specifications/dependency-specifiers/>.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use pep440_rs::Version;
use pep508_rs::{ExtraName, MarkerEnvironment, Requirement};

use crate::arch::Arch;
use crate::layer::install::Target;
use crate::packaging::core_metadata::parse_metadata;
use crate::packaging::pylock::Pylock;
use crate::packaging::wheel_name::normalize_name;
use crate::python_version::PythonVersion;

/// One wheel about to be installed: the locked package and the wheel's own METADATA text.
pub(crate) struct InstallCandidate<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: &'a str,
    pub(crate) wheel: &'a str,
    pub(crate) dependencies: Vec<&'a str>,
    pub(crate) metadata: &'a str,
}

/// Refuse to install `lock` with an interpreter its `requires-python` excludes, or for an
/// architecture none of its `environments` covers.
pub(crate) fn check_against_build(lock: &Pylock, python_full_version: &str, arch: Arch) -> Result<()> {
    let version = pep440_rs::Version::from_str(python_full_version)
        .map_err(|e| anyhow!("interpreter version {python_full_version:?}: {e}"))?;
    if let Some(requires_python) = &lock.requires_python {
        let specifiers = pep440_rs::VersionSpecifiers::from_str(requires_python)
            .map_err(|e| anyhow!("lock: requires-python = {requires_python:?} is not a version specifier: {e}"))?;
        if !specifiers.contains(&version) {
            bail!(
                "lock: requires-python = {requires_python:?}, but the layer's interpreter is CPython \
                 {python_full_version}; re-run `cargo xtask lock` for this interpreter (python.version in layer.toml)"
            );
        }
    }
    if lock.environments.is_empty() {
        return Ok(());
    }
    let python = PythonVersion::from_full_version(python_full_version)
        .map_err(|e| anyhow!("interpreter version {python_full_version:?}: {e}"))?;
    let target = Target { arch, python, python_full_version: python_full_version.to_string() };
    let environment = target.marker_environment()?;
    let mut holds = false;
    for text in &lock.environments {
        let marker = pep508_rs::MarkerTree::from_str(text)
            .map_err(|e| anyhow!("lock: environments entry {text:?} is not a marker: {e}"))?;
        holds |= marker.evaluate(&environment, &[]);
    }
    if !holds {
        bail!(
            "lock: none of its environments holds for {arch} (platform_machine {:?}, CPython {python_full_version}): \
             {}; re-run `cargo xtask lock` with this architecture",
            arch.manylinux_name(),
            lock.environments.join("; ")
        );
    }
    Ok(())
}

/// Refuse a lock whose dependencies name packages it does not hold.
pub(crate) fn check_dependency_edges(lock: &Pylock) -> Result<()> {
    let names: BTreeSet<String> = lock.packages.iter().map(|p| normalize_name(&p.name)).collect();
    for package in &lock.packages {
        for dependency in &package.dependencies {
            if !names.contains(&normalize_name(&dependency.name)) {
                bail!(
                    "lock: {} {} depends on {}, which is not in the lock; the lock is incomplete or was edited by \
                     hand: re-run `cargo xtask lock`",
                    package.name,
                    package.version,
                    dependency.name
                );
            }
        }
    }
    Ok(())
}

/// Compare every candidate's METADATA with the lock (see the module docs). `top_level` are the
/// lock's top-level requirements (for the extras they ask for), `exclude` the excluded names.
pub(crate) fn check_metadata_matches_lock(
    candidates: &[InstallCandidate<'_>],
    top_level: &[String],
    exclude: &[String],
    environment: &MarkerEnvironment,
) -> Result<()> {
    let exclude: BTreeSet<String> = exclude.iter().map(|n| normalize_name(n)).collect();
    let installed: BTreeMap<String, &InstallCandidate> =
        candidates.iter().map(|c| (normalize_name(c.name), c)).collect();

    // Parse every METADATA and check Name and Version.
    let mut requirements: BTreeMap<String, Vec<Requirement>> = BTreeMap::new();
    for candidate in candidates {
        let metadata = parse_metadata(candidate.metadata)
            .map_err(|e| anyhow!("{}: its METADATA is unreadable ({e:#}); refusing the wheel", candidate.wheel))?;
        let same_version = match (Version::from_str(&metadata.version), Version::from_str(candidate.version)) {
            (Ok(found), Ok(locked)) => found == locked,
            _ => metadata.version == candidate.version,
        };
        if metadata.name != normalize_name(candidate.name) || !same_version {
            bail!(
                "{}: its METADATA says Name {} Version {}, but the lock has {} {}; refusing a wheel that is not \
                 the distribution the lock was made from",
                candidate.wheel,
                metadata.name,
                metadata.version,
                candidate.name,
                candidate.version
            );
        }
        let parsed = metadata
            .requires_dist
            .iter()
            .map(|text| {
                Requirement::from_str(text).map_err(|e| {
                    anyhow!("{}: its METADATA has an unreadable Requires-Dist {text:?}: {e}", candidate.wheel)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        requirements.insert(normalize_name(candidate.name), parsed);
    }

    // The extras the closure asks for: from the top-level requirements, then from every active
    // requirement, until nothing changes.
    let mut extras: BTreeMap<String, BTreeSet<ExtraName>> = BTreeMap::new();
    for text in top_level {
        if let Ok(requirement) = Requirement::<pep508_rs::VerbatimUrl>::from_str(text) {
            extras.entry(normalize_name(requirement.name.as_ref())).or_default().extend(requirement.extras);
        }
    }
    loop {
        let mut changed = false;
        for (name, list) in &requirements {
            let enabled: Vec<ExtraName> = extras.get(name).into_iter().flatten().cloned().collect();
            for requirement in list {
                if requirement.evaluate_markers(environment, &enabled) && !requirement.extras.is_empty() {
                    let entry = extras.entry(normalize_name(requirement.name.as_ref())).or_default();
                    for extra in &requirement.extras {
                        changed |= entry.insert(extra.clone());
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }

    for candidate in candidates {
        let name = normalize_name(candidate.name);
        let locked: BTreeSet<String> = candidate.dependencies.iter().map(|d| normalize_name(d)).collect();
        let list = &requirements[&name];
        let enabled: Vec<ExtraName> = extras.get(&name).into_iter().flatten().cloned().collect();
        for requirement in list {
            let dependency = normalize_name(requirement.name.as_ref());
            if dependency == name
                || exclude.contains(&dependency)
                || !requirement.evaluate_markers(environment, &enabled)
            {
                continue;
            }
            if !locked.contains(&dependency) {
                bail!(
                    "{}: its METADATA requires {requirement}, but the lock does not list {dependency} as a \
                     dependency of {} {}; the wheel's Requires-Dist differs from the metadata the lock was made \
                     from: re-run `cargo xtask lock`",
                    candidate.wheel,
                    candidate.name,
                    candidate.version
                );
            }
            let Some(target) = installed.get(&dependency) else {
                bail!(
                    "{}: its METADATA requires {requirement}, but the lock installs no {dependency} for this \
                     target; re-run `cargo xtask lock`",
                    candidate.wheel
                );
            };
            if let Some(pep508_rs::VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url
                && let Ok(version) = Version::from_str(target.version)
                && !specifiers.contains(&version)
            {
                bail!(
                    "{}: its METADATA requires {requirement}, but the lock installs {dependency} {}; the wheel's \
                     Requires-Dist differs from the metadata the lock was made from: re-run `cargo xtask lock`",
                    candidate.wheel,
                    target.version
                );
            }
        }
        let named: BTreeSet<String> = list.iter().map(|r| normalize_name(r.name.as_ref())).collect();
        if let Some(missing) = locked.iter().find(|d| !named.contains(*d)) {
            bail!(
                "{}: the lock lists {missing} as a dependency of {} {}, but the wheel's METADATA does not require \
                 it; the wheel differs from the metadata the lock was made from: re-run `cargo xtask lock`",
                candidate.wheel,
                candidate.name,
                candidate.version
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Pylock> {
        Pylock::parse(text, Path::new("pylock.toml"))
    }

    fn lock_text(version: &str, extra: &str) -> String {
        format!(
            "lock-version = \"{version}\"\nenvironments = [\"sys_platform == 'linux' and platform_machine == 'x86_64' and \
             implementation_name == 'cpython'\"]\nrequires-python = \"==3.11.*\"\ncreated-by = \"test\"\n{extra}"
        )
    }

    #[test]
    fn requires_python_and_environments_are_checked_against_the_build() {
        let lock = parse(&lock_text("1.0", "")).unwrap();
        check_against_build(&lock, "3.11.14", Arch::X86_64).unwrap();
        assert_eq!(
            format!("{:#}", check_against_build(&lock, "3.12.1", Arch::X86_64).unwrap_err()),
            "lock: requires-python = \"==3.11.*\", but the layer's interpreter is CPython 3.12.1; re-run `cargo xtask \
             lock` for this interpreter (python.version in layer.toml)"
        );
        assert_eq!(
            format!("{:#}", check_against_build(&lock, "3.11.14", Arch::Arm64).unwrap_err()),
            "lock: none of its environments holds for arm64 (platform_machine \"aarch64\", CPython 3.11.14): \
             sys_platform == 'linux' and platform_machine == 'x86_64' and implementation_name == 'cpython'; re-run \
             `cargo xtask lock` with this architecture"
        );
    }
}
