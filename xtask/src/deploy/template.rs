//! Checks on the CloudFormation template `serverless package` writes, before anything is deployed.
//!
//! The layer resource must be built for the target architecture and the `nodejs22.x` runtime and
//! upload the built zip; every function must run `nodejs22.x` on that architecture, carry the
//! Python environment the build names (docs/architecture.md §9; `serverless-layer.json`) and reference the layer; the `chat`
//! function must have a Function URL that streams (`InvokeMode: RESPONSE_STREAM`) with an explicit
//! auth type (`AWS_IAM`, or `NONE` only with API keys configured). Each failure names the resource
//! and the key, and says how to fix it.
//!
//! Resource and property names follow the CloudFormation reference:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-layerversion.html>,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-function.html>,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-url.html>.

use std::fmt;

use serde_json::Value;

use crate::arch::Arch;

/// The Lambda runtime of the service.
pub(crate) const RUNTIME: &str = crate::lambda::NODE_RUNTIME;

const LAYER_TYPE: &str = "AWS::Lambda::LayerVersion";
const FUNCTION_TYPE: &str = "AWS::Lambda::Function";
const URL_TYPE: &str = "AWS::Lambda::Url";

/// The logical id Serverless gives the `chat` function.
pub(crate) const CHAT_FUNCTION: &str = "ChatLambdaFunction";

/// Environment variables that configure bearer API keys for the chat function; with one of them a
/// Function URL may use `AuthType: NONE` (the function checks the keys itself).
pub(crate) const API_KEY_VARIABLES: [&str; 2] = ["API_KEY_SHA256S", "API_KEY_SHA256S_SSM_PARAMETER"];

/// What the template must hold besides the fixed facts: the build's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) arch: Arch,
    /// The environment every function needs to run the layer's Python, from the build's wiring.
    pub(crate) environment: Vec<(String, String)>,
    /// The file name of the layer zip the template must upload (the end of `Content.S3Key`).
    pub(crate) artifact_name: String,
}

