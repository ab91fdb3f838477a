//! `cargo xtask lock --upgrade-package NAME[==VERSION]`: which packages may move, and the rewrite of
//! an exact pin in `layer.toml`.
//!
//! A top-level requirement pinned with `==` cannot move without editing the spec, so
//! `--upgrade-package litellm==1.80.0` rewrites that pin in `layer.toml` (with `toml_edit`, so
//! comments and layout stay) before the lock is made; without a version such a pin is an error
//! saying what to pass. A name that is neither a requirement nor in the existing lock is an error:
//! it would otherwise be silently ignored.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use pep508_rs::{Requirement, VersionOrUrl};

use crate::packaging::wheel_name::normalize_name;

/// One `--upgrade-package` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpgradeRequest {
    /// PEP 503 normalized name.
    pub(crate) name: String,
    /// The version to pin, from `NAME==VERSION`.
    pub(crate) version: Option<String>,
}

impl FromStr for UpgradeRequest {
    type Err = anyhow::Error;

    /// `litellm` or `litellm==1.80.0`.
    fn from_str(text: &str) -> Result<UpgradeRequest> {
        let (name, version) = match text.split_once("==") {
            Some((name, version)) => (name.trim(), Some(version.trim())),
            None => (text.trim(), None),
        };
        let parsed = pep508_rs::PackageName::from_str(name).map_err(|e| {
            anyhow::anyhow!(
                "--upgrade-package {text:?}: {name:?} is not a package name ({e}); use NAME or NAME==VERSION"
            )
        })?;
        if let Some(version) = version {
            pep440_rs::Version::from_str(version).map_err(|e| {
                anyhow::anyhow!("--upgrade-package {text:?}: {version:?} is not a version ({e}); use NAME==VERSION")
            })?;
        }
        Ok(UpgradeRequest { name: parsed.to_string(), version: version.map(str::to_string) })
    }
}

