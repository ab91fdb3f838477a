//! Share unchanged files with the previous output before the staging directory replaces it.
//!
//! Deleting the previous output is most of a warm rebuild's wall time on a disk that discards
//! freed blocks at once (4,500 files took 11–14 s here; docs/architecture.md §14), while
//! unlinking a name whose data is still linked elsewhere frees nothing. So, once the staging
//! directory is complete and nothing writes into it any more, each of its regular files whose
//! content and mode equal the previous output's file at the same path is replaced by a hard link
//! to that file. Nothing is ever written through a link: the previous output stays as it was
//! until the swap, and after it the new output's files have one link each again.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// What [`share_unchanged_files`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shared {
    pub files: usize,
    pub bytes: u64,
}

/// Replace each regular file under `staging` that equals (content and permission bits) the regular
/// file at the same relative path under `previous` with a hard link to the latter. A file that
/// cannot be linked (another filesystem, link limit) is left as it is.
pub(crate) fn share_unchanged_files(staging: &Path, previous: &Path) -> Result<Shared> {
    let mut shared = Shared::default();
    // Files of the same shape, compared afterwards on every core (crate::files::parallel_map).
    let mut candidates: Vec<(std::path::PathBuf, std::path::PathBuf, u64)> = Vec::new();
    for entry in walkdir::WalkDir::new(staging).follow_links(false).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", staging.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(staging).context("the walk left the staging directory")?;
        let old = previous.join(relative);
        let Ok(old_meta) = fs_err::symlink_metadata(&old) else { continue };
        let new_meta = entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?;
        let same_shape = old_meta.file_type().is_file()
            && old_meta.len() == new_meta.len()
            && old_meta.permissions().mode() & 0o7777 == new_meta.permissions().mode() & 0o7777
            && (old_meta.dev(), old_meta.ino()) != (new_meta.dev(), new_meta.ino());
        if same_shape {
            candidates.push((entry.path().to_path_buf(), old, new_meta.len()));
        }
    }
    let same = crate::files::parallel_map(&candidates, crate::files::cores(), |(new, old, _)| same_content(old, new))?;
    for ((new, old, len), _) in candidates.iter().zip(same).filter(|(_, same)| *same) {
        let parent = new.parent().context("a file in the staging directory has a parent")?;
        let name = new.file_name().context("a file in the staging directory has a name")?;
        let link = parent.join(format!(".{}.xtask-link", name.to_string_lossy()));
        if std::fs::hard_link(old, &link).is_err() {
            continue;
        }
        fs_err::rename(&link, new)?;
        shared.files += 1;
        shared.bytes += len;
    }
    Ok(shared)
}

/// Whether two files of equal length hold the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (fs_err::File::open(a)?, fs_err::File::open(b)?);
    let (mut left, mut right) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut left)?;
        if n == 0 {
            return Ok(b.read(&mut right[..1])? == 0);
        }
        b.read_exact(&mut right[..n])?;
        if left[..n] != right[..n] {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn write(path: &Path, text: &str, mode: u32) {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_identical_files_become_links_and_the_previous_output_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (previous, staging) = (dir.path().join("previous"), dir.path().join("staging"));
        write(&previous.join("lib/same.py"), "same", 0o644);
        write(&staging.join("lib/same.py"), "same", 0o644);
        write(&previous.join("lib/edited.py"), "before", 0o644);
        write(&staging.join("lib/edited.py"), "after!", 0o644);
        write(&previous.join("bin/python"), "ELF", 0o644);
        write(&staging.join("bin/python"), "ELF", 0o755);
        write(&previous.join("longer.txt"), "same start", 0o644);
        write(&staging.join("longer.txt"), "same", 0o644);
        write(&staging.join("new.txt"), "new", 0o644);
        std::os::unix::fs::symlink("same.py", previous.join("lib/link.py")).unwrap();
        write(&staging.join("lib/link.py"), "same", 0o644);

        let shared = share_unchanged_files(&staging, &previous).unwrap();
        assert_eq!(shared, Shared { files: 1, bytes: 4 });
        let inode = |path: &Path| fs_err::metadata(path).unwrap().ino();
        assert_eq!(inode(&staging.join("lib/same.py")), inode(&previous.join("lib/same.py")));
        for different in ["lib/edited.py", "bin/python", "longer.txt", "lib/link.py"] {
            assert_ne!(inode(&staging.join(different)), inode(&previous.join(different)), "{different}");
        }
        assert_eq!(fs_err::read_to_string(previous.join("lib/edited.py")).unwrap(), "before");
        assert_eq!(fs_err::read_to_string(staging.join("lib/edited.py")).unwrap(), "after!");
        let names: Vec<String> = walkdir::WalkDir::new(&staging)
            .into_iter()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("xtask-link"))
            .collect();
        assert!(names.is_empty(), "temporary links left: {names:?}");

        // Run again: already shared files are left alone.
        assert_eq!(share_unchanged_files(&staging, &previous).unwrap(), Shared::default());
    }
}