impl Expected {
    /// The expectations for a build described by `wiring`.
    pub(crate) fn from_wiring(arch: Arch, wiring: &crate::serverless::LayerWiring) -> Expected {
        Expected {
            arch,
            environment: vec![
                ("PYTHONHOME".into(), wiring.python_home.clone()),
                ("PYTHONPATH".into(), wiring.python_path.clone()),
                ("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into()),
            ],
            artifact_name: arch.layer_zip_name(),
        }
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckFailure {
    /// The logical id of the resource, or `Resources` when the resource is missing altogether.
    pub(crate) resource: String,
    /// The property path inside the resource, e.g. `Properties.Architectures`.
    pub(crate) key: String,
    /// What is wrong.
    pub(crate) problem: String,
    /// How to fix it.
    pub(crate) fix: String,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}; {}", self.resource, self.key, self.problem, self.fix)
    }
}

/// What the checks found in a template that passed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateSummary {
    /// Logical ids of the layer resources.
    pub(crate) layers: Vec<LayerResource>,
    /// The functions, in template order.
    pub(crate) functions: Vec<FunctionResource>,
    /// A one-line description of each check that passed.
    pub(crate) checks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerResource {
    pub(crate) logical_id: String,
    /// `Properties.Content.S3Key`, when it is a plain string (its file name is the packaged zip's).
    pub(crate) s3_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionResource {
    pub(crate) logical_id: String,
    /// `Properties.FunctionName`, when it is a plain string.
    pub(crate) function_name: Option<String>,
}

/// Check a parsed template for `arch`. Returns every failure, not only the first.
pub(crate) fn check_template(template: &Value, expected: &Expected) -> Result<TemplateSummary, Vec<CheckFailure>> {
    let arch = expected.arch;
    let mut failures = Vec::new();
    let mut checks = Vec::new();
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return Err(vec![CheckFailure {
            resource: "template".into(),
            key: "Resources".into(),
            problem: "is missing or not an object".into(),
            fix: "this is not a CloudFormation template written by `serverless package`".into(),
        }]);
    };
    let of_type = |wanted: &str| -> Vec<(&String, &Value)> {
        resources.iter().filter(|(_, resource)| resource.get("Type").and_then(Value::as_str) == Some(wanted)).collect()
    };
    let arch_name = arch.lambda_name();
    let expected_arch = Value::Array(vec![Value::String(arch_name.to_string())]);
    let patch_hint = "run `cargo xtask patch` and package again".to_string();

    let layers = of_type(LAYER_TYPE);
    if layers.is_empty() {
        failures.push(CheckFailure {
            resource: "Resources".into(),
            key: format!("(no {LAYER_TYPE})"),
            problem: "has no layer resource".into(),
            fix: format!("add the layer under `layers:` in serverless.yml with `package.artifact` ({patch_hint})"),
        });
    }
    let mut layer_summaries = Vec::new();
    for (logical_id, layer) in &layers {
        let architectures = property(layer, &["CompatibleArchitectures"]);
        if architectures != Some(&expected_arch) {
            failures.push(CheckFailure {
                resource: (*logical_id).clone(),
                key: "Properties.CompatibleArchitectures".into(),
                problem: format!("is {}, expected [\"{arch_name}\"]", shown(architectures)),
                fix: format!(
                    "set `compatibleArchitectures: [{arch_name}]` on the layer in serverless.yml ({patch_hint})"
                ),
            });
        }
        let runtimes = property(layer, &["CompatibleRuntimes"]);
        let has_runtime = runtimes.and_then(Value::as_array).is_some_and(|list| list.iter().any(|r| r == RUNTIME));
        if !has_runtime {
            failures.push(CheckFailure {
                resource: (*logical_id).clone(),
                key: "Properties.CompatibleRuntimes".into(),
                problem: format!("is {}, expected it to contain \"{RUNTIME}\"", shown(runtimes)),
                fix: format!("add {RUNTIME} to `compatibleRuntimes` of the layer in serverless.yml ({patch_hint})"),
            });
        }
        let s3_key = property(layer, &["Content", "S3Key"]).and_then(Value::as_str);
        if s3_key.and_then(|key| key.rsplit('/').next()) != Some(expected.artifact_name.as_str()) {
            failures.push(CheckFailure {
                resource: (*logical_id).clone(),
                key: "Properties.Content.S3Key".into(),
                problem: format!(
                    "is {}, expected the built zip {}",
                    shown(property(layer, &["Content", "S3Key"])),
                    expected.artifact_name
                ),
                fix: format!(
                    "the layer must be `package.artifact: ${{self:custom.layer.artifact}}`, not a directory \
                     Serverless zips ({patch_hint})"
                ),
            });
        }
        layer_summaries.push(LayerResource {
            logical_id: (*logical_id).clone(),
            s3_key: property(layer, &["Content", "S3Key"]).and_then(Value::as_str).map(String::from),
        });
    }
    if !layers.is_empty() {
        checks.push(format!(
            "layer {}: CompatibleArchitectures [{arch_name}], CompatibleRuntimes has {RUNTIME}, uploads {}",
            ids(&layers),
            expected.artifact_name
        ));
    }

    let functions = of_type(FUNCTION_TYPE);
    if functions.is_empty() {
        failures.push(CheckFailure {
            resource: "Resources".into(),
            key: format!("(no {FUNCTION_TYPE})"),
            problem: "has no function".into(),
            fix: "define the chat function under `functions:` in serverless.yml".into(),
        });
    }
    let mut function_summaries = Vec::new();
    for (logical_id, function) in &functions {
        let mut fail = |key: &str, problem: String, fix: String| {
            failures.push(CheckFailure { resource: (*logical_id).clone(), key: key.into(), problem, fix });
        };
        let runtime = property(function, &["Runtime"]);
        if runtime.and_then(Value::as_str) != Some(RUNTIME) {
            fail(
                "Properties.Runtime",
                format!("is {}, expected \"{RUNTIME}\"", shown(runtime)),
                format!("set `provider.runtime: {RUNTIME}` in serverless.yml"),
            );
        }
        let architectures = property(function, &["Architectures"]);
        if architectures != Some(&expected_arch) {
            fail(
                "Properties.Architectures",
                format!("is {}, expected [\"{arch_name}\"]", shown(architectures)),
                format!("set `provider.architecture: {arch_name}` in serverless.yml ({patch_hint})"),
            );
        }
        for (name, expected) in &expected.environment {
            let (name, expected) = (name.as_str(), expected.as_str());
            let value = property(function, &["Environment", "Variables", name]);
            if value.and_then(Value::as_str) != Some(expected) {
                let problem = match value {
                    None => format!("is missing, expected \"{expected}\""),
                    Some(Value::Bool(_)) => {
                        format!("is {}, a YAML boolean; expected the string \"{expected}\"", shown(value))
                    }
                    Some(_) => format!("is {}, expected \"{expected}\"", shown(value)),
                };
                fail(
                    &format!("Properties.Environment.Variables.{name}"),
                    problem,
                    format!("set `provider.environment.{name}: \"{expected}\"` in serverless.yml ({patch_hint})"),
                );
            }
        }
        let references = property(function, &["Layers"]).and_then(Value::as_array);
        let references_layer = references.is_some_and(|list| {
            list.iter().any(|reference| {
                let target = reference.get("Ref").and_then(Value::as_str);
                layers.iter().any(|(layer_id, _)| target == Some(layer_id.as_str()))
            })
        });
        if !references_layer && !layers.is_empty() {
            fail(
                "Properties.Layers",
                format!("is {}, expected a {{\"Ref\": \"{}\"}}", shown(property(function, &["Layers"])), layers[0].0),
                format!("add `layers: [!Ref {}]` to the function in serverless.yml", layers[0].0),
            );
        }
        function_summaries.push(FunctionResource {
            logical_id: (*logical_id).clone(),
            function_name: property(function, &["FunctionName"]).and_then(Value::as_str).map(String::from),
        });
    }
    if !functions.is_empty() {
        checks.push(format!("function {}: Runtime {RUNTIME}, Architectures [{arch_name}]", ids(&functions)));
        checks.push(format!(
            "function {}: Environment {}",
            ids(&functions),
            expected.environment.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", ")
        ));
        checks.push(format!("function {}: Layers references {}", ids(&functions), ids(&layers)));
    }
    match check_function_url(resources, &of_type(URL_TYPE)) {
        Ok(check) => checks.push(check),
        Err(failure) => failures.push(failure),
    }

