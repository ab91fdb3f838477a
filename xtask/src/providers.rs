//! The provider catalog (`xtask/data/providers.toml`): what each LLM provider the layer can serve
//! needs (extra distributions, modules to import, botocore services, its `verify` workload), and
//! the check that every model in the Node service's `models.yaml` belongs to an enabled provider.
//!
//! `[providers] enabled` in layer.toml names catalog entries; `lock` adds their requirements,
//! `prune` keeps their botocore services, `verify` imports their modules and runs their workloads.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use yaml_rust2::{Yaml, YamlLoader};

/// The catalog, compiled in so a build never depends on the working directory.
const CATALOG_TOML: &str = include_str!("../data/providers.toml");

/// One provider of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Provider {
    /// The catalog key, e.g. `bedrock` (not a TOML key of the entry).
    #[serde(skip)]
    pub(crate) name: String,
    /// What messages and the README call it, e.g. "Amazon Bedrock".
    pub(crate) title: String,
    /// `<prefix>/` of `litellm_params.model` (and `custom_llm_provider` values), e.g. `azure`.
    pub(crate) model_prefixes: Vec<String>,
    /// Prefixes of bare model names LiteLLM routes to this provider, e.g. `claude-`.
    pub(crate) model_names: Vec<String>,
    /// PEP 508 requirements the provider adds to the lock, e.g. `boto3`.
    pub(crate) requirements: Vec<String>,
    /// Modules `verify` imports when the provider is enabled.
    pub imports: Vec<String>,
    /// botocore service models the provider uses (`botocore/data/<service>/`).
    pub(crate) botocore_services: Vec<String>,
    /// The `verify` workload run against a local mock of the provider's wire format.
    pub(crate) workload: String,
    /// Secret-shaped files of its distributions that may ship (paths in site-packages), e.g.
    /// botocore's CA bundle `botocore/cacert.pem`; added to `[packages] allow-secret-files`.
    #[serde(default)]
    pub(crate) allow_secret_files: Vec<String>,
}

/// All providers of the catalog, by name.
#[derive(Debug, Clone)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
}

impl Catalog {
    /// The catalog shipped in the repository.
    pub fn builtin() -> Catalog {
        Catalog::parse(CATALOG_TOML).expect("xtask/data/providers.toml is valid (checked by a unit test)")
    }

    /// Parse catalog text.
    pub(crate) fn parse(text: &str) -> Result<Catalog> {
        let mut providers: BTreeMap<String, Provider> = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("xtask/data/providers.toml: {}", e.to_string().trim_end()))?;
        for (name, provider) in &mut providers {
            provider.name = name.clone();
            for requirement in &provider.requirements {
                <pep508_rs::Requirement<pep508_rs::VerbatimUrl> as std::str::FromStr>::from_str(requirement).map_err(
                    |e| anyhow::anyhow!("xtask/data/providers.toml: [{name}] requirements: {requirement:?}: {e}"),
                )?;
            }
        }
        Ok(Catalog { providers })
    }

    /// The names of every provider, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }

    /// The provider called `name`; an unknown name is an error listing the known ones.
    pub(crate) fn get(&self, name: &str) -> Result<&Provider> {
        self.providers.get(name).with_context(|| {
            format!(
                "unknown provider {name:?}; known providers: {} (add one to xtask/data/providers.toml)",
                self.names().join(", ")
            )
        })
    }

    /// The providers called `names`, in catalog order, each once.
    pub fn enabled(&self, names: &[String]) -> Result<Vec<&Provider>> {
        for name in names {
            self.get(name)?;
        }
        Ok(self.providers.values().filter(|p| names.contains(&p.name)).collect())
    }

    /// The provider a model of models.yaml is sent to: `custom_llm_provider` when set, else the
    /// `<prefix>/` of `model`, else the provider whose bare model names match.
    fn provider_of_model(&self, model: &str, custom_llm_provider: Option<&str>) -> Result<&Provider, String> {
        let by_prefix = |prefix: &str| self.providers.values().find(|p| p.model_prefixes.iter().any(|m| m == prefix));
        if let Some(custom) = custom_llm_provider {
            return by_prefix(custom).ok_or_else(|| {
                format!("custom_llm_provider {custom:?} is not a provider of the catalog ({})", self.prefixes())
            });
        }
        if let Some((prefix, _)) = model.split_once('/') {
            return by_prefix(prefix).ok_or_else(|| {
                format!("model {model:?}: provider prefix {prefix:?} is not in the catalog ({})", self.prefixes())
            });
        }
        self.providers
            .values()
            .find(|p| p.model_names.iter().any(|n| model.starts_with(n.as_str())))
            .ok_or_else(|| format!("model {model:?} has no provider prefix; write it as <provider>/{model}"))
    }

    fn prefixes(&self) -> String {
        let prefixes: Vec<String> =
            self.providers.values().flat_map(|p| p.model_prefixes.iter().map(|m| format!("{m}/"))).collect();
        prefixes.join(", ")
    }
}

