//! The download cache: one store for interpreters and wheels, content-addressed by sha256.
//!
//! Blobs live at `<root>/sha256/<first two hex digits>/<hex>`. A download streams into a temp file
//! under `<root>/tmp/` while it is hashed, and is renamed into place only when the hash matches the
//! pin, so the cache never holds a partial or unverified file. Every read hashes the blob again;
//! a blob that no longer matches its name is deleted and fetched anew.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::http::{Http, redact_url};
use crate::progress::{Progress, human_bytes};
use crate::sha256::Sha256;

/// The content-addressed store.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A sha256 digest in lower-case hex, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub(crate) fn parse(text: &str) -> Result<Sha256Hex> {
        let text = text.trim();
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{text:?} is not a sha256 (64 hex digits)");
        }
        Ok(Sha256Hex(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a blob comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Url(String),
    Path(PathBuf),
}

impl Source {
    /// `http(s)://...` is a URL, `file://...` and anything else a local path.
    pub(crate) fn parse(text: &str) -> Source {
        if text.starts_with("http://") || text.starts_with("https://") {
            Source::Url(text.to_string())
        } else if let Some(path) = text.strip_prefix("file://") {
            Source::Path(PathBuf::from(path))
        } else {
            Source::Path(PathBuf::from(text))
        }
    }

    /// How the source is shown in messages (credentials redacted).
    pub(crate) fn display(&self) -> String {
        match self {
            Source::Url(url) => redact_url(url),
            Source::Path(path) => path.display().to_string(),
        }
    }
}

/// Whether a `fetch` found the blob in the cache or had to get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetched {
    Cached,
    Downloaded,
}

