//! Which files of a project page a target can install: wheels only, tag-compatible, hashed,
//! `requires-python` satisfied by the pinned interpreter, not yanked (PEP 592), not a pre-release,
//! and never a known-compromised release.
//!
//! Yanked files and pre-releases stay eligible for versions the user pinned exactly (`==`) or the
//! existing lock already holds: PEP 592 says a yanked release is still installable when the
//! requirement pins it, and re-locking must reproduce the committed lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use pep440_rs::{Version, VersionSpecifiers};

use crate::arch::Arch;
use crate::lock::index::{ProjectFile, ProjectPage};
use crate::packaging::tags::TargetTags;
use crate::packaging::wheel_name::WheelFilename;
use crate::python_version::PythonVersion;

/// Releases that are never chosen, and why. LiteLLM 1.82.7 and 1.82.8 were published from a
/// hijacked maintainer account; 1.82.8 shipped a `.pth` file that stole credentials at startup.
pub(crate) const COMPROMISED: &[(&str, &str, &str)] = &[
    ("litellm", "1.82.7", "it was published from a hijacked maintainer account (a known supply-chain compromise)"),
    (
        "litellm",
        "1.82.8",
        "it was published from a hijacked maintainer account and ships a credential-stealing .pth file",
    ),
];

/// Why a known-compromised release is refused, if it is one.
pub(crate) fn compromised(name: &str, version: &Version) -> Option<&'static str> {
    COMPROMISED
        .iter()
        .find(|(n, v, _)| *n == name && Version::from_str(v).is_ok_and(|v| &v == version))
        .map(|(_, _, why)| *why)
}

/// Why a file was not a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skipped {
    Sdist,
    NotAWheel(String),
    Yanked,
    PreRelease,
    RequiresPython(String),
    Tags,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skipped::Sdist => f.write_str("source distribution, never built"),
            Skipped::NotAWheel(why) => write!(f, "not a usable wheel name: {why}"),
            Skipped::Yanked => f.write_str("yanked"),
            Skipped::PreRelease => f.write_str("pre-release"),
            Skipped::RequiresPython(spec) => write!(f, "requires-python {spec}"),
            Skipped::Tags => f.write_str("no compatible tag"),
        }
    }
}

/// The installable versions of one project for one arch, and what was skipped.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArchCandidates {
    /// Version → the best wheel for the arch.
    pub(crate) versions: BTreeMap<Version, ProjectFile>,
    /// Files that were not candidates, with the reason.
    pub(crate) skipped: Vec<(String, Skipped)>,
    /// Files the index listed without a sha256 (dropped).
    pub(crate) without_sha256: Vec<String>,
}

impl ArchCandidates {
    /// A readable account of what the index offered, for error messages (at most `limit` files).
    pub(crate) fn describe_seen(&self, limit: usize) -> String {
        let mut lines: Vec<String> =
            self.skipped.iter().rev().take(limit).map(|(f, why)| format!("{f} ({why})")).collect();
        if self.skipped.len() > limit {
            lines.push(format!("... and {} more", self.skipped.len() - limit));
        }
        for file in self.without_sha256.iter().take(limit) {
            lines.push(format!("{file} (the index gave no sha256)"));
        }
        if lines.is_empty() { "no files at all".to_string() } else { lines.join("\n      ") }
    }
}

type CandidateMemo = BTreeMap<(String, Arch), Arc<ArchCandidates>>;

/// Chooses candidate files for the targets.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    pub(crate) python_full: Version,
    tags: Vec<TargetTags>,
    /// Versions eligible even when yanked or pre-releases (exact pins and the existing lock).
    allowed: BTreeMap<String, BTreeSet<Version>>,
    /// Pages do not change during a run, so each (project, arch) is worked out once.
    memo: Arc<Mutex<CandidateMemo>>,
}

impl Selector {
    pub(crate) fn new(
        python_full: Version,
        python: PythonVersion,
        allowed: BTreeMap<String, BTreeSet<Version>>,
    ) -> Selector {
        let tags = Arch::ALL.iter().map(|arch| TargetTags::lambda(*arch, python)).collect();
        Selector { python_full, tags, allowed, memo: Arc::default() }
    }

    fn tags(&self, arch: Arch) -> &TargetTags {
        self.tags.iter().find(|t| t.arch == arch).expect("tags for every arch")
    }

    /// The candidates of `page` for `arch` (worked out once per run).
    pub(crate) fn for_arch(&self, page: &ProjectPage, arch: Arch) -> Arc<ArchCandidates> {
        let key = (page.name.clone(), arch);
        if let Some(found) = self.memo.lock().expect("candidates memo").get(&key) {
            return found.clone();
        }
        let candidates = Arc::new(self.compute(page, arch));
        self.memo.lock().expect("candidates memo").insert(key, candidates.clone());
        candidates
    }

