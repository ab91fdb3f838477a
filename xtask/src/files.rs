//! File utilities every step shares: replacing a file atomically with sensible permissions, and
//! checking a relative path from an untrusted source before it is joined to a directory.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The mode of a file written here that did not exist before: readable by everyone, like any
/// file a build writes (`tempfile` would leave 0600).
pub const NEW_FILE_MODE: u32 = 0o644;

/// Replace `path` with `bytes` through a temporary file in the same directory (created when
/// missing) and a rename, so a reader sees the old file or the new one, never a part. The file
/// keeps the permissions it had; a new file gets [`NEW_FILE_MODE`]. On an error nothing is left
/// behind and `path` is unchanged.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let name = path.file_name().with_context(|| format!("{} does not name a file", path.display()))?;
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {} for {}", dir.display(), path.display()))?;
    temp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    temp.as_file().sync_all().with_context(|| format!("writing {}", path.display()))?;
    let permissions = match fs_err::metadata(path) {
        Ok(metadata) => metadata.permissions(),
        Err(_) => std::fs::Permissions::from_mode(NEW_FILE_MODE),
    };
    fs_err::set_permissions(temp.path(), permissions)?;
    temp.persist(path).map_err(|error| anyhow::anyhow!("replacing {}: {}", path.display(), error.error))?;
    Ok(())
}

/// A `/`-separated relative path from an untrusted source (an archive, a manifest, a config
/// value), checked to stay inside whatever directory it is joined to: not empty, not absolute,
/// no `.` or `..` component, no empty component, no NUL or backslash. Returns it as a `PathBuf`.
pub fn enclosed_relative_path(path: &str) -> Result<PathBuf> {
    let problem = if path.is_empty() {
        Some("it is empty")
    } else if path.starts_with('/') {
        Some("it is absolute")
    } else if path.contains('\0') {
        Some("it contains a NUL byte")
    } else if path.contains('\\') {
        Some("it contains a backslash")
    } else if path.split('/').any(|part| part == "..") {
        Some("it has a '..' component")
    } else if path.split('/').any(|part| part.is_empty() || part == ".") {
        Some("it has an empty or '.' component")
    } else {
        None
    };
    if let Some(problem) = problem {
        bail!("{path:?} is not a relative path inside the directory: {problem}");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_file_is_0644_and_a_replaced_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/report.json");
        write_atomically(&path, b"one").unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o644);
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o640);
        let left: Vec<_> = fs_err::read_dir(dir.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["report.json"], "no temporary file is left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stamp.json");
        write_atomically(&path, b"old").unwrap();
        // A directory where the file should go cannot be replaced by a file.
        let blocked = dir.path().join("blocked");
        fs_err::create_dir_all(blocked.join("inside")).unwrap();
        let err = format!("{:#}", write_atomically(&blocked, b"new").unwrap_err());
        assert!(err.starts_with(&format!("replacing {}: ", blocked.display())), "{err}");
        assert_eq!(fs_err::read(&path).unwrap(), b"old");
        let mut left: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["blocked", "stamp.json"]);
    }

    #[test]
    fn relative_paths_must_stay_inside() {
        assert_eq!(enclosed_relative_path("lib/python3.12/os.py").unwrap(), PathBuf::from("lib/python3.12/os.py"));
        for (path, problem) in [
            ("", "it is empty"),
            ("/etc/passwd", "it is absolute"),
            ("a/../../b", "it has a '..' component"),
            ("..", "it has a '..' component"),
            ("a//b", "it has an empty or '.' component"),
            ("./a", "it has an empty or '.' component"),
            ("a/", "it has an empty or '.' component"),
            ("a\\..\\b", "it contains a backslash"),
            ("a\0b", "it contains a NUL byte"),
        ] {
            assert_eq!(
                enclosed_relative_path(path).unwrap_err().to_string(),
                format!("{path:?} is not a relative path inside the directory: {problem}")
            );
        }
    }
}
