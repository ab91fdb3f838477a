//! What the provider mocks (`azure_mock`, `anthropic_mock`, `bedrock_mock`) share: the record of
//! the calls each received, the reply text, and reading the prompt out of a JSON body.
//!
//! Every mock echoes the last user message as `echo: <text>` (as the OpenAI server does), so the
//! workload can tell that the answer went through the provider's wire format both ways. A request
//! the mock refuses (wrong path, missing key, bad signature) is recorded with the reason, so the
//! report can say why a provider's check failed.

use std::sync::{Arc, Mutex};

use serde_json::Value;

pub(crate) use crate::verify::openai_server::echo_text;

/// One request a mock received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MockCall {
    /// Whether the streaming operation was called.
    pub(crate) stream: bool,
    /// The text of the last message (empty when refused before reading it).
    pub(crate) prompt: String,
    /// Why the mock refused the request; `None` when it answered.
    pub(crate) refusal: Option<String>,
}

/// The calls of one mock, shared between its server threads and the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<Vec<MockCall>>>);

impl Calls {
    pub(crate) fn answered(&self, stream: bool, prompt: &str) {
        self.push(MockCall { stream, prompt: prompt.to_string(), refusal: None });
    }

    pub(crate) fn refused(&self, reason: &str) {
        self.push(MockCall { stream: false, prompt: String::new(), refusal: Some(reason.to_string()) });
    }

    fn push(&self, call: MockCall) {
        self.0.lock().expect("mock calls lock").push(call);
    }

    pub(crate) fn all(&self) -> Vec<MockCall> {
        self.0.lock().expect("mock calls lock").clone()
    }
}

/// The path of a request without its query.
pub(crate) fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or("")
}

/// The value of `name` in the query of `path_and_query`, as sent.
pub(crate) fn query_value<'a>(path_and_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path_and_query.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The text of the last message of `messages`: its `content` as a string, or the `text` of its
/// content blocks joined.
pub(crate) fn last_message_text(messages: Option<&Value>) -> Option<String> {
    let content = messages?.as_array()?.last()?.get("content")?;
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => {
            Some(blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""))
        }
        _ => None,
    }
}

/// The words of `text` with their trailing spaces, the pieces a mock streams.
pub(crate) fn stream_pieces(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prompts_come_from_strings_or_text_blocks() {
        let messages = json!([{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]);
        assert_eq!(last_message_text(Some(&messages)).as_deref(), Some("hi"));
        let blocks =
            json!([{"role": "user", "content": [{"text": "a "}, {"image": {}}, {"type": "text", "text": "b"}]}]);
        assert_eq!(last_message_text(Some(&blocks)).as_deref(), Some("a b"));
        assert_eq!(last_message_text(Some(&json!([]))), None);
        assert_eq!(last_message_text(None), None);
    }

    #[test]
    fn queries_and_pieces() {
        assert_eq!(query_value("/p?api-version=2024-10-21&x=1", "api-version"), Some("2024-10-21"));
        assert_eq!(query_value("/p?x=1", "api-version"), None);
        assert_eq!(path_only("/p?x=1"), "/p");
        assert_eq!(stream_pieces("echo: a b"), ["echo: ", "a ", "b"]);
    }
}
