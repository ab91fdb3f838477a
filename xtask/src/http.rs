//! The HTTP client: timeouts, retries with backoff on transient failures only, credential redaction.

use std::io::Read;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};

/// How many times a transient failure is retried before giving up.
const ATTEMPTS: u32 = 4;

/// A blocking HTTP client shared by the index client and the downloader. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    backoff: Duration,
}

/// Why a request failed, so callers can tell "not there" from "broken".
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    /// DNS found no address or the host refused the connection: retrying would not help.
    #[error("{host} is unreachable ({reason}): {url}")]
    Unreachable { url: String, host: String, reason: String },
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl Http {
    pub fn new() -> Result<Http> {
        let client = Client::builder()
            .user_agent(concat!("litellm-layer-xtask/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(16)
            .build()
            .context("creating the HTTP client")?;
        Ok(Http { client, backoff: Duration::from_millis(250) })
    }

    /// A client with a short timeout, for reachability probes (`doctor`).
    pub(crate) fn with_timeout(timeout: Duration) -> Result<Http> {
        let client =
            Client::builder().connect_timeout(timeout).timeout(timeout).build().context("creating the HTTP client")?;
        Ok(Http { client, backoff: Duration::from_millis(50) })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Send a GET built by `build`, retrying transient failures (connection errors, timeouts,
    /// 408/429/5xx) with exponential backoff. Other statuses are returned as `HttpError::Status`.
    pub(crate) fn get_with(
        &self,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, HttpError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = build(self.client.get(url)).send();
            let redacted = redact_url(url);
            match result {
                Ok(response) if response.status().is_success() || response.status() == StatusCode::PARTIAL_CONTENT => {
                    return Ok(response);
                }
                Ok(response) => {
                    let status = response.status();
                    if is_transient_status(status) && attempt < ATTEMPTS {
                        self.sleep_before_retry(attempt, &format!("{redacted} answered {status}"));
                        continue;
                    }
                    return Err(HttpError::Status { url: redacted, status });
                }
                Err(error) => {
                    if let Some(reason) = unreachable_reason(&error) {
                        let host = url::Url::parse(url)
                            .ok()
                            .and_then(|parsed| parsed.host_str().map(str::to_string))
                            .unwrap_or_else(|| redacted.clone());
                        return Err(HttpError::Unreachable { url: redacted, host, reason });
                    }
                    if (error.is_connect() || error.is_timeout() || error.is_request()) && attempt < ATTEMPTS {
                        self.sleep_before_retry(attempt, &format!("{redacted}: {error}"));
                        continue;
                    }
                    return Err(HttpError::Transport { url: redacted, source: error.without_url() });
                }
            }
        }
    }

    fn sleep_before_retry(&self, attempt: u32, why: &str) {
        let delay = self.backoff * 2u32.pow(attempt - 1);
        eprintln!("    retrying in {:.1}s ({why})", delay.as_secs_f64());
        thread::sleep(delay);
    }
}

/// Why a failed request can never succeed by retrying now: the name does not resolve, or nothing
/// listens there. Read from the error's causes (hyper reports DNS failures as "dns error").
fn unreachable_reason(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Some("connection refused".to_string());
        }
        let text = current.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            let detail = std::iter::successors(current.source(), |e| e.source()).last().map(|e| e.to_string());
            return Some(match detail {
                Some(detail) => format!("DNS lookup failed: {detail}"),
                None => "DNS lookup failed".to_string(),
            });
        }
        cause = current.source();
    }
    None
}

/// The host named by an [`HttpError::Unreachable`] anywhere in `error`'s chain.
pub(crate) fn unreachable_host(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| match cause.downcast_ref::<HttpError>() {
        Some(HttpError::Unreachable { host, .. }) => Some(host.clone()),
        _ => None,
    })
}

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A URL with any user name and password replaced by `***`, for messages, locks and SBOMs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("***");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => {
            // Not a URL we can parse: still never show what looks like credentials.
            match (url.find("://"), url.find('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    format!("{}***{}", &url[..scheme_end + 3], &url[at..])
                }
                _ => url.to_string(),
            }
        }
    }
}

/// Read a whole response body, failing if fewer bytes arrive than `Content-Length` promised.
pub(crate) fn read_body_checked(url: &str, mut response: Response) -> Result<Vec<u8>> {
    let expected = response.content_length();
    let mut body = Vec::new();
    response.read_to_end(&mut body).with_context(|| format!("reading {}", redact_url(url)))?;
    if let Some(expected) = expected
        && body.len() as u64 != expected
    {
        bail!("truncated download from {}: got {} of {expected} bytes", redact_url(url), body.len());
    }
    Ok(body)
}

/// Turn an `HttpError` into `anyhow` with a hint for the common statuses.
pub(crate) fn explain(error: HttpError) -> anyhow::Error {
    match &error {
        HttpError::Status { status, .. } if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN => {
            anyhow!(error).context("the server refused the credentials (check the index URL's user and token)")
        }
        _ => anyhow!(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact_url("https://user:s3cret@example.com/simple/"), "https://***@example.com/simple/");
        assert_eq!(redact_url("https://token@example.com/simple/"), "https://***@example.com/simple/");
        assert_eq!(redact_url("https://pypi.org/simple/"), "https://pypi.org/simple/");
        assert!(!redact_url("weird://a:b@c d").contains("a:b"));
    }

    #[test]
    fn a_refused_connection_is_not_retried_and_names_the_host() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let http = Http::new().unwrap();
        let started = std::time::Instant::now();
        let url = format!("http://127.0.0.1:{port}/cpython.tar.gz");
        let error = http.get_with(&url, |r| r).unwrap_err();
        assert_eq!(error.to_string(), format!("127.0.0.1 is unreachable (connection refused): {url}"));
        // Three retries would sleep 0.25 + 0.5 + 1 s.
        assert!(started.elapsed() < std::time::Duration::from_millis(700), "retried: {:?}", started.elapsed());
        assert_eq!(unreachable_host(&anyhow::Error::new(error)).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_not_retried() {
        // `.invalid` never resolves (RFC 2606); the resolver answers without the network.
        let http = Http::new().unwrap();
        let started = std::time::Instant::now();
        let error = http.get_with("https://pbs.invalid/x.tar.gz", |r| r).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("pbs.invalid is unreachable (DNS lookup failed"), "{text}");
        assert!(text.ends_with("): https://pbs.invalid/x.tar.gz"), "{text}");
        assert!(started.elapsed() < std::time::Duration::from_millis(700) + std::time::Duration::from_secs(5));
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        assert!(is_transient_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient_status(StatusCode::NOT_FOUND));
        assert!(!is_transient_status(StatusCode::FORBIDDEN));
    }
}
