//! The PEP 751 lock file, `pylock.toml`: the data model shared by `lock` (writes it) and `layer`
//! (installs exactly it).
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/pylock-toml/>

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The lock file. Field order follows the spec; unknown keys are kept out by `deny_unknown_fields`
/// only where the spec is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pylock {
    /// Always "1.0".
    pub(crate) lock_version: String,
    /// Marker expressions of the environments the lock is for (one per target arch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) environments: Vec<String>,
    /// e.g. "==3.11.*".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) requires_python: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) extras: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dependency_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) default_groups: Vec<String>,
    pub(crate) created_by: String,
    #[serde(default)]
    pub packages: Vec<LockedPackage>,
    /// `[tool.litellm-layer]`: what the lock was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<LockTool>,
    /// Warnings from reading it (a newer `lock-version` minor, unknown keys); never written.
    #[serde(skip)]
    pub(crate) warnings: Vec<String>,
}

/// `[tool]` of the lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LockTool {
    #[serde(rename = "litellm-layer")]
    pub(crate) litellm_layer: LockInputs,
}

/// The inputs a lock was resolved from; `lock --check` compares them with layer.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct LockInputs {
    /// The top-level requirements, as written in layer.toml.
    pub(crate) requirements: Vec<String>,
    /// Distributions excluded from the closure.
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// The index the lock was resolved against (credentials removed).
    pub(crate) index_url: String,
    /// Full version of the pinned interpreter markers were evaluated for, e.g. "3.11.14".
    pub(crate) python_full_version: String,
    /// Lambda architectures covered, e.g. ["arm64", "x86_64"].
    pub(crate) architectures: Vec<String>,
    /// What this tool writes into a lock: 1 (absent) left excluded packages out of the lock, 2 pins
    /// them so that pip and uv can install the lock ([`LOCK_FORMAT`]).
    #[serde(default = "first_lock_format")]
    pub(crate) format: u32,
}

/// The lock format this tool writes (see [`LockInputs::format`]); `lock --check` reports a lock in
/// another one as out of date.
pub(crate) const LOCK_FORMAT: u32 = 2;

fn first_lock_format() -> u32 {
    1
}

impl LockInputs {
    /// The normalized names of the top-level requirements.
    pub(crate) fn top_level_names(&self) -> Vec<String> {
        requirement_names(&self.requirements)
    }
}

/// The normalized names of PEP 508 requirements; an unreadable one is skipped (the lock step
/// refuses it, so only a hand-edited lock or spec has one, and the install step's metadata check
/// then finds what it left unexplained).
pub(crate) fn requirement_names(requirements: &[String]) -> Vec<String> {
    requirements
        .iter()
        .filter_map(|text| pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text).ok())
        .map(|requirement| crate::packaging::wheel_name::normalize_name(requirement.name.as_ref()))
        .collect()
}

/// `[[packages]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedPackage {
    /// Normalized name (PEP 503).
    pub name: String,
    pub version: String,
    /// Present when the package is needed on only some environments (e.g. one arch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<PackageRef>,
    /// Index the package came from (credentials removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default)]
    pub wheels: Vec<LockedWheel>,
    /// `[packages.tool]` (PEP 751: per-package tool data, like pyproject.toml's `[tool]`); only
    /// our own `litellm-layer` table is read, other tools' tables are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<PackageTool>,
}

/// `[packages.tool]` of one package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackageTool {
    #[serde(rename = "litellm-layer", default, skip_serializing_if = "Option::is_none")]
    pub(crate) litellm_layer: Option<PackageNotes>,
}

/// `[packages.tool.litellm-layer]`: what the index said about the locked version when locking,
/// and whether the layer ships it.
///
/// PEP 751 requires `[packages.tool]` data to be disposable: it must not change what an installer
/// installs. These notes are for readers of the lock (and `lock --check`); `layer` decides what it
/// skips from layer.toml's `[packages] exclude`, and the notes agree with that because `layer`
/// refuses a lock made from other inputs (docs/architecture.md §2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PackageNotes {
    /// PEP 592: `true`, or the index's reason, when the locked version is yanked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) yanked: Option<Yanked>,
    /// Why the layer does not ship this package although the lock pins it (so that pip, which
    /// installs every dependency of what it installs from a lock, and uv can install the lock),
    /// e.g. "in [packages] exclude of layer.toml".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) excluded: Option<String>,
}

