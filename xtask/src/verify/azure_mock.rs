//! A mock of Azure OpenAI's chat completions API on 127.0.0.1, for the `azure` workload of `verify`.
//!
//! Azure OpenAI addresses a deployment, not a model, and authenticates with an `api-key` header
//! (<https://learn.microsoft.com/en-us/azure/ai-services/openai/reference>):
//! `POST /openai/deployments/<deployment>/chat/completions?api-version=<version>`. The body and
//! the answers (a `chat.completion` object, or `data:` server-sent events ending with
//! `data: [DONE]`) are OpenAI's. The mock refuses any other path, a missing or different
//! `api-version`, a missing or wrong `api-key`, and a body that is not a chat request, with
//! Azure's error shape; LiteLLM reaches it as `model="azure/<deployment>"`, `api_base=<server>`.

use serde_json::{Value, json};

use crate::verify::loopback::{Reply, Request};
use crate::verify::mock::{Calls, echo_text, last_message_text, path_only, query_value};
use crate::verify::openai_server::{completion_reply, stream_reply};

/// What the mock accepts.
#[derive(Debug, Clone)]
pub(crate) struct AzureMock {
    pub(crate) deployment: String,
    pub(crate) api_version: String,
    pub(crate) api_key: String,
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::new(status, "application/json", json!({"error": {"code": code, "message": message}}).to_string())
}

impl AzureMock {
    /// Answer one request, recording it in `calls`.
    pub(crate) fn answer(&self, request: &Request, calls: &Calls) -> Reply {
        match self.check(request) {
            Ok((stream, prompt)) => {
                calls.answered(stream, &prompt);
                let text = echo_text(&prompt);
                if stream {
                    stream_reply(&self.deployment, &text)
                } else {
                    completion_reply(&self.deployment, &text, &prompt)
                }
            }
            Err((status, code, message)) => {
                calls.refused(&message);
                error(status, code, &message)
            }
        }
    }

    fn check(&self, request: &Request) -> Result<(bool, String), (u16, &'static str, String)> {
        let wanted = format!("/openai/deployments/{}/chat/completions", self.deployment);
        let path = path_only(&request.path);
        if path != wanted {
            return Err((
                404,
                "DeploymentNotFound",
                format!("{} {path}: this mock answers POST {wanted}", request.method),
            ));
        }
        if request.method != "POST" {
            return Err((405, "MethodNotAllowed", format!("{} {path}: use POST", request.method)));
        }
        match query_value(&request.path, "api-version") {
            Some(version) if version == self.api_version => {}
            other => {
                return Err((
                    400,
                    "BadRequest",
                    format!("api-version {other:?} in the query; this mock wants {:?}", self.api_version),
                ));
            }
        }
        match request.header("api-key") {
            Some(key) if key == self.api_key => {}
            Some(_) => return Err((401, "401", "the api-key header does not match".into())),
            None => return Err((401, "401", "no api-key header".into())),
        }
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| (400, "BadRequest", format!("the body is not JSON: {e}")))?;
        let prompt = last_message_text(body.get("messages")).ok_or((
            400,
            "BadRequest",
            "the body has no \"messages\" with content".to_string(),
        ))?;
        Ok((body.get("stream").and_then(Value::as_bool).unwrap_or(false), prompt))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn mock() -> AzureMock {
        AzureMock { deployment: "dep1".into(), api_version: "2024-10-21".into(), api_key: "key1".into() }
    }

    fn request(path: &str, key: Option<&str>, body: Value) -> Request {
        let mut headers = BTreeMap::new();
        if let Some(key) = key {
            headers.insert("api-key".to_string(), key.to_string());
        }
        Request { method: "POST".into(), path: path.into(), headers, body: body.to_string().into_bytes() }
    }

    const PATH: &str = "/openai/deployments/dep1/chat/completions?api-version=2024-10-21";

    #[test]
    fn answers_a_well_formed_request_and_streams_openai_chunks() {
        let calls = Calls::default();
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let reply = mock().answer(&request(PATH, Some("key1"), body), &calls);
        assert_eq!(reply.status, 200);
        let answer: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "echo: hi");
        let streamed = mock().answer(
            &request(PATH, Some("key1"), json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]})),
            &calls,
        );
        assert_eq!(streamed.headers[0].1, "text/event-stream");
        assert!(String::from_utf8(streamed.body).unwrap().ends_with("data: [DONE]\n\n"));
        let calls = calls.all();
        assert_eq!((calls[0].stream, calls[1].stream, calls[1].prompt.as_str()), (false, true, "hi"));
    }

    #[test]
    fn refuses_a_wrong_path_version_or_key_with_the_reason() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let cases = [
            (
                request("/v1/chat/completions", Some("key1"), body.clone()),
                404,
                "POST /v1/chat/completions: this mock answers POST /openai/deployments/dep1/chat/completions",
            ),
            (
                request("/openai/deployments/dep1/chat/completions", Some("key1"), body.clone()),
                400,
                "api-version None in the query; this mock wants \"2024-10-21\"",
            ),
            (request(PATH, None, body.clone()), 401, "no api-key header"),
            (request(PATH, Some("other"), body.clone()), 401, "the api-key header does not match"),
            (request(PATH, Some("key1"), json!({})), 400, "the body has no \"messages\" with content"),
        ];
        for (request, status, reason) in cases {
            let calls = Calls::default();
            let reply = mock().answer(&request, &calls);
            assert_eq!(reply.status, status, "{reason}");
            let answer: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(answer["error"]["message"], reason);
            assert_eq!(calls.all()[0].refusal.as_deref(), Some(reason));
        }
    }
}
