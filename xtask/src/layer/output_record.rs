//! The output record, `<out>/output-record.json`: what a finished build read and what it wrote.
//!
//! It holds the digest of every input of the build ([`BuildInputs`]: the layer inputs deploy's
//! freshness stamp covers, plus the interpreter archives, `SOURCE_DATE_EPOCH`, the output path and
//! the xtask build itself) and the sha256 of every file the build left in the output directory.
//! A build whose inputs digest equals the record's, over an output whose every file still hashes
//! as recorded (nothing missing, nothing added), has nothing to do: `layer` says "up to date" and
//! stops (docs/architecture.md §14). The record also vouches for the previous zips a rebuild
//! copies compressed entries from (`pack::reuse`): only zips this very xtask build wrote, still
//! hashing as recorded, are trusted.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::spec::Compression;

/// The record's file name inside `layer-build-<arch>/`.
pub(crate) const RECORD_FILE: &str = "output-record.json";

/// `cargo xtask verify` writes its `import litellm` timing into this file after the build: its
/// presence is checked, its content is not.
const ANNOTATED_BY_VERIFY: &str = "size-report.json";

/// Bumped when the record's meaning changes, so older records are never trusted.
const RECORD_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: u32,
    /// [`BuildInputs::digest`] of the build that wrote the output.
    inputs: String,
    /// [`xtask_build`] of the binary that wrote it: compressed data is reused only from the same build.
    xtask_build: String,
    /// `[pack] compression` (its label): compressed data is reused only when it is the same.
    compression: String,
    /// Every entry of the output directory but this record, sorted by path.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// POSIX path relative to the output directory.
    path: String,
    kind: Kind,
    /// Files: the content's sha256, absent for the file `verify` annotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    executable: bool,
    /// Symlinks: the target as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Dir,
    File,
    Symlink,
}

/// The parts a build's output depends on, each fed to the digest as a name and a value.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildInputs {
    parts: Vec<(String, String)>,
}

impl BuildInputs {
    /// Add one named input.
    pub(crate) fn add(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.parts.push((name.to_string(), value.into()));
        self
    }

    /// The sha256 of the parts: each as its length-prefixed name and value, so no two different
    /// sets of parts run together into the same byte stream.
    pub(crate) fn digest(&self) -> String {
        let mut bytes = b"litellm-layer output inputs v1\n".to_vec();
        for (name, value) in &self.parts {
            for part in [name.as_bytes(), value.as_bytes()] {
                bytes.extend((part.len() as u64).to_le_bytes());
                bytes.extend(part);
            }
        }
        crate::cache::sha256_bytes(&bytes).to_string()
    }
}

/// This xtask binary: its version, path, size and modification time. Every rebuild of xtask
/// changes it (a new binary gets a new mtime), and with it the record's trust: outputs and
/// compressed data from another build of xtask are not reused. Hashing the binary would cost a
/// second on every run for the same answer.
pub(crate) fn xtask_build() -> Result<String> {
    let exe = std::env::current_exe().context("finding the running xtask binary")?;
    let meta = fs_err::metadata(&exe)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    Ok(format!("xtask {} {} ({} bytes, modified {modified})", env!("CARGO_PKG_VERSION"), exe.display(), meta.len()))
}

/// List `out_dir` as the record describes it (sorted; the record itself left out).
fn list_output(out_dir: &Path) -> Result<Vec<Entry>> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    // Files are hashed after the walk, on every core: the output is ~160 MB and hashing is most of
    // a rebuild's CPU time (crate::sha256).
    let mut to_hash: Vec<(usize, std::path::PathBuf)> = Vec::new();
    for entry in walkdir::WalkDir::new(out_dir).follow_links(false).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", out_dir.display()))?;
        let path = crate::layer::bytecode::relative_posix(out_dir, entry.path())?;
        if path == RECORD_FILE {
            continue;
        }
        let file_type = entry.file_type();
        let (kind, sha256, executable, target) = if file_type.is_dir() {
            (Kind::Dir, None, false, None)
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(entry.path())?.to_string_lossy().into_owned();
            (Kind::Symlink, None, false, Some(target))
        } else {
            let mode = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
            let executable = mode.permissions().mode() & 0o100 != 0;
            if path != ANNOTATED_BY_VERIFY {
                to_hash.push((entries.len(), entry.path().to_path_buf()));
            }
            (Kind::File, None, executable, None)
        };
        entries.push(Entry { path, kind, sha256, executable, target });
    }
    let paths: Vec<&Path> = to_hash.iter().map(|(_, path)| path.as_path()).collect();
    for ((index, _), digest) in to_hash.iter().zip(crate::cache::sha256_files(&paths)?) {
        entries[*index].sha256 = Some(digest.to_string());
    }
    Ok(entries)
}