impl Cache {
    /// The cache directory: `--cache-dir` (or `$XTASK_CACHE_DIR`, through the CLI), else
    /// `$XDG_CACHE_HOME/litellm-layer`, else `~/.cache/litellm-layer`.
    pub(crate) fn locate(explicit: Option<&Path>) -> Result<Cache> {
        let root = if let Some(dir) = explicit {
            dir.to_path_buf()
        } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            PathBuf::from(dir).join("litellm-layer")
        } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            PathBuf::from(home).join(".cache").join("litellm-layer")
        } else {
            bail!("cannot find a cache directory: set XTASK_CACHE_DIR or pass --cache-dir");
        };
        Ok(Cache::at(root))
    }

    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A subdirectory for other cached data (index responses, wheel metadata), created on demand.
    /// A subdirectory that is a symlink is refused: the cache never writes through one.
    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf> {
        fs_err::create_dir_all(&self.root)?;
        let mut dir = self.root.clone();
        for component in name.split('/') {
            dir.push(component);
            real_dir(&dir)?;
        }
        Ok(dir)
    }

    fn blob_path(&self, sha256: &Sha256Hex) -> PathBuf {
        self.root.join("sha256").join(&sha256.as_str()[..2]).join(sha256.as_str())
    }

    /// The directory a blob goes into, created without following symlinks.
    fn blob_dir(&self, sha256: &Sha256Hex) -> Result<PathBuf> {
        self.subdir(&format!("sha256/{}", &sha256.as_str()[..2]))
    }

    /// Take the cache for this run: a shared lock on `<cache>/.lock` that every run holds, so a
    /// run that finds no other run may remove what killed runs left in `tmp/` and the
    /// interpreter directory (half-written temp files, `.extract-*` staging directories). A run
    /// that finds the cache locked exclusively waits, saying for what, up to `timeout`.
    pub(crate) fn lock_for_run(&self, purpose: &str, timeout: Duration, progress: &Progress) -> Result<RunLock> {
        fs_err::create_dir_all(&self.root)?;
        let lock_path = self.root.join(".lock");
        // Alone? Then clean up after killed runs, holding the lock exclusively meanwhile.
        let exclusive = RunLock::open(&lock_path)?;
        if exclusive.file.try_lock().is_ok() {
            exclusive.write_holder(&format!("cleaning up the cache for: {purpose}"))?;
            for dir in ["tmp", "interpreters"] {
                let dir = self.root.join(dir);
                if !dir.is_dir() || dir.is_symlink() {
                    continue;
                }
                for entry in fs_err::read_dir(&dir)? {
                    let entry = entry?;
                    let name = entry.file_name().to_string_lossy().to_string();
                    let stale = dir.ends_with("tmp") || name.starts_with(".extract-");
                    if stale {
                        let path = entry.path();
                        let removed = if entry.file_type()?.is_dir() {
                            fs_err::remove_dir_all(&path)
                        } else {
                            fs_err::remove_file(&path)
                        };
                        match removed {
                            Ok(()) => progress.note(format!("removed {} left by an interrupted run", path.display())),
                            Err(error) => progress.warn(format!("could not remove {}: {error}", path.display())),
                        }
                    }
                }
            }
            let _ = exclusive.file.unlock();
        }
        drop(exclusive);
        RunLock::acquire(&lock_path, LockKind::Shared, purpose, timeout, progress)
    }

    /// A temp file in the cache's own tmp dir (same file system as the blobs, so rename is atomic).
    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.subdir("tmp")?;
        tempfile::NamedTempFile::new_in(&tmp).with_context(|| format!("creating a temp file in {}", tmp.display()))
    }

    /// The cached blob with this hash, hashed again to prove it. A blob whose content no longer
    /// matches is removed (and `None` returned) so the caller fetches it again.
    pub(crate) fn get(&self, sha256: &Sha256Hex) -> Result<Option<PathBuf>> {
        let path = self.blob_path(sha256);
        if !path.exists() {
            return Ok(None);
        }
        let computed = sha256_file(&path)?;
        if computed == *sha256 {
            Ok(Some(path))
        } else {
            eprintln!("warning: cache entry {} is corrupt (sha256 {computed}); fetching it again", path.display());
            fs_err::remove_file(&path)?;
            Ok(None)
        }
    }

    /// Return the verified blob for `sha256`, getting it from `source` when it is not cached.
    /// A hash mismatch is an error that prints both hashes and leaves no cache entry behind.
    pub(crate) fn fetch(
        &self,
        http: &Http,
        source: &Source,
        sha256: &Sha256Hex,
        label: &str,
        progress: &Progress,
    ) -> Result<(PathBuf, Fetched)> {
        if let Some(path) = self.get(sha256)? {
            return Ok((path, Fetched::Cached));
        }
        let mut temp = self.temp_file()?;
        let (computed, size) = match source {
            Source::Url(url) => download_retrying_truncation(http, url, temp.as_file_mut(), label, progress)?,
            Source::Path(path) => {
                let mut file = fs_err::File::open(path)?;
                copy_hashing(&mut file, temp.as_file_mut()).with_context(|| format!("reading {}", path.display()))?
            }
        };
        if computed != *sha256 {
            bail!(
                "sha256 mismatch for {}:\n  expected {sha256}\n  computed {computed}\n({} received; nothing was cached or extracted. \
                 If the file is right, update the pin; otherwise fetch it again)",
                source.display(),
                human_bytes(size)
            );
        }
        temp.as_file_mut().flush()?;
        temp.as_file().sync_all().ok();
        let destination = self.blob_dir(sha256)?.join(sha256.as_str());
        temp.persist(&destination).with_context(|| format!("moving the download into {}", destination.display()))?;
        Ok((destination, Fetched::Downloaded))
    }

    /// Store bytes already in memory whose hash the caller has checked (e.g. a wheel fetched whole
    /// while reading its metadata). Returns the blob path.
    pub(crate) fn insert_bytes(&self, bytes: &[u8]) -> Result<(Sha256Hex, PathBuf)> {
        let sha256 = sha256_bytes(bytes);
        let destination = self.blob_path(&sha256);
        if destination.exists() {
            return Ok((sha256, destination));
        }
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        self.blob_dir(&sha256)?;
        temp.persist(&destination).with_context(|| format!("moving into {}", destination.display()))?;
        Ok((sha256, destination))
    }
}

/// How many times a download cut short is tried (from the start) before giving up.
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// The wait before the first retry of a truncated download; it doubles for each further one.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Download `url` into `file`, hashing it. A body that ends before its `Content-Length` (or a
/// connection that breaks mid-body) is thrown away and fetched again from the start, after a
/// backoff, up to [`DOWNLOAD_ATTEMPTS`] times: a resumed download could splice bytes from two
/// different responses. HTTP errors are not retried here.
fn download_retrying_truncation(
    http: &Http,
    url: &str,
    file: &mut std::fs::File,
    label: &str,
    progress: &Progress,
) -> Result<(Sha256Hex, u64)> {
    let shown = redact_url(url);
    let mut backoff = RETRY_BACKOFF;
    for attempt in 1..=DOWNLOAD_ATTEMPTS {
        file.set_len(0)?;
        io::Seek::seek(&mut *file, io::SeekFrom::Start(0))?;
        let response = http.get_with(url, |r| r).map_err(crate::http::explain)?;
        let total = response.content_length();
        let bar = progress.download_bar(label, total);
        let mut reader = bar.wrap_read(response);
        let result = copy_hashing(&mut reader, &mut *file);
        bar.finish_and_clear();
        let problem = match &result {
            Ok((_, size)) if total.is_some_and(|total| *size != total) => {
                format!("got {size} of {} bytes", total.unwrap_or_default())
            }
            Ok(_) => return result.map_err(anyhow::Error::from),
            Err(error) => format!("the connection broke ({error})"),
        };
        if attempt == DOWNLOAD_ATTEMPTS {
            bail!(
                "truncated download from {shown}: {problem}, {DOWNLOAD_ATTEMPTS} times; nothing was cached. Check the \
                 network or proxy and run again"
            );
        }
        progress.warn(format!(
            "truncated download from {shown}: {problem}; retrying from the start in {:.2}s (attempt {} of \
             {DOWNLOAD_ATTEMPTS})",
            backoff.as_secs_f64(),
            attempt + 1
        ));
        std::thread::sleep(backoff);
        backoff *= 2;
    }
    unreachable!("the last attempt returns or fails")
}

