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
pub enum HttpError {
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
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
    pub fn with_timeout(timeout: Duration) -> Result<Http> {
        let client =
            Client::builder().connect_timeout(timeout).timeout(timeout).build().context("creating the HTTP client")?;
        Ok(Http { client, backoff: Duration::from_millis(50) })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Send a GET built by `build`, retrying transient failures (connection errors, timeouts,
    /// 408/429/5xx) with exponential backoff. Other statuses are returned as `HttpError::Status`.
    pub fn get_with(&self, url: &str, build: impl Fn(RequestBuilder) -> RequestBuilder) -> Result<Response, HttpError> {
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

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A URL with any user name and password replaced by `***`, for messages, locks and SBOMs.
pub fn redact_url(url: &str) -> String {
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
pub fn read_body_checked(url: &str, mut response: Response) -> Result<Vec<u8>> {
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
pub fn explain(error: HttpError) -> anyhow::Error {
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
    fn only_transient_statuses_are_retried() {
        assert!(is_transient_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient_status(StatusCode::NOT_FOUND));
        assert!(!is_transient_status(StatusCode::FORBIDDEN));
    }
}