/// Check every request against the spec's requirements and the existing lock's packages, rewrite
/// exact pins in the spec file at `spec_path` when a version is given, and return the names that
/// may move. The spec file is written (temp file + rename) only when every request is valid.
pub(crate) fn apply(
    requests: &[UpgradeRequest],
    spec_path: &Path,
    requirements: &[String],
    locked_names: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let text = fs_err::read_to_string(spec_path)?;
    let mut document =
        text.parse::<toml_edit::DocumentMut>().with_context(|| format!("{}: not valid TOML", spec_path.display()))?;
    let mut changed = false;
    for request in requests {
        let pinned = requirements.iter().enumerate().find_map(|(index, text)| {
            let requirement = Requirement::<pep508_rs::VerbatimUrl>::from_str(text).ok()?;
            (normalize_name(requirement.name.as_ref()) == request.name).then_some((index, requirement))
        });
        match (pinned, &request.version) {
            (None, _) if !locked_names.contains(&request.name) => bail!(
                "--upgrade-package {}: no such package in {} (packages.requirements) or in the lock; check the name",
                request.name,
                spec_path.display()
            ),
            (None, Some(version)) => bail!(
                "--upgrade-package {}=={version}: {} is not a top-level requirement, so the resolver picks its \
                 version; pass --upgrade-package {} (or add it to packages.requirements with that pin)",
                request.name,
                request.name,
                request.name
            ),
            (None, None) => {}
            (Some((index, requirement)), version) => {
                let exact = matches!(&requirement.version_or_url, Some(VersionOrUrl::VersionSpecifier(s))
                    if s.iter().any(|s| *s.operator() == pep440_rs::Operator::Equal));
                match (exact, version) {
                    (true, None) => bail!(
                        "--upgrade-package {}: it is pinned as {:?} in {}; name the new version: \
                         --upgrade-package {}==VERSION",
                        request.name,
                        requirements[index],
                        spec_path.display(),
                        request.name
                    ),
                    (_, Some(version)) => {
                        let list = document["packages"]["requirements"].as_array_mut().with_context(|| {
                            format!("{}: packages.requirements is not an array", spec_path.display())
                        })?;
                        let new_pin = format!("{}=={version}", requirement.name);
                        let Some(item) = list.get_mut(index) else {
                            bail!("{}: packages.requirements changed while reading it", spec_path.display())
                        };
                        let decor = item.decor().clone();
                        *item = toml_edit::Value::from(new_pin);
                        *item.decor_mut() = decor;
                        changed = true;
                    }
                    (false, None) => {}
                }
            }
        }
    }
    if changed {
        crate::files::write_atomically(spec_path, document.to_string().as_bytes())?;
    }
    Ok(requests.iter().map(|request| request.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str =
        "[packages]\n# the one pin\nrequirements = [\"litellm==1.78.7\", \"httpx>=0.27\"]  # keep\nexclude = []\n";

    fn spec_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.toml");
        fs_err::write(&path, SPEC).unwrap();
        (dir, path)
    }

    fn requirements() -> Vec<String> {
        vec!["litellm==1.78.7".into(), "httpx>=0.27".into()]
    }

    fn locked() -> BTreeSet<String> {
        ["litellm", "httpx", "tiktoken"].into_iter().map(String::from).collect()
    }

    #[test]
    fn a_version_rewrites_the_pin_and_keeps_comments() {
        let (_dir, path) = spec_file();
        let requests = ["LiteLLM==1.80.0".parse().unwrap()];
        let names = apply(&requests, &path, &requirements(), &locked()).unwrap();
        assert_eq!(names, BTreeSet::from(["litellm".to_string()]));
        assert_eq!(
            fs_err::read_to_string(&path).unwrap(),
            "[packages]\n# the one pin\nrequirements = [\"litellm==1.80.0\", \"httpx>=0.27\"]  # keep\nexclude = []\n"
        );
    }

    #[test]
    fn a_pinned_package_without_a_version_says_what_to_pass() {
        let (_dir, path) = spec_file();
        let err = apply(&["litellm".parse().unwrap()], &path, &requirements(), &locked()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "--upgrade-package litellm: it is pinned as \"litellm==1.78.7\" in {}; name the new version: \
                 --upgrade-package litellm==VERSION",
                path.display()
            )
        );
        assert_eq!(fs_err::read_to_string(&path).unwrap(), SPEC);
    }

    #[test]
    fn an_unknown_name_is_an_error_and_nothing_is_written() {
        let (_dir, path) = spec_file();
        let requests = ["litellm==1.80.0".parse().unwrap(), "litelm".parse().unwrap()];
        let err = apply(&requests, &path, &requirements(), &locked()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "--upgrade-package litelm: no such package in {} (packages.requirements) or in the lock; check the name",
                path.display()
            )
        );
        assert_eq!(fs_err::read_to_string(&path).unwrap(), SPEC);
    }

    #[test]
    fn transitive_and_ranged_packages_move_without_a_rewrite() {
        let (_dir, path) = spec_file();
        let requests = ["tiktoken".parse().unwrap(), "httpx".parse().unwrap()];
        let names = apply(&requests, &path, &requirements(), &locked()).unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(fs_err::read_to_string(&path).unwrap(), SPEC);
        let err = apply(&["tiktoken==0.9.0".parse().unwrap()], &path, &requirements(), &locked()).unwrap_err();
        assert!(err.to_string().contains("tiktoken is not a top-level requirement"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let err = "lite llm".parse::<UpgradeRequest>().unwrap_err().to_string();
        assert!(err.starts_with("--upgrade-package \"lite llm\": \"lite llm\" is not a package name"), "{err}");
        let err = "litellm==one".parse::<UpgradeRequest>().unwrap_err().to_string();
        assert!(err.starts_with("--upgrade-package \"litellm==one\": \"one\" is not a version"), "{err}");
    }
}
