//! The sandbox standing for Lambda's `/opt`: a copy of the layer, read-only, with a manifest that
//! proves nothing was written into it.
//!
//! Lambda unzips the layer into `/opt`, which is read-only, with the zip's fixed timestamps. The
//! copy here gets the same fixed mtime on every file (so a timestamp-based `.pyc` goes stale just
//! as it would on Lambda), loses its write permission bits, and, where the kernel lets us, is
//! bind-mounted read-only inside a private mount namespace (`unshare -m`), onto `/opt` itself for
//! native runs. Root ignores permission bits, so a manifest of paths, sizes and mtimes taken before
//! and after the runs is the proof that holds in every mode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::source_date::{SourceDateEpoch, ZIP_TIME_MIN};

/// The mtime Lambda's extracted files get from a deterministic layer zip: `SOURCE_DATE_EPOCH` or
/// 1980-01-01 00:00:00 UTC (the earliest time a zip entry can carry).
pub(crate) fn fixed_mtime(source_date_epoch: SourceDateEpoch) -> SystemTime {
    let seconds = source_date_epoch.or(ZIP_TIME_MIN);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
}

/// Copy the layer tree `from` (the directory holding `python/`) into `to`, which must not exist:
/// regular files and directories are copied, symbolic links recreated as links, and every mtime
/// set to `mtime`. Anything else (sockets, devices) is refused.
pub(crate) fn copy_layer(from: &Path, to: &Path, mtime: SystemTime) -> Result<u64> {
    if to.exists() {
        bail!("{} already exists", to.display());
    }
    // The layer directory itself may be a link (`layer -> ...`); its contents are copied as they are.
    let from = &fs_err::canonicalize(from)?;
    let mut bytes = 0u64;
    let mut directories = Vec::new();
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let relative = entry.path().strip_prefix(from).context("walking outside the layer")?;
        let target = to.join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs_err::create_dir_all(&target)?;
            directories.push(target);
        } else if kind.is_symlink() {
            let link = fs_err::read_link(entry.path())?;
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("creating the symbolic link {}", target.display()))?;
        } else if kind.is_file() {
            bytes += fs_err::copy(entry.path(), &target)?;
            fs_err::File::open(&target)?.set_modified(mtime)?;
        } else {
            bail!("{}: not a file, directory or symbolic link; a layer holds nothing else", entry.path().display());
        }
    }
    // Directories last, deepest first: creating their children changed their mtimes.
    for directory in directories.iter().rev() {
        fs_err::File::open(directory)?.set_modified(mtime)?;
    }
    Ok(bytes)
}

/// Remove every write permission bit in the tree (what Lambda's `/opt` looks like to a non-root
/// process).
pub(crate) fn make_read_only(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if entry.file_type().is_symlink() {
            continue;
        }
        let mode =
            entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?.permissions().mode();
        fs_err::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & !0o222))?;
    }
    Ok(())
}

/// Give write permission back so the sandbox can be deleted by a non-root user too.
pub(crate) fn make_writable(root: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        if entry.file_type().is_symlink() {
            continue;
        }
        let mode =
            entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?.permissions().mode();
        fs_err::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode | 0o200))?;
    }
    Ok(())
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestEntry {
    /// `f` file, `d` directory, `l` link.
    pub(crate) kind: char,
    pub(crate) size: u64,
    pub(crate) mtime_ns: i128,
}

/// Paths (relative, `/`-separated) to what they were.
pub(crate) type Manifest = BTreeMap<String, ManifestEntry>;

/// List the tree under `root`: path, kind, size and mtime of everything in it.
pub(crate) fn manifest(root: &Path) -> Result<Manifest> {
    let mut out = Manifest::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let relative = entry.path().strip_prefix(root).context("walking outside the tree")?;
        let metadata = fs_err::symlink_metadata(entry.path())?;
        let kind = if metadata.is_dir() {
            'd'
        } else if metadata.is_symlink() {
            'l'
        } else {
            'f'
        };
        let mtime_ns = match metadata.modified()?.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        let size = if kind == 'f' { metadata.len() } else { 0 };
        out.insert(relative.to_string_lossy().replace('\\', "/"), ManifestEntry { kind, size, mtime_ns });
    }
    Ok(out)
}

/// What changed between two manifests, one line per path: `added x`, `removed y`, `changed z`.
pub(crate) fn diff(before: &Manifest, after: &Manifest) -> Vec<String> {
    let mut changes = Vec::new();
    for (path, entry) in after {
        match before.get(path) {
            None => changes.push(format!("added {path}")),
            Some(old) if old.kind != entry.kind || old.size != entry.size => {
                changes.push(format!("changed {path} (size {} -> {})", old.size, entry.size))
            }
            // A directory's mtime moves when something is created in it and removed again.
            Some(old) if old.mtime_ns != entry.mtime_ns => changes.push(format!("changed {path} (mtime)")),
            Some(_) => {}
        }
    }
    for path in before.keys() {
        if !after.contains_key(path) {
            changes.push(format!("removed {path}"));
        }
    }
    changes
}

/// How the sandbox is made read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A private mount namespace with a read-only bind mount (`unshare -m`): writes fail with
    /// `EROFS`, as on Lambda.
    MountNamespace,
    /// Permission bits only. Root ignores them, so only the manifest proves nothing was written.
    PermissionBits,
}

