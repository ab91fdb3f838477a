//! A client for the PEP 691 JSON Simple API, with an on-disk HTTP cache of project pages.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/simple-repository-api/#json-serialization>
//! (PEP 691; `size`/`upload-time` from PEP 700; `yanked` from PEP 592; `core-metadata` from PEP 658/714).
//!
//! Each project page is cached under `<cache>/index-v1/` together with its `ETag` and the
//! `Cache-Control: max-age` it came with: a fresh page is used without asking the index, a stale one
//! is revalidated with `If-None-Match` (a `304` keeps it). Cache files are written to a temp file
//! and renamed, so an interrupted run never leaves a half-written page behind.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, Sha256Hex, sha256_bytes};
use crate::http::{Http, HttpError, read_body_checked, redact_url};

/// The media type of PEP 691 JSON pages, version 1.
pub(crate) const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// One file of a project page.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProjectFile {
    pub(crate) filename: String,
    /// Absolute URL; may carry the index's credentials (never write it out unredacted).
    pub(crate) url: String,
    pub(crate) sha256: Option<Sha256Hex>,
    pub(crate) requires_python: Option<String>,
    pub(crate) yanked: bool,
    /// PEP 592: the reason given with a yanked mark, when the index gave a non-empty one.
    pub(crate) yanked_reason: Option<String>,
    pub(crate) size: Option<u64>,
    /// RFC 3339 upload time (PEP 700), when the index gives it.
    pub(crate) upload_time: Option<String>,
    /// PEP 658/714: the index serves `<url>.metadata`; the sha256 of that file when given.
    pub(crate) core_metadata: Option<Option<Sha256Hex>>,
}

/// A project page: every file the index offers for one project.
#[derive(Debug, Clone)]
pub(crate) struct ProjectPage {
    /// The normalized project name.
    pub(crate) name: String,
    /// The page URL, credentials redacted (for messages).
    pub(crate) url: String,
    pub(crate) files: Vec<ProjectFile>,
    /// Files dropped because the index gave no sha256 for them.
    pub(crate) files_without_sha256: Vec<String>,
    /// Whether the page came from the cache without a network round trip.
    pub(crate) from_cache: bool,
    /// Things to tell the user (a newer `meta.api-version` minor).
    pub(crate) warnings: Vec<String>,
}

/// Index failures a caller may want to tell apart (a missing project, an index that is not PEP 691).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexError {
    #[error("package {name:?} was not found on the index ({url} answered 404)")]
    NotFound { name: String, url: String },
    #[error(
        "{url} answered {content_type:?} to a request for {SIMPLE_JSON}: this index does not speak PEP 691 (the JSON \
         Simple API); point --index-url (or [index] url in layer.toml) at an index that does, e.g. https://pypi.org/simple"
    )]
    NotJson { url: String, content_type: String },
    #[error("malformed index page for package {name:?} at {url}: {message}")]
    Malformed { name: String, url: String, message: String },
}

/// The client: cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub(crate) struct IndexClient {
    http: Http,
    /// The index base URL with a trailing slash, credentials included (used for requests only).
    base: url::Url,
    cache_dir: PathBuf,
}

/// The highest `meta.api-version` this client knows: 1.0 (PEP 691), 1.1 (PEP 700: `size`,
/// `upload-time`, `versions`), 1.2 (PEP 708 tracks/alternate locations), 1.3 (PEP 740
/// provenance), 1.4 (PEP 792 project status). The later additions are optional keys it ignores.
pub(crate) const API_VERSION: (u64, u64) = (1, 4);

/// The PEP 691 page as sent.
#[derive(Debug, Deserialize)]
struct RawPage {
    #[serde(default)]
    meta: Option<RawMeta>,
    #[serde(default)]
    files: Vec<RawFile>,
}

#[derive(Debug, Deserialize)]
struct RawMeta {
    #[serde(default, rename = "api-version")]
    api_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "requires-python")]
    requires_python: Option<String>,
    #[serde(default)]
    yanked: Option<serde_json::Value>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "upload-time")]
    upload_time: Option<String>,
    #[serde(default, rename = "core-metadata")]
    core_metadata: Option<serde_json::Value>,
    #[serde(default, rename = "data-dist-info-metadata")]
    data_dist_info_metadata: Option<serde_json::Value>,
}

/// The header line of a cached page (the body follows after a newline).
#[derive(Debug, Serialize, Deserialize)]
struct CacheHeader {
    etag: Option<String>,
    /// Unix seconds when the page was fetched or last revalidated.
    stored_at: u64,
    /// Seconds the page stays fresh (`Cache-Control: max-age`), 0 when not given.
    max_age: u64,
}

