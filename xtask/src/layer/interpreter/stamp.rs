//! The runtime stamp, `<out>/runtime-stamp.json` (beside `layer/`, so it never ships): the archive
//! hash, the prune rules and the files the runtime step left, so an unchanged runtime is copied
//! from the previous build instead of being extracted and pruned again.
//!
//! Only the files listed in the stamp are copied: whatever later steps added to the tree
//! (site-packages, bytecode, sitecustomize.py) is rebuilt by those steps. Each listed file carries
//! its sha256, and a file whose content no longer hashes to it (a same-size edit included), or
//! that is missing, disables the reuse: the SBOM names the pinned archive, so only a tree proven
//! to be that archive's, pruned by the same rules, may ship under its hash.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{RuntimeOutput, python_root_of};
use crate::arch::Arch;
use crate::cache::Sha256Hex;
use crate::progress::Progress;
use crate::python_version::PythonVersion;
use crate::spec::StdlibRule;

pub(crate) const STAMP_FILE: &str = "runtime-stamp.json";

/// Bump when the runtime step changes what it produces, so old outputs are not reused.
const STAMP_FORMAT: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stamp {
    format: u32,
    sha256: String,
    prune_rules: Vec<StdlibRule>,
    minor: String,
    arch: String,
    output: RuntimeOutput,
    files: Vec<StampEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntryKind {
    Dir,
    File,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StampEntry {
    /// POSIX path relative to the python root.
    path: String,
    kind: EntryKind,
    #[serde(default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    executable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    /// The content's sha256 (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// List the python root as it is now (sorted; directories before their contents).
fn list_tree(python_root: &Path) -> Result<Vec<StampEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    // Hashed after the walk, on every core (crate::cache::sha256_files).
    let mut to_hash: Vec<(usize, std::path::PathBuf)> = Vec::new();
    let mut walk =
        walkdir::WalkDir::new(python_root).follow_root_links(false).min_depth(1).sort_by_file_name().into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("walking {}", python_root.display()))?;
        let relative = entry.path().strip_prefix(python_root).context("walk left the python root")?;
        let path = relative.to_string_lossy().to_string();
        let file_type = entry.file_type();
        // The install step replaces site-packages as a whole: the runtime owns the directory only.
        if file_type.is_dir() && is_site_packages(&path) {
            walk.skip_current_dir();
        }
        let item = if file_type.is_dir() {
            StampEntry { path, kind: EntryKind::Dir, size: 0, executable: false, target: None, sha256: None }
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(entry.path())?.to_string_lossy().to_string();
            StampEntry {
                path,
                kind: EntryKind::Symlink,
                size: 0,
                executable: false,
                target: Some(target),
                sha256: None,
            }
        } else {
            let meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            to_hash.push((entries.len(), entry.path().to_path_buf()));
            StampEntry { path, kind: EntryKind::File, size: meta.len(), executable, target: None, sha256: None }
        };
        entries.push(item);
    }
    let paths: Vec<&Path> = to_hash.iter().map(|(_, path)| path.as_path()).collect();
    for ((index, _), digest) in to_hash.iter().zip(crate::cache::sha256_files(&paths)?) {
        entries[*index].sha256 = Some(digest.to_string());
    }
    Ok(entries)
}

/// A digest of everything under `python_root` (paths, kinds, modes, link targets and file
/// contents; site-packages' contents excluded): what a cached interpreter must still hash to
/// before it is run again.
pub(crate) fn tree_digest(python_root: &Path) -> Result<String> {
    let listing = serde_json::to_vec(&list_tree(python_root)?).context("serialising the tree listing")?;
    Ok(crate::cache::sha256_bytes(&listing).to_string())
}

/// `lib/python3.X/site-packages`.
fn is_site_packages(relative: &str) -> bool {
    let parts: Vec<&str> = relative.split('/').collect();
    matches!(parts.as_slice(), ["lib", python, "site-packages"] if python.starts_with("python3"))
}

/// Record the runtime just built in `<out_dir>/runtime-stamp.json` (temp file + rename).
pub(crate) fn write(out_dir: &Path, output: &RuntimeOutput, prune_rules: &[StdlibRule]) -> Result<()> {
    write_listed(out_dir, output, prune_rules, list_tree(&output.python_root)?)
}

