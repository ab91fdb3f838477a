//! A mock of Anthropic's Messages API on 127.0.0.1, for the `anthropic` workload of `verify`.
//!
//! `POST /v1/messages` with the `x-api-key` and `anthropic-version` headers and a JSON body of
//! `model`, `max_tokens` and `messages` (<https://docs.anthropic.com/en/api/messages>). The answer
//! is a `message` object with one text content block; with `"stream": true` it is server-sent
//! events, each an `event: <type>` line and a `data: <json>` line, in the order Anthropic sends
//! them (<https://docs.anthropic.com/en/api/messages-streaming>): `message_start`,
//! `content_block_start`, `ping`, one `content_block_delta` (`text_delta`) per piece,
//! `content_block_stop`, `message_delta` (the stop reason and output tokens), `message_stop`.
//! LiteLLM reaches it as `model="anthropic/<model>"`, `api_base=<server>` (it appends
//! `/v1/messages`).

use serde_json::{Value, json};

use crate::verify::loopback::{Reply, Request};
use crate::verify::mock::{Calls, echo_text, last_message_text, path_only, stream_pieces};

/// The API version the mock wants in `anthropic-version`, the one LiteLLM sends.
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";

const MESSAGE_ID: &str = "msg_xtask_verify";

/// What the mock accepts.
#[derive(Debug, Clone)]
pub(crate) struct AnthropicMock {
    pub(crate) api_key: String,
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    Reply::new(status, "application/json", body.to_string())
}

impl AnthropicMock {
    /// Answer one request, recording it in `calls`.
    pub(crate) fn answer(&self, request: &Request, calls: &Calls) -> Reply {
        match self.check(request) {
            Ok((model, stream, prompt)) => {
                calls.answered(stream, &prompt);
                let text = echo_text(&prompt);
                if stream { stream_reply(&model, &text) } else { message_reply(&model, &text) }
            }
            Err((status, kind, message)) => {
                calls.refused(&message);
                error(status, kind, &message)
            }
        }
    }

    fn check(&self, request: &Request) -> Result<(String, bool, String), (u16, &'static str, String)> {
        let path = path_only(&request.path);
        if (request.method.as_str(), path) != ("POST", "/v1/messages") {
            return Err((
                404,
                "not_found_error",
                format!("{} {path}: this mock answers POST /v1/messages", request.method),
            ));
        }
        match request.header("x-api-key") {
            Some(key) if key == self.api_key => {}
            Some(_) => return Err((401, "authentication_error", "invalid x-api-key".into())),
            None => return Err((401, "authentication_error", "no x-api-key header".into())),
        }
        if request.header("anthropic-version") != Some(ANTHROPIC_VERSION) {
            return Err((
                400,
                "invalid_request_error",
                format!(
                    "anthropic-version {:?}; this mock wants {ANTHROPIC_VERSION:?}",
                    request.header("anthropic-version")
                ),
            ));
        }
        let invalid = |message: &str| (400, "invalid_request_error", message.to_string());
        let body: Value =
            serde_json::from_slice(&request.body).map_err(|e| invalid(&format!("the body is not JSON: {e}")))?;
        let model = body.get("model").and_then(Value::as_str).ok_or_else(|| invalid("model: field required"))?;
        if body.get("max_tokens").and_then(Value::as_u64).is_none() {
            return Err(invalid("max_tokens: field required"));
        }
        let prompt = last_message_text(body.get("messages")).ok_or_else(|| invalid("messages: field required"))?;
        Ok((model.to_string(), body.get("stream").and_then(Value::as_bool).unwrap_or(false), prompt))
    }
}

fn usage(text: &str) -> (usize, usize) {
    (3, text.split_whitespace().count())
}

fn message_reply(model: &str, text: &str) -> Reply {
    let (input_tokens, output_tokens) = usage(text);
    let body = json!({
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    });
    Reply::new(200, "application/json", body.to_string())
}

fn stream_reply(model: &str, text: &str) -> Reply {
    let (input_tokens, output_tokens) = usage(text);
    let mut events = vec![
        json!({"type": "message_start", "message": {
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    for piece in stream_pieces(text) {
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": output_tokens}}));
    events.push(json!({"type": "message_stop"}));
    let mut body = String::new();
    for event in events {
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        body.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
    }
    let mut reply = Reply::new(200, "text/event-stream", body);
    reply.headers.push(("Cache-Control".into(), "no-cache".into()));
    reply
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request(headers: &[(&str, &str)], body: Value) -> Request {
        let headers: BTreeMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Request { method: "POST".into(), path: "/v1/messages".into(), headers, body: body.to_string().into_bytes() }
    }

    const GOOD: [(&str, &str); 2] = [("x-api-key", "k"), ("anthropic-version", ANTHROPIC_VERSION)];

    fn body(stream: bool) -> Value {
        json!({"model": "claude-x", "max_tokens": 10, "stream": stream,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]})
    }

    #[test]
    fn answers_a_message_object() {
        let calls = Calls::default();
        let reply = AnthropicMock { api_key: "k".into() }.answer(&request(&GOOD, body(false)), &calls);
        assert_eq!(reply.status, 200);
        let answer: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(answer["type"], "message");
        assert_eq!(answer["content"], json!([{"type": "text", "text": "echo: hi there"}]));
        assert_eq!(calls.all()[0].prompt, "hi there");
    }

    #[test]
    fn streams_anthropic_event_types_in_order() {
        let reply = AnthropicMock { api_key: "k".into() }.answer(&request(&GOOD, body(true)), &Calls::default());
        let text = String::from_utf8(reply.body).unwrap();
        let kinds: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let joined: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|e| e["type"] == "content_block_delta")
            .map(|e| e["delta"]["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(joined, "echo: hi there");
    }

    #[test]
    fn refuses_missing_headers_and_fields_with_the_reason() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Value, u16, &'a str);
        let cases: [Case; 5] = [
            (&[("anthropic-version", ANTHROPIC_VERSION)], body(false), 401, "no x-api-key header"),
            (&[("x-api-key", "bad"), ("anthropic-version", ANTHROPIC_VERSION)], body(false), 401, "invalid x-api-key"),
            (&[("x-api-key", "k")], body(false), 400, "anthropic-version None; this mock wants \"2023-06-01\""),
            (&GOOD, json!({"model": "m", "messages": []}), 400, "max_tokens: field required"),
            (&GOOD, json!({"model": "m", "max_tokens": 1}), 400, "messages: field required"),
        ];
        for (headers, body, status, reason) in cases {
            let calls = Calls::default();
            let reply = AnthropicMock { api_key: "k".into() }.answer(&request(headers, body), &calls);
            assert_eq!(reply.status, status, "{reason}");
            let answer: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(answer["error"]["message"], reason);
            assert_eq!(calls.all()[0].refusal.as_deref(), Some(reason));
        }
        let mut wrong_path = request(&GOOD, body(false));
        wrong_path.path = "/v1/complete".into();
        let reply = AnthropicMock { api_key: "k".into() }.answer(&wrong_path, &Calls::default());
        assert_eq!(reply.status, 404);
    }
}