/// Record that `out_dir` (the finished staging directory) was built from `inputs_digest`
/// (temp file + rename). Written last, so a record exists only beside a complete output.
pub(crate) fn write(out_dir: &Path, inputs_digest: &str, compression: Compression) -> Result<()> {
    let record = Record {
        format: RECORD_FORMAT,
        inputs: inputs_digest.to_string(),
        xtask_build: xtask_build()?,
        compression: compression.label().to_string(),
        entries: list_output(out_dir)?,
    };
    let mut text = serde_json::to_string(&record).context("serialising the output record")?;
    text.push('\n');
    crate::files::write_atomically(&out_dir.join(RECORD_FILE), text.as_bytes())
}

fn read(out_dir: &Path) -> Result<Record, String> {
    let path = out_dir.join(RECORD_FILE);
    let text = match fs_err::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("no {RECORD_FILE} (never built here, or built by an older xtask)"));
        }
        Err(error) => return Err(format!("{error}")),
    };
    let record: Record =
        serde_json::from_str(&text).map_err(|error| format!("{} is unreadable: {error}", path.display()))?;
    if record.format != RECORD_FORMAT {
        return Err(format!("{} has format {}, this xtask writes {RECORD_FORMAT}", path.display(), record.format));
    }
    Ok(record)
}