/// [`write`] with the tree's listing already made.
fn write_listed(
    out_dir: &Path,
    output: &RuntimeOutput,
    prune_rules: &[StdlibRule],
    files: Vec<StampEntry>,
) -> Result<()> {
    let stamp = Stamp {
        format: STAMP_FORMAT,
        sha256: output.sha256.clone(),
        prune_rules: prune_rules.to_vec(),
        minor: output.minor.dotted(),
        arch: output.arch.clone(),
        output: output.clone(),
        files,
    };
    // Paths are stored relative to the build directory, which is renamed after the build.
    let mut stamp = stamp;
    stamp.output.relocate(out_dir, Path::new(""));
    let json = serde_json::to_vec(&stamp).context("serialising the runtime stamp")?;
    crate::files::write_atomically(&out_dir.join(STAMP_FILE), &json)
}

/// When `previous` holds a runtime from the same archive, prune rules, minor version and arch,
/// copy its listed files into `out_dir` (or use it as is when it is `out_dir`) and return its
/// output. `None` means: build it.
pub(crate) fn reuse(
    previous: &Path,
    out_dir: &Path,
    sha256: &Sha256Hex,
    prune_rules: &[StdlibRule],
    minor: PythonVersion,
    arch: Arch,
    progress: &Progress,
) -> Result<Option<RuntimeOutput>> {
    let stamp_path = previous.join(STAMP_FILE);
    let Ok(text) = fs_err::read(&stamp_path) else {
        return Ok(None);
    };
    let stamp: Stamp = match serde_json::from_slice(&text) {
        Ok(stamp) => stamp,
        Err(error) => {
            progress.note(format!("ignoring {} ({error}); extracting the runtime again", stamp_path.display()));
            return Ok(None);
        }
    };
    let differences: Vec<&str> = [
        (stamp.format != STAMP_FORMAT, "an older xtask made it"),
        (stamp.sha256 != sha256.as_str(), "the archive hash changed"),
        (stamp.prune_rules != prune_rules, "the stdlib prune rules changed"),
        (stamp.minor != minor.dotted(), "the python version changed"),
        (stamp.arch != arch.lambda_name(), "the architecture changed"),
    ]
    .into_iter()
    .filter_map(|(differs, why)| differs.then_some(why))
    .collect();
    if !differences.is_empty() {
        progress.note(format!("not reusing the previous runtime: {}", differences.join(", ")));
        return Ok(None);
    }
    let previous_root = python_root_of(previous);
    let checked = progress.step(format!("check the previous runtime ({} files)", stamp.files.len()), || {
        let Ok(now) = list_tree(&previous_root) else {
            return Some("it cannot be listed".to_string());
        };
        let now: std::collections::BTreeMap<&str, &StampEntry> = now.iter().map(|e| (e.path.as_str(), e)).collect();
        let changed = stamp.files.iter().find(|e| now.get(e.path.as_str()) != Some(e))?;
        Some(format!("{} changed since it was built", previous_root.join(&changed.path).display()))
    });
    if let Some(why) = checked {
        progress.note(format!("not reusing the previous runtime: {why}"));
        return Ok(None);
    }

    let mut output = stamp.output.clone();
    output.python_root = python_root_of(previous);
    output.interpreter = output.python_root.join("bin").join(minor.interpreter_name());
    output.relocate(previous, out_dir);
    output.reused = true;
    if previous != out_dir {
        progress.step(format!("reuse cpython {} ({arch})", output.version), || {
            copy_listed(&stamp.files, &previous_root, &output.python_root)
        })?;
        // The copy holds exactly the files just checked against the stamp: no second hashing pass.
        write_listed(out_dir, &output, prune_rules, stamp.files)?;
    }
    progress.note(format!(
        "reused the runtime of {} (sha256 {}, same stdlib prune rules): {} in {} files",
        previous.display(),
        output.sha256,
        crate::progress::human_bytes(output.prune.bytes_after),
        output.prune.files_after
    ));
    Ok(Some(output))
}

fn copy_listed(files: &[StampEntry], from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if fs_err::symlink_metadata(to).is_ok() {
        anyhow::bail!("{} already exists; the runtime step writes into a fresh build directory", to.display());
    }
    fs_err::create_dir_all(to)?;
    for entry in files {
        let source = from.join(&entry.path);
        let destination = to.join(&entry.path);
        match entry.kind {
            EntryKind::Dir => fs_err::create_dir_all(&destination)?,
            EntryKind::File => {
                fs_err::copy(&source, &destination)?;
                let mode = if entry.executable { 0o755 } else { 0o644 };
                fs_err::set_permissions(&destination, std::fs::Permissions::from_mode(mode))?;
            }
            EntryKind::Symlink => {
                let target = entry.target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &destination)
                    .with_context(|| format!("creating the symlink {}", destination.display()))?;
            }
        }
    }
    Ok(())
}
