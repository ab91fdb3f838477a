//! Safe extraction of interpreter archives (`.tar.gz` / `.tar.zst`), every entry treated as hostile.
//!
//! The compression is chosen by the file's magic bytes, never by its name. Every entry's path is
//! checked before anything is written: absolute paths, `..`, NUL bytes, links that resolve outside
//! the root, device and FIFO entries and duplicate paths are refused with the entry named. Limits
//! on unpacked bytes, entry count and compression ratio stop decompression bombs. Extraction goes
//! into a fresh staging directory beside the destination, which is renamed into place only when
//! the whole archive was unpacked, so a failure leaves nothing half-written.
//!
//! The checks follow the approach of uv's `enclosed_name` (astral-sh/uv, `uv-extract`): normalise
//! the path lexically and refuse what does not stay inside the root, then never write through a
//! symlink.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};

use crate::progress::human_bytes;

pub(crate) mod zip_layout;

/// Limits that stop decompression bombs. The defaults are far above a real python-build-standalone
/// archive (100-250 MB unpacked, about 5,000-10,000 entries, a compression ratio of 3-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most bytes the decompressed tar stream may hold (headers and padding included).
    pub(crate) max_unpacked_bytes: u64,
    /// Most entries the archive may hold.
    pub(crate) max_entries: u64,
    /// Largest ratio of decompressed to compressed bytes.
    pub(crate) max_ratio: u64,
    /// The ratio is only judged once this many bytes were decompressed (small archives of tiny
    /// files are mostly tar padding and compress very well).
    pub(crate) ratio_grace_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_unpacked_bytes: 2_000_000_000, max_entries: 100_000, max_ratio: 50, ratio_grace_bytes: 64_000_000 }
    }
}

/// The compression of an archive, as told by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Compression {
    #[serde(rename = "tar.gz")]
    Gzip,
    #[serde(rename = "tar.zst")]
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        })
    }
}

/// `ELOOP` on Linux: too many levels of symbolic links.
const ELOOP: i32 = 40;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Why an archive was refused. Callers and tests match on the variants; the messages name the
/// archive and the entry and say what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error(
        "{archive}: not a .tar.gz or .tar.zst archive: found {found} (expected gzip magic 1f 8b or zstd magic \
         28 b5 2f fd); check that the file is the python-build-standalone download and not an error page"
    )]
    UnknownFormat { archive: String, found: String },
    #[error("{archive}: refusing entry {entry:?}: {reason}; the archive is unsafe, get it from a trusted source")]
    UnsafeEntry { archive: String, entry: String, reason: Refusal },
    #[error(
        "{archive}: refusing to unpack: {what} (limit {limit}); this looks like a decompression bomb, \
         not an interpreter archive"
    )]
    TooBig { archive: String, what: String, limit: String },
    #[error("{archive}: the archive is truncated or corrupt ({detail}); download it again")]
    Corrupt { archive: String, detail: String },
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("absolute path")]
    AbsolutePath,
    #[error("path contains '..'")]
    ParentDir,
    #[error("name contains a NUL byte")]
    NulByte,
    #[error("name is not UTF-8")]
    NotUtf8,
    #[error("name contains the control character {0:?}")]
    ControlCharacter(char),
    #[error("empty name")]
    Empty,
    #[error("symlink to {target:?} resolves outside the archive root")]
    SymlinkEscape { target: String },
    #[error("symlink target {target:?} has '..' after a directory name, which could escape through another link")]
    SymlinkIndirect { target: String },
    #[error("hard link to {target:?} resolves outside the archive root")]
    HardlinkEscape { target: String },
    #[error("hard link to {target:?}, which is not a regular file earlier in the archive")]
    HardlinkTarget { target: String },
    #[error("{kind} entries are not allowed (only files, directories and links)")]
    SpecialFile { kind: String },
    #[error("duplicate path (the archive already had an entry with this name)")]
    Duplicate,
    #[error("it would be written through {through:?}, which is a symlink or a file")]
    ThroughLink { through: String },
    #[error("it conflicts with a directory created for an earlier entry")]
    Conflict,
    #[error("its PAX header gives size {pax:?} but its tar header {header}; readers would disagree on where it ends")]
    PaxSize { pax: String, header: u64 },
    #[error("symlink to {target:?} points at nothing in the archive")]
    SymlinkDangles { target: String },
    #[error("symlink to {target:?} is part of a loop")]
    SymlinkLoop { target: String },
    #[error("it is a second top-level directory (the first was {first:?}); an interpreter archive has one")]
    SecondTopLevel { first: String },
    #[error("unsafe name: {0}")]
    UnsafeName(crate::files::UnsafePath),
}

