//! Dependency resolution for one target arch with PubGrub (the `pubgrub` crate).
//!
//! Packages are distributions (`litellm`) and, as uv does, one virtual package per requested
//! extra (`httpx[http2]`) that depends on the distribution at the same version plus the
//! requirements its `extra == "http2"` markers switch on. Markers are evaluated for the Lambda
//! environment of the arch (PEP 508: <https://packaging.python.org/en/latest/specifications/dependency-specifiers/#environment-markers>).
//! Version ranges come from PEP 440 specifiers (`pep440_rs` converts them exactly).
//!
//! A package with no installable version at all for the arch (sdist-only, no wheel for the
//! platform, everything yanked) stops the resolution at once with a message naming the package,
//! the arch, who asked for it and the files seen; a conflict between versions is explained from
//! PubGrub's derivation tree, followed by what the index offered for each package involved.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use pep440_rs::{Operator, Version};
use pep508_rs::{ExtraName, MarkerEnvironment, Requirement, VersionOrUrl};
use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyConstraints, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges, Reporter,
};

use crate::arch::Arch;
use crate::lock::candidates::{ArchCandidates, compromised};
use crate::lock::fetch::Sources;
use crate::lock::index::{IndexError, ProjectFile};
use crate::packaging::wheel_name::normalize_name;
use crate::python_version::PythonVersion;

/// A node of the resolution graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Pkg {
    /// The requirements of layer.toml.
    Root,
    /// A distribution, by normalized name.
    Dist(String),
    /// A distribution with one extra enabled.
    Extra(String, String),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("layer.toml"),
            Pkg::Dist(name) => f.write_str(name),
            Pkg::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

/// The Lambda marker environment of an arch for a CPython full version.
pub(crate) fn marker_environment(arch: Arch, python_full: &str) -> Result<MarkerEnvironment> {
    let python = PythonVersion::from_full_version(python_full)
        .with_context(|| format!("python full version {python_full:?}"))?;
    crate::packaging::markers::lambda_environment(arch, python, python_full)
}

/// One resolved distribution for one arch.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedDist {
    pub(crate) version: Version,
    /// The wheel this arch installs.
    pub(crate) wheel: ProjectFile,
    pub(crate) requires_python: Option<String>,
    /// Names of the distributions it depends on here (extras flattened).
    pub(crate) dependencies: BTreeSet<String>,
}

/// What to resolve for one arch.
pub(crate) struct ArchRequest<'a> {
    pub(crate) arch: Arch,
    pub(crate) python_full: &'a str,
    pub(crate) roots: &'a [Requirement],
    /// `[packages] exclude`: still resolved (the lock pins excluded packages so that pip and uv
    /// can install it), named here only so that an excluded package that cannot be locked gets
    /// its own message.
    pub(crate) exclude: &'a BTreeSet<String>,
    /// Versions to pick when the constraints allow (existing lock, the other arch's picks).
    pub(crate) preferred: &'a BTreeMap<String, Version>,
}

/// Resolve `request` into name → distribution.
pub(crate) fn resolve_arch(sources: &Sources, request: &ArchRequest) -> Result<BTreeMap<String, ResolvedDist>> {
    let provider = Provider {
        sources,
        request,
        env: marker_environment(request.arch, request.python_full)?,
        candidates: RefCell::new(HashMap::new()),
        discovered: RefCell::new(HashMap::new()),
        dependencies: RefCell::new(HashMap::new()),
        required_by: RefCell::new(HashMap::new()),
    };
    for root in request.roots {
        provider
            .required_by
            .borrow_mut()
            .entry(normalize_name(root.name.as_ref()))
            .or_insert(format!("layer.toml ({root})"));
        sources.prefetch_page(&normalize_name(root.name.as_ref()));
    }
    let solution = match pubgrub::resolve(&provider, Pkg::Root, Version::from_str("0").expect("0 is a version")) {
        Ok(solution) => solution,
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            let report = DefaultStringReporter::report(&tree);
            let mut notes = Vec::new();
            let mut names: BTreeSet<String> = BTreeSet::new();
            for package in tree.packages() {
                if let Pkg::Dist(name) | Pkg::Extra(name, _) = package {
                    names.insert(name.clone());
                }
            }
            for name in names {
                if let Ok(candidates) = provider.candidates_of(&name) {
                    let versions: Vec<String> =
                        candidates.versions.keys().rev().take(8).map(|v| v.to_string()).collect();
                    notes.push(format!(
                        "  {name}: versions with a wheel for {}: {}{}",
                        request.arch,
                        versions.join(", "),
                        if candidates.versions.len() > 8 { ", ..." } else { "" }
                    ));
                }
            }
            bail!(
                "cannot resolve the requirements of layer.toml for Lambda {} (CPython {}, manylinux <= 2.34):\n{}\n\
                 what the index offers:\n{}\n\
                 hint: loosen or change the requirement in litellm-layer/layer.toml ([packages] exclude does not \
                 help: the lock still pins excluded packages, so that pip and uv can install it)",
                request.arch,
                request.python_full,
                tidy_report(&report),
                notes.join("\n")
            );
        }
        Err(PubGrubError::ErrorRetrievingDependencies { source, .. }) => return Err(source.0),
        Err(PubGrubError::ErrorChoosingVersion { source, .. }) => return Err(source.0),
        Err(PubGrubError::ErrorInShouldCancel(source)) => return Err(source.0),
    };
    let mut resolved = BTreeMap::new();
    for (package, version) in solution {
        let Pkg::Dist(name) = package else { continue };
        let candidates = provider.candidates_of(&name).map_err(|e| e.0)?;
        let wheel = candidates
            .versions
            .get(&version)
            .cloned()
            .with_context(|| format!("internal error: {name} {version} was chosen without a wheel"))?;
        let (dependencies, requires_python) =
            provider.dependencies.borrow().get(&(name.clone(), version.clone())).cloned().unwrap_or_default();
        resolved.insert(name, ResolvedDist { version, wheel, requires_python, dependencies });
    }
    Ok(resolved)
}