impl IndexClient {
    /// A client for the index at `index_url` (e.g. `https://pypi.org/simple`).
    pub(crate) fn new(http: Http, index_url: &str, cache: &Cache) -> Result<IndexClient> {
        let mut text = index_url.trim().to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = url::Url::parse(&text).with_context(|| format!("index URL {:?} is not a URL", redact_url(&text)))?;
        if !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("index URL {}: only http and https indexes are supported", redact_url(&text));
        }
        let cache_dir = cache.subdir("index-v1")?;
        Ok(IndexClient { http, base, cache_dir })
    }

    /// The page URL of a project (`<index>/<normalized name>/`).
    pub(crate) fn project_url(&self, name: &str) -> Result<url::Url> {
        self.base.join(&format!("{name}/")).with_context(|| format!("building the index URL of {name}"))
    }

    /// Fetch (or take from the cache) the page of project `name` (normalized).
    pub(crate) fn project(&self, name: &str) -> Result<ProjectPage> {
        let url = self.project_url(name)?;
        let shown = redact_url(url.as_str());
        let cache_file =
            self.cache_dir.join(format!("{}.json", sha256_bytes(strip_credentials(url.as_str()).as_bytes())));
        let cached = read_cache(&cache_file);
        if let Some((header, body)) = &cached
            && header.max_age > 0
            && now().saturating_sub(header.stored_at) < header.max_age
        {
            return parse_page(name, &url, &shown, body, true);
        }
        let etag = cached.as_ref().and_then(|(header, _)| header.etag.clone());
        let result = self.http.get_with(url.as_str(), |request| {
            let request = request.header(ACCEPT, format!("{SIMPLE_JSON}, application/json;q=0.9, text/html;q=0.1"));
            match &etag {
                Some(etag) => request.header(IF_NONE_MATCH, etag),
                None => request,
            }
        });
        let response = match result {
            Ok(response) => response,
            Err(HttpError::Status { status, .. }) if status == StatusCode::NOT_MODIFIED && cached.is_some() => {
                let (header, body) = cached.expect("checked above");
                let header = CacheHeader { stored_at: now(), ..header };
                write_cache(&cache_file, &header, &body).ok();
                return parse_page(name, &url, &shown, &body, true);
            }
            Err(HttpError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Err(IndexError::NotFound { name: name.to_string(), url: shown }.into());
            }
            Err(error) => {
                return Err(crate::http::explain(error)).with_context(|| format!("fetching the index page of {name}"));
            }
        };
        let content_type = header_text(&response, CONTENT_TYPE).unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media_type != SIMPLE_JSON && media_type != "application/json" {
            return Err(IndexError::NotJson { url: shown, content_type }.into());
        }
        let header = CacheHeader {
            etag: header_text(&response, ETAG),
            stored_at: now(),
            max_age: header_text(&response, CACHE_CONTROL).as_deref().map(max_age).unwrap_or(0),
        };
        let body = read_body_checked(url.as_str(), response)?;
        let body = String::from_utf8(body).map_err(|_| IndexError::Malformed {
            name: name.to_string(),
            url: shown.clone(),
            message: "the body is not UTF-8".into(),
        })?;
        let page = parse_page(name, &url, &shown, &body, false)?;
        // Only a page that parsed is cached, so a broken answer is asked for again next time.
        write_cache(&cache_file, &header, &body).with_context(|| format!("caching the index page of {name}"))?;
        Ok(page)
    }
}

fn header_text(response: &reqwest::blocking::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// `max-age=N` of a Cache-Control header; `no-cache`/`no-store` mean 0.
fn max_age(cache_control: &str) -> u64 {
    let mut age = 0;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return 0;
        }
        if let Some(value) = lower.strip_prefix("max-age=") {
            age = value.trim_matches('"').parse().unwrap_or(0);
        }
    }
    age
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn read_cache(path: &std::path::Path) -> Option<(CacheHeader, String)> {
    let text = fs_err::read_to_string(path).ok()?;
    let (first, body) = text.split_once('\n')?;
    let header: CacheHeader = serde_json::from_str(first).ok()?;
    Some((header, body.to_string()))
}

fn write_cache(path: &std::path::Path, header: &CacheHeader, body: &str) -> Result<()> {
    let mut text = serde_json::to_string(header)?;
    text.push('\n');
    text.push_str(body);
    crate::files::write_atomically(path, text.as_bytes())
}

