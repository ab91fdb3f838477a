//! A wheel's core metadata (`*.dist-info/METADATA`), read from the wheel itself.
//!
//! The index these machines reach serves no PEP 658 `.metadata` files, so the resolver reads the
//! zip's end-of-central-directory and central directory with HTTP range requests, then only the
//! `METADATA` member (stored or deflated). A server that ignores ranges (answers 200) gets the
//! whole wheel downloaded once: its sha256 is checked against the index and it goes into the
//! download cache, where `cargo xtask layer` finds it. A PEP 658 file is used when the index
//! offers one. Parsed metadata is cached by the wheel's sha256 under `<cache>/metadata/`.
//!
//! Zip layout: <https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT> (sections 4.3.7,
//! 4.3.12, 4.3.14-16). Every offset and size read from the archive is bounds-checked: the wheel
//! is treated as hostile until its hash has been checked, and a range read never trusts it.

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};

use crate::archive::zip_layout;
use crate::cache::{Cache, Sha256Hex, sha256_bytes};
use crate::files::write_atomically;
use crate::http::{Http, HttpError, read_body_checked, redact_url};
use crate::lock::index::ProjectFile;
use crate::packaging::core_metadata::{CoreMetadata, parse_metadata};

/// How much of the wheel's tail the first range request asks for: enough for the central
/// directory of most wheels, so a second request is rarely needed.
const TAIL_BYTES: u64 = 64 * 1024;
/// The largest central directory accepted.
const MAX_CENTRAL_DIRECTORY: u64 = 64 * 1024 * 1024;
/// The largest METADATA accepted (compressed or not).
const MAX_METADATA: u64 = 16 * 1024 * 1024;
/// The largest wheel downloaded whole when the server does not answer range requests.
const MAX_WHOLE_WHEEL: u64 = 1024 * 1024 * 1024;

/// Where a metadata read was answered from (counted for the summary and checked by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataSource {
    /// `<cache>/metadata/<sha256>.json`.
    Cache,
    /// The wheel already in the download cache.
    CachedWheel,
    /// A PEP 658 `.metadata` file.
    Pep658,
    /// Range requests on the wheel.
    Ranges,
    /// The whole wheel (the server ignored the range request).
    WholeWheel,
}

/// Reads metadata for the resolver. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct MetadataReader {
    http: Http,
    cache: Cache,
    dir: PathBuf,
}

impl MetadataReader {
    pub(crate) fn new(http: Http, cache: &Cache) -> Result<MetadataReader> {
        Ok(MetadataReader { http, cache: cache.clone(), dir: cache.subdir("metadata")? })
    }

    /// The metadata of `file` (a wheel with a sha256 from the index).
    pub(crate) fn read(&self, file: &ProjectFile) -> Result<(CoreMetadata, MetadataSource)> {
        let sha256 = file.sha256.as_ref().with_context(|| format!("{} has no sha256", file.filename))?;
        let cache_file = self.dir.join(format!("{sha256}.json"));
        if let Some(metadata) = cached_metadata(&cache_file, file) {
            return Ok((metadata, MetadataSource::Cache));
        }
        let (text, source) = self
            .fetch_metadata_text(file, sha256)
            .with_context(|| format!("reading the metadata of {} from {}", file.filename, redact_url(&file.url)))?;
        let metadata = parse_metadata(&text).with_context(|| format!("parsing the METADATA of {}", file.filename))?;
        let entry =
            CachedMetadata { format: CACHED_METADATA_FORMAT, sha256: sha256_bytes(text.as_bytes()).to_string(), text };
        write_atomically(&cache_file, serde_json::to_string(&entry)?.as_bytes())?;
        Ok((metadata, source))
    }