/// PubGrub's report with the root's dummy version removed and one sentence per line.
fn tidy_report(report: &str) -> String {
    report
        .replace("layer.toml 0 ", "layer.toml ")
        .replace("layer.toml is forbidden", "the requirements of layer.toml cannot all be met")
        .lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error from the provider (PubGrub wants `std::error::Error`).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub(crate) struct ProviderError(anyhow::Error);

type Dependency = (BTreeSet<String>, Option<String>);

struct Provider<'a> {
    sources: &'a Sources,
    request: &'a ArchRequest<'a>,
    env: MarkerEnvironment,
    candidates: RefCell<HashMap<String, Arc<ArchCandidates>>>,
    discovered: RefCell<HashMap<Pkg, usize>>,
    /// (name, version) → (dependency names, requires-python) as seen by `get_dependencies`.
    dependencies: RefCell<HashMap<(String, Version), Dependency>>,
    /// name → the first requirement that asked for it (for messages).
    required_by: RefCell<HashMap<String, String>>,
}

impl Provider<'_> {
    fn candidates_of(&self, name: &str) -> Result<Arc<ArchCandidates>, ProviderError> {
        if let Some(found) = self.candidates.borrow().get(name) {
            return Ok(found.clone());
        }
        let page = self.sources.page(name).map_err(|error| {
            let required_by = self.required_by.borrow().get(name).cloned().unwrap_or_else(|| "layer.toml".into());
            match error.downcast_ref::<IndexError>() {
                Some(IndexError::NotFound { .. }) => ProviderError(anyhow!(
                    "{error}; it is required by {required_by}. Check the name, or the index URL if the package lives \
                     on a private index"
                )),
                _ => {
                    ProviderError(anyhow!("{error:#}").context(format!("(package {name}, required by {required_by})")))
                }
            }
        })?;
        let candidates = self.sources.selector().for_arch(&page, self.request.arch);
        if candidates.versions.is_empty() {
            let required_by = self.required_by.borrow().get(name).cloned().unwrap_or_else(|| "layer.toml".into());
            // pip resolves the dependencies of what it installs from a lock, so an excluded package
            // must be locked too (docs/architecture.md §2); one that cannot be is refused, with
            // the reason.
            let hint = if self.request.exclude.contains(name) {
                format!(
                    "hint: {name} is in [packages] exclude of layer.toml, but the lock still pins excluded packages so \
                     that pip and uv can install it, and {name} has no wheel for this platform: this exclusion cannot \
                     be kept. Pin a version of the package that requires {name} which does not need it, or remove \
                     that requirement"
                )
            } else {
                "hint: pick a version that publishes a wheel for this platform, or change the requirement that \
                 needs it ([packages] exclude does not help: the lock still pins excluded packages, so that pip \
                 and uv can install it)"
                    .to_string()
            };
            return Err(ProviderError(anyhow!(
                "no installable version of {name} for Lambda {} (CPython {}, manylinux <= 2.34, {}): it is required \
                 by {required_by}, and no wheel on {} fits (source distributions are never built). Files seen:\n      {}\n\
                 {hint}",
                self.request.arch,
                self.request.python_full,
                self.request.arch.manylinux_name(),
                page.url,
                candidates.describe_seen(12)
            )));
        }
        self.candidates.borrow_mut().insert(name.to_string(), candidates.clone());
        Ok(candidates)
    }

    /// Add the requirements active in this environment (with `extras` on) to `constraints`.
    fn add_requirements<'r>(
        &self,
        parent: &str,
        requirements: impl IntoIterator<Item = &'r Requirement>,
        constraints: &mut BTreeMap<Pkg, Ranges<Version>>,
    ) -> Result<(), ProviderError> {
        for requirement in requirements {
            let name = normalize_name(requirement.name.as_ref());
            let range = match &requirement.version_or_url {
                None => Ranges::full(),
                Some(VersionOrUrl::VersionSpecifier(specifiers)) => Ranges::from(specifiers.clone()),
                Some(VersionOrUrl::Url(url)) => {
                    return Err(ProviderError(anyhow!(
                        "{parent} requires {name} from a direct URL ({}); only index packages can be locked",
                        crate::http::redact_url(&url.to_string())
                    )));
                }
            };
            self.required_by.borrow_mut().entry(name.clone()).or_insert_with(|| format!("{parent} ({requirement})"));
            self.sources.prefetch_page(&name);
            let mut packages = vec![Pkg::Dist(name.clone())];
            packages.extend(requirement.extras.iter().map(|e| Pkg::Extra(name.clone(), normalize_name(e.as_ref()))));
            for package in packages {
                if package == Pkg::Dist(parent.to_string()) {
                    continue;
                }
                let merged = match constraints.get(&package) {
                    Some(existing) => existing.intersection(&range),
                    None => range.clone(),
                };
                constraints.insert(package, merged);
            }
        }
        Ok(())
    }

    fn dist_dependencies(
        &self,
        name: &str,
        version: &Version,
        extra: Option<&str>,
    ) -> Result<Dependencies<Pkg, Ranges<Version>, String>, ProviderError> {
        if let Some(why) = compromised(name, version) {
            return Ok(Dependencies::Unavailable(format!("(never used: {name} {version} is refused because {why})")));
        }
        let candidates = self.candidates_of(name)?;
        let file = self
            .sources
            .selector()
            .metadata_wheel(self.sources.page(name).map_err(|e| ProviderError(anyhow!("{e:#}")))?.as_ref(), version)
            .or_else(|| candidates.versions.get(version).cloned())
            .ok_or_else(|| ProviderError(anyhow!("internal error: no wheel for {name} {version}")))?;
        let metadata = self.sources.metadata(name, version, &file).map_err(|e| ProviderError(anyhow!("{e:#}")))?;
        if metadata.name != name || Version::from_str(&metadata.version).ok().as_ref() != Some(version) {
            return Err(ProviderError(anyhow!(
                "{}: its METADATA says {} {}, but the file name says {name} {version}; the index serves a broken wheel",
                file.filename,
                metadata.name,
                metadata.version
            )));
        }
        let requirements: Vec<Requirement> = metadata
            .requires_dist
            .iter()
            .map(|text| {
                Requirement::from_str(text).map_err(|e| {
                    ProviderError(anyhow!(
                        "{}: Requires-Dist {text:?} is not a PEP 508 requirement: {e}",
                        file.filename
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let parent = format!("{name} {version}");
        let mut constraints = BTreeMap::new();
        match extra {
            None => {
                let active: Vec<&Requirement> =
                    requirements.iter().filter(|r| r.evaluate_markers(&self.env, &[])).collect();
                self.add_requirements(&parent, active, &mut constraints)?;
            }
            Some(extra) => {
                constraints.insert(Pkg::Dist(name.to_string()), Ranges::singleton(version.clone()));
                let extra_name =
                    ExtraName::from_str(extra).map_err(|e| ProviderError(anyhow!("extra {extra:?}: {e}")))?;
                let active: Vec<&Requirement> = requirements
                    .iter()
                    .filter(|r| {
                        r.evaluate_markers(&self.env, std::slice::from_ref(&extra_name))
                            && !r.evaluate_markers(&self.env, &[])
                    })
                    .collect();
                self.add_requirements(&format!("{name}[{extra}] {version}"), active, &mut constraints)?;
            }
        }
        let names: BTreeSet<String> = constraints
            .keys()
            .filter_map(|p| match p {
                Pkg::Dist(n) | Pkg::Extra(n, _) if n != name => Some(n.clone()),
                _ => None,
            })
            .collect();
        let mut dependencies = self.dependencies.borrow_mut();
        let entry = dependencies.entry((name.to_string(), version.clone())).or_default();
        entry.0.extend(names);
        if extra.is_none() {
            entry.1 = metadata.requires_python.clone();
        }
        Ok(Dependencies::Available(constraints.into_iter().collect::<DependencyConstraints<_, _>>()))
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Err = ProviderError;
    type Priority = (u32, Reverse<usize>);

    fn prioritize(
        &self,
        package: &Pkg,
        _range: &Ranges<Version>,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let mut discovered = self.discovered.borrow_mut();
        let next = discovered.len();
        let order = *discovered.entry(package.clone()).or_insert(next);
        (stats.conflict_count(), Reverse(order))
    }

    fn choose_version(&self, package: &Pkg, range: &Ranges<Version>) -> Result<Option<Version>, ProviderError> {
        let name = match package {
            Pkg::Root => return Ok(Some(Version::from_str("0").expect("0 is a version"))),
            Pkg::Dist(name) | Pkg::Extra(name, _) => name,
        };
        let candidates = self.candidates_of(name)?;
        let preferred =
            self.request.preferred.get(name).filter(|v| range.contains(*v) && candidates.versions.contains_key(*v));
        let chosen =
            preferred.cloned().or_else(|| candidates.versions.keys().rev().find(|v| range.contains(*v)).cloned());
        if let (Some(version), Pkg::Dist(_)) = (&chosen, package)
            && compromised(name, version).is_none()
            && let Ok(page) = self.sources.page(name)
            && let Some(file) = self.sources.selector().metadata_wheel(&page, version)
        {
            self.sources.prefetch_metadata(name, version, &file);
        }
        Ok(chosen)
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Ranges<Version>, String>, ProviderError> {
        match package {
            Pkg::Root => {
                let mut constraints = BTreeMap::new();
                let active: Vec<&Requirement> =
                    self.request.roots.iter().filter(|r| r.evaluate_markers(&self.env, &[])).collect();
                self.add_requirements("layer.toml", active, &mut constraints)?;
                Ok(Dependencies::Available(constraints.into_iter().collect()))
            }
            Pkg::Dist(name) => self.dist_dependencies(name, version, None),
            Pkg::Extra(name, extra) => self.dist_dependencies(name, version, Some(extra)),
        }
    }
}

/// The versions a requirement pins exactly (`==1.2.3`, `===1.2.3`), if it does.
pub(crate) fn exact_pins(requirement: &Requirement) -> Vec<Version> {
    match &requirement.version_or_url {
        Some(VersionOrUrl::VersionSpecifier(specifiers)) => specifiers
            .iter()
            .filter(|s| matches!(s.operator(), Operator::Equal | Operator::ExactEqual))
            .map(|s| s.version().clone())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_markers_per_arch() {
        let arm = marker_environment(Arch::Arm64, "3.11.14").unwrap();
        let x86 = marker_environment(Arch::X86_64, "3.11.14").unwrap();
        let cases = [
            ("uvloop; sys_platform != 'win32' and platform_python_implementation == 'CPython'", true, true),
            ("pywin32; platform_system == 'Windows'", false, false),
            ("a; platform_machine == 'aarch64'", true, false),
            ("b; python_full_version >= '3.11.10'", true, true),
            ("c; python_version < '3.11'", false, false),
            ("d; os_name == 'posix' and implementation_name == 'cpython'", true, true),
        ];
        for (text, on_arm, on_x86) in cases {
            let requirement = Requirement::<pep508_rs::VerbatimUrl>::from_str(text).unwrap();
            assert_eq!(requirement.evaluate_markers(&arm, &[]), on_arm, "{text} on arm64");
            assert_eq!(requirement.evaluate_markers(&x86, &[]), on_x86, "{text} on x86_64");
        }
        let extra = Requirement::<pep508_rs::VerbatimUrl>::from_str("h2<5,>=3; extra == 'http2'").unwrap();
        assert!(!extra.evaluate_markers(&arm, &[]));
        assert!(extra.evaluate_markers(&arm, &[ExtraName::from_str("http2").unwrap()]));
    }

    #[test]
    fn exact_pins_are_found() {
        let pinned = Requirement::<pep508_rs::VerbatimUrl>::from_str("litellm==1.82.8").unwrap();
        assert_eq!(exact_pins(&pinned), [Version::from_str("1.82.8").unwrap()]);
        let loose = Requirement::<pep508_rs::VerbatimUrl>::from_str("litellm>=1").unwrap();
        assert!(exact_pins(&loose).is_empty());
    }

    #[test]
    fn ranges_from_specifiers_follow_pep_440() {
        let specifiers = pep440_rs::VersionSpecifiers::from_str(">=1.0,<2.0,!=1.5").unwrap();
        let range = Ranges::from(specifiers);
        for (version, inside) in [("1.0", true), ("1.5", false), ("1.9.9", true), ("2.0", false), ("0.9", false)] {
            assert_eq!(range.contains(&Version::from_str(version).unwrap()), inside, "{version}");
        }
    }
}
