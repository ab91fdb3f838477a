//! The prune step: named rules from `[prune]` in layer.toml delete files from site-packages and
//! report what each one saved. docs/architecture.md §6: pruning is proven, not hoped.
//!
//! Safe rules (on by default) only delete what no import needs; every choice below was checked
//! on the litellm 1.78.7 closure (`import litellm` still works after all of them). Opt-in rules
//! (LiteLLM providers, parts of `litellm/proxy`, whole packages) refuse what `import litellm`
//! 1.78.7 is known to load, and `cargo xtask verify` must pass after them.
//!
//! `METADATA` and `entry_points.txt` of every distribution that stays are never deleted:
//! openai and others call `importlib.metadata` at import time, and `litellm._version` needs it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::layer::dist::InstalledDist;
use crate::packaging::wheel_name::normalize_name;
use crate::progress::{Progress, human_bytes};
use crate::spec::{PruneSpec, SafeRule};

/// What one rule removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneOutcome {
    /// The rule's name as in layer.toml: `tests`, `keep-litellm-providers`, ...
    pub rule: String,
    pub files: u64,
    pub bytes: u64,
    /// The same per distribution (only those the rule touched), sorted by name.
    pub by_dist: Vec<DistPruned>,
}

/// What one rule removed from one distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistPruned {
    pub name: String,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

/// Directories under `litellm/llms/` that `import litellm` 1.78.7 loads (measured with
/// `sys.modules` after `import litellm`, `LITELLM_LOCAL_MODEL_COST_MAP=True`). Deleting any of
/// them breaks the import, so `keep-litellm-providers` keeps them whatever the keep-list says.
/// Only `elevenlabs`, `exa_ai`, `parallel_ai`, `pg_vector`, `recraft`, `tavily` and `xinference`
/// are not loaded at import time in that version.
pub(crate) const LITELLM_IMPORT_TIME_PROVIDERS: &[&str] = &[
    "ai21",
    "aiml",
    "aiohttp_openai",
    "anthropic",
    "azure",
    "azure_ai",
    "base_llm",
    "baseten",
    "bedrock",
    "bytez",
    "cerebras",
    "clarifai",
    "cloudflare",
    "codestral",
    "cohere",
    "cometapi",
    "compactifai",
    "custom_httpx",
    "dashscope",
    "databricks",
    "datarobot",
    "deepgram",
    "deepinfra",
    "deepseek",
    "deprecated_providers",
    "empower",
    "featherless_ai",
    "fireworks_ai",
    "friendliai",
    "galadriel",
    "gemini",
    "github",
    "github_copilot",
    "gradient_ai",
    "groq",
    "heroku",
    "hosted_vllm",
    "huggingface",
    "hyperbolic",
    "infinity",
    "jina_ai",
    "lambda_ai",
    "lemonade",
    "litellm_proxy",
    "llamafile",
    "lm_studio",
    "meta_llama",
    "mistral",
    "moonshot",
    "morph",
    "nebius",
    "nlp_cloud",
    "novita",
    "nscale",
    "nvidia_nim",
    "oci",
    "ollama",
    "oobabooga",
    "openai",
    "openai_like",
    "openrouter",
    "ovhcloud",
    "perplexity",
    "petals",
    "predibase",
    "replicate",
    "sagemaker",
    "sambanova",
    "snowflake",
    "together_ai",
    "topaz",
    "triton",
    "v0",
    "vercel_ai_gateway",
    "vertex_ai",
    "vllm",
    "volcengine",
    "voyage",
    "wandb",
    "watsonx",
    "xai",
];

/// Files under `litellm/proxy/` that `import litellm` 1.78.7 loads (same measurement):
/// `litellm-proxy-paths` refuses a path that would delete one of them.
pub(crate) const LITELLM_IMPORT_TIME_PROXY_FILES: &[&str] = &[
    "__init__.py",
    "_types.py",
    "proxy_cli.py",
    "spend_tracking/__init__.py",
    "spend_tracking/cold_storage_handler.py",
    "types_utils/__init__.py",
    "types_utils/utils.py",
];

/// The litellm version the two lists above were measured on.
pub(crate) const LITELLM_MEASURED_VERSION: &str = "1.78.7";