impl From<crate::files::UnsafePath> for Refusal {
    fn from(unsafe_path: crate::files::UnsafePath) -> Refusal {
        use crate::files::UnsafePath;
        match unsafe_path {
            UnsafePath::Empty => Refusal::Empty,
            UnsafePath::Absolute => Refusal::AbsolutePath,
            UnsafePath::NulByte => Refusal::NulByte,
            UnsafePath::ControlCharacter(control) => Refusal::ControlCharacter(control),
            UnsafePath::ParentDir => Refusal::ParentDir,
            other @ (UnsafePath::Backslash | UnsafePath::DriveLetter | UnsafePath::EmptyComponent) => {
                Refusal::UnsafeName(other)
            }
        }
    }
}

/// What an extraction unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    pub(crate) compression: Compression,
    pub(crate) entries: u64,
    pub(crate) files: u64,
    /// Sum of the regular files' sizes.
    pub(crate) file_bytes: u64,
    pub(crate) compressed_bytes: u64,
}

/// Tell the compression from the first bytes of `archive`.
pub(crate) fn sniff(archive: &Path) -> Result<Compression> {
    let mut head = Vec::with_capacity(512);
    fs_err::File::open(archive)?
        .take(512)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", archive.display()))?;
    if head.starts_with(GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Compression::Zstd)
    } else {
        Err(ArchiveError::UnknownFormat { archive: archive.display().to_string(), found: describe_magic(&head) }.into())
    }
}

/// Say what a file that is neither gzip nor zstd looks like, for the error message.
fn describe_magic(head: &[u8]) -> String {
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let hex = hex.join(" ");
    if head.is_empty() {
        "an empty file".to_string()
    } else if head.starts_with(b"PK\x03\x04") {
        format!("a zip archive (bytes {hex})")
    } else if head.starts_with(b"\xfd7zXZ") {
        format!("an xz stream (bytes {hex})")
    } else if head.starts_with(b"BZh") {
        format!("a bzip2 stream (bytes {hex})")
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        format!("an uncompressed tar archive (bytes {hex})")
    } else if head.trim_ascii_start().starts_with(b"<") {
        format!("text starting with '<', probably an HTML page (bytes {hex})")
    } else {
        format!("bytes {hex}")
    }
}

/// Extract `archive` into `destination`, which must not exist yet. The archive is unpacked into a
/// fresh staging directory beside `destination` and renamed into place only on success.
pub(crate) fn extract(archive: &Path, destination: &Path, limits: &Limits) -> Result<Extracted> {
    if fs_err::symlink_metadata(destination).is_ok() {
        bail!("{} already exists; refusing to extract {} over it", destination.display(), archive.display());
    }
    let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let extracted = unpack_into(archive, staging.path(), limits)?;
    fs_err::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))?;
    let staging_path = staging.keep();
    if let Err(error) = fs_err::rename(&staging_path, destination) {
        let _ = fs_err::remove_dir_all(&staging_path);
        return Err(error).with_context(|| format!("moving the extracted archive into {}", destination.display()));
    }
    Ok(extracted)
}

/// Counters shared by the reader stack, and the limit that tripped, if any.
#[derive(Default)]
struct Meter {
    compressed: Cell<u64>,
    decompressed: Cell<u64>,
    tripped: Cell<Option<(String, String)>>,
}

/// Counts the compressed bytes read from the file.
struct CountCompressed<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for CountCompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.set(self.meter.compressed.get() + n as u64);
        Ok(n)
    }
}

