//! Checks on the CloudFormation template `serverless package` writes, before anything is deployed.
//!
//! The layer resource must be built for the target architecture and the `nodejs22.x` runtime; every
//! function must run `nodejs22.x` on that architecture, carry the Python environment (docs/architecture.md §9)
//! and reference the layer. Each failure names the resource and the key, and says how to fix it.
//!
//! Resource and property names follow the CloudFormation reference:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-layerversion.html>,
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-lambda-function.html>.

use std::fmt;

use serde_json::Value;

use crate::arch::Arch;
use crate::python_version::PythonVersion;

/// The Lambda runtime of the service.
pub const RUNTIME: &str = crate::lambda::NODE_RUNTIME;

const LAYER_TYPE: &str = "AWS::Lambda::LayerVersion";
const FUNCTION_TYPE: &str = "AWS::Lambda::Function";

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    /// The logical id of the resource, or `Resources` when the resource is missing altogether.
    pub resource: String,
    /// The property path inside the resource, e.g. `Properties.Architectures`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} {}; {}", self.resource, self.key, self.problem, self.fix)
    }
}

/// What the checks found in a template that passed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// Logical ids of the layer resources.
    pub layers: Vec<LayerResource>,
    /// The functions, in template order.
    pub functions: Vec<FunctionResource>,
    /// A one-line description of each check that passed.
    pub checks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerResource {
    pub logical_id: String,
    /// `Properties.Content.S3Key`, when it is a plain string (its file name is the packaged zip's).
    pub s3_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionResource {
    pub logical_id: String,
    /// `Properties.FunctionName`, when it is a plain string.
    pub function_name: Option<String>,
}

/// Check a parsed template for `arch`. Returns every failure, not only the first.
pub fn check_template(
    template: &Value,
    arch: Arch,
    python: PythonVersion,
) -> Result<TemplateSummary, Vec<CheckFailure>> {
    let python_environment = crate::lambda::python_environment(python);
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
    let patch_hint = format!("run `cargo xtask patch --arch {arch_name}` and package again");

    let layers = of_type(LAYER_TYPE);
    if layers.is_empty() {
        failures.push(CheckFailure {
            resource: "Resources".into(),
            key: format!("(no {LAYER_TYPE})"),
            problem: "has no layer resource".into(),
            fix: format!(
                "add the layer under `layers:` in serverless.yml with path ../layer-build-{arch_name}/layer ({patch_hint})"
            ),
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
        layer_summaries.push(LayerResource {
            logical_id: (*logical_id).clone(),
            s3_key: property(layer, &["Content", "S3Key"]).and_then(Value::as_str).map(String::from),
        });
    }
    if !layers.is_empty() {
        checks.push(format!(
            "layer {}: CompatibleArchitectures [{arch_name}], CompatibleRuntimes has {RUNTIME}",
            ids(&layers)
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
        for (name, expected) in &python_environment {
            let value = property(function, &["Environment", "Variables", name]);
            if value.and_then(Value::as_str) != Some(expected.as_str()) {
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
            python_environment.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", ")
        ));
        checks.push(format!("function {}: Layers references {}", ids(&functions), ids(&layers)));
    }

    if failures.is_empty() {
        Ok(TemplateSummary { layers: layer_summaries, functions: function_summaries, checks })
    } else {
        Err(failures)
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

    /// A template written by `serverless package` (osls 3.77.1) for the committed serverless.yml.
    const ARM64_TEMPLATE: &str = include_str!("../../test_data/deploy/template-arm64.json");
    /// The same service with `architecture: x86_64`, `PYTHONPATH` removed and the layer unreferenced.
    const BROKEN_TEMPLATE: &str = include_str!("../../test_data/deploy/template-x86_64-broken.json");

    fn template(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn failures(template: &Value, arch: Arch) -> Vec<String> {
        check_template(template, arch, "3.11".parse().unwrap()).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_packaged_template_passes() {
        let summary = check_template(&template(ARM64_TEMPLATE), Arch::Arm64, "3.11".parse().unwrap()).unwrap();
        assert_eq!(summary.layers[0].logical_id, "PythonLiteLLMLambdaLayer");
        assert!(summary.layers[0].s3_key.as_deref().unwrap().ends_with("/pythonLiteLLM.zip"));
        assert_eq!(summary.functions[0].function_name.as_deref(), Some("amplify-lambda-js-dev-chat"));
        assert_eq!(summary.checks.len(), 4, "{:?}", summary.checks);
    }

    #[test]
    fn wrong_architecture_names_both_resources_and_keys() {
        let found = failures(&template(ARM64_TEMPLATE), Arch::X86_64);
        assert_eq!(
            found,
            [
                "PythonLiteLLMLambdaLayer: Properties.CompatibleArchitectures is [\"arm64\"], expected [\"x86_64\"]; \
                 set `compatibleArchitectures: [x86_64]` on the layer in serverless.yml \
                 (run `cargo xtask patch --arch x86_64` and package again)",
                "ChatLambdaFunction: Properties.Architectures is [\"arm64\"], expected [\"x86_64\"]; \
                 set `provider.architecture: x86_64` in serverless.yml \
                 (run `cargo xtask patch --arch x86_64` and package again)",
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
                 (run `cargo xtask patch --arch arm64` and package again)",
                "ChatLambdaFunction: Properties.Runtime is \"nodejs20.x\", expected \"nodejs22.x\"; \
                 set `provider.runtime: nodejs22.x` in serverless.yml",
                "ChatLambdaFunction: Properties.Environment.Variables.LITELLM_LOCAL_MODEL_COST_MAP is true, a YAML \
                 boolean; expected the string \"True\"; set `provider.environment.LITELLM_LOCAL_MODEL_COST_MAP: \"True\"` \
                 in serverless.yml (run `cargo xtask patch --arch arm64` and package again)",
            ]
        );
    }

    #[test]
    fn missing_layer_and_functions_are_failures() {
        let found = failures(&serde_json::json!({"Resources": {}}), Arch::Arm64);
        assert_eq!(found.len(), 2, "{found:?}");
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