    fn fetch_metadata_text(&self, file: &ProjectFile, sha256: &Sha256Hex) -> Result<(String, MetadataSource)> {
        if let Some(path) = self.cache.get(sha256)? {
            let bytes = fs_err::read(&path)?;
            return Ok((metadata_from_whole_wheel(&bytes)?, MetadataSource::CachedWheel));
        }
        // PEP 658: `<file url>.metadata`, hash-checked when the index gives a hash.
        if let Some(metadata_hash) = &file.core_metadata {
            let url = format!("{}.metadata", file.url);
            let response = self.http.get_with(&url, |r| r).map_err(crate::http::explain)?;
            let bytes = read_limited(&url, response, MAX_METADATA)?;
            if let Some(expected) = metadata_hash {
                let computed = sha256_bytes(&bytes);
                ensure!(
                    &computed == expected,
                    "sha256 mismatch for {}: expected {expected}, computed {computed}",
                    redact_url(&url)
                );
            }
            return Ok((String::from_utf8_lossy(&bytes).into_owned(), MetadataSource::Pep658));
        }
        let mut zip = RangeZip { http: &self.http, url: &file.url, tail: Vec::new(), tail_start: 0, total: 0 };
        match zip.fetch_tail()? {
            Tail::Ranged => Ok((zip.metadata_member()?, MetadataSource::Ranges)),
            Tail::Whole(bytes) => {
                // PEP 700: the index's `size` is the file's size in bytes.
                if let Some(size) = file.size
                    && size != bytes.len() as u64
                {
                    bail!(
                        "{}: the index says {size} bytes, {} were received; nothing was cached",
                        redact_url(&file.url),
                        bytes.len()
                    );
                }
                let computed = sha256_bytes(&bytes);
                if &computed != sha256 {
                    bail!(
                        "sha256 mismatch for {}:\n  expected {sha256}\n  computed {computed}\n(nothing was cached)",
                        redact_url(&file.url)
                    );
                }
                self.cache.insert_bytes(&bytes)?;
                Ok((metadata_from_whole_wheel(&bytes)?, MetadataSource::WholeWheel))
            }
        }
    }
}

/// Bump when the cached entry's shape changes, so older entries are fetched again.
const CACHED_METADATA_FORMAT: u32 = 2;

/// `<cache>/metadata/<wheel sha256>.json`: the METADATA text exactly as read, and its sha256.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CachedMetadata {
    format: u32,
    sha256: String,
    text: String,
}

/// The cached metadata of `file`, used only when it proves itself: the entry parses, its text
/// hashes to the sha256 it was stored with, that sha256 is the index's PEP 658 `core-metadata`
/// hash when the index gives one, and the text names the wheel's own distribution and version.
/// Anything else (an older format, a truncated or edited entry) is removed and fetched again.
fn cached_metadata(cache_file: &std::path::Path, file: &ProjectFile) -> Option<CoreMetadata> {
    let bytes = fs_err::read(cache_file).ok()?;
    let proven = (|| {
        let entry: CachedMetadata = serde_json::from_slice(&bytes).ok()?;
        let computed = sha256_bytes(entry.text.as_bytes()).to_string();
        let index_hash = file.core_metadata.as_ref().and_then(|hash| hash.as_ref());
        if entry.format != CACHED_METADATA_FORMAT
            || computed != entry.sha256
            || index_hash.is_some_and(|hash| hash.as_str() != computed)
        {
            return None;
        }
        let metadata = parse_metadata(&entry.text).ok()?;
        let filename = crate::packaging::wheel_name::WheelFilename::from_str(&file.filename).ok()?;
        let version = pep440_rs::Version::from_str(&metadata.version).ok()?;
        (metadata.name == filename.normalized_name() && version == filename.version).then_some(metadata)
    })();
    if proven.is_none() {
        let _ = fs_err::remove_file(cache_file);
    }
    proven
}

fn read_limited(url: &str, response: reqwest::blocking::Response, limit: u64) -> Result<Vec<u8>> {
    if response.content_length().is_some_and(|n| n > limit) {
        bail!("{} is larger than the {limit}-byte limit", redact_url(url));
    }
    let mut body = Vec::new();
    response.take(limit + 1).read_to_end(&mut body).with_context(|| format!("reading {}", redact_url(url)))?;
    ensure!(body.len() as u64 <= limit, "{} is larger than the {limit}-byte limit", redact_url(url));
    Ok(body)
}

enum Tail {
    /// `tail`/`tail_start`/`total` hold the end of the file.
    Ranged,
    /// The server sent the whole file.
    Whole(Vec<u8>),
}

/// A remote zip read with range requests.
struct RangeZip<'a> {
    http: &'a Http,
    url: &'a str,
    tail: Vec<u8>,
    tail_start: u64,
    total: u64,
}

