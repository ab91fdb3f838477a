//! A mock of Amazon Bedrock's Converse and ConverseStream operations on 127.0.0.1, for the
//! `bedrock` workload of `verify`.
//!
//! `POST /model/<model id>/converse` and `POST /model/<model id>/converse-stream`, the model id
//! URL-encoded (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html>,
//! `API_runtime_ConverseStream.html`). Every request must carry a SigV4 signature made with the
//! mock's fake credentials for service `bedrock`; the mock recomputes it (`verify/sigv4.rs`) and
//! refuses a missing or wrong one, or one made more than 15 minutes from its clock, with 403, as
//! AWS does. Converse answers
//! `{output: {message: {role, content: [{text}]}}, stopReason, usage, metrics}`;
//! ConverseStream answers `application/vnd.amazon.eventstream` (`verify/event_stream.rs`):
//! `messageStart`, `contentBlockDelta` per piece, `contentBlockStop`, `messageStop`, `metadata`.
//! LiteLLM reaches it as `model="bedrock/converse/<model id>"` with
//! `aws_bedrock_runtime_endpoint=<server>` and the credentials in the AWS environment variables.

use serde_json::{Value, json};

use crate::verify::event_stream::encode_event;
use crate::verify::loopback::{Reply, Request};
use crate::verify::mock::{Calls, echo_text, last_message_text, path_only, stream_pieces};
use crate::verify::sigv4::{self, Credentials};

/// What the mock accepts.
#[derive(Debug, Clone)]
pub(crate) struct BedrockMock {
    /// The model id, unencoded, e.g. `amazon.nova-lite-v1:0`.
    pub(crate) model_id: String,
    pub(crate) credentials: Credentials,
    /// The server's clock for the signature's time check; `None` is the real clock.
    pub(crate) fixed_clock: Option<i64>,
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    let mut reply = Reply::new(status, "application/json", json!({"message": message}).to_string());
    reply.headers.push(("x-amzn-ErrorType".into(), kind.into()));
    reply
}

impl BedrockMock {
    /// Answer one request, recording it in `calls`.
    pub(crate) fn answer(&self, request: &Request, calls: &Calls) -> Reply {
        match self.check(request) {
            Ok((stream, prompt)) => {
                calls.answered(stream, &prompt);
                let text = echo_text(&prompt);
                if stream { converse_stream_reply(&text) } else { converse_reply(&text) }
            }
            Err((status, kind, message)) => {
                calls.refused(&message);
                error(status, kind, &message)
            }
        }
    }

    fn check(&self, request: &Request) -> Result<(bool, String), (u16, &'static str, String)> {
        let path = path_only(&request.path);
        let encoded: String = url::form_urlencoded::byte_serialize(self.model_id.as_bytes()).collect();
        let converse = format!("/model/{encoded}/converse");
        let stream = match path.strip_prefix(&converse) {
            Some("") => false,
            Some("-stream") => true,
            _ => {
                return Err((
                    404,
                    "UnknownOperationException",
                    format!("{} {path}: this mock answers POST {converse} and {converse}-stream", request.method),
                ));
            }
        };
        if request.method != "POST" {
            return Err((405, "UnknownOperationException", format!("{} {path}: use POST", request.method)));
        }
        let now = self.fixed_clock.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
        sigv4::verify_at(request, &self.credentials, now)
            .map_err(|reason| (403, "InvalidSignatureException", reason))?;
        let invalid = |message: String| (400, "ValidationException", message);
        let body: Value =
            serde_json::from_slice(&request.body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
        let prompt = last_message_text(body.get("messages"))
            .ok_or_else(|| invalid("messages: a non-empty list of {role, content: [{text}]} is required".into()))?;
        Ok((stream, prompt))
    }
}

fn usage(text: &str) -> Value {
    let output = text.split_whitespace().count();
    json!({"inputTokens": 3, "outputTokens": output, "totalTokens": 3 + output})
}

fn converse_reply(text: &str) -> Reply {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": usage(text),
        "metrics": {"latencyMs": 1},
    });
    Reply::new(200, "application/json", body.to_string())
}