/// Make sure `dir` is a real directory, creating it when missing; a symlink (or a file) in its
/// place is refused, so no write is ever sent elsewhere through a link planted in the cache.
fn real_dir(dir: &Path) -> Result<()> {
    match fs_err::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) if meta.is_symlink() => bail!(
            "{} is a symlink; the cache never writes through symlinks (one could send writes anywhere): remove it \
             and run again",
            dir.display()
        ),
        Ok(_) => bail!("{} is not a directory; remove it and run again", dir.display()),
        Err(_) => match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            // Another run created it meanwhile: check what it is.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if fs_err::symlink_metadata(dir)?.is_dir() {
                    Ok(())
                } else {
                    bail!("{} is not a directory; remove it and run again", dir.display())
                }
            }
            Err(error) => Err(error).with_context(|| format!("creating {}", dir.display())),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// An advisory lock (`flock`) on a lock file, held until dropped. The holder writes its pid and
/// purpose into the file, so a waiting run can say what it waits for.
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    path: PathBuf,
}

impl RunLock {
    fn open(path: &Path) -> Result<RunLock> {
        if fs_err::symlink_metadata(path).is_ok_and(|meta| !meta.is_file()) {
            bail!("{} is not a regular file (a symlink?); remove it and run again", path.display());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        Ok(RunLock { file, path: path.to_path_buf() })
    }

    /// Take the lock at `path`, waiting up to `timeout` while another run holds it.
    pub fn acquire(
        path: &Path,
        kind: LockKind,
        purpose: &str,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<RunLock> {
        let lock = RunLock::open(path)?;
        let try_lock = |file: &std::fs::File| match kind {
            LockKind::Shared => file.try_lock_shared(),
            LockKind::Exclusive => file.try_lock(),
        };
        let started = std::time::Instant::now();
        let mut said = false;
        loop {
            match try_lock(&lock.file) {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = fs_err::read_to_string(path).unwrap_or_default().trim().to_string();
                    let holder = if holder.is_empty() { "another `cargo xtask` run".to_string() } else { holder };
                    if started.elapsed() >= timeout {
                        bail!(
                            "timed out after {}s waiting for {} (held by {holder}); wait for that run to finish, or \
                             stop it if it hung (XTASK_LOCK_TIMEOUT sets the wait in seconds)",
                            timeout.as_secs(),
                            path.display()
                        );
                    }
                    if !said {
                        progress.note(format!(
                            "waiting for {} (held by {holder}); giving up after {}s",
                            path.display(),
                            timeout.as_secs()
                        ));
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100).min(timeout));
                }
                Err(std::fs::TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
        if kind == LockKind::Exclusive {
            lock.write_holder(purpose)?;
        }
        Ok(lock)
    }

    /// Record who holds the lock: `pid <pid>: <purpose>`.
    fn write_holder(&self, purpose: &str) -> Result<()> {
        let mut file = &self.file;
        file.set_len(0)?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        writeln!(file, "pid {} ({purpose})", std::process::id())
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

/// Copy `reader` to `writer`, returning the sha256 of what passed and its length.
pub(crate) fn copy_hashing(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<(Sha256Hex, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        writer.write_all(&buffer[..n])?;
        total += n as u64;
    }
    Ok((Sha256Hex(hex::encode(hasher.finalize())), total))
}

/// The sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<Sha256Hex> {
    let mut file = fs_err::File::open(path)?;
    let (digest, _) =
        copy_hashing(&mut file, &mut io::sink()).with_context(|| format!("hashing {}", path.display()))?;
    Ok(digest)
}

/// The sha256 of each of `paths`, in order, hashed on every core; the first failure (naming its
/// file) is the error.
pub(crate) fn sha256_files(paths: &[&Path]) -> Result<Vec<Sha256Hex>> {
    crate::files::parallel_map(paths, crate::files::cores(), |path| sha256_file(path))
}

/// The sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex(hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests;
