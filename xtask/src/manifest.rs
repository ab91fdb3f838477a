//! The pinned python-build-standalone artifacts (URL + sha256), embedded from `data/pbs-manifest.json`.
//!
//! The pins were verified against the release assets of python-build-standalone
//! (docs/architecture.md §7).

use std::fmt;

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::arch::Arch;
use crate::python_version::PythonVersion;

/// The manifest text, part of the tool's identity (a change invalidates built layers).
pub(crate) const MANIFEST_JSON: &str = include_str!("../data/pbs-manifest.json");

/// A python-build-standalone build variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Variant {
    /// Interpreter with debug symbols.
    #[serde(rename = "install_only")]
    InstallOnly,
    /// Interpreter with symbols stripped: smaller, the default.
    #[default]
    #[serde(rename = "install_only_stripped")]
    InstallOnlyStripped,
}

impl Variant {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Variant::InstallOnly => "install_only",
            Variant::InstallOnlyStripped => "install_only_stripped",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The archive compression, as named by the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum ArchiveFormat {
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.zst")]
    TarZst,
}

/// One pinned release asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbsArtifact {
    /// Full CPython version, e.g. "3.11.14".
    pub(crate) version: String,
    pub(crate) release_tag: String,
    /// Target triple, e.g. "aarch64-unknown-linux-gnu".
    pub(crate) arch: String,
    pub(crate) variant: Variant,
    pub url: String,
    pub sha256: String,
    /// Part of the manifest's schema, checked when it is parsed; the extractor tells the
    /// compression from the archive's magic bytes instead.
    #[allow(dead_code)]
    pub(crate) archive_format: ArchiveFormat,
}

impl PbsArtifact {
    /// The asset's file name (the last URL segment, percent-decoded).
    pub(crate) fn file_name(&self) -> String {
        let last = self.url.rsplit('/').next().unwrap_or(&self.url);
        last.replace("%2B", "+")
    }

    /// The minor version, e.g. 3.11; `None` for a minor version the layer does not support.
    pub(crate) fn minor_version(&self) -> Option<PythonVersion> {
        PythonVersion::from_full_version(&self.version).ok()
    }

    /// The download URL, through a mirror when one is set (`<mirror>/<release>/<file name>`).
    pub(crate) fn url_via(&self, mirror: Option<&str>) -> String {
        match mirror {
            Some(base) => format!(
                "{}/{}/{}",
                base.trim_end_matches('/'),
                self.release_tag,
                self.url.rsplit('/').next().unwrap_or("")
            ),
            None => self.url.clone(),
        }
    }
}

/// All pinned artifacts.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub(crate) artifacts: Vec<PbsArtifact>,
}

impl Manifest {
    /// The manifest embedded in this binary.
    pub fn pinned() -> Manifest {
        let artifacts: Vec<PbsArtifact> =
            serde_json::from_str(MANIFEST_JSON).expect("data/pbs-manifest.json is valid (checked by a test)");
        Manifest { artifacts }
    }

    pub(crate) fn has_release(&self, minor: PythonVersion, release: &str) -> bool {
        self.artifacts.iter().any(|a| a.minor_version() == Some(minor) && a.release_tag == release)
    }

    /// Release tags pinned for a minor version, sorted.
    pub(crate) fn releases_for(&self, minor: PythonVersion) -> Vec<String> {
        let mut tags: Vec<String> =
            self.artifacts.iter().filter(|a| a.minor_version() == Some(minor)).map(|a| a.release_tag.clone()).collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// The artifact for a minor version, release, arch and variant.
    pub fn find(&self, minor: PythonVersion, release: &str, arch: Arch, variant: Variant) -> Result<&PbsArtifact> {
        let found = self.artifacts.iter().find(|a| {
            a.minor_version() == Some(minor)
                && a.release_tag == release
                && a.arch == arch.pbs_triple()
                && a.variant == variant
        });
        match found {
            Some(artifact) => Ok(artifact),
            None => {
                let available: Vec<String> = self
                    .artifacts
                    .iter()
                    .filter(|a| a.minor_version() == Some(minor) && a.arch == arch.pbs_triple())
                    .map(|a| format!("{} {}", a.release_tag, a.variant))
                    .collect();
                bail!(
                    "no pinned python-build-standalone {minor} build for {} ({variant}) in release {release}; pinned for this arch: {}",
                    arch.pbs_triple(),
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py311() -> PythonVersion {
        "3.11".parse().unwrap()
    }

    #[test]
    fn manifest_covers_every_minor_arch_and_variant() {
        let manifest = Manifest::pinned();
        for minor in PythonVersion::SUPPORTED {
            for arch in Arch::ALL {
                for variant in [Variant::InstallOnly, Variant::InstallOnlyStripped] {
                    let artifact = manifest.find(minor, "20260127", arch, variant).unwrap();
                    assert_eq!(artifact.sha256.len(), 64);
                    assert!(artifact.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
                    assert!(
                        artifact
                            .url
                            .starts_with("https://github.com/astral-sh/python-build-standalone/releases/download/")
                    );
                    assert!(artifact.url.contains(arch.pbs_triple()));
                }
            }
        }
    }

    #[test]
    fn file_name_and_mirror() {
        let manifest = Manifest::pinned();
        let a = manifest.find(py311(), "20260127", Arch::Arm64, Variant::InstallOnlyStripped).unwrap();
        assert_eq!(a.file_name(), "cpython-3.11.14+20260127-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz");
        assert_eq!(
            a.url_via(Some("https://mirror.example/pbs/")),
            "https://mirror.example/pbs/20260127/cpython-3.11.14%2B20260127-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz"
        );
        assert_eq!(a.minor_version(), Some(py311()));
    }

    #[test]
    fn missing_build_lists_what_is_pinned() {
        let err =
            Manifest::pinned().find(py311(), "20260814", Arch::Arm64, Variant::InstallOnly).unwrap_err().to_string();
        assert!(err.contains("20260814 install_only_stripped"), "{err}");
    }
}