impl RangeZip<'_> {
    fn fetch_tail(&mut self) -> Result<Tail> {
        let result = self.http.get_with(self.url, |r| r.header(RANGE, format!("bytes=-{TAIL_BYTES}")));
        let response = match result {
            Ok(response) => response,
            // A server that cannot satisfy a suffix range: read the whole file.
            Err(HttpError::Status { status, .. }) if status == StatusCode::RANGE_NOT_SATISFIABLE => {
                let response = self.http.get_with(self.url, |r| r).map_err(crate::http::explain)?;
                return Ok(Tail::Whole(read_limited(self.url, response, MAX_WHOLE_WHEEL)?));
            }
            Err(error) => return Err(crate::http::explain(error)),
        };
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Ok(Tail::Whole(read_limited(self.url, response, MAX_WHOLE_WHEEL)?));
        }
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .with_context(|| format!("{} answered 206 without Content-Range", redact_url(self.url)))?;
        let (start, end, total) = parse_content_range(&content_range)
            .with_context(|| format!("{}: bad Content-Range {content_range:?}", redact_url(self.url)))?;
        // The range asked for is the last TAIL_BYTES (or the whole file when it is shorter).
        ensure!(
            end + 1 == total && start == total.saturating_sub(TAIL_BYTES),
            "{}: asked for the last {TAIL_BYTES} bytes, the server answered Content-Range {content_range:?}; refusing \
             a response for another range",
            redact_url(self.url)
        );
        let body = read_body_checked(self.url, response)?;
        ensure!(
            body.len() as u64 == end - start + 1 && end < total,
            "{}: Content-Range {content_range:?} does not match the {} bytes received",
            redact_url(self.url),
            body.len()
        );
        self.tail = body;
        self.tail_start = start;
        self.total = total;
        Ok(Tail::Ranged)
    }

    /// Bytes `[start, start + len)`, from the tail when it holds them, else by a range request.
    fn bytes(&self, start: u64, len: u64) -> Result<Vec<u8>> {
        let end = start.checked_add(len).context("zip offset overflows")?;
        ensure!(end <= self.total, "zip structure points past the end of the file ({end} > {})", self.total);
        if start >= self.tail_start {
            let from = (start - self.tail_start) as usize;
            return Ok(self.tail[from..from + len as usize].to_vec());
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let response = self
            .http
            .get_with(self.url, |r| r.header(RANGE, format!("bytes={start}-{}", end - 1)))
            .map_err(crate::http::explain)?;
        ensure!(
            response.status() == StatusCode::PARTIAL_CONTENT,
            "{} answered {} to a range request it had honoured before",
            redact_url(self.url),
            response.status()
        );
        let content_range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        ensure!(
            parse_content_range(content_range) == Some((start, end - 1, self.total)),
            "{}: asked for bytes {start}-{} of {}, the server answered Content-Range {content_range:?}; refusing a \
             response for another range",
            redact_url(self.url),
            end - 1,
            self.total
        );
        let body = read_limited(self.url, response, len)?;
        ensure!(body.len() as u64 == len, "{}: short range read ({} of {len} bytes)", redact_url(self.url), body.len());
        Ok(body)
    }

    /// Locate the central directory, find `*.dist-info/METADATA`, read and inflate it.
    fn metadata_member(&self) -> Result<String> {
        let (cd_offset, cd_size) = self.central_directory_location()?;
        ensure!(cd_size <= MAX_CENTRAL_DIRECTORY, "central directory of {cd_size} bytes is over the limit");
        let directory = self.bytes(cd_offset, cd_size)?;
        let entry = find_metadata_entry(&directory)?;
        ensure!(
            entry.compressed_size <= MAX_METADATA && entry.uncompressed_size <= MAX_METADATA,
            "METADATA is too large"
        );
        // The local header repeats the name and may carry a different extra field; read it first.
        let local_fixed = self.bytes(entry.local_header_offset, 30)?;
        ensure!(le32(&local_fixed, 0)? == zip_layout::LOCAL_HEADER, "bad local file header for {}", entry.name);
        let name_len = le16(&local_fixed, 26)? as u64;
        let extra_len = le16(&local_fixed, 28)? as u64;
        let data_start = entry.local_header_offset + 30 + name_len + extra_len;
        let data = self.bytes(data_start, entry.compressed_size)?;
        inflate_member(&entry, &data)
    }

    fn central_directory_location(&self) -> Result<(u64, u64)> {
        // End of central directory: 22 bytes + a comment of up to 65535 bytes.
        let tail = &self.tail;
        ensure!(tail.len() >= 22, "file too small to be a zip");
        let lowest = tail.len().saturating_sub(22 + 65535);
        let position = (lowest..=tail.len() - 22)
            .rev()
            .find(|&i| zip_layout::u32_at(tail, i) == Some(zip_layout::END_RECORD))
            .context("no end-of-central-directory record: not a zip file")?;
        let cd_size = le32(tail, position + 12)? as u64;
        let cd_offset = le32(tail, position + 16)? as u64;
        if cd_size != 0xFFFF_FFFF && cd_offset != 0xFFFF_FFFF {
            let eocd_absolute = self.tail_start + position as u64;
            ensure!(
                cd_offset.checked_add(cd_size).is_some_and(|end| end <= eocd_absolute),
                "central directory out of bounds"
            );
            return Ok((cd_offset, cd_size));
        }
        // Zip64: the locator sits right before the EOCD and points at the zip64 EOCD record.
        ensure!(position >= 20, "zip64 locator missing");
        ensure!(le32(tail, position - 20)? == zip_layout::ZIP64_LOCATOR, "zip64 locator missing");
        let record_offset = le64(tail, position - 20 + 8)?;
        let record = self.bytes(record_offset, 56)?;
        ensure!(le32(&record, 0)? == zip_layout::ZIP64_END_RECORD, "bad zip64 end-of-central-directory record");
        let cd_size = le64(&record, 40)?;
        let cd_offset = le64(&record, 48)?;
        ensure!(
            cd_offset.checked_add(cd_size).is_some_and(|end| end <= record_offset),
            "central directory out of bounds"
        );
        Ok((cd_offset, cd_size))
    }
}

