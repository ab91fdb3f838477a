//! The deterministic zip writer of the layer (docs/architecture.md §8): entries sorted by name, one
//! mtime, fixed modes, no extra fields, a fixed deflate level, written to a temp file and renamed.

use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use fs_err as fs;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::DEFLATE_LEVEL;
use super::reuse::{PreviousZip, Reused};
use crate::layer::bytecode;

/// The zip mtime: `SOURCE_DATE_EPOCH` (seconds, UTC) when given, else 1980-01-01 00:00:00 (the
/// earliest DOS time). Times outside the DOS range are clamped; odd seconds round down (DOS
/// times have a 2-second resolution). <https://reproducible-builds.org/specs/source-date-epoch/>
pub(crate) fn zip_mtime(source_date_epoch: Option<u64>) -> Result<DateTime> {
    let Some(epoch) = source_date_epoch else {
        return Ok(DateTime::default());
    };
    // 1980-01-01 and 2107-12-31 23:59:58 UTC, the DOS date range.
    let epoch = epoch.clamp(315_532_800, 4_354_819_198);
    let utc = crate::source_date::utc(epoch as i64);
    DateTime::from_date_and_time(
        utc.year() as u16,
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second() / 2 * 2,
    )
    .map_err(|e| anyhow::anyhow!("SOURCE_DATE_EPOCH={epoch} is not a valid zip time: {e}"))
}

/// One entry of a zip we write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZipEntry {
    /// The name in the archive: POSIX, relative, no trailing slash.
    pub(crate) name: String,
    pub(crate) kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    /// A regular file; stored 0755 when `executable`, else 0644.
    File {
        path: PathBuf,
        executable: bool,
    },
    /// A symlink with a relative target inside the archive.
    Symlink {
        target: String,
    },
}

/// Write `entries` to `out` reproducibly: sorted by name, one mtime, fixed modes, no extra
/// fields, deflate at [`DEFLATE_LEVEL`]. Written to a temp file in the same directory and renamed
/// into place, so a failure leaves no half-written zip.
pub(crate) fn write_zip(entries: Vec<ZipEntry>, out: &Path, mtime: DateTime) -> Result<()> {
    write_zip_reusing(entries, out, mtime, DEFLATE_LEVEL, None).map(drop)
}

/// [`write_zip`] at the `zip` crate's deflate `level` (10 and above: zopfli), copying the
/// compressed data of each file `previous` holds unchanged instead of deflating it again
/// (`reuse.rs`); the bytes written are the same either way.
pub(crate) fn write_zip_reusing(
    mut entries: Vec<ZipEntry>,
    out: &Path,
    mtime: DateTime,
    level: i64,
    mut previous: Option<PreviousZip>,
) -> Result<Reused> {
    let mut reused = Reused::default();
    // Sort by the stored name: directories are stored with a trailing slash.
    entries.sort_by_cached_key(|entry| stored_name(entry).into_owned());
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].name == pair[1].name) {
        bail!("two files would be stored as {} in {}; remove one of them", pair[0].name, out.display());
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let temp = tempfile::Builder::new()
        .prefix(".xtask-zip-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temp file in {}", parent.display()))?;
    let base = SimpleFileOptions::default().last_modified_time(mtime).large_file(false);
    let mut writer = ZipWriter::new(BufWriter::new(temp.as_file()));
    for entry in &entries {
        let name = &entry.name;
        if let Err(why) = crate::files::enclosed_relative_path(name) {
            bail!("refusing to store {name:?} in {}: not a clean relative path ({why})", out.display());
        }
        let result = match &entry.kind {
            EntryKind::Dir => writer.add_directory(stored_name(entry), base.unix_permissions(0o755)),
            EntryKind::Symlink { target } => writer.add_symlink(name, target, base.unix_permissions(0o777)),
            EntryKind::File { path, executable } => {
                // A zip inside the zip (site-packages.zip) is deflated already: deflating it again
                // costs seconds and saves nothing, so it is stored.
                let options = if name.ends_with(".zip") {
                    base.compression_method(CompressionMethod::Stored)
                } else {
                    base.compression_method(CompressionMethod::Deflated).compression_level(Some(level))
                };
                let mode = if *executable { 0o755 } else { 0o644 };
                let options = options.unix_permissions(mode);
                let content = fs::read(path)?;
                let deflated = !name.ends_with(".zip");
                let same = previous.as_mut().filter(|_| deflated).and_then(|p| p.matching_entry(name, &content, mode));
                match (same, previous.as_mut()) {
                    (Some(index), Some(previous)) => {
                        reused.entries += 1;
                        reused.bytes += content.len() as u64;
                        previous.raw_entry(index).and_then(|raw| writer.raw_copy_file_touch(raw, mtime, Some(mode)))
                    }
                    _ => writer.start_file(name, options).and_then(|()| writer.write_all(&content).map_err(Into::into)),
                }
            }
        };
        result.with_context(|| format!("writing {name} into {}", out.display()))?;
    }
    let mut buffered = writer.finish().with_context(|| format!("finishing {}", out.display()))?;
    buffered.flush().with_context(|| format!("writing {}", out.display()))?;
    drop(buffered);
    temp.as_file().sync_all().with_context(|| format!("writing {}", out.display()))?;
    bytecode::set_mode(temp.path(), 0o644)?;
    temp.persist(out).with_context(|| format!("renaming the new zip to {}", out.display()))?;
    Ok(reused)
}

/// The name an entry is stored under: directories end with `/`.
fn stored_name(entry: &ZipEntry) -> std::borrow::Cow<'_, str> {
    match entry.kind {
        EntryKind::Dir => format!("{}/", entry.name).into(),
        _ => entry.name.as_str().into(),
    }
}

/// Every file, directory and symlink under `root` as zip entries named `prefix/...` (sorted later
/// by [`write_zip`]). A symlink must have a relative target that stays inside `root`; anything
/// else (absolute or escaping targets, sockets, devices) is an error naming the path.
pub(crate) fn tree_entries(root: &Path, prefix: &str) -> Result<Vec<ZipEntry>> {
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let relative = bytecode::relative_posix(root, entry.path())?;
        let name = if prefix.is_empty() { relative.clone() } else { format!("{prefix}/{relative}") };
        let file_type = entry.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_file() {
            EntryKind::File { path: entry.path().to_path_buf(), executable: is_executable(entry.path())? }
        } else if file_type.is_symlink() {
            let target = fs::read_link(entry.path())?;
            let target_text = target
                .to_str()
                .with_context(|| format!("symlink {relative} has a non-UTF-8 target; replace it with a copy"))?;
            if !symlink_stays_inside(&relative, &target) {
                bail!(
                    "symlink {relative} -> {target_text} points outside {}: the layer zip only stores links to \
                     files inside the layer; replace it with a copy of its target",
                    root.display()
                );
            }
            EntryKind::Symlink { target: target_text.to_string() }
        } else {
            bail!("{} is neither a file, a directory nor a symlink; remove it", entry.path().display());
        };
        entries.push(ZipEntry { name, kind });
    }
    Ok(entries)
}

/// Whether a link at `link` (relative to the root) to the relative `target` resolves inside the root.
pub(super) fn symlink_stays_inside(link: &str, target: &Path) -> bool {
    let mut depth: Vec<&str> = link.split('/').collect();
    depth.pop();
    let mut level = depth.len() as i64;
    for component in target.components() {
        match component {
            Component::Normal(_) => level += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn is_executable(path: &Path) -> Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(fs::metadata(path)?.permissions().mode() & 0o100 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}