/// One rule, resolved from the spec.
#[derive(Debug, Clone)]
enum Rule {
    /// A rule of `[prune] safe` (what each removes is documented on `SafeRule`).
    Safe(SafeRule),
    /// Provider directories under `litellm/llms/` not in the keep-list nor loaded at import time.
    KeepLitellmProviders { keep: Vec<String> },
    /// Paths under `litellm/proxy/`.
    LitellmProxyPaths { paths: Vec<String> },
    /// Whole distributions.
    DropPackages { names: Vec<String> },
    /// botocore service models (`botocore/data/<service>/`) other than these. The files directly
    /// in `botocore/data/` (endpoints.json, partitions.json, _retry.json,
    /// sdk-default-configuration.json) stay: every client reads them.
    BotocoreServices { keep: Vec<String> },
}

impl Rule {
    fn name(&self) -> &'static str {
        match self {
            Rule::Safe(rule) => rule.name(),
            Rule::KeepLitellmProviders { .. } => "keep-litellm-providers",
            Rule::LitellmProxyPaths { .. } => "litellm-proxy-paths",
            Rule::DropPackages { .. } => "drop-packages",
            Rule::BotocoreServices { .. } => "botocore-services",
        }
    }

    /// Whether the rule removes the whole distribution (its METADATA included).
    fn drops_whole(&self, dist: &InstalledDist) -> bool {
        match self {
            Rule::Safe(SafeRule::BuildTools) => BUILD_TOOLS.contains(&dist.name.as_str()),
            Rule::DropPackages { names } => names.contains(&dist.name),
            _ => false,
        }
    }

    /// Whether the rule removes `path` (relative to site-packages) of `dist`.
    fn matches(&self, dist: &InstalledDist, path: &str) -> bool {
        if self.drops_whole(dist) {
            return true;
        }
        let in_dist_info = path.starts_with(&format!("{}/", dist.dist_info));
        let (dirs, file) = match path.rsplit_once('/') {
            Some((dirs, file)) => (dirs.split('/').collect::<Vec<_>>(), file),
            None => (Vec::new(), path),
        };
        let extension = file.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
        match self {
            Rule::Safe(SafeRule::Tests) => {
                !in_dist_info
                    && (dirs.iter().any(|d| matches!(*d, "tests" | "test" | "_tests")) || file == "conftest.py")
            }
            // A `docs` directory can be code: botocore's and boto3's `docs` packages are imported
            // by `botocore.client` and `boto3.session`, so Python modules in one stay.
            Rule::Safe(SafeRule::Docs) => {
                !in_dist_info
                    && (dirs.contains(&"docs") && !matches!(extension, "py" | "pyc" | "so")
                        || extension == "rst"
                        || (extension == "md" && !dirs.iter().any(|d| matches!(*d, "templates" | "template"))))
            }
            Rule::Safe(SafeRule::Examples) => !in_dist_info && dirs.contains(&"examples"),
            Rule::Safe(SafeRule::TypeStubs) => extension == "pyi",
            Rule::Safe(SafeRule::CSources) => {
                !in_dist_info && matches!(extension, "c" | "h" | "cc" | "cpp" | "cxx" | "hpp" | "pyx" | "pxd" | "pxi")
            }
            Rule::Safe(SafeRule::BuildTools) => {
                let first = path.split('/').next().unwrap_or(path);
                first == "_distutils_hack" || first == "distutils-precedence.pth"
            }
            Rule::Safe(SafeRule::ConsoleScripts) => dirs.first() == Some(&"bin"),
            Rule::Safe(SafeRule::Record) => {
                in_dist_info
                    && dirs.len() == 1
                    && matches!(
                        file,
                        "RECORD" | "RECORD.jws" | "RECORD.p7s" | "INSTALLER" | "REQUESTED" | "direct_url.json"
                    )
            }
            Rule::KeepLitellmProviders { keep } => {
                dist.name == "litellm"
                    && dirs.len() >= 3
                    && dirs[0] == "litellm"
                    && dirs[1] == "llms"
                    && !keep.iter().any(|k| k == dirs[2])
                    && !LITELLM_IMPORT_TIME_PROVIDERS.contains(&dirs[2])
            }
            Rule::LitellmProxyPaths { paths } => {
                dist.name == "litellm"
                    && path
                        .strip_prefix("litellm/proxy/")
                        .is_some_and(|rest| paths.iter().any(|p| rest == p || rest.starts_with(&format!("{p}/"))))
            }
            Rule::DropPackages { .. } => false,
            Rule::BotocoreServices { keep } => {
                dist.name == "botocore"
                    && dirs.len() >= 3
                    && dirs[0] == "botocore"
                    && dirs[1] == "data"
                    && !keep.iter().any(|k| k == dirs[2])
            }
        }
    }
}

