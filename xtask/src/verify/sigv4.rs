//! Checking an AWS Signature Version 4 `Authorization` header the way an AWS service does: the
//! Bedrock mock recomputes the signature of each request from the fake secret key and refuses any
//! that differs.
//!
//! The steps follow the specification, <https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html>:
//! a canonical request (method, URI-encoded path, sorted query, the signed headers lower-cased
//! with trimmed values, the signed header names, the hex SHA-256 of the body), a string to sign
//! (`AWS4-HMAC-SHA256`, the request time, the credential scope, the hex SHA-256 of the canonical
//! request), a signing key derived by an HMAC-SHA256 chain over date, region, service and
//! `aws4_request` from `AWS4<secret>`, and the hex HMAC of the string to sign under that key.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::verify::loopback::Request;

/// The one algorithm AWS accepts in a SigV4 `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The fake credentials a request must be signed with.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    /// The region and service of the credential scope, e.g. `us-east-1` and `bedrock`.
    pub(crate) region: String,
    pub(crate) service: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
#[derive(Debug, Clone, PartialEq)]
struct Authorization {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(header: &str) -> Result<Authorization, String> {
    let Some(rest) = header.strip_prefix(ALGORITHM).and_then(|r| r.strip_prefix(' ')) else {
        return Err(format!("the Authorization header does not start with {ALGORITHM:?}"));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", value)) => credential = Some(value),
            Some(("SignedHeaders", value)) => signed_headers = Some(value),
            Some(("Signature", value)) => signature = Some(value),
            _ => return Err(format!("unexpected part {:?} in the Authorization header", part.trim())),
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err("the Authorization header needs Credential=, SignedHeaders= and Signature=".into());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("Credential={credential}: expected <key id>/<yyyymmdd>/<region>/<service>/aws4_request"));
    };
    Ok(Authorization {
        access_key_id: access_key_id.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers: signed_headers.split(';').map(str::to_string).collect(),
        signature: signature.into(),
    })
}

/// URI-encode every byte except the unreserved characters `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`), upper-case hex, as SigV4 requires.
fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The canonical query string: each `name=value` URI-encoded, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&percent_decode(name), false), uri_encode(&percent_decode(value), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&")
}

/// Undo `%XX` escapes (a malformed escape is kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical request of `request` over `signed_headers`. Services other than S3 encode the
/// path as sent once more (so `%3A` becomes `%253A`), which is what botocore signs.
fn canonical_request(request: &Request, signed_headers: &[String], double_encode_path: bool) -> Result<String, String> {
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let path = if double_encode_path { uri_encode(path, true) } else { path.to_string() };
    let mut headers = String::new();
    for name in signed_headers {
        let value = request.header(name).ok_or_else(|| format!("signed header {name:?} is not in the request"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload = hex::encode(Sha256::digest(&request.body));
    Ok(format!(
        "{}\n{path}\n{}\n{headers}\n{}\n{payload}",
        request.method,
        canonical_query(query),
        signed_headers.join(";")
    ))
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of `canonical_request` made at `amz_date` (`yyyymmddThhmmssZ`).
fn signature(secret: &str, amz_date: &str, region: &str, service: &str, canonical_request: &str) -> String {
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign =
        format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date);
    for part in [region, service, "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    hex::encode(hmac_sha256(&key, &string_to_sign))
}

/// How far the request time may be from the server's clock, as AWS allows.
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// Seconds since the Unix epoch of an `X-Amz-Date` (`yyyymmddThhmmssZ`).
fn amz_date_seconds(amz_date: &str) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| amz_date.get(range)?.parse::<u32>().ok();
    if amz_date.len() != 16 || &amz_date[8..9] != "T" || !amz_date.ends_with('Z') {
        return None;
    }
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(digits(0..4)?).ok()?, month, u8::try_from(digits(6..8)?).ok()?)
            .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(digits(9..11)?).ok()?,
        u8::try_from(digits(11..13)?).ok()?,
        u8::try_from(digits(13..15)?).ok()?,
    )
    .ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp())
}