    if failures.is_empty() {
        Ok(TemplateSummary { layers: layer_summaries, functions: function_summaries, checks })
    } else {
        Err(failures)
    }
}

/// The chat function's Function URL: it streams and says who may call it.
fn check_function_url(
    resources: &serde_json::Map<String, Value>,
    urls: &[(&String, &Value)],
) -> Result<String, CheckFailure> {
    let fail = |resource: &str, key: &str, problem: String, fix: &str| CheckFailure {
        resource: resource.into(),
        key: key.into(),
        problem,
        fix: fix.into(),
    };
    let add_url = "give the chat function `url: {authorizer: aws_iam, invokeMode: RESPONSE_STREAM}` in serverless.yml";
    if !resources.contains_key(CHAT_FUNCTION) {
        return Err(fail(
            "Resources",
            CHAT_FUNCTION,
            "is missing".into(),
            "define the `chat` function in serverless.yml",
        ));
    }
    let targets_chat = |url: &&(&String, &Value)| {
        let target = property(url.1, &["TargetFunctionArn"]);
        let by_attribute = target
            .and_then(|t| t.get("Fn::GetAtt"))
            .and_then(Value::as_array)
            .and_then(|parts| parts.first())
            .and_then(Value::as_str);
        let by_ref = target.and_then(|t| t.get("Ref")).and_then(Value::as_str);
        by_attribute == Some(CHAT_FUNCTION) || by_ref.is_some_and(|r| r.starts_with(CHAT_FUNCTION))
    };
    let Some((url_id, url)) = urls.iter().find(targets_chat) else {
        return Err(fail(CHAT_FUNCTION, "(no AWS::Lambda::Url)", "has no Function URL".into(), add_url));
    };
    let invoke_mode = property(url, &["InvokeMode"]);
    if invoke_mode.and_then(Value::as_str) != Some("RESPONSE_STREAM") {
        return Err(fail(
            url_id,
            "Properties.InvokeMode",
            format!(
                "is {}, expected \"RESPONSE_STREAM\" (a buffered URL delays every streamed chunk)",
                shown(invoke_mode)
            ),
            "set `invokeMode: RESPONSE_STREAM` under the chat function's `url:` in serverless.yml",
        ));
    }
    let auth_type = property(url, &["AuthType"]);
    let environment = property(&resources[CHAT_FUNCTION], &["Environment", "Variables"]);
    let api_keys = API_KEY_VARIABLES.iter().find(|name| environment.and_then(|vars| vars.get(**name)).is_some());
    match (auth_type.and_then(Value::as_str), api_keys) {
        (Some("AWS_IAM"), _) => {
            Ok(format!("function {CHAT_FUNCTION}: Function URL {url_id} InvokeMode RESPONSE_STREAM, AuthType AWS_IAM"))
        }
        (Some("NONE"), Some(variable)) => Ok(format!(
            "function {CHAT_FUNCTION}: Function URL {url_id} InvokeMode RESPONSE_STREAM, AuthType NONE with API keys ({variable})"
        )),
        (Some("NONE"), None) => Err(fail(
            url_id,
            "Properties.AuthType",
            format!(
                "is \"NONE\" and the function has neither {} nor {}: anyone could call it",
                API_KEY_VARIABLES[0], API_KEY_VARIABLES[1]
            ),
            "set `authorizer: aws_iam` under the chat function's `url:` in serverless.yml, or configure API keys",
        )),
        _ => Err(fail(
            url_id,
            "Properties.AuthType",
            format!("is {}, expected \"AWS_IAM\" (or \"NONE\" with API keys)", shown(auth_type)),
            "set `authorizer: aws_iam` under the chat function's `url:` in serverless.yml",
        )),
    }
}

