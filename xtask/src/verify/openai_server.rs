//! A local OpenAI-compatible chat server on 127.0.0.1, for smoke-testing LiteLLM without a provider.
//!
//! `POST /v1/chat/completions` answers a `chat.completion` object whose message is
//! `echo: <content of the last message>`; with `"stream": true` it answers the same text as
//! server-sent events (`data: {chunk}` lines ending with `data: [DONE]`), the way the OpenAI API
//! streams (<https://platform.openai.com/docs/api-reference/chat/streaming>). LiteLLM reaches it
//! with `model="openai/<anything>"`, `api_base=<server>/v1` and any `api_key`. Every chat request
//! is recorded so callers can check what came through.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::verify::loopback::{Reply, Request, TestServer};

/// One chat request as the server understood it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatRequest {
    /// The `model` field as sent (LiteLLM strips its `openai/` prefix).
    pub(crate) model: String,
    /// Whether `"stream": true` was asked for.
    pub(crate) stream: bool,
    /// The content of the last message, which the reply echoes.
    pub(crate) last_message: String,
    /// The `Authorization` header.
    pub(crate) authorization: Option<String>,
    /// The whole JSON body.
    pub(crate) body: Value,
}

/// The running server; dropping it stops it.
pub(crate) struct OpenAiServer {
    server: TestServer,
    chats: Arc<Mutex<Vec<ChatRequest>>>,
}

/// The text the server answers to a last message `content`.
pub(crate) fn echo_text(content: &str) -> String {
    format!("echo: {content}")
}

impl OpenAiServer {
    /// Start the server on an ephemeral port of 127.0.0.1.
    pub(crate) fn start() -> OpenAiServer {
        let chats: Arc<Mutex<Vec<ChatRequest>>> = Arc::new(Mutex::new(Vec::new()));
        let recorded = chats.clone();
        let server = TestServer::start(move |request| answer(request, &recorded));
        OpenAiServer { server, chats }
    }

    /// `http://127.0.0.1:<port>/v1`, the `api_base` to give LiteLLM.
    pub(crate) fn api_base(&self) -> String {
        self.server.url("/v1")
    }

    /// Every well-formed chat request served so far, in order.
    pub(crate) fn chat_requests(&self) -> Vec<ChatRequest> {
        self.chats.lock().expect("chat requests lock").clone()
    }
}

fn error_reply(status: u16, message: &str) -> Reply {
    let body = json!({"error": {"message": message, "type": "invalid_request_error"}});
    Reply::new(status, "application/json", body.to_string())
}

fn answer(request: &Request, chats: &Mutex<Vec<ChatRequest>>) -> Reply {
    let path = request.path.split('?').next().unwrap_or("");
    if path != "/v1/chat/completions" {
        return error_reply(404, &format!("unknown path {path}; this server answers POST /v1/chat/completions"));
    }
    if request.method != "POST" {
        return error_reply(405, "use POST");
    }
    let body: Value = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => return error_reply(400, &format!("the body is not JSON: {e}")),
    };
    let Some(model) = body.get("model").and_then(Value::as_str).map(str::to_string) else {
        return error_reply(400, "missing \"model\"");
    };
    let Some(last_message) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.last())
        .and_then(|message| message.get("content"))
        .map(content_text)
    else {
        return error_reply(400, "missing \"messages\" (a non-empty list of {role, content})");
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    chats.lock().expect("chat requests lock").push(ChatRequest {
        model: model.clone(),
        stream,
        last_message: last_message.clone(),
        authorization: request.header("authorization").map(str::to_string),
        body: body.clone(),
    });
    let text = echo_text(&last_message);
    if stream { stream_reply(&model, &text) } else { completion_reply(&model, &text, &last_message) }
}

/// A message's `content`: a string, or the text parts of a list of content parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        other => other.to_string(),
    }
}

const ID: &str = "chatcmpl-xtask-verify";
const CREATED: u64 = 1_700_000_000;

pub(crate) fn completion_reply(model: &str, text: &str, prompt: &str) -> Reply {
    let prompt_tokens = prompt.split_whitespace().count().max(1);
    let completion_tokens = text.split_whitespace().count();
    let body = json!({
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    });
    Reply::new(200, "application/json", body.to_string())
}

/// The reply text in chunks of whole words, as `text/event-stream`.
pub(crate) fn stream_reply(model: &str, text: &str) -> Reply {
    let chunk = |delta: Value, finish_reason: Value| {
        json!({
            "id": ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        })
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    for piece in text.split_inclusive(' ') {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    let mut body = String::new();
    for event in events {
        body.push_str(&format!("data: {event}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    let mut reply = Reply::new(200, "text/event-stream", body);
    reply.headers.push(("Cache-Control".into(), "no-cache".into()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(server: &OpenAiServer, body: &Value) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .post(format!("{}/chat/completions", server.api_base()))
            .bearer_auth("sk-test")
            .json(body)
            .send()
            .unwrap()
    }

    #[test]
    fn answers_a_completion_echoing_the_last_message() {
        let server = OpenAiServer::start();
        let reply = post(&server, &json!({"model": "m1", "messages": [{"role": "user", "content": "hi there"}]}));
        assert_eq!(reply.status(), 200);
        let body: Value = reply.json().unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], "echo: hi there");
        let chats = server.chat_requests();
        assert_eq!(chats.len(), 1);
        assert_eq!(chats[0].model, "m1");
        assert!(!chats[0].stream);
        assert_eq!(chats[0].authorization.as_deref(), Some("Bearer sk-test"));
    }

    #[test]
    fn streams_server_sent_events_ending_with_done() {
        let server = OpenAiServer::start();
        let reply = post(
            &server,
            &json!({"model": "m2", "stream": true, "messages": [{"role": "user", "content": [{"type": "text", "text": "a b"}]}]}),
        );
        assert_eq!(reply.headers()["content-type"], "text/event-stream");
        let text = reply.text().unwrap();
        let data: Vec<&str> = text.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
        assert_eq!(data.last(), Some(&"[DONE]"));
        let mut joined = String::new();
        for event in &data[..data.len() - 1] {
            let chunk: Value = serde_json::from_str(event).unwrap();
            assert_eq!(chunk["object"], "chat.completion.chunk");
            joined.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
        }
        assert_eq!(joined, "echo: a b");
        assert!(server.chat_requests()[0].stream);
    }

    #[test]
    fn refuses_bad_requests_with_a_message() {
        let server = OpenAiServer::start();
        let reply = post(&server, &json!({"messages": []}));
        assert_eq!(reply.status(), 400);
        assert!(reply.text().unwrap().contains("missing \\\"model\\\""));
        let missing = reqwest::blocking::get(server.url_for_tests("/v1/models")).unwrap();
        assert_eq!(missing.status(), 404);
        assert!(server.chat_requests().is_empty());
        assert_eq!(server.requests().len(), 2);
    }

    impl OpenAiServer {
        fn requests(&self) -> Vec<Request> {
            self.server.requests()
        }

        fn url_for_tests(&self, path: &str) -> String {
            self.server.url(path)
        }
    }
}