/// The build tools the `build-tools` rule drops.
const BUILD_TOOLS: &[&str] = &["pip", "setuptools", "wheel"];

/// Files of a `.dist-info` that no rule (other than dropping the whole distribution) deletes.
fn is_protected(dist: &InstalledDist, path: &str) -> bool {
    path.strip_prefix(&dist.dist_info)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|file| file == "METADATA" || file == "entry_points.txt")
}

/// Run the rules named in `spec` over `site_packages`, deleting files, updating each
/// `InstalledDist.files` (and dropping distributions removed whole), and removing directories
/// left empty. Returns one outcome per rule run, in order.
pub fn prune(
    site_packages: &Path,
    dists: &mut Vec<InstalledDist>,
    spec: &PruneSpec,
    progress: &Progress,
) -> Result<Vec<PruneOutcome>> {
    let rules = resolve_rules(site_packages, dists, spec, progress)?;
    let mut outcomes = Vec::with_capacity(rules.len());
    for rule in &rules {
        let mut by_dist: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for dist in dists.iter_mut() {
            let whole = rule.drops_whole(dist);
            let mut kept = Vec::with_capacity(dist.files.len());
            for file in std::mem::take(&mut dist.files) {
                if !rule.matches(dist, &file) || (!whole && is_protected(dist, &file)) {
                    kept.push(file);
                    continue;
                }
                let path = site_packages.join(&file);
                let bytes = fs_err::symlink_metadata(&path)?.len();
                fs_err::remove_file(&path)?;
                let entry = by_dist.entry(dist.name.clone()).or_default();
                entry.0 += 1;
                entry.1 += bytes;
            }
            dist.files = kept;
        }
        dists.retain(|dist| !rule.drops_whole(dist));
        let outcome = PruneOutcome {
            rule: rule.name().to_string(),
            files: by_dist.values().map(|(files, _)| files).sum(),
            bytes: by_dist.values().map(|(_, bytes)| bytes).sum(),
            by_dist: by_dist.into_iter().map(|(name, (files, bytes))| DistPruned { name, files, bytes }).collect(),
        };
        progress.note(format!("prune {}: {} files, {}", outcome.rule, outcome.files, human_bytes(outcome.bytes)));
        outcomes.push(outcome);
    }
    remove_empty_dirs(site_packages)?;
    Ok(outcomes)
}