/// `resource.Properties.<path...>`.
fn property<'a>(resource: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(resource.get("Properties")?, |value, key| value.get(key))
}

/// A value as it appears in the template, or `missing`.
fn shown(value: Option<&Value>) -> String {
    match value {
        None => "missing".to_string(),
        Some(value) => value.to_string(),
    }
}

fn ids(resources: &[(&String, &Value)]) -> String {
    resources.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template written by `serverless package` (osls 3.77.1, offline through `deploy --dry-run`)
    /// for the committed serverless.yml with the chat function's Function URL.
    const ARM64_TEMPLATE: &str = include_str!("../../test_data/deploy/template-arm64.json");
    /// The same template with x86_64 architectures, `PYTHONPATH` removed and the layer unreferenced.
    const BROKEN_TEMPLATE: &str = include_str!("../../test_data/deploy/template-x86_64-broken.json");

    fn template(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// What a layer built for `arch` with CPython 3.11 expects.
    fn expected(arch: Arch) -> Expected {
        Expected {
            arch,
            environment: vec![
                ("PYTHONHOME".into(), "/opt/python".into()),
                ("PYTHONPATH".into(), "/opt/python/lib/python3.11".into()),
                ("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into()),
            ],
            artifact_name: arch.layer_zip_name(),
        }
    }

    fn failures(template: &Value, arch: Arch) -> Vec<String> {
        check_template(template, &expected(arch)).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_packaged_template_passes() {
        let summary = check_template(&template(ARM64_TEMPLATE), &expected(Arch::Arm64)).unwrap();
        assert_eq!(summary.layers[0].logical_id, "PythonLiteLLMLambdaLayer");
        assert!(summary.layers[0].s3_key.as_deref().unwrap().ends_with("/python-litellm-arm64.zip"));
        assert_eq!(summary.functions[0].function_name.as_deref(), Some("amplify-lambda-js-dev-chat"));
        assert_eq!(summary.checks.len(), 5, "{:?}", summary.checks);
        assert_eq!(
            summary.checks[4],
            "function ChatLambdaFunction: Function URL ChatLambdaFunctionUrl InvokeMode RESPONSE_STREAM, AuthType AWS_IAM"
        );
    }

    #[test]
    fn wrong_architecture_names_both_resources_and_keys() {
        let found = failures(&template(ARM64_TEMPLATE), Arch::X86_64);
        assert_eq!(
            found,
            [
                "PythonLiteLLMLambdaLayer: Properties.CompatibleArchitectures is [\"arm64\"], expected [\"x86_64\"]; \
                 set `compatibleArchitectures: [x86_64]` on the layer in serverless.yml \
                 (run `cargo xtask patch` and package again)",
                "PythonLiteLLMLambdaLayer: Properties.Content.S3Key is \"serverless/amplify-lambda-js/dev/\
                 1796106217379-2026-12-01T06:23:37.379Z/python-litellm-arm64.zip\", expected the built zip \
                 python-litellm-x86_64.zip; the layer must be `package.artifact: ${self:custom.layer.artifact}`, not \
                 a directory Serverless zips (run `cargo xtask patch` and package again)",
                "ChatLambdaFunction: Properties.Architectures is [\"arm64\"], expected [\"x86_64\"]; \
                 set `provider.architecture: x86_64` in serverless.yml \
                 (run `cargo xtask patch` and package again)",
            ]
        );
    }

    #[test]
    fn broken_fixture_reports_every_problem() {
        let found = failures(&template(BROKEN_TEMPLATE), Arch::Arm64);
        let joined = found.join("\n");
        assert_eq!(found.len(), 4, "{joined}");
        assert!(
            joined.contains("PythonLiteLLMLambdaLayer: Properties.CompatibleArchitectures is [\"x86_64\"]"),
            "{joined}"
        );
        assert!(
            joined.contains("ChatLambdaFunction: Properties.Architectures is [\"x86_64\"], expected [\"arm64\"]"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "ChatLambdaFunction: Properties.Environment.Variables.PYTHONPATH is missing, expected \
                 \"/opt/python/lib/python3.11\"; set `provider.environment.PYTHONPATH: \"/opt/python/lib/python3.11\"`"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("ChatLambdaFunction: Properties.Layers is missing, expected a {\"Ref\": \"PythonLiteLLMLambdaLayer\"}; add `layers: [!Ref PythonLiteLLMLambdaLayer]`"),
            "{joined}"
        );
    }

    #[test]
    fn boolean_cost_map_flag_and_wrong_runtime_are_caught() {
        let mut value = template(ARM64_TEMPLATE);
        let function = &mut value["Resources"]["ChatLambdaFunction"]["Properties"];
        function["Environment"]["Variables"]["LITELLM_LOCAL_MODEL_COST_MAP"] = Value::Bool(true);
        function["Runtime"] = Value::String("nodejs20.x".into());
        value["Resources"]["PythonLiteLLMLambdaLayer"]["Properties"]["CompatibleRuntimes"] =
            serde_json::json!(["python3.11"]);
        let found = failures(&value, Arch::Arm64);
        assert_eq!(
            found,
            [
                "PythonLiteLLMLambdaLayer: Properties.CompatibleRuntimes is [\"python3.11\"], expected it to contain \
                 \"nodejs22.x\"; add nodejs22.x to `compatibleRuntimes` of the layer in serverless.yml \
                 (run `cargo xtask patch` and package again)",
                "ChatLambdaFunction: Properties.Runtime is \"nodejs20.x\", expected \"nodejs22.x\"; \
                 set `provider.runtime: nodejs22.x` in serverless.yml",
                "ChatLambdaFunction: Properties.Environment.Variables.LITELLM_LOCAL_MODEL_COST_MAP is true, a YAML \
                 boolean; expected the string \"True\"; set `provider.environment.LITELLM_LOCAL_MODEL_COST_MAP: \"True\"` \
                 in serverless.yml (run `cargo xtask patch` and package again)",
            ]
        );
    }

    #[test]
    fn a_layer_serverless_zipped_itself_is_caught() {
        let mut value = template(ARM64_TEMPLATE);
        value["Resources"]["PythonLiteLLMLambdaLayer"]["Properties"]["Content"]["S3Key"] =
            Value::String("serverless/amplify-lambda-js/dev/1/pythonLiteLLM.zip".into());
        assert_eq!(
            failures(&value, Arch::Arm64),
            [
                "PythonLiteLLMLambdaLayer: Properties.Content.S3Key is \"serverless/amplify-lambda-js/dev/1/pythonLiteLLM.zip\", \
                 expected the built zip python-litellm-arm64.zip; the layer must be `package.artifact: \
                 ${self:custom.layer.artifact}`, not a directory Serverless zips (run `cargo xtask patch` and package again)"
            ]
        );
    }

    #[test]
    fn the_chat_function_url_must_stream_and_name_its_auth_type() {
        fn url(value: &mut Value) -> &mut Value {
            &mut value["Resources"]["ChatLambdaFunctionUrl"]["Properties"]
        }
        let mut buffered = template(ARM64_TEMPLATE);
        url(&mut buffered)["InvokeMode"] = Value::String("BUFFERED".into());
        assert_eq!(
            failures(&buffered, Arch::Arm64),
            [
                "ChatLambdaFunctionUrl: Properties.InvokeMode is \"BUFFERED\", expected \"RESPONSE_STREAM\" (a buffered URL \
                 delays every streamed chunk); set `invokeMode: RESPONSE_STREAM` under the chat function's `url:` in \
                 serverless.yml"
            ]
        );
        let mut anonymous = template(ARM64_TEMPLATE);
        url(&mut anonymous)["AuthType"] = Value::String("NONE".into());
        assert_eq!(
            failures(&anonymous, Arch::Arm64),
            [
                "ChatLambdaFunctionUrl: Properties.AuthType is \"NONE\" and the function has neither API_KEY_SHA256S nor \
                 API_KEY_SHA256S_SSM_PARAMETER: anyone could call it; set `authorizer: aws_iam` under the chat \
                 function's `url:` in serverless.yml, or configure API keys"
            ]
        );
        anonymous["Resources"]["ChatLambdaFunction"]["Properties"]["Environment"]["Variables"]["API_KEY_SHA256S"] =
            Value::String("${ssm:/keys}".into());
        let summary = check_template(&anonymous, &expected(Arch::Arm64)).unwrap();
        assert_eq!(
            summary.checks[4],
            "function ChatLambdaFunction: Function URL ChatLambdaFunctionUrl InvokeMode RESPONSE_STREAM, AuthType NONE \
             with API keys (API_KEY_SHA256S)"
        );
        let mut unnamed = template(ARM64_TEMPLATE);
        url(&mut unnamed).as_object_mut().unwrap().remove("AuthType");
        assert_eq!(
            failures(&unnamed, Arch::Arm64),
            [
                "ChatLambdaFunctionUrl: Properties.AuthType is missing, expected \"AWS_IAM\" (or \"NONE\" with API keys); \
                 set `authorizer: aws_iam` under the chat function's `url:` in serverless.yml"
            ]
        );
        let mut without = template(ARM64_TEMPLATE);
        without["Resources"].as_object_mut().unwrap().remove("ChatLambdaFunctionUrl");
        assert_eq!(
            failures(&without, Arch::Arm64),
            ["ChatLambdaFunction: (no AWS::Lambda::Url) has no Function URL; give the chat function `url: \
                 {authorizer: aws_iam, invokeMode: RESPONSE_STREAM}` in serverless.yml"]
        );
    }

    #[test]
    fn missing_layer_and_functions_are_failures() {
        let found = failures(&serde_json::json!({"Resources": {}}), Arch::Arm64);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[2], "Resources: ChatLambdaFunction is missing; define the `chat` function in serverless.yml");
        assert!(found[0].starts_with("Resources: (no AWS::Lambda::LayerVersion) has no layer resource; add the layer"));
        assert!(found[1].starts_with("Resources: (no AWS::Lambda::Function) has no function"));
        let found = failures(&serde_json::json!({"AWSTemplateFormatVersion": "2010-09-09"}), Arch::Arm64);
        assert_eq!(
            found,
            [
                "template: Resources is missing or not an object; this is not a CloudFormation template written by `serverless package`"
            ]
        );
    }
}