/// Whether `out_dir` is exactly what a build from `inputs_digest` leaves: `Ok(files checked)`, or
/// the first reason it is not.
pub(crate) fn up_to_date(out_dir: &Path, inputs_digest: &str) -> Result<usize, String> {
    let record = read(out_dir)?;
    if record.inputs != inputs_digest {
        return Err("an input changed since the last build (layer.toml, pylock.toml, the import profile, the \
                    interpreter, SOURCE_DATE_EPOCH, the output path or the xtask binary)"
            .to_string());
    }
    let now = list_output(out_dir).map_err(|error| format!("{error:#}"))?;
    let now: BTreeMap<&str, &Entry> = now.iter().map(|entry| (entry.path.as_str(), entry)).collect();
    let recorded: BTreeMap<&str, &Entry> = record.entries.iter().map(|entry| (entry.path.as_str(), entry)).collect();
    for (path, entry) in &recorded {
        match now.get(path) {
            None => return Err(format!("{} is missing", out_dir.join(path).display())),
            Some(found) if found != entry => {
                return Err(format!("{} changed since the last build", out_dir.join(path).display()));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = now.keys().find(|path| !recorded.contains_key(*path)) {
        return Err(format!("{} was not made by the last build", out_dir.join(extra).display()));
    }
    Ok(recorded.values().filter(|entry| entry.kind == Kind::File).count())
}

/// The recorded sha256 of `relative` in `out_dir`, when the record was written by this very xtask
/// build with the same `compression` (so its compressed data is what this build would write) and
/// lists the file.
pub(crate) fn recorded_sha256(out_dir: &Path, relative: &str, compression: Compression) -> Option<String> {
    let record = read(out_dir).ok()?;
    if record.xtask_build != xtask_build().ok()? || record.compression != compression.label() {
        return None;
    }
    record.entries.into_iter().find(|entry| entry.path == relative && entry.kind == Kind::File)?.sha256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("layer/python/bin")).unwrap();
        fs_err::write(dir.path().join("layer/python/bin/python3.11"), b"ELF").unwrap();
        std::os::unix::fs::symlink("python3.11", dir.path().join("layer/python/bin/python3")).unwrap();
        fs_err::write(dir.path().join("python-litellm-x86_64.zip"), b"PK zip").unwrap();
        fs_err::write(dir.path().join(ANNOTATED_BY_VERIFY), b"{}").unwrap();
        dir
    }

    #[test]
    fn a_recorded_output_is_up_to_date_until_anything_changes() {
        let out = output();
        write(out.path(), "digest-1", Compression::Deflate).unwrap();
        assert_eq!(up_to_date(out.path(), "digest-1"), Ok(3));
        assert_eq!(
            up_to_date(out.path(), "digest-2"),
            Err("an input changed since the last build (layer.toml, pylock.toml, the import profile, the \
                 interpreter, SOURCE_DATE_EPOCH, the output path or the xtask binary)"
                .to_string())
        );
        // verify writes its timing into the size report: still up to date.
        fs_err::write(out.path().join(ANNOTATED_BY_VERIFY), b"{\"import\": 1}").unwrap();
        assert_eq!(up_to_date(out.path(), "digest-1"), Ok(3));

        let zip = out.path().join("python-litellm-x86_64.zip");
        fs_err::write(&zip, b"PK zap").unwrap();
        assert_eq!(up_to_date(out.path(), "digest-1"), Err(format!("{} changed since the last build", zip.display())));
        fs_err::remove_file(&zip).unwrap();
        assert_eq!(up_to_date(out.path(), "digest-1"), Err(format!("{} is missing", zip.display())));
    }

    #[test]
    fn an_added_file_a_new_mode_or_a_moved_link_is_a_change() {
        let out = output();
        write(out.path(), "d", Compression::Deflate).unwrap();
        let added = out.path().join("layer/python/bin/__pycache__");
        fs_err::create_dir_all(&added).unwrap();
        assert_eq!(up_to_date(out.path(), "d"), Err(format!("{} was not made by the last build", added.display())));
        fs_err::remove_dir(&added).unwrap();

        let python = out.path().join("layer/python/bin/python3.11");
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(up_to_date(out.path(), "d"), Err(format!("{} changed since the last build", python.display())));
        fs_err::set_permissions(&python, std::fs::Permissions::from_mode(0o644)).unwrap();

        let link = out.path().join("layer/python/bin/python3");
        fs_err::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", &link).unwrap();
        assert_eq!(up_to_date(out.path(), "d"), Err(format!("{} changed since the last build", link.display())));
    }

    #[test]
    fn no_record_or_a_bad_one_is_never_up_to_date() {
        let out = output();
        assert_eq!(
            up_to_date(out.path(), "d"),
            Err("no output-record.json (never built here, or built by an older xtask)".to_string())
        );
        fs_err::write(out.path().join(RECORD_FILE), "{").unwrap();
        let reason = up_to_date(out.path(), "d").unwrap_err();
        assert!(reason.starts_with(&format!("{} is unreadable: ", out.path().join(RECORD_FILE).display())), "{reason}");
        assert_eq!(recorded_sha256(out.path(), "python-litellm-x86_64.zip", Compression::Deflate), None);
    }

    #[test]
    fn recorded_hashes_are_given_for_files_of_this_build_only() {
        let out = output();
        write(out.path(), "d", Compression::Deflate).unwrap();
        assert_eq!(
            recorded_sha256(out.path(), "python-litellm-x86_64.zip", Compression::Deflate),
            Some(crate::cache::sha256_bytes(b"PK zip").to_string())
        );
        assert_eq!(recorded_sha256(out.path(), "layer", Compression::Deflate), None);
        let path = out.path().join(RECORD_FILE);
        let text = fs_err::read_to_string(&path).unwrap();
        let other = text.replace(&xtask_build().unwrap(), "xtask 0.0.0 elsewhere");
        assert_ne!(text, other);
        fs_err::write(&path, other).unwrap();
        assert_eq!(recorded_sha256(out.path(), "python-litellm-x86_64.zip", Compression::Deflate), None);
    }

    #[test]
    fn inputs_cannot_run_together() {
        let digest = |parts: &[(&str, &str)]| {
            let mut inputs = BuildInputs::default();
            for (name, value) in parts {
                inputs.add(name, *value);
            }
            inputs.digest()
        };
        assert_ne!(digest(&[("a", "bc"), ("d", "")]), digest(&[("a", "b"), ("d", "c")]));
        assert_eq!(digest(&[("a", "b")]), digest(&[("a", "b")]));
    }
}