/// Counts decompressed bytes and fails the read once a limit is passed.
struct Limited<R> {
    inner: R,
    meter: Rc<Meter>,
    limits: Limits,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.meter.decompressed.get() + n as u64;
        self.meter.decompressed.set(total);
        let compressed = self.meter.compressed.get().max(1);
        let tripped = if total > self.limits.max_unpacked_bytes {
            Some((
                format!("it unpacks to more than {}", human_bytes(self.limits.max_unpacked_bytes)),
                human_bytes(self.limits.max_unpacked_bytes),
            ))
        } else if total > self.limits.ratio_grace_bytes && total / compressed > self.limits.max_ratio {
            Some((
                format!(
                    "compression ratio above {}:1 ({} from {})",
                    self.limits.max_ratio,
                    human_bytes(total),
                    human_bytes(compressed)
                ),
                format!("{}:1", self.limits.max_ratio),
            ))
        } else {
            None
        };
        if let Some(why) = tripped {
            self.meter.tripped.set(Some(why));
            return Err(io::Error::other("decompression limit exceeded"));
        }
        Ok(n)
    }
}

/// One archive entry's kind, remembered to refuse duplicates and check hard link targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File,
    Dir,
    Link,
}

/// Unpack every entry of `archive` under `root` (an existing, empty directory).
pub(crate) fn unpack_into(archive: &Path, root: &Path, limits: &Limits) -> Result<Extracted> {
    let compression = sniff(archive)?;
    let archive_name = archive.display().to_string();
    let meter = Rc::new(Meter::default());
    let file = CountCompressed { inner: fs_err::File::open(archive)?, meter: meter.clone() };
    let decoder: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(file)
                .with_context(|| format!("starting the zstd decoder for {archive_name}"))?,
        ),
    };
    let mut tar = tar::Archive::new(Limited { inner: decoder, meter: meter.clone(), limits: *limits });
    let read_error = |error: io::Error| -> anyhow::Error {
        match meter.tripped.take() {
            Some((what, limit)) => ArchiveError::TooBig { archive: archive_name.clone(), what, limit }.into(),
            None => ArchiveError::Corrupt { archive: archive_name.clone(), detail: error.to_string() }.into(),
        }
    };
    let refuse = |entry: &[u8], reason: Refusal| -> anyhow::Error {
        ArchiveError::UnsafeEntry {
            archive: archive_name.clone(),
            entry: String::from_utf8_lossy(entry).replace('\0', "\\0"),
            reason,
        }
        .into()
    };

    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut top_level: Option<String> = None;
    let mut symlinks: Vec<(Vec<u8>, PathBuf, String)> = Vec::new();
    let mut extracted = Extracted { compression, entries: 0, files: 0, file_bytes: 0, compressed_bytes: 0 };
    for entry in tar.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        extracted.entries += 1;
        if extracted.entries > limits.max_entries {
            return Err(ArchiveError::TooBig {
                archive: archive_name.clone(),
                what: format!("it holds more than {} entries", limits.max_entries),
                limit: limits.max_entries.to_string(),
            }
            .into());
        }
        let raw_path = entry.path_bytes().into_owned();
        let components = match enclosed_components(&raw_path) {
            Ok(components) => components,
            // A `./` entry for the root itself is common (`tar -C dir .`) and harmless.
            Err(Refusal::Empty) if entry_type.is_dir() => continue,
            Err(reason) => return Err(refuse(&raw_path, reason)),
        };
        let relative = components.join("/");
        if seen.contains_key(&relative) {
            return Err(refuse(&raw_path, Refusal::Duplicate));
        }
        // One top-level directory (`python/`): a second one could shadow the first in tools that
        // pick a directory by name, and is never part of an interpreter archive.
        match &top_level {
            None => top_level = Some(components[0].clone()),
            Some(first) if *first != components[0] => {
                return Err(refuse(&raw_path, Refusal::SecondTopLevel { first: first.clone() }));
            }
            Some(_) => {}
        }
        // A PAX `size` record overrides the header's size field for readers that know PAX and is
        // ignored by those that do not, so the two must agree.
        // <https://pubs.opengroup.org/onlinepubs/9799919799/utilities/pax.html#tag_20_94_13_03>
        let header_size = entry.header().entry_size().map_err(read_error)?;
        if let Some(extensions) = entry.pax_extensions().map_err(read_error)? {
            for extension in extensions {
                let extension = extension.map_err(read_error)?;
                if extension.key_bytes() == b"size" {
                    let pax = String::from_utf8_lossy(extension.value_bytes()).to_string();
                    if pax.parse::<u64>() != Ok(header_size) {
                        return Err(refuse(&raw_path, Refusal::PaxSize { pax, header: header_size }));
                    }
                }
            }
        }
        let special = if entry_type.is_character_special() {
            Some("character device")
        } else if entry_type.is_block_special() {
            Some("block device")
        } else if entry_type.is_fifo() {
            Some("FIFO")
        } else if entry_type.is_gnu_sparse() {
            Some("sparse file")
        } else {
            None
        };
        if let Some(kind) = special {
            return Err(refuse(&raw_path, Refusal::SpecialFile { kind: kind.to_string() }));
        }
        let path = prepare_parents(root, &components).map_err(|reason| match reason {
            PrepareError::Refused(reason) => refuse(&raw_path, reason),
            PrepareError::Io(error) => error,
        })?;

        if entry_type.is_dir() {
            match fs_err::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(refuse(&raw_path, Refusal::Conflict)),
                Err(_) => fs_err::create_dir(&path)?,
            }
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            seen.insert(relative, Seen::Dir);
        } else if entry_type.is_file() || entry_type == tar::EntryType::Continuous {
            let size = entry.header().entry_size().map_err(read_error)?;
            if extracted.file_bytes.saturating_add(size) > limits.max_unpacked_bytes {
                return Err(ArchiveError::TooBig {
                    archive: archive_name.clone(),
                    what: format!(
                        "entry {relative:?} alone would take it past {}",
                        human_bytes(limits.max_unpacked_bytes)
                    ),
                    limit: human_bytes(limits.max_unpacked_bytes),
                }
                .into());
            }
            let mode = entry.header().mode().map_err(read_error)?;
            // Modes are normalised: no setuid, setgid or sticky bits; the executable bit is kept.
            let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            let mut out = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(refuse(&raw_path, Refusal::Conflict));
                }
                Err(error) => return Err(error).with_context(|| format!("creating {}", path.display())),
            };
            let written = io::copy(&mut entry, &mut out).map_err(read_error)?;
            drop(out);
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            extracted.files += 1;
            extracted.file_bytes += written;
            seen.insert(relative, Seen::File);
        } else if entry_type.is_symlink() {
            let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
            check_symlink_target(&components, &target).map_err(|reason| refuse(&raw_path, reason))?;
            let target = std::str::from_utf8(&target).map_err(|_| refuse(&raw_path, Refusal::NotUtf8))?;
            std::os::unix::fs::symlink(target, &path).map_err(|error| {
                if error.kind() == io::ErrorKind::AlreadyExists {
                    refuse(&raw_path, Refusal::Conflict)
                } else {
                    anyhow::Error::new(error).context(format!("creating the symlink {}", path.display()))
                }
            })?;
            symlinks.push((raw_path.clone(), path.clone(), target.to_string()));
            seen.insert(relative, Seen::Link);
        } else if entry_type.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
            let shown = String::from_utf8_lossy(&target).replace('\0', "\\0");
            let target_components = match enclosed_components(&target) {
                Ok(components) => components,
                Err(Refusal::NulByte) => return Err(refuse(&raw_path, Refusal::NulByte)),
                Err(_) => return Err(refuse(&raw_path, Refusal::HardlinkEscape { target: shown })),
            };
            // Only a regular file extracted earlier (whose parents were checked to be real
            // directories) may be linked to, so the link can never reach outside the root.
            if seen.get(&target_components.join("/")) != Some(&Seen::File) {
                return Err(refuse(&raw_path, Refusal::HardlinkTarget { target: shown }));
            }
            let source = target_components.iter().fold(root.to_path_buf(), |path, c| path.join(c));
            fs_err::hard_link(&source, &path)?;
            seen.insert(relative, Seen::File);
        } else {
            let kind = format!("{entry_type:?}");
            return Err(refuse(&raw_path, Refusal::SpecialFile { kind }));
        }
    }
    // Every symlink must lead to something the archive holds. Following them is safe here: each
    // target was checked to stay inside the root, and only links and directories of this archive
    // are on the way.
    for (raw_path, path, target) in &symlinks {
        if let Err(error) = std::fs::metadata(path) {
            let reason = if error.raw_os_error() == Some(ELOOP) {
                Refusal::SymlinkLoop { target: target.clone() }
            } else {
                Refusal::SymlinkDangles { target: target.clone() }
            };
            return Err(refuse(raw_path, reason));
        }
    }
    // Read to the end of the compressed stream so its checksum and length are verified, under the
    // same limits.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_error)?;
    extracted.compressed_bytes = meter.compressed.get();
    Ok(extracted)
}

