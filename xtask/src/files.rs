//! File utilities every step shares: replacing a file atomically with sensible permissions,
//! checking a relative path from an untrusted source before it is joined to a directory, and
//! running per-file work on several threads.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// Run `work` on every item with up to `threads` threads; results in item order. The first error
/// (in item order) is returned. Used for downloads and extraction (`layer::install`) and for
/// hashing and comparing files (docs/architecture.md §14).
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<R>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let threads = threads.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(index) else { break };
                    let result = work(item);
                    let failed = result.is_err();
                    results.lock().expect("results lock")[index] = Some(result);
                    if failed {
                        // Stop handing out new work; running jobs finish.
                        next.store(items.len(), Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let results = results.into_inner().expect("results lock");
    let mut values = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Some(Ok(value)) => values.push(value),
            Some(Err(error)) => errors.push(error),
            None => {}
        }
    }
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    if values.len() != items.len() {
        bail!("internal error: {} of {} jobs ran", values.len(), items.len());
    }
    Ok(values)
}

/// How many threads hashing and comparing files may use: one per core.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

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

/// Why a relative path from an untrusted source is refused. Each caller names the path and where
/// it came from (the archive, the wheel, the config key); this is the reason it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnsafePath {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("NUL byte")]
    NulByte,
    #[error("control character {0:?}")]
    ControlCharacter(char),
    #[error("backslash")]
    Backslash,
    #[error("drive letter")]
    DriveLetter,
    #[error("'..' component")]
    ParentDir,
    #[error("empty or '.' component")]
    EmptyComponent,
}

/// Check a `/`-separated relative path from an untrusted source (an archive member, a RECORD row,
/// a config value) before it is joined to a directory: it must stay inside that directory on
/// every platform and name the same file everywhere. Refused: empty, absolute, a NUL byte or other
/// control character (they hide what a terminal or a log shows), a backslash or a drive letter
/// (separators on Windows), a `..`, `.` or empty component. Returns the path unchanged.
///
/// This is the one relative-path check of the crate; callers strip what their format allows
/// around a name first (a wheel directory's trailing `/`, a tar writer's `./`).
/// (Compare uv's `enclosed_name`: <https://github.com/astral-sh/uv/blob/main/crates/uv-extract/src/stream.rs>.)
pub(crate) fn enclosed_relative_path(path: &str) -> Result<&str, UnsafePath> {
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path.starts_with('/') {
        return Err(UnsafePath::Absolute);
    }
    if path.contains('\0') {
        return Err(UnsafePath::NulByte);
    }
    if let Some(control) = path.chars().find(|c| c.is_control()) {
        return Err(UnsafePath::ControlCharacter(control));
    }
    if path.contains('\\') {
        return Err(UnsafePath::Backslash);
    }
    let first = path.split('/').next().unwrap_or_default().as_bytes();
    if first.len() >= 2 && first[1] == b':' && first[0].is_ascii_alphabetic() {
        return Err(UnsafePath::DriveLetter);
    }
    if path.split('/').any(|part| part == "..") {
        return Err(UnsafePath::ParentDir);
    }
    if path.split('/').any(|part| part.is_empty() || part == ".") {
        return Err(UnsafePath::EmptyComponent);
    }
    Ok(path)
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
        for good in ["lib/python3.12/os.py", "a", "a.b/..c/d..", "dir/.hidden", "lib/c:/x", "über/ß.py"] {
            assert_eq!(enclosed_relative_path(good), Ok(good));
        }
        for (path, refusal, reason) in [
            ("", UnsafePath::Empty, "empty path"),
            ("/etc/passwd", UnsafePath::Absolute, "absolute path"),
            ("/", UnsafePath::Absolute, "absolute path"),
            ("a\0b", UnsafePath::NulByte, "NUL byte"),
            ("a/\x1b[2Jb", UnsafePath::ControlCharacter('\u{1b}'), "control character '\\u{1b}'"),
            ("a\nb", UnsafePath::ControlCharacter('\n'), "control character '\\n'"),
            ("a\\..\\b", UnsafePath::Backslash, "backslash"),
            ("C:/Windows", UnsafePath::DriveLetter, "drive letter"),
            ("c:", UnsafePath::DriveLetter, "drive letter"),
            ("..", UnsafePath::ParentDir, "'..' component"),
            ("a/../../b", UnsafePath::ParentDir, "'..' component"),
            ("a/..", UnsafePath::ParentDir, "'..' component"),
            ("a//b", UnsafePath::EmptyComponent, "empty or '.' component"),
            ("./a", UnsafePath::EmptyComponent, "empty or '.' component"),
            ("a/./b", UnsafePath::EmptyComponent, "empty or '.' component"),
            ("a/", UnsafePath::EmptyComponent, "empty or '.' component"),
        ] {
            assert_eq!(enclosed_relative_path(path), Err(refusal), "{path:?}");
            assert_eq!(refusal.to_string(), reason, "{path:?}");
        }
    }

    #[test]
    fn parallel_map_keeps_order_and_reports_errors() {
        let items: Vec<u32> = (0..50).collect();
        let doubled = parallel_map(&items, 4, |n| Ok(n * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let err = parallel_map(&items, 4, |n| if *n == 7 { bail!("item {n} failed") } else { Ok(*n) }).unwrap_err();
        assert_eq!(err.to_string(), "item 7 failed");
    }

    #[test]
    fn parallel_map_on_two_threads_keeps_the_order_and_reports_the_earliest_failure() {
        let items: Vec<u64> = (0..1000).collect();
        let squares = parallel_map(&items, 2, |n| Ok(n * n)).unwrap();
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(parallel_map(&[] as &[u8], 2, |_| Ok(())).unwrap().is_empty());

        let error = parallel_map(&items, 2, |&n| if n % 100 == 37 { anyhow::bail!("item {n} failed") } else { Ok(n) })
            .unwrap_err();
        // Item 37 always starts (items start in order) and fails; later failures may or may not run.
        assert_eq!(error.to_string(), "item 37 failed");
    }
}