/// The extra requirements of the enabled providers, sorted and without duplicates.
pub(crate) fn requirements(providers: &[&Provider]) -> Vec<String> {
    let mut requirements: Vec<String> = providers.iter().flat_map(|p| p.requirements.iter().cloned()).collect();
    requirements.sort();
    requirements.dedup();
    requirements
}

/// The botocore services the enabled providers use, sorted and without duplicates.
pub(crate) fn botocore_services(providers: &[&Provider]) -> Vec<String> {
    let mut services: Vec<String> = providers.iter().flat_map(|p| p.botocore_services.iter().cloned()).collect();
    services.sort();
    services.dedup();
    services
}

/// Check that every model of the Node service's model config (LiteLLM proxy format,
/// <https://docs.litellm.ai/docs/proxy/configs>) is sent to an enabled provider. Called by
/// `layer` and meant for `deploy`, before anything is built or uploaded: a model whose provider is
/// missing would otherwise fail at request time with `No module named ...`.
///
/// `spec_path` is only named in the fix.
pub(crate) fn check_model_config(models_yaml: &Path, enabled: &[String], spec_path: &Path) -> Result<()> {
    let text = fs_err::read_to_string(models_yaml)
        .context("reading the Node service's model config (see amplify-lambda-js/README.md)")?;
    check_model_config_text(&text, models_yaml, enabled, spec_path)
}