/// Parse a PEP 691 page. Files without a sha256 are dropped and listed in `files_without_sha256`
/// (this tool only locks hashed files); relative file URLs are resolved against the page URL.
fn parse_page(name: &str, url: &url::Url, shown: &str, body: &str, from_cache: bool) -> Result<ProjectPage> {
    let malformed = |message: String| IndexError::Malformed { name: name.to_string(), url: shown.to_string(), message };
    let raw: RawPage = serde_json::from_str(body).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    // PEP 691: "Clients MUST check the major version and refuse to parse a major version they do
    // not know; they SHOULD warn on a minor version newer than they know."
    let mut warnings = Vec::new();
    if let Some(version) = raw.meta.as_ref().and_then(|meta| meta.api_version.as_deref()) {
        let parsed = version
            .split_once('.')
            .and_then(|(major, minor)| Some((major.parse::<u64>().ok()?, minor.parse::<u64>().ok()?)));
        match parsed {
            None => return Err(malformed(format!("meta.api-version {version:?} is not MAJOR.MINOR")).into()),
            Some((major, _)) if major != API_VERSION.0 => {
                return Err(malformed(format!(
                    "meta.api-version {version} has a major version this client does not read (it reads {}.x); \
                     use an index that serves the version 1 JSON Simple API",
                    API_VERSION.0
                ))
                .into());
            }
            Some((_, minor)) if minor > API_VERSION.1 => warnings.push(format!(
                "the index page of {name} ({shown}) has meta.api-version {version}, newer than the {}.{} this \
                 client knows; new keys are ignored",
                API_VERSION.0, API_VERSION.1
            )),
            Some(_) => {}
        }
    }
    let mut files = Vec::with_capacity(raw.files.len());
    let mut files_without_sha256 = Vec::new();
    for file in raw.files {
        if file.filename.is_empty() || file.filename.contains(['/', '\\']) {
            return Err(malformed(format!("file name {:?} is not a plain file name", file.filename)).into());
        }
        let Some(sha256) = file.hashes.get("sha256") else {
            files_without_sha256.push(file.filename);
            continue;
        };
        let sha256 =
            Sha256Hex::parse(sha256).map_err(|e| malformed(format!("file {}: hashes.sha256: {e}", file.filename)))?;
        let file_url = url
            .join(&file.url)
            .map_err(|e| malformed(format!("file {}: url {:?}: {e}", file.filename, redact_url(&file.url))))?;
        if !matches!(file_url.scheme(), "http" | "https") {
            return Err(malformed(format!(
                "file {}: url scheme {:?} is not http(s)",
                file.filename,
                file_url.scheme()
            ))
            .into());
        }
        let (yanked, yanked_reason) = match file.yanked {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => (false, None),
            Some(serde_json::Value::Bool(true)) => (true, None),
            Some(serde_json::Value::String(reason)) => (true, Some(reason).filter(|r| !r.trim().is_empty())),
            Some(other) => {
                return Err(malformed(format!(
                    "file {}: yanked = {other} (expected a bool or a string)",
                    file.filename
                ))
                .into());
            }
        };
        let core_metadata = match file.core_metadata.or(file.data_dist_info_metadata) {
            None | Some(serde_json::Value::Bool(false)) | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(hashes)) => {
                Some(hashes.get("sha256").and_then(|v| v.as_str()).and_then(|s| Sha256Hex::parse(s).ok()))
            }
            Some(_) => Some(None),
        };
        files.push(ProjectFile {
            filename: file.filename,
            url: file_url.to_string(),
            sha256: Some(sha256),
            requires_python: file.requires_python.filter(|s| !s.trim().is_empty()),
            yanked,
            yanked_reason,
            size: file.size,
            upload_time: file.upload_time,
            core_metadata,
        });
    }
    Ok(ProjectPage {
        name: name.to_string(),
        url: shown.to_string(),
        files,
        files_without_sha256,
        from_cache,
        warnings,
    })
}