/// Check the SigV4 signature of `request` against `credentials`, made within 15 minutes of `now`
/// (the server's clock, seconds since the Unix epoch); the error says what is wrong, as the
/// mock's refusal.
pub(crate) fn verify_at(request: &Request, credentials: &Credentials, now: i64) -> Result<(), String> {
    let header = request.header("authorization").ok_or("no Authorization header (the request is not signed)")?;
    let auth = parse_authorization(header)?;
    if auth.access_key_id != credentials.access_key_id {
        return Err(format!("unknown access key id {:?}", auth.access_key_id));
    }
    if (auth.region.as_str(), auth.service.as_str()) != (credentials.region.as_str(), credentials.service.as_str()) {
        return Err(format!(
            "credential scope {}/{} does not match {}/{}",
            auth.region, auth.service, credentials.region, credentials.service
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(format!("SignedHeaders does not include {required}"));
        }
    }
    let amz_date = request.header("x-amz-date").unwrap_or_default();
    let Some(signed_at) = amz_date_seconds(amz_date).filter(|_| amz_date.starts_with(&auth.date)) else {
        return Err(format!("X-Amz-Date {amz_date:?} does not match the credential date {}", auth.date));
    };
    if (now - signed_at).abs() > MAX_SKEW_SECONDS {
        return Err(format!(
            "X-Amz-Date {amz_date} is more than 15 minutes from the server's clock (signature expired)"
        ));
    }
    let canonical = canonical_request(request, &auth.signed_headers, auth.service != "s3")?;
    let expected = signature(&credentials.secret_access_key, amz_date, &auth.region, &auth.service, &canonical);
    if expected != auth.signature {
        return Err(format!(
            "signature mismatch: computed {expected}, the request has {}; canonical request:\n{canonical}",
            auth.signature
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The "GET Object" example of the S3 SigV4 documentation
    /// (<https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>).
    fn s3_example(signature: &str) -> Request {
        let headers: BTreeMap<String, String> = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("x-amz-date", "20130524T000000Z"),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature={signature}"
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Request { method: "GET".into(), path: "/test.txt".into(), headers, body: Vec::new() }
    }

    fn s3_credentials() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    const S3_SIGNATURE: &str = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    /// The example's time, 2013-05-24T00:00:00Z.
    const S3_NOW: i64 = 1_369_353_600;

    fn verify(request: &Request, credentials: &Credentials) -> Result<(), String> {
        verify_at(request, credentials, S3_NOW)
    }

    #[test]
    fn the_example_is_refused_today() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let err = verify_at(&s3_example(S3_SIGNATURE), &s3_credentials(), now).unwrap_err();
        assert!(err.ends_with("is more than 15 minutes from the server's clock (signature expired)"), "{err}");
    }

    #[test]
    fn the_aws_documentation_example_verifies() {
        let request = s3_example(S3_SIGNATURE);
        let signed: Vec<String> = ["host", "range", "x-amz-content-sha256", "x-amz-date"].map(String::from).to_vec();
        let canonical = canonical_request(&request, &signed, false).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        verify(&request, &s3_credentials()).unwrap();
    }

    #[test]
    fn a_wrong_signature_secret_or_body_is_refused() {
        let bad = "0".repeat(64);
        let err = verify(&s3_example(&bad), &s3_credentials()).unwrap_err();
        assert!(
            err.starts_with(&format!("signature mismatch: computed {S3_SIGNATURE}, the request has {bad}; canonical request:\nGET\n/test.txt\n")),
            "{err}"
        );
        let mut other_secret = s3_credentials();
        other_secret.secret_access_key.push('x');
        assert!(verify(&s3_example(S3_SIGNATURE), &other_secret).unwrap_err().starts_with("signature mismatch"));
        let mut tampered = s3_example(S3_SIGNATURE);
        tampered.body = b"tampered".to_vec();
        assert!(verify(&tampered, &s3_credentials()).unwrap_err().starts_with("signature mismatch"));
    }

    #[test]
    fn unsigned_or_malformed_requests_are_refused_with_the_reason() {
        let mut request = s3_example(S3_SIGNATURE);
        request.headers.remove("authorization");
        assert_eq!(
            verify(&request, &s3_credentials()).unwrap_err(),
            "no Authorization header (the request is not signed)"
        );
        request.headers.insert("authorization".into(), "Bearer token".into());
        assert_eq!(
            verify(&request, &s3_credentials()).unwrap_err(),
            "the Authorization header does not start with \"AWS4-HMAC-SHA256\""
        );
        let mut other_key = s3_credentials();
        other_key.access_key_id = "AKIDOTHER".into();
        assert_eq!(
            verify(&s3_example(S3_SIGNATURE), &other_key).unwrap_err(),
            "unknown access key id \"AKIAIOSFODNN7EXAMPLE\""
        );
        let mut other_service = s3_credentials();
        other_service.service = "bedrock".into();
        assert_eq!(
            verify(&s3_example(S3_SIGNATURE), &other_service).unwrap_err(),
            "credential scope us-east-1/s3 does not match us-east-1/bedrock"
        );
    }

    #[test]
    fn a_request_signed_too_long_ago_or_ahead_is_refused() {
        assert_eq!(amz_date_seconds("20130524T000000Z"), Some(S3_NOW));
        assert_eq!(amz_date_seconds("2013-05-24T00:00"), None);
        let request = s3_example(S3_SIGNATURE);
        verify_at(&request, &s3_credentials(), S3_NOW + MAX_SKEW_SECONDS).unwrap();
        for now in [S3_NOW + MAX_SKEW_SECONDS + 1, S3_NOW - MAX_SKEW_SECONDS - 1] {
            assert_eq!(
                verify_at(&request, &s3_credentials(), now).unwrap_err(),
                "X-Amz-Date 20130524T000000Z is more than 15 minutes from the server's clock (signature expired)"
            );
        }
    }

    #[test]
    fn paths_and_queries_are_canonicalised_as_aws_specifies() {
        assert_eq!(
            uri_encode("/model/amazon.nova-lite-v1%3A0/converse", true),
            "/model/amazon.nova-lite-v1%253A0/converse"
        );
        assert_eq!(uri_encode("a b/~", false), "a%20b%2F~");
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
        assert_eq!(canonical_query(""), "");
    }
}