/// A tar path split into its components, or why it is refused. Tar writers put `./` before names
/// (`tar -C dir .`), `/` after directories and sometimes `//` inside; those `.` and empty
/// components name nothing and are dropped. What is left must pass the crate's one relative-path
/// check (`crate::files::enclosed_relative_path`): no `..`, no control character, no backslash
/// or drive letter; an absolute name stays absolute and is refused.
pub(crate) fn enclosed_components(raw: &[u8]) -> Result<Vec<String>, Refusal> {
    if raw.contains(&0) {
        return Err(Refusal::NulByte);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    let components: Vec<&str> = text.split('/').filter(|component| !matches!(*component, "" | ".")).collect();
    let normalised = format!("{}{}", if text.starts_with('/') { "/" } else { "" }, components.join("/"));
    crate::files::enclosed_relative_path(&normalised)?;
    Ok(components.into_iter().map(str::to_string).collect())
}

/// Check that a symlink at `link` (components under the root) pointing at `target` stays inside
/// the root. A target may climb with leading `..` no higher than the link's own directory, and may
/// not hold `..` after a name: such a path could pass through another symlink and climb out.
pub(crate) fn check_symlink_target(link: &[String], target: &[u8]) -> Result<(), Refusal> {
    let shown = String::from_utf8_lossy(target).replace('\0', "\\0");
    if target.contains(&0) {
        return Err(Refusal::NulByte);
    }
    let text = std::str::from_utf8(target).map_err(|_| Refusal::NotUtf8)?;
    if let Some(control) = text.chars().find(|c| c.is_control()) {
        return Err(Refusal::ControlCharacter(control));
    }
    if text.is_empty() {
        return Err(Refusal::SymlinkEscape { target: shown });
    }
    if text.starts_with('/') {
        return Err(Refusal::SymlinkEscape { target: shown });
    }
    let mut climbs = 0usize;
    let mut seen_name = false;
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." if seen_name => return Err(Refusal::SymlinkIndirect { target: shown }),
            ".." => climbs += 1,
            _ => seen_name = true,
        }
    }
    let depth = link.len().saturating_sub(1);
    if climbs > depth {
        return Err(Refusal::SymlinkEscape { target: shown });
    }
    Ok(())
}

enum PrepareError {
    Refused(Refusal),
    Io(anyhow::Error),
}

/// Create the missing parent directories of an entry, refusing to pass through anything that is
/// not a real directory (a symlink created by an earlier entry, or a file). Returns the entry's path.
fn prepare_parents(root: &Path, components: &[String]) -> Result<PathBuf, PrepareError> {
    let mut path = root.to_path_buf();
    let (last, parents) = components.split_last().expect("enclosed_components is never empty");
    for (index, component) in parents.iter().enumerate() {
        path.push(component);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(PrepareError::Refused(Refusal::ThroughLink { through: components[..=index].join("/") }));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs_err::create_dir(&path).map_err(|e| PrepareError::Io(e.into()))?;
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| PrepareError::Io(e.into()))?;
            }
            Err(error) => {
                return Err(PrepareError::Io(
                    anyhow::Error::new(error).context(format!("inspecting {}", path.display())),
                ));
            }
        }
    }
    path.push(last);
    Ok(path)
}

/// The byte-level tar writer of the tests, shared with the integration tests outside `src/`.
#[cfg(test)]
#[path = "../tests/it/support/tar_bytes.rs"]
#[allow(dead_code)]
mod tar_bytes;

#[cfg(test)]
mod tests;
