//! The download cache: one store for interpreters and wheels, content-addressed by sha256.
//!
//! Blobs live at `<root>/sha256/<first two hex digits>/<hex>`. A download streams into a temp file
//! under `<root>/tmp/` while it is hashed, and is renamed into place only when the hash matches the
//! pin, so the cache never holds a partial or unverified file. Every read hashes the blob again;
//! a blob that no longer matches its name is deleted and fetched anew.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::http::{Http, redact_url};
use crate::progress::{Progress, human_bytes};

/// The content-addressed store.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A sha256 digest in lower-case hex, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(text: &str) -> Result<Sha256Hex> {
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
pub enum Source {
    Url(String),
    Path(PathBuf),
}

impl Source {
    /// `http(s)://...` is a URL, `file://...` and anything else a local path.
    pub fn parse(text: &str) -> Source {
        if text.starts_with("http://") || text.starts_with("https://") {
            Source::Url(text.to_string())
        } else if let Some(path) = text.strip_prefix("file://") {
            Source::Path(PathBuf::from(path))
        } else {
            Source::Path(PathBuf::from(text))
        }
    }

    /// How the source is shown in messages (credentials redacted).
    pub fn display(&self) -> String {
        match self {
            Source::Url(url) => redact_url(url),
            Source::Path(path) => path.display().to_string(),
        }
    }
}

/// Whether a `fetch` found the blob in the cache or had to get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Cached,
    Downloaded,
}

impl Cache {
    /// The cache directory: `--cache-dir` (or `$XTASK_CACHE_DIR`, through the CLI), else
    /// `$XDG_CACHE_HOME/litellm-layer`, else `~/.cache/litellm-layer`.
    pub fn locate(explicit: Option<&Path>) -> Result<Cache> {
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A subdirectory for other cached data (index responses, wheel metadata), created on demand.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        fs_err::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn blob_path(&self, sha256: &Sha256Hex) -> PathBuf {
        self.root.join("sha256").join(&sha256.as_str()[..2]).join(sha256.as_str())
    }

    /// A temp file in the cache's own tmp dir (same file system as the blobs, so rename is atomic).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        let tmp = self.subdir("tmp")?;
        tempfile::NamedTempFile::new_in(&tmp).with_context(|| format!("creating a temp file in {}", tmp.display()))
    }

    /// The cached blob with this hash, hashed again to prove it. A blob whose content no longer
    /// matches is removed (and `None` returned) so the caller fetches it again.
    pub fn get(&self, sha256: &Sha256Hex) -> Result<Option<PathBuf>> {
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
    pub fn fetch(
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
            Source::Url(url) => {
                let response = http.get_with(url, |r| r).map_err(crate::http::explain)?;
                let total = response.content_length();
                let bar = progress.download_bar(label, total);
                let mut reader = bar.wrap_read(response);
                let (computed, size) = copy_hashing(&mut reader, temp.as_file_mut())
                    .with_context(|| format!("downloading {}", source.display()))?;
                bar.finish_and_clear();
                if let Some(total) = total
                    && size != total
                {
                    bail!("truncated download from {}: got {size} of {total} bytes", source.display());
                }
                (computed, size)
            }
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
        let destination = self.blob_path(sha256);
        fs_err::create_dir_all(destination.parent().expect("blob path has a parent"))?;
        temp.persist(&destination).with_context(|| format!("moving the download into {}", destination.display()))?;
        Ok((destination, Fetched::Downloaded))
    }

    /// Store bytes already in memory whose hash the caller has checked (e.g. a wheel fetched whole
    /// while reading its metadata). Returns the blob path.
    pub fn insert_bytes(&self, bytes: &[u8]) -> Result<(Sha256Hex, PathBuf)> {
        let sha256 = sha256_bytes(bytes);
        let destination = self.blob_path(&sha256);
        if destination.exists() {
            return Ok((sha256, destination));
        }
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        fs_err::create_dir_all(destination.parent().expect("blob path has a parent"))?;
        temp.persist(&destination).with_context(|| format!("moving into {}", destination.display()))?;
        Ok((sha256, destination))
    }
}

/// Copy `reader` to `writer`, returning the sha256 of what passed and its length.
pub fn copy_hashing(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<(Sha256Hex, u64)> {
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

/// The sha256 of bytes.
pub fn sha256_bytes(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex(hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Progress {
        Progress::new()
    }

    #[test]
    fn sha256_hex_is_validated() {
        assert!(Sha256Hex::parse("abc").is_err());
        let upper = "A".repeat(64);
        assert_eq!(Sha256Hex::parse(&upper).unwrap().as_str(), "a".repeat(64));
        assert_eq!(Sha256Hex::parse(&format!("sha256:{}", "0".repeat(64))).unwrap().as_str(), "0".repeat(64));
    }

    #[test]
    fn local_file_is_verified_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("cache"));
        let file = dir.path().join("thing.bin");
        fs_err::write(&file, b"hello").unwrap();
        let sha = sha256_bytes(b"hello");
        let http = Http::new().unwrap();
        let (path, how) = cache.fetch(&http, &Source::Path(file.clone()), &sha, "thing", &quiet()).unwrap();
        assert_eq!(how, Fetched::Downloaded);
        assert_eq!(fs_err::read(&path).unwrap(), b"hello");
        let (_, how) = cache.fetch(&http, &Source::Path(file), &sha, "thing", &quiet()).unwrap();
        assert_eq!(how, Fetched::Cached);
    }

    #[test]
    fn mismatch_prints_both_hashes_and_caches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("cache"));
        let file = dir.path().join("thing.bin");
        fs_err::write(&file, b"hello").unwrap();
        let wrong = Sha256Hex::parse(&"1".repeat(64)).unwrap();
        let err = cache.fetch(&Http::new().unwrap(), &Source::Path(file), &wrong, "thing", &quiet()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("expected {}", "1".repeat(64))), "{msg}");
        assert!(msg.contains(&format!("computed {}", sha256_bytes(b"hello"))), "{msg}");
        let leftovers: Vec<_> = walkdir::WalkDir::new(cache.root())
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .collect();
        assert!(leftovers.is_empty(), "cache holds {leftovers:?}");
    }

    #[test]
    fn corrupt_blob_is_dropped_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let (sha, path) = cache.insert_bytes(b"payload").unwrap();
        assert_eq!(cache.get(&sha).unwrap(), Some(path.clone()));
        fs_err::write(&path, b"tampered").unwrap();
        assert_eq!(cache.get(&sha).unwrap(), None);
        assert!(!path.exists());
    }
}