/// A yanked mark as PEP 592 gives it: a flag, or a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Yanked {
    Flag(bool),
    Reason(String),
}

impl LockedPackage {
    /// `Some(reason)` when the lock records this version as yanked; the reason may be absent.
    pub(crate) fn yanked(&self) -> Option<Option<&str>> {
        match self.tool.as_ref()?.litellm_layer.as_ref()?.yanked.as_ref()? {
            Yanked::Flag(false) => None,
            Yanked::Flag(true) => Some(None),
            Yanked::Reason(reason) => Some(Some(reason.as_str()).filter(|r| !r.trim().is_empty())),
        }
    }

    /// The `[packages.tool]` table recording a yanked version (`reason` when the index gave one).
    pub fn yanked_tool(reason: Option<&str>) -> PackageTool {
        let yanked = match reason {
            Some(reason) if !reason.trim().is_empty() => Yanked::Reason(reason.to_string()),
            _ => Yanked::Flag(true),
        };
        PackageTool { litellm_layer: Some(PackageNotes { yanked: Some(yanked), excluded: None }) }
    }

    /// The reason the lock records for the layer not shipping this package, if any.
    pub fn excluded(&self) -> Option<&str> {
        self.tool.as_ref()?.litellm_layer.as_ref()?.excluded.as_deref()
    }

    /// Record (or, with `None`, remove) the reason the layer does not ship this package; the
    /// `[packages.tool]` table goes away when nothing is left in it.
    pub fn set_excluded(&mut self, reason: Option<String>) {
        let mut notes = self.tool.take().and_then(|tool| tool.litellm_layer).unwrap_or_default();
        notes.excluded = reason;
        self.tool = (notes != PackageNotes::default()).then_some(PackageTool { litellm_layer: Some(notes) });
    }
}

/// An entry of `dependencies`: enough to find the package in `packages`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageRef {
    pub name: String,
}

/// An entry of `wheels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LockedWheel {
    /// The wheel file name (tags decide which arch installs it).
    pub name: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<toml::value::Datetime>,
    pub hashes: Hashes,
}

/// `hashes`: sha256 is required by this tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha256: String,
}

impl Pylock {
    /// A lock-version 1.0 lock of `packages` with nothing else set (environments, inputs).
    pub fn of_packages(created_by: &str, packages: Vec<LockedPackage>) -> Pylock {
        Pylock {
            lock_version: "1.0".into(),
            environments: Vec::new(),
            requires_python: None,
            extras: Vec::new(),
            dependency_groups: Vec::new(),
            default_groups: Vec::new(),
            created_by: created_by.to_string(),
            packages,
            tool: None,
            warnings: Vec::new(),
        }
    }

    /// Read and check a lock file.
    pub fn load(path: &Path) -> Result<Pylock> {
        let text = fs_err::read_to_string(path).context("reading the lock (run `cargo xtask lock` to create it)")?;
        Self::parse(&text, path)
    }

