//! The provider mocks one `verify` run starts: for each enabled provider of the catalog
//! (`xtask/data/providers.toml`) whose workload is not `openai` (which the OpenAI-compatible server
//! serves), a loopback server speaking its wire format, the workload the layer's Python runs
//! against it, and the checks that say what the mock saw (docs/architecture.md, "Providers").
//!
//! A workload is data for `check_layer.py`: the `litellm.completion` arguments that reach the
//! mock, environment variables set while it runs (the fake AWS credentials), and the botocore
//! clients that must still construct after the `botocore-services` prune.

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::providers::Provider;
use crate::verify::anthropic_mock::AnthropicMock;
use crate::verify::azure_mock::AzureMock;
use crate::verify::bedrock_mock::BedrockMock;
use crate::verify::loopback::TestServer;
use crate::verify::mock::{Calls, echo_text};
use crate::verify::report::CheckResult;
use crate::verify::runner::PythonRun;
use crate::verify::sigv4::Credentials;

/// The workloads with a mock here; `openai` runs against the OpenAI-compatible server.
pub(crate) const MOCKED_WORKLOADS: [&str; 3] = ["anthropic", "azure", "bedrock"];

/// The AWS region the Bedrock workload signs for and constructs its clients in.
const AWS_REGION: &str = "us-east-1";

/// One running mock and how the workload reaches it.
pub(crate) struct ProviderMock {
    /// The catalog name, e.g. `bedrock`.
    pub(crate) provider: String,
    title: String,
    server: TestServer,
    calls: Calls,
    /// `litellm.completion` arguments besides `messages`.
    request: Value,
    /// Environment variables set while the workload runs.
    env: Value,
    /// botocore services whose clients must construct.
    clients: Vec<String>,
}

impl ProviderMock {
    /// Start the mock of `provider`'s workload on 127.0.0.1; `None` for the `openai` workload.
    /// `secret` makes the fake keys of this run differ from any other.
    pub(crate) fn start(provider: &Provider, secret: &str) -> Result<Option<ProviderMock>> {
        let calls = Calls::default();
        let recorded = calls.clone();
        let (server, request, env) = match provider.workload.as_str() {
            "openai" => return Ok(None),
            "azure" => {
                let mock = AzureMock {
                    deployment: "xtask-verify-deployment".into(),
                    api_version: "2024-10-21".into(),
                    api_key: format!("azure-key-{secret}"),
                };
                let request = json!({"model": format!("azure/{}", mock.deployment), "api_key": mock.api_key,
                                     "api_version": mock.api_version});
                let server = TestServer::start(move |r| mock.answer(r, &recorded));
                let request = with_base(request, "api_base", server.url(""));
                (server, request, json!({}))
            }
            "anthropic" => {
                let mock = AnthropicMock { api_key: format!("anthropic-key-{secret}") };
                let request = json!({"model": "anthropic/claude-3-5-haiku-20241022", "api_key": mock.api_key,
                                     "max_tokens": 64});
                let server = TestServer::start(move |r| mock.answer(r, &recorded));
                let request = with_base(request, "api_base", server.url(""));
                (server, request, json!({}))
            }
            "bedrock" => {
                let credentials = Credentials {
                    access_key_id: "AKIDXTASKVERIFY".into(),
                    secret_access_key: format!("xtask-verify-fake-secret-{secret}"),
                    region: AWS_REGION.into(),
                    service: "bedrock".into(),
                };
                let env = json!({
                    "AWS_ACCESS_KEY_ID": credentials.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
                    "AWS_REGION": AWS_REGION,
                    "AWS_DEFAULT_REGION": AWS_REGION,
                });
                let mock = BedrockMock { model_id: "amazon.nova-lite-v1:0".into(), credentials, fixed_clock: None };
                let request = json!({"model": format!("bedrock/converse/{}", mock.model_id),
                                     "aws_region_name": AWS_REGION});
                let server = TestServer::start(move |r| mock.answer(r, &recorded));
                let request = with_base(request, "aws_bedrock_runtime_endpoint", server.url(""));
                (server, request, env)
            }
            other => bail!(
                "provider {:?}: `verify` has no mock for workload {other:?} (known: openai, {}); add one under \
                 xtask/src/verify/ (docs/architecture.md, \"Providers\")",
                provider.name,
                MOCKED_WORKLOADS.join(", ")
            ),
        };
        Ok(Some(ProviderMock {
            provider: provider.name.clone(),
            title: provider.title.clone(),
            server,
            calls,
            request,
            env,
            clients: provider.botocore_services.clone(),
        }))
    }

    /// The prompt this mock's workload sends in a run whose prompt is `prompt`.
    fn prompt(&self, prompt: &str) -> String {
        format!("{prompt} via {}", self.provider)
    }

    /// The workload as `check_layer.py` reads it.
    pub(crate) fn workload(&self, prompt: &str) -> Value {
        let prompt = self.prompt(prompt);
        json!({
            "provider": self.provider,
            "request": self.request,
            "env": self.env,
            "clients": self.clients,
            "region": AWS_REGION,
            "prompt": prompt,
            "expect": echo_text(&prompt),
        })
    }