/// [`check_model_config`] on text already read; `models_yaml` names it in messages.
pub(crate) fn check_model_config_text(
    text: &str,
    models_yaml: &Path,
    enabled: &[String],
    spec_path: &Path,
) -> Result<()> {
    let file = models_yaml.display();
    let catalog = Catalog::builtin();
    let documents = YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{file}: not YAML: {e}"))?;
    let Some(document) = documents.first() else { bail!("{file}: empty; it needs a model_list") };
    let Yaml::Array(entries) = &document["model_list"] else {
        bail!("{file}: model_list must be a list of {{model_name, litellm_params}} entries")
    };
    let mut problems = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let name = entry["model_name"].as_str().unwrap_or("?");
        let where_ = format!("{file}: model_list[{index}] (model_name {name:?})");
        let params = &entry["litellm_params"];
        let Some(model) = params["model"].as_str() else {
            problems.push(format!("{where_}: litellm_params.model must be a string such as \"openai/gpt-4o-mini\""));
            continue;
        };
        match catalog.provider_of_model(model, params["custom_llm_provider"].as_str()) {
            Err(problem) => problems.push(format!("{where_}: {problem}")),
            Ok(provider) if !enabled.contains(&provider.name) => {
                problems.push(format!(
                    "{where_}: model {model:?} is served by {} (provider {:?}), which is not enabled in {}",
                    provider.title,
                    provider.name,
                    spec_path.display()
                ));
                if !missing.contains(&provider.name.as_str()) {
                    missing.push(&provider.name);
                }
            }
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut message = problems.join("\n");
    if !missing.is_empty() {
        let mut wanted: Vec<String> = enabled.to_vec();
        wanted.extend(missing.iter().map(|m| m.to_string()));
        let wanted: Vec<String> =
            catalog.names().into_iter().filter(|n| wanted.iter().any(|w| w == n)).map(|n| format!("{n:?}")).collect();
        message.push_str(&format!(
            "\nfix: set `[providers] enabled = [{}]` in {} and run `cargo xtask lock`, or remove the model from {file}",
            wanted.join(", "),
            spec_path.display()
        ));
    }
    bail!(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_catalog_has_the_four_providers() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.names(), ["anthropic", "azure", "bedrock", "openai"]);
        let bedrock = catalog.get("bedrock").unwrap();
        assert_eq!(bedrock.requirements, ["boto3"]);
        assert_eq!(bedrock.allow_secret_files, ["botocore/cacert.pem"]);
        assert!(bedrock.botocore_services.contains(&"bedrock-runtime".to_string()));
    }

    #[test]
    fn an_unknown_provider_names_the_known_ones() {
        let err = Catalog::builtin().enabled(&enabled(&["openai", "vertex"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown provider \"vertex\"; known providers: anthropic, azure, bedrock, openai \
             (add one to xtask/data/providers.toml)"
        );
    }

    #[test]
    fn requirements_and_services_are_the_union() {
        let catalog = Catalog::builtin();
        let all = catalog.enabled(&enabled(&["bedrock", "openai", "azure", "anthropic"])).unwrap();
        assert_eq!(requirements(&all), ["boto3"]);
        assert_eq!(botocore_services(&all), ["bedrock", "bedrock-runtime", "sso", "sso-oidc", "sts"]);
        let openai = catalog.enabled(&enabled(&["openai"])).unwrap();
        assert!(requirements(&openai).is_empty());
        assert!(botocore_services(&openai).is_empty());
    }

    #[test]
    fn a_catalog_entry_with_a_bad_requirement_is_refused() {
        let text = "[x]\ntitle = \"X\"\nmodel-prefixes = []\nmodel-names = []\nrequirements = [\"boto3===\"]\n\
                    imports = []\nbotocore-services = []\nworkload = \"x\"\n";
        let msg = format!("{:#}", Catalog::parse(text).unwrap_err());
        assert!(msg.starts_with("xtask/data/providers.toml: [x] requirements: \"boto3===\""), "{msg}");
    }

    const MODELS: &str = "model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
  - model_name: bare
    litellm_params:
      model: gpt-4o
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku-latest
  - model_name: nova
    litellm_params:
      model: bedrock/amazon.nova-lite-v1:0
  - model_name: corp
    litellm_params:
      model: my-deployment
      custom_llm_provider: azure
";

    fn check(text: &str, names: &[&str]) -> Result<()> {
        check_model_config_text(
            text,
            Path::new("amplify-lambda-js/models.yaml"),
            &enabled(names),
            Path::new("litellm-layer/layer.toml"),
        )
    }

    #[test]
    fn models_of_enabled_providers_pass() {
        check(MODELS, &["openai", "azure", "anthropic", "bedrock"]).unwrap();
    }

    #[test]
    fn a_model_of_a_provider_not_enabled_names_the_entry_and_the_fix() {
        let err = check(MODELS, &["openai", "azure"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "amplify-lambda-js/models.yaml: model_list[2] (model_name \"claude\"): model \
             \"anthropic/claude-3-5-haiku-latest\" is served by Anthropic (provider \"anthropic\"), which is not \
             enabled in litellm-layer/layer.toml\n\
             amplify-lambda-js/models.yaml: model_list[3] (model_name \"nova\"): model \
             \"bedrock/amazon.nova-lite-v1:0\" is served by Amazon Bedrock (provider \"bedrock\"), which is not \
             enabled in litellm-layer/layer.toml\n\
             fix: set `[providers] enabled = [\"anthropic\", \"azure\", \"bedrock\", \"openai\"]` in \
             litellm-layer/layer.toml and run `cargo xtask lock`, or remove the model from amplify-lambda-js/models.yaml"
        );
    }

    #[test]
    fn custom_llm_provider_decides_over_the_model_name() {
        let err = check(MODELS, &["openai", "anthropic", "bedrock"]).unwrap_err().to_string();
        assert!(err.starts_with("amplify-lambda-js/models.yaml: model_list[4] (model_name \"corp\"): model \"my-deployment\" is served by Azure OpenAI"), "{err}");
    }

    #[test]
    fn unknown_prefixes_and_bare_names_are_errors() {
        let text = "model_list:\n  - model_name: g\n    litellm_params:\n      model: vertex_ai/gemini-pro\n\
                    \x20 - model_name: m\n    litellm_params:\n      model: mystery-model\n";
        let err = check(text, &["openai"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "amplify-lambda-js/models.yaml: model_list[0] (model_name \"g\"): model \"vertex_ai/gemini-pro\": provider \
             prefix \"vertex_ai\" is not in the catalog (anthropic/, azure/, azure_text/, bedrock/, openai/, \
             text-completion-openai/)\n\
             amplify-lambda-js/models.yaml: model_list[1] (model_name \"m\"): model \"mystery-model\" has no provider \
             prefix; write it as <provider>/mystery-model"
        );
    }

    #[test]
    fn the_committed_model_config_fits_the_committed_spec() {
        let root = crate::project_root();
        let spec = crate::spec::LayerSpec::load(&root.join("litellm-layer/layer.toml")).unwrap();
        check_model_config(&root.join("amplify-lambda-js/models.yaml"), &spec.providers.enabled, &spec.path).unwrap();
    }

    #[test]
    fn a_model_config_without_model_list_is_an_error() {
        let err = check("router_settings:\n  timeout: 5\n", &["openai"]).unwrap_err().to_string();
        assert_eq!(
            err,
            "amplify-lambda-js/models.yaml: model_list must be a list of {model_name, litellm_params} entries"
        );
    }
}