/// A URL with any user name and password removed (for the lock: credentials belong to the
/// environment, `XTASK_INDEX_URL`, never to a committed file).
pub(crate) fn strip_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => redact_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(max_age("max-age=600, public"), 600);
        assert_eq!(max_age("public, max-age=60"), 60);
        assert_eq!(max_age("no-cache, max-age=60"), 0);
        assert_eq!(max_age("private"), 0);
    }

    #[test]
    fn credentials_are_stripped_for_the_lock() {
        assert_eq!(strip_credentials("https://u:tok@example.com/simple/"), "https://example.com/simple/");
        assert_eq!(strip_credentials("https://pypi.org/simple"), "https://pypi.org/simple");
    }

    #[test]
    fn page_parsing_resolves_urls_and_notes_missing_hashes() {
        let url = url::Url::parse("https://u:p@example.com/simple/demo/").unwrap();
        let body = format!(
            r#"{{"meta":{{"api-version":"1.1"}},"name":"demo","files":[
            {{"filename":"demo-1.0-py3-none-any.whl","url":"../../files/demo-1.0-py3-none-any.whl","hashes":{{"sha256":"{}"}},"yanked":"broken","requires-python":">=3.8","size":12,"upload-time":"2024-01-01T00:00:00.000000Z"}},
            {{"filename":"demo-0.9-py3-none-any.whl","url":"https://files.example.com/demo-0.9-py3-none-any.whl","hashes":{{}}}}
            ]}}"#,
            "a".repeat(64)
        );
        let page = parse_page("demo", &url, "shown", &body, false).unwrap();
        assert_eq!(page.files.len(), 1);
        assert_eq!(page.files[0].url, "https://u:p@example.com/files/demo-1.0-py3-none-any.whl");
        assert!(page.files[0].yanked);
        assert_eq!(page.files[0].yanked_reason.as_deref(), Some("broken"));
        assert_eq!(page.files[0].requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(page.files_without_sha256, ["demo-0.9-py3-none-any.whl"]);
    }

    fn page_with(meta: &str, file_extra: &str) -> String {
        format!(
            r#"{{"meta":{meta},"name":"demo","files":[{{"filename":"demo-1.0-py3-none-any.whl","url":"demo-1.0-py3-none-any.whl","hashes":{{"sha256":"{}"}}{file_extra}}}]}}"#,
            "b".repeat(64)
        )
    }

    #[test]
    fn api_version_major_refuses_and_newer_minor_warns() {
        let url = url::Url::parse("https://example.com/simple/demo/").unwrap();
        let shown = "https://example.com/simple/demo/";
        let page = parse_page("demo", &url, shown, &page_with(r#"{"api-version":"1.1"}"#, ""), false).unwrap();
        assert!(page.warnings.is_empty());
        let page = parse_page("demo", &url, shown, &page_with(r#"{"api-version":"1.9"}"#, ""), false).unwrap();
        assert_eq!(
            page.warnings,
            ["the index page of demo (https://example.com/simple/demo/) has meta.api-version 1.9, newer than the 1.4 \
              this client knows; new keys are ignored"]
        );
        let err = parse_page("demo", &url, shown, &page_with(r#"{"api-version":"2.0"}"#, ""), false).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "malformed index page for package \"demo\" at https://example.com/simple/demo/: meta.api-version 2.0 has a \
             major version this client does not read (it reads 1.x); use an index that serves the version 1 JSON \
             Simple API"
        );
    }

    #[test]
    fn both_metadata_keys_are_read_and_core_metadata_wins() {
        let url = url::Url::parse("https://example.com/simple/demo/").unwrap();
        let hash = "c".repeat(64);
        let meta = r#"{"api-version":"1.1"}"#;
        let old_key = page_with(meta, &format!(r#","data-dist-info-metadata":{{"sha256":"{hash}"}}"#));
        let page = parse_page("demo", &url, "shown", &old_key, false).unwrap();
        assert_eq!(page.files[0].core_metadata, Some(Some(Sha256Hex::parse(&hash).unwrap())));
        let new_key =
            page_with(meta, &format!(r#","core-metadata":{{"sha256":"{hash}"}},"data-dist-info-metadata":false"#));
        let page = parse_page("demo", &url, "shown", &new_key, false).unwrap();
        assert_eq!(page.files[0].core_metadata, Some(Some(Sha256Hex::parse(&hash).unwrap())));
        let without = page_with(meta, r#","core-metadata":false,"data-dist-info-metadata":true"#);
        assert_eq!(parse_page("demo", &url, "shown", &without, false).unwrap().files[0].core_metadata, None);
    }

    #[test]
    fn malformed_pages_name_the_package_and_url() {
        let url = url::Url::parse("https://example.com/simple/demo/").unwrap();
        let err = parse_page("demo", &url, "https://example.com/simple/demo/", "{\"files\": [1", false).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("malformed index page for package \"demo\" at https://example.com/simple/demo/"), "{msg}");
        assert!(msg.contains("invalid JSON"), "{msg}");
    }
}