    fn compute(&self, page: &ProjectPage, arch: Arch) -> ArchCandidates {
        let tags = self.tags(arch);
        let allowed = self.allowed.get(&page.name);
        let mut by_version: BTreeMap<Version, Vec<(WheelFilename, &ProjectFile)>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for file in &page.files {
            if !file.filename.ends_with(".whl") {
                skipped.push((file.filename.clone(), Skipped::Sdist));
                continue;
            }
            let wheel = match WheelFilename::from_str(&file.filename) {
                Ok(wheel) if wheel.normalized_name() == page.name => wheel,
                Ok(_) => {
                    skipped.push((file.filename.clone(), Skipped::NotAWheel(format!("not a file of {}", page.name))));
                    continue;
                }
                Err(e) => {
                    skipped.push((file.filename.clone(), Skipped::NotAWheel(e.to_string())));
                    continue;
                }
            };
            let is_allowed = allowed.is_some_and(|a| a.contains(&wheel.version));
            if file.yanked && !is_allowed {
                skipped.push((file.filename.clone(), Skipped::Yanked));
                continue;
            }
            if wheel.version.any_prerelease() && !is_allowed {
                skipped.push((file.filename.clone(), Skipped::PreRelease));
                continue;
            }
            if let Some(requires_python) = &file.requires_python {
                let ok = VersionSpecifiers::from_str(requires_python)
                    .map(|s| s.contains(&self.python_full))
                    .unwrap_or(false);
                if !ok {
                    skipped.push((file.filename.clone(), Skipped::RequiresPython(requires_python.clone())));
                    continue;
                }
            }
            if !tags.is_compatible(&wheel) {
                skipped.push((file.filename.clone(), Skipped::Tags));
                continue;
            }
            by_version.entry(wheel.version.clone()).or_default().push((wheel, file));
        }
        let versions = by_version
            .into_iter()
            .filter_map(|(version, wheels)| {
                tags.best(wheels.iter().map(|(w, f)| (w, *f))).map(|(_, file)| (version, file.clone()))
            })
            .collect();
        ArchCandidates { versions, skipped, without_sha256: page.files_without_sha256.clone() }
    }

    /// The wheel whose METADATA stands for `version` on every arch: the best arm64 wheel, else
    /// the best x86_64 one. (Wheels of one version are assumed to share their metadata, as
    /// pip and uv assume; reading one per version halves the requests.)
    pub(crate) fn metadata_wheel(&self, page: &ProjectPage, version: &Version) -> Option<ProjectFile> {
        Arch::ALL.iter().find_map(|arch| self.for_arch(page, *arch).versions.get(version).cloned())
    }

    /// The version the resolver will most likely pick (the preferred one if eligible, else the
    /// newest), with its metadata wheel: fetched ahead of time while the resolver works.
    pub(crate) fn likely_pick(
        &self,
        page: &ProjectPage,
        preferred: Option<&Version>,
    ) -> Option<(Version, ProjectFile)> {
        for arch in Arch::ALL {
            let candidates = self.for_arch(page, arch);
            if let Some(version) = preferred.filter(|v| candidates.versions.contains_key(*v)) {
                return Some((version.clone(), candidates.versions[version].clone()));
            }
            if let Some((version, file)) =
                candidates.versions.iter().rev().find(|(v, _)| compromised(&page.name, v).is_none())
            {
                return Some((version.clone(), file.clone()));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, yanked: bool, requires_python: Option<&str>) -> ProjectFile {
        ProjectFile {
            filename: name.to_string(),
            url: format!("https://example.com/{name}"),
            sha256: Some(crate::cache::Sha256Hex::parse(&"a".repeat(64)).unwrap()),
            requires_python: requires_python.map(str::to_string),
            yanked,
            yanked_reason: None,
            size: None,
            upload_time: None,
            core_metadata: None,
        }
    }

    #[test]
    fn selection_skips_what_lambda_cannot_use() {
        let page = ProjectPage {
            name: "demo".into(),
            url: "u".into(),
            files: vec![
                file("demo-1.0.tar.gz", false, None),
                file("demo-1.0-py3-none-any.whl", false, None),
                file("demo-2.0-py3-none-any.whl", true, None),
                file("demo-3.0-py3-none-any.whl", false, Some(">=3.12")),
                file("demo-4.0rc1-py3-none-any.whl", false, None),
                file("demo-5.0-cp311-cp311-manylinux_2_17_x86_64.whl", false, None),
            ],
            files_without_sha256: vec![],
            from_cache: false,
            warnings: Vec::new(),
        };
        let selector = Selector::new(Version::from_str("3.11.14").unwrap(), "3.11".parse().unwrap(), BTreeMap::new());
        let arm = selector.for_arch(&page, Arch::Arm64);
        let versions: Vec<String> = arm.versions.keys().map(|v| v.to_string()).collect();
        assert_eq!(versions, ["1.0"]);
        let x86 = selector.for_arch(&page, Arch::X86_64);
        assert_eq!(x86.versions.keys().map(|v| v.to_string()).collect::<Vec<_>>(), ["1.0", "5.0"]);
        let reasons: Vec<String> = arm.skipped.iter().map(|(_, r)| r.to_string()).collect();
        assert!(reasons.contains(&"yanked".to_string()), "{reasons:?}");
        assert!(reasons.contains(&"requires-python >=3.12".to_string()), "{reasons:?}");
        assert!(reasons.contains(&"source distribution, never built".to_string()));
        // A pinned (allowed) yanked version stays eligible.
        let allowed = BTreeMap::from([("demo".to_string(), BTreeSet::from([Version::from_str("2.0").unwrap()]))]);
        let selector = Selector::new(Version::from_str("3.11.14").unwrap(), "3.11".parse().unwrap(), allowed);
        assert!(selector.for_arch(&page, Arch::Arm64).versions.contains_key(&Version::from_str("2.0").unwrap()));
    }

    #[test]
    fn compromised_litellm_releases_are_known() {
        assert!(compromised("litellm", &Version::from_str("1.82.8").unwrap()).unwrap().contains(".pth"));
        assert!(compromised("litellm", &Version::from_str("1.82.7").unwrap()).is_some());
        assert!(compromised("litellm", &Version::from_str("1.78.7").unwrap()).is_none());
    }
}