impl Isolation {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Isolation::MountNamespace => "read-only bind mount in a private mount namespace (unshare -m)",
            Isolation::PermissionBits => {
                "permission bits only (unshare -m unavailable; the before/after manifest is the proof)"
            }
        }
    }

    /// Try a read-only bind mount in a private mount namespace on a scratch directory.
    pub(crate) fn detect(scratch: &Path) -> Isolation {
        let probe = scratch.join("mount-probe");
        if fs_err::create_dir_all(&probe).is_err() {
            return Isolation::PermissionBits;
        }
        let status = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", MOUNT_SCRIPT, "sh"])
            .arg(&probe)
            .arg(&probe)
            .arg("ro")
            .args(["sh", "-c", "! touch \"$0/written\" 2>/dev/null"])
            .arg(&probe)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let worked = matches!(status, Ok(s) if s.success()) && !probe.join("written").exists();
        let _ = fs_err::remove_dir_all(&probe);
        if worked { Isolation::MountNamespace } else { Isolation::PermissionBits }
    }
}

/// Bind-mounts `$1` onto `$2`, read-only when `$3` is `ro`, then runs the rest of the arguments.
/// A constant script: every value reaches it as a positional argument, never spliced into it.
const MOUNT_SCRIPT: &str = r#"set -e
source=$1; target=$2; mode=$3; shift 3
mount --bind "$source" "$target"
if [ "$mode" = ro ]; then mount -o remount,bind,ro "$target"; fi
exec "$@""#;

/// A read-only (or, for the write probe, writable) view of `source` at `target` for one command.
#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub(crate) source: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) read_only: bool,
}

/// `program args...`, wrapped in `unshare -m` with `mount` when the isolation allows it.
pub(crate) fn command(isolation: Isolation, mount: &Mount, program: &Path, args: &[std::ffi::OsString]) -> Command {
    match isolation {
        Isolation::MountNamespace => {
            let mut command = Command::new("unshare");
            command
                .args(["--mount", "--propagation", "private", "--", "sh", "-c", MOUNT_SCRIPT, "sh"])
                .arg(&mount.source)
                .arg(&mount.target)
                .arg(if mount.read_only { "ro" } else { "rw" })
                .arg(program)
                .args(args);
            command
        }
        Isolation::PermissionBits => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fixes_mtimes_and_keeps_links() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        fs_err::create_dir_all(from.join("python/bin")).unwrap();
        fs_err::write(from.join("python/bin/python3.11"), b"binary").unwrap();
        std::os::unix::fs::symlink("python3.11", from.join("python/bin/python3")).unwrap();
        let to = dir.path().join("to");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&from, &link).unwrap();
        let bytes = copy_layer(&link, &to, fixed_mtime(SourceDateEpoch::default())).unwrap();
        assert_eq!(bytes, 6);
        assert_eq!(fs_err::read_link(to.join("python/bin/python3")).unwrap(), Path::new("python3.11"));
        let listed = manifest(&to).unwrap();
        let file = &listed["python/bin/python3.11"];
        assert_eq!((file.kind, file.size), ('f', 6));
        assert_eq!(file.mtime_ns, 315_532_800_000_000_000);
        assert_eq!(listed["python"].mtime_ns, 315_532_800_000_000_000);
        assert!(
            copy_layer(&from, &to, fixed_mtime(SourceDateEpoch::default()))
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
    }

    #[test]
    fn diff_names_added_removed_and_changed_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("pkg")).unwrap();
        fs_err::write(root.join("pkg/a.py"), b"a").unwrap();
        fs_err::write(root.join("pkg/b.py"), b"b").unwrap();
        let before = manifest(root).unwrap();
        assert!(diff(&before, &manifest(root).unwrap()).is_empty());
        fs_err::write(root.join("pkg/a.py"), b"aa").unwrap();
        fs_err::remove_file(root.join("pkg/b.py")).unwrap();
        fs_err::create_dir_all(root.join("pkg/__pycache__")).unwrap();
        let changes = diff(&before, &manifest(root).unwrap());
        assert!(changes.contains(&"added pkg/__pycache__".to_string()), "{changes:?}");
        assert!(changes.contains(&"changed pkg/a.py (size 1 -> 2)".to_string()), "{changes:?}");
        assert!(changes.contains(&"removed pkg/b.py".to_string()), "{changes:?}");
    }

    #[test]
    fn read_only_bits_come_off_and_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs_err::create_dir_all(root.join("d")).unwrap();
        fs_err::write(root.join("d/f"), b"x").unwrap();
        make_read_only(&root).unwrap();
        assert_eq!(fs_err::metadata(root.join("d/f")).unwrap().permissions().mode() & 0o222, 0);
        assert_eq!(fs_err::metadata(root.join("d")).unwrap().permissions().mode() & 0o222, 0);
        make_writable(&root).unwrap();
        assert_ne!(fs_err::metadata(root.join("d/f")).unwrap().permissions().mode() & 0o200, 0);
    }

    #[test]
    fn mount_namespace_makes_writes_fail_when_available() {
        let dir = tempfile::tempdir().unwrap();
        let isolation = Isolation::detect(dir.path());
        let target = dir.path().join("opt");
        fs_err::create_dir_all(&target).unwrap();
        let mount = Mount { source: target.clone(), target: target.clone(), read_only: true };
        let args: Vec<std::ffi::OsString> = vec!["-c".into(), "echo x > \"$0/f\"".into(), target.clone().into()];
        let status = command(isolation, &mount, Path::new("sh"), &args).status().unwrap();
        match isolation {
            Isolation::MountNamespace => assert!(!status.success() && !target.join("f").exists()),
            Isolation::PermissionBits => assert!(status.success()),
        }
    }
}