fn parse_content_range(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (start.parse().ok()?, end.parse().ok()?, total.parse().ok()?);
    (start <= end).then_some((start, end, total))
}

fn le16(bytes: &[u8], at: usize) -> Result<u16> {
    zip_layout::u16_at(bytes, at).context("zip structure truncated")
}

fn le32(bytes: &[u8], at: usize) -> Result<u32> {
    zip_layout::u32_at(bytes, at).context("zip structure truncated")
}

fn le64(bytes: &[u8], at: usize) -> Result<u64> {
    zip_layout::u64_at(bytes, at).context("zip structure truncated")
}

/// A central-directory entry.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    method: u16,
    crc32: u32,
    compressed_size: u64,
    uncompressed_size: u64,
    local_header_offset: u64,
}

/// Whether `name` is `<dist>.dist-info/METADATA` at the top of the archive.
fn is_metadata_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((dir, "METADATA")) => dir.ends_with(".dist-info") && !dir.is_empty(),
        _ => false,
    }
}

fn find_metadata_entry(directory: &[u8]) -> Result<Entry> {
    let mut found: Vec<Entry> = Vec::new();
    let mut at = 0usize;
    while at < directory.len() {
        let (central, next) = zip_layout::parse_central(directory, at)
            .with_context(|| format!("bad central directory entry at offset {at}"))?;
        let name = String::from_utf8_lossy(&central.name).into_owned();
        if is_metadata_name(&name) {
            found.push(Entry {
                name,
                method: central.method,
                crc32: central.crc32,
                compressed_size: central.compressed_size,
                uncompressed_size: central.uncompressed_size,
                local_header_offset: central.local_offset,
            });
        }
        at = next;
    }
    match found.len() {
        0 => bail!("the wheel has no *.dist-info/METADATA"),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "the wheel has several METADATA files: {}",
            found.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn inflate_member(entry: &Entry, data: &[u8]) -> Result<String> {
    let bytes = match entry.method {
        0 => data.to_vec(),
        8 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(MAX_METADATA + 1)
                .read_to_end(&mut out)
                .with_context(|| format!("inflating {}", entry.name))?;
            out
        }
        other => bail!("{} uses zip compression method {other}; only stored and deflate are supported", entry.name),
    };
    ensure!(
        bytes.len() as u64 == entry.uncompressed_size,
        "{}: {} bytes after inflating, the central directory says {}",
        entry.name,
        bytes.len(),
        entry.uncompressed_size
    );
    let mut crc = flate2::Crc::new();
    crc.update(&bytes);
    ensure!(crc.sum() == entry.crc32, "{}: CRC-32 mismatch", entry.name);
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", entry.name))
}

/// METADATA from a complete wheel in memory.
pub(crate) fn metadata_from_whole_wheel(bytes: &[u8]) -> Result<String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).context("the wheel is not a valid zip")?;
    let names: Vec<String> =
        archive.file_names().filter_map(|n| n.ok()).filter(|n| is_metadata_name(n)).map(|n| n.into_owned()).collect();
    let name = match names.as_slice() {
        [one] => one.clone(),
        [] => bail!("the wheel has no *.dist-info/METADATA"),
        many => bail!("the wheel has several METADATA files: {}", many.join(", ")),
    };
    let member = archive.by_name(&name).with_context(|| format!("reading {name}"))?;
    let mut text = String::new();
    member.take(MAX_METADATA + 1).read_to_string(&mut text).with_context(|| format!("reading {name}"))?;
    ensure!(text.len() as u64 <= MAX_METADATA, "{name} is too large");
    Ok(text)
}

#[cfg(test)]
mod tests;