    /// The checks of this provider in the main run: its completion and streaming results, the
    /// clients it constructed, and what the mock saw.
    pub(crate) fn checks(&self, run: &PythonRun, prompt: &str) -> Vec<CheckResult> {
        let mut checks = Vec::new();
        for result in run.results() {
            if result["provider"] != self.provider.as_str() {
                continue;
            }
            let name = match (result["check"].as_str(), result["call"].as_str()) {
                (Some("provider"), Some("completion")) => {
                    format!("{}: completion against the {} mock", self.provider, self.title)
                }
                (Some("provider"), Some("stream")) => {
                    format!("{}: streaming completion against the {} mock", self.provider, self.title)
                }
                (Some("client"), _) => format!(
                    "{}: boto3 client {:?} constructs",
                    self.provider,
                    result["service"].as_str().unwrap_or("?")
                ),
                _ => continue,
            };
            let detail = result["detail"].as_str().unwrap_or_default().to_string();
            checks.push(CheckResult { name, ok: result["ok"].as_bool() == Some(true), detail });
        }
        let prompt = self.prompt(prompt);
        let calls = self.calls.all();
        let answered = |stream: bool| {
            calls.iter().filter(|c| c.refusal.is_none() && c.stream == stream && c.prompt == prompt).count()
        };
        let refusals: Vec<String> = calls.iter().filter_map(|c| c.refusal.clone()).collect();
        let (plain, streamed) = (answered(false), answered(true));
        checks.push(CheckResult {
            name: format!("{}: the {} mock answered both, refused nothing", self.provider, self.title),
            ok: plain >= 1 && streamed >= 1 && refusals.is_empty(),
            detail: if refusals.is_empty() {
                format!("{} ({plain} plain, {streamed} streaming request(s) with the prompt)", self.server.url(""))
            } else {
                format!("{} refused {} request(s):\n{}\n", self.server.url(""), refusals.len(), refusals.join("\n"))
            },
        });
        checks
    }
}

fn with_base(mut request: Value, key: &str, url: String) -> Value {
    request[key] = Value::String(url);
    request
}

/// Start the mocks of `providers`, in catalog order.
pub(crate) fn start_all(providers: &[&Provider], secret: &str) -> Result<Vec<ProviderMock>> {
    let mut mocks = Vec::new();
    for provider in providers {
        mocks.extend(ProviderMock::start(provider, secret)?);
    }
    Ok(mocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalog;

    #[test]
    fn every_catalog_workload_has_a_mock_or_is_openai() {
        let catalog = Catalog::builtin();
        let all: Vec<&Provider> = catalog.names().iter().map(|n| catalog.get(n).unwrap()).collect();
        let mocks = start_all(&all, "t").unwrap();
        let names: Vec<&str> = mocks.iter().map(|m| m.provider.as_str()).collect();
        assert_eq!(names, ["anthropic", "azure", "bedrock"]);
        let bedrock = mocks[2].workload("p");
        assert_eq!(bedrock["prompt"], "p via bedrock");
        assert_eq!(bedrock["expect"], "echo: p via bedrock");
        assert_eq!(bedrock["request"]["model"], "bedrock/converse/amazon.nova-lite-v1:0");
        assert!(bedrock["request"]["aws_bedrock_runtime_endpoint"].as_str().unwrap().starts_with("http://127.0.0.1:"));
        assert_eq!(bedrock["env"]["AWS_SECRET_ACCESS_KEY"], "xtask-verify-fake-secret-t");
        assert_eq!(bedrock["clients"], json!(["bedrock", "bedrock-runtime", "sso", "sso-oidc", "sts"]));
    }

    #[test]
    fn an_unknown_workload_names_the_known_ones() {
        let mut provider = Catalog::builtin().get("azure").unwrap().clone();
        provider.workload = "vertex".into();
        let err = ProviderMock::start(&provider, "t").err().unwrap().to_string();
        assert_eq!(
            err,
            "provider \"azure\": `verify` has no mock for workload \"vertex\" (known: openai, anthropic, azure, \
             bedrock); add one under xtask/src/verify/ (docs/architecture.md, \"Providers\")"
        );
    }

    #[test]
    fn a_mock_that_saw_nothing_or_refused_fails_its_check() {
        let provider = Catalog::builtin().get("anthropic").unwrap().clone();
        let mock = ProviderMock::start(&provider, "t").unwrap().unwrap();
        let run = PythonRun { status: None, stdout: String::new(), stderr: String::new(), wall: Default::default() };
        let checks = mock.checks(&run, "p");
        assert_eq!(checks.len(), 1);
        assert!(!checks[0].ok);
        assert_eq!(checks[0].name, "anthropic: the Anthropic mock answered both, refused nothing");
        let reply = reqwest::blocking::Client::new()
            .post(format!("{}/v1/messages", mock.server.url("")))
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(reply.status(), 401);
        let checks = mock.checks(&run, "p");
        assert!(checks[0].detail.ends_with("refused 1 request(s):\nno x-api-key header\n"), "{}", checks[0].detail);
    }
}