fn converse_stream_reply(text: &str) -> Reply {
    let mut body = encode_event("messageStart", &json!({"role": "assistant"}));
    for piece in stream_pieces(text) {
        body.extend(encode_event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": piece}})));
    }
    body.extend(encode_event("contentBlockStop", &json!({"contentBlockIndex": 0})));
    body.extend(encode_event("messageStop", &json!({"stopReason": "end_turn"})));
    body.extend(encode_event("metadata", &json!({"usage": usage(text), "metrics": {"latencyMs": 1}})));
    Reply::new(200, "application/vnd.amazon.eventstream", body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn mock() -> BedrockMock {
        BedrockMock {
            model_id: "amazon.nova-lite-v1:0".into(),
            credentials: Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "secret".into(),
                region: "us-east-1".into(),
                service: "bedrock".into(),
            },
            // When botocore signed the requests below: 2026-12-01T08:26:42Z.
            fixed_clock: Some(1796113602),
        }
    }

    /// A request signed the way botocore's SigV4Auth signs it: the signature below was computed
    /// with botocore 1.44.8 (`SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "bedrock",
    /// "us-east-1")` on this URL and body, at the date below), independently of this crate.
    fn signed(path: &str, body: &str, signature: &str) -> Request {
        let headers: BTreeMap<String, String> = [
            ("content-type", "application/json"),
            ("host", "127.0.0.1:8080"),
            ("x-amz-date", "20261201T082642Z"),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/bedrock/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-date, Signature={signature}"
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Request { method: "POST".into(), path: path.into(), headers, body: body.as_bytes().to_vec() }
    }

    const BODY: &str = r#"{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}"#;
    const CONVERSE: &str = "/model/amazon.nova-lite-v1%3A0/converse";
    const CONVERSE_SIGNATURE: &str = "118769ffe578b6d276694df6be1085231476a5ebd60cdabe45c6e58e9d4456ca";
    const STREAM_SIGNATURE: &str = "bc14f9e7fc54b8c9891a160cf653e889ecf7c87c6cc22a03724e641514231040";

    #[test]
    fn a_botocore_signed_converse_is_answered() {
        let calls = Calls::default();
        let reply = mock().answer(&signed(CONVERSE, BODY, CONVERSE_SIGNATURE), &calls);
        let answer: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(reply.status, 200, "{answer}");
        assert_eq!(answer["output"]["message"]["content"][0]["text"], "echo: hi");
        assert_eq!(calls.all()[0].refusal, None);
    }

    #[test]
    fn a_botocore_signed_converse_stream_is_answered_in_event_stream_framing() {
        let path = format!("{CONVERSE}-stream");
        let reply = mock().answer(&signed(&path, BODY, STREAM_SIGNATURE), &Calls::default());
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.headers[0].1, "application/vnd.amazon.eventstream");
        let first = encode_event("messageStart", &json!({"role": "assistant"}));
        assert_eq!(&reply.body[..first.len()], &first[..]);
        let events = String::from_utf8_lossy(&reply.body).into_owned();
        for kind in ["contentBlockDelta", "contentBlockStop", "messageStop", "metadata"] {
            assert!(events.contains(kind), "{kind}");
        }
    }

    #[test]
    fn a_bad_signature_or_path_is_refused() {
        let calls = Calls::default();
        let reply = mock().answer(&signed(CONVERSE, BODY, &"0".repeat(64)), &calls);
        assert_eq!(reply.status, 403);
        assert_eq!(reply.headers[1], ("x-amzn-ErrorType".to_string(), "InvalidSignatureException".to_string()));
        let reason = calls.all()[0].refusal.clone().unwrap();
        assert!(reason.starts_with(&format!("signature mismatch: computed {CONVERSE_SIGNATURE}, ")), "{reason}");
        let tampered = mock().answer(&signed(CONVERSE, &BODY.replace("hi", "ho"), CONVERSE_SIGNATURE), &calls);
        assert_eq!(tampered.status, 403);
        let reply = mock().answer(&signed("/model/other/converse", BODY, CONVERSE_SIGNATURE), &calls);
        assert_eq!(reply.status, 404);
        assert_eq!(
            calls.all()[2].refusal.as_deref(),
            Some(
                "POST /model/other/converse: this mock answers POST /model/amazon.nova-lite-v1%3A0/converse and \
                 /model/amazon.nova-lite-v1%3A0/converse-stream"
            )
        );
    }
}