    /// Parse lock text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Pylock> {
        let mut lock: Pylock =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        lock.warnings =
            crate::packaging::lock_fields::check_top_level(text, &lock.lock_version, &path.display().to_string())?;
        for package in &lock.packages {
            if package.wheels.is_empty() {
                bail!(
                    "{}: package {} {} has no wheels (sdists are never installed)",
                    path.display(),
                    package.name,
                    package.version
                );
            }
            for wheel in &package.wheels {
                crate::cache::Sha256Hex::parse(&wheel.hashes.sha256).with_context(|| {
                    format!("{}: package {} wheel {}: bad hashes.sha256", path.display(), package.name, wheel.name)
                })?;
            }
        }
        Ok(lock)
    }

    /// The `[tool.litellm-layer]` inputs, if present.
    pub(crate) fn inputs(&self) -> Option<&LockInputs> {
        self.tool.as_ref().map(|t| &t.litellm_layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_text(tool_tables: &str) -> String {
        format!(
            "lock-version = \"1.0\"\ncreated-by = \"test\"\n\n[[packages]]\nname = \"demo\"\nversion = \"1.0\"\nwheels = \
             [{{ name = \"demo-1.0-py3-none-any.whl\", url = \"https://files.example/demo-1.0-py3-none-any.whl\", \
             hashes = {{ sha256 = \"{}\" }} }}]\n{tool_tables}",
            "a".repeat(64)
        )
    }

    fn parse(text: &str) -> Pylock {
        Pylock::parse(text, Path::new("pylock.toml")).unwrap()
    }

    #[test]
    fn yanked_reason_in_the_package_tool_table_round_trips() {
        let lock = parse(&lock_text("[packages.tool.litellm-layer]\nyanked = \"broken wheel\"\n"));
        assert_eq!(lock.packages[0].yanked(), Some(Some("broken wheel")));
        assert_eq!(lock.packages[0].tool, Some(LockedPackage::yanked_tool(Some("broken wheel"))));
        let again = parse(&toml::to_string(&lock).unwrap());
        assert_eq!(again, lock);
    }

    #[test]
    fn yanked_without_a_reason_is_a_flag() {
        let flagged = parse(&lock_text("[packages.tool.litellm-layer]\nyanked = true\n"));
        assert_eq!(flagged.packages[0].yanked(), Some(None));
        assert_eq!(flagged.packages[0].tool, Some(LockedPackage::yanked_tool(None)));
        assert_eq!(LockedPackage::yanked_tool(Some("  ")), LockedPackage::yanked_tool(None));
        let not = parse(&lock_text("[packages.tool.litellm-layer]\nyanked = false\n"));
        assert_eq!(not.packages[0].yanked(), None);
        assert_eq!(parse(&lock_text("")).packages[0].yanked(), None);
    }

    #[test]
    fn an_exclusion_mark_round_trips_and_clearing_it_drops_the_table() {
        let lock =
            parse(&lock_text("[packages.tool.litellm-layer]\nexcluded = \"in [packages] exclude of layer.toml\"\n"));
        assert_eq!(lock.packages[0].excluded(), Some("in [packages] exclude of layer.toml"));
        assert_eq!(lock.packages[0].yanked(), None);
        assert_eq!(parse(&toml::to_string(&lock).unwrap()), lock);
        let mut package = lock.packages[0].clone();
        package.set_excluded(None);
        assert_eq!(package.tool, None);
        // Setting the mark keeps a yanked mark beside it.
        package.tool = Some(LockedPackage::yanked_tool(Some("broken")));
        package.set_excluded(Some("needed only by excluded hf-xet".into()));
        assert_eq!(package.yanked(), Some(Some("broken")));
        assert_eq!(package.excluded(), Some("needed only by excluded hf-xet"));
        package.set_excluded(None);
        assert_eq!(package.tool, Some(LockedPackage::yanked_tool(Some("broken"))));
    }

    #[test]
    fn another_tools_package_table_is_ignored() {
        let lock = parse(&lock_text("[packages.tool.other-tool]\nyanked = 3\nnotes = [\"x\"]\n"));
        assert_eq!(lock.packages[0].yanked(), None);
        assert_eq!(lock.packages[0].tool, Some(PackageTool { litellm_layer: None }));
        assert!(lock.warnings.is_empty(), "{:?}", lock.warnings);
    }

    #[test]
    fn a_malformed_yanked_mark_names_the_file() {
        let err = Pylock::parse(&lock_text("[packages.tool.litellm-layer]\nyanked = 3\n"), Path::new("pylock.toml"))
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("pylock.toml: "), "{msg}");
        assert!(msg.contains("yanked"), "{msg}");
    }
}