/// Turn the spec into rules, checking the opt-in ones against what is installed before anything
/// is deleted.
fn resolve_rules(
    site_packages: &Path,
    dists: &[InstalledDist],
    spec: &PruneSpec,
    progress: &Progress,
) -> Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = spec.safe.iter().copied().map(Rule::Safe).collect();
    let litellm = dists.iter().find(|d| d.name == "litellm");
    let needs_litellm = |key: &str| -> Result<&InstalledDist> {
        let Some(litellm) = litellm else { bail!("prune.{key} is set but litellm is not installed; remove the key") };
        if litellm.version != LITELLM_MEASURED_VERSION {
            progress.warn(format!(
                "prune.{key}: the list of what `import litellm` needs was measured on litellm {LITELLM_MEASURED_VERSION}, \
                 this is {}; `cargo xtask verify` decides",
                litellm.version
            ));
        }
        Ok(litellm)
    };
    if !spec.keep_litellm_providers.is_empty() {
        needs_litellm("keep-litellm-providers")?;
        let llms = site_packages.join("litellm/llms");
        let mut present = Vec::new();
        for entry in fs_err::read_dir(&llms)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                present.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        present.sort();
        for keep in &spec.keep_litellm_providers {
            if !present.contains(keep) {
                bail!(
                    "prune.keep-litellm-providers: {keep:?} is not a directory of litellm/llms/; providers: {}",
                    present.join(", ")
                );
            }
        }
        let forced: Vec<&str> = present
            .iter()
            .map(String::as_str)
            .filter(|p| {
                LITELLM_IMPORT_TIME_PROVIDERS.contains(p) && !spec.keep_litellm_providers.iter().any(|k| k == p)
            })
            .collect();
        if !forced.is_empty() {
            progress.warn(format!(
                "prune.keep-litellm-providers: keeping {} provider directories that `import litellm` loads at import \
                 time (deleting them breaks the import): {}",
                forced.len(),
                forced.join(", ")
            ));
        }
        rules.push(Rule::KeepLitellmProviders { keep: spec.keep_litellm_providers.clone() });
    }
    if !spec.litellm_proxy_paths.is_empty() {
        let litellm = needs_litellm("litellm-proxy-paths")?;
        for path in &spec.litellm_proxy_paths {
            let prefix = format!("litellm/proxy/{path}");
            if !litellm.files.iter().any(|f| *f == prefix || f.starts_with(&format!("{prefix}/"))) {
                bail!("prune.litellm-proxy-paths: {path:?} matches nothing under litellm/proxy/; check the spelling");
            }
            if let Some(needed) = LITELLM_IMPORT_TIME_PROXY_FILES
                .iter()
                .find(|needed| **needed == path.as_str() || needed.starts_with(&format!("{path}/")))
            {
                bail!(
                    "prune.litellm-proxy-paths: {path:?} would delete litellm/proxy/{needed}, which `import litellm` \
                     loads at import time; remove it from the list"
                );
            }
        }
        rules.push(Rule::LitellmProxyPaths { paths: spec.litellm_proxy_paths.clone() });
    }
    if !spec.drop_packages.is_empty() {
        let mut names = Vec::new();
        for name in &spec.drop_packages {
            let normalized = normalize_name(name);
            if !dists.iter().any(|d| d.name == normalized) {
                bail!("prune.drop-packages: {name:?} is not installed; installed: {}", installed_names(dists));
            }
            names.push(normalized);
        }
        rules.push(Rule::DropPackages { names });
    }
    if let Some(keep) = spec.keep_botocore_services.as_ref().filter(|keep| !keep.is_empty())
        && dists.iter().any(|d| d.name == "botocore")
    {
        let data = site_packages.join("botocore/data");
        let mut present = Vec::new();
        for entry in fs_err::read_dir(&data)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                present.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        for service in keep {
            if !present.contains(service) {
                bail!(
                    "prune.keep-botocore-services: {service:?} is not a service of botocore/data/ ({} services there); \
                     check the spelling in layer.toml or the provider's botocore-services in xtask/data/providers.toml",
                    present.len()
                );
            }
        }
        rules.push(Rule::BotocoreServices { keep: keep.clone() });
    }
    Ok(rules)
}

fn installed_names(dists: &[InstalledDist]) -> String {
    dists.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Remove every directory under `root` that holds nothing (deepest first).
fn remove_empty_dirs(root: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(root).min_depth(1).contents_first(true) {
        let entry = entry?;
        if entry.file_type().is_dir() && fs_err::read_dir(entry.path())?.next().is_none() {
            fs_err::remove_dir(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(name: &str, files: &[&str]) -> InstalledDist {
        InstalledDist {
            name: name.into(),
            version: "1.0".into(),
            wheel_name: format!("{name}-1.0-py3-none-any.whl"),
            wheel_sha256: "0".repeat(64),
            wheel_url: String::new(),
            dist_info: format!("{name}-1.0.dist-info"),
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn modules_named_like_tests_are_not_tests() {
        let d = dist("x", &[]);
        for kept in ["jinja2/tests.py", "click/testing.py", "anyio/_core/_testing.py", "aiohttp/test_utils.py"] {
            assert!(!Rule::Safe(SafeRule::Tests).matches(&d, kept), "{kept}");
        }
        for gone in
            ["jsonschema/tests/test_x.py", "sniffio/_tests/test_sniffio.py", "fsspec/conftest.py", "regex/tests/t.py"]
        {
            assert!(Rule::Safe(SafeRule::Tests).matches(&d, gone), "{gone}");
        }
    }

    #[test]
    fn docs_keep_templates_and_txt_data() {
        let d = dist("x", &[]);
        assert!(Rule::Safe(SafeRule::Docs).matches(&d, "litellm/proxy/README.md"));
        assert!(!Rule::Safe(SafeRule::Docs).matches(&d, "huggingface_hub/templates/modelcard_template.md"));
        assert!(
            !Rule::Safe(SafeRule::Docs)
                .matches(&d, "litellm/llms/huggingface/huggingface_llms_metadata/hf_text_generation_models.txt")
        );
        assert!(!Rule::Safe(SafeRule::Docs).matches(&d, "x-1.0.dist-info/licenses/LICENSE.md"));
    }

    #[test]
    fn docs_packages_that_are_code_are_kept() {
        // `import boto3` failed with "No module named 'botocore.docs'" when this rule removed them.
        let d = dist("botocore", &[]);
        assert!(!Rule::Safe(SafeRule::Docs).matches(&d, "botocore/docs/__init__.py"));
        assert!(!Rule::Safe(SafeRule::Docs).matches(&d, "botocore/docs/docstring.py"));
        assert!(!Rule::Safe(SafeRule::Docs).matches(&dist("boto3", &[]), "boto3/docs/service.py"));
        assert!(Rule::Safe(SafeRule::Docs).matches(&d, "somepkg/docs/index.html"));
        assert!(Rule::Safe(SafeRule::Docs).matches(&d, "somepkg/docs/guide.txt"));
    }

    #[test]
    fn providers_loaded_at_import_time_are_kept() {
        let d = dist("litellm", &[]);
        let rule = Rule::KeepLitellmProviders { keep: vec!["openai".into()] };
        assert!(rule.matches(&d, "litellm/llms/tavily/search/transformation.py"));
        assert!(!rule.matches(&d, "litellm/llms/openai/openai.py"));
        assert!(!rule.matches(&d, "litellm/llms/anthropic/chat/handler.py"), "loaded by import litellm");
        assert!(!rule.matches(&d, "litellm/llms/base.py"), "files directly in llms/ stay");
    }

    #[test]
    fn botocore_services_keeps_the_named_services_and_the_shared_data() {
        let d = dist("botocore", &[]);
        let rule = Rule::BotocoreServices { keep: vec!["bedrock-runtime".into(), "sts".into()] };
        assert!(rule.matches(&d, "botocore/data/ec2/2016-11-15/service-2.json.gz"));
        assert!(!rule.matches(&d, "botocore/data/bedrock-runtime/2023-09-30/service-2.json.gz"));
        assert!(!rule.matches(&d, "botocore/data/endpoints.json"), "shared data stays");
        assert!(!rule.matches(&d, "botocore/client.py"));
        assert!(!rule.matches(&dist("boto3", &[]), "botocore/data/ec2/x.json"), "only botocore's own files");
    }

    #[test]
    fn botocore_services_prunes_a_synthetic_tree_and_reports_the_savings() {
        let root = tempfile::tempdir().unwrap();
        let files = [
            "botocore/__init__.py",
            "botocore/data/endpoints.json",
            "botocore/data/ec2/2016-11-15/service-2.json.gz",
            "botocore/data/s3/2006-03-01/service-2.json.gz",
            "botocore/data/sts/2011-06-15/service-2.json.gz",
            "botocore/data/bedrock-runtime/2023-09-30/service-2.json.gz",
            "botocore-1.0.dist-info/METADATA",
        ];
        for (i, file) in files.iter().enumerate() {
            let path = root.path().join(file);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, vec![b'x'; 10 * (i + 1)]).unwrap();
        }
        let mut dists = vec![dist("botocore", &files)];
        let spec = PruneSpec {
            safe: Vec::new(),
            stdlib: Vec::new(),
            keep_botocore_services: Some(vec!["bedrock-runtime".into(), "sts".into()]),
            ..PruneSpec::default()
        };
        let outcomes = prune(root.path(), &mut dists, &spec, &Progress::new()).unwrap();
        assert_eq!(
            outcomes,
            [PruneOutcome {
                rule: "botocore-services".into(),
                files: 2,
                bytes: 30 + 40,
                by_dist: vec![DistPruned { name: "botocore".into(), files: 2, bytes: 70 }],
            }]
        );
        assert!(!root.path().join("botocore/data/ec2").exists(), "emptied directories are removed");
        assert!(root.path().join("botocore/data/sts/2011-06-15/service-2.json.gz").exists());
        assert!(root.path().join("botocore/data/endpoints.json").exists());
        assert_eq!(dists[0].files.len(), 5);

        let misspelt = PruneSpec { keep_botocore_services: Some(vec!["bedrock-runtim".into()]), ..spec };
        let err = prune(root.path(), &mut dists, &misspelt, &Progress::new()).unwrap_err().to_string();
        assert_eq!(
            err,
            "prune.keep-botocore-services: \"bedrock-runtim\" is not a service of botocore/data/ (2 services there); \
             check the spelling in layer.toml or the provider's botocore-services in xtask/data/providers.toml"
        );
    }
}
