//! `litellm-layer/layer.toml`, the layer's spec: interpreter, requirements, pruning, budget.
//!
//! Every key is known: an unknown key or a bad value is an error naming the key and the file.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::lambda;
use crate::manifest::{Manifest, Variant};
use crate::providers::{Catalog, Provider};
use crate::python_version::PythonVersion;

mod prune_rules;
pub use prune_rules::{SafeRule, StdlibRule};

/// The parsed and validated layer spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LayerSpec {
    pub(crate) python: PythonSpec,
    pub(crate) packages: PackagesSpec,
    #[serde(default)]
    pub(crate) index: IndexSpec,
    #[serde(default)]
    pub prune: PruneSpec,
    #[serde(default)]
    pub(crate) budget: BudgetSpec,
    #[serde(default)]
    pub verify: VerifySpec,
    #[serde(default)]
    pub(crate) serverless: ServerlessSpec,
    #[serde(default)]
    pub(crate) providers: ProvidersSpec,
    #[serde(default)]
    pub(crate) pack: PackSpec,
    /// Where the spec was read from (not a key).
    #[serde(skip)]
    pub(crate) path: PathBuf,
}

/// `[python]`: which python-build-standalone interpreter the layer ships.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PythonSpec {
    /// Minor version, e.g. 3.11.
    #[serde(deserialize_with = "python_version_key")]
    pub(crate) version: PythonVersion,
    /// python-build-standalone release tag, e.g. "20260127".
    pub(crate) release: String,
    /// Build variant; `install_only_stripped` unless told otherwise.
    #[serde(default)]
    pub(crate) variant: Variant,
    /// Base URL of a mirror holding the release assets under their original file names
    /// (`<mirror>/<release>/<file>`). `XTASK_PBS_MIRROR` overrides it.
    #[serde(default)]
    pub(crate) mirror: Option<String>,
}

/// `[packages]`: what goes into the layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PackagesSpec {
    /// Top-level PEP 508 requirements, e.g. `litellm==1.78.7`.
    pub(crate) requirements: Vec<String>,
    /// Distributions dropped from the resolved closure (with everything only they need).
    #[serde(default)]
    pub(crate) exclude: Vec<String>,
    /// Startup hooks (`*.pth`, `sitecustomize`, `usercustomize`) allowed in the layer, each by
    /// distribution name and the sha256 of its content.
    #[serde(default)]
    pub(crate) allow_startup_hooks: Vec<AllowedStartupHook>,
    /// Secret-shaped files (`*.pem`, `.env`, `id_rsa`, ...) allowed in the layer, by their path in
    /// site-packages, e.g. `certifi/cacert.pem`.
    #[serde(default)]
    pub(crate) allow_secret_files: Vec<String>,
}

/// One entry of `packages.allow-startup-hooks`: `{ name = "dist", sha256 = "<hex>" }`. A bare
/// name is read so that it can be refused with a message saying what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum AllowedStartupHook {
    Pinned { name: String, sha256: String },
    NameOnly(String),
}

/// `[index]`: the package index the lock is resolved against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct IndexSpec {
    pub(crate) url: String,
}

impl Default for IndexSpec {
    fn default() -> Self {
        IndexSpec { url: DEFAULT_INDEX_URL.to_string() }
    }
}

pub(crate) const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple";

/// `[prune]`: which named rules run. Safe rules are on by default; opt-in rules must be named and
/// `verify` must pass after them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PruneSpec {
    /// Safe rules to run (default: all of them).
    #[serde(default = "default_safe_rules")]
    pub(crate) safe: Vec<SafeRule>,
    /// Opt-in: keep only these LiteLLM providers under `litellm/llms/` (empty: keep all).
    #[serde(default)]
    pub(crate) keep_litellm_providers: Vec<String>,
    /// Opt-in: paths under `litellm/proxy/` to delete (relative to it, e.g. `_experimental`).
    #[serde(default)]
    pub(crate) litellm_proxy_paths: Vec<String>,
    /// botocore service models to keep under `botocore/data/` when botocore is installed; absent:
    /// the services of the enabled providers (`xtask/data/providers.toml`).
    #[serde(default)]
    pub(crate) keep_botocore_services: Option<Vec<String>>,
    /// Opt-in: whole distributions to delete after install.
    #[serde(default)]
    pub(crate) drop_packages: Vec<String>,
    /// Standard-library parts to delete (default: all of them).
    #[serde(default = "default_stdlib_rules")]
    pub(crate) stdlib: Vec<StdlibRule>,
}

fn default_safe_rules() -> Vec<SafeRule> {
    SafeRule::ALL.to_vec()
}

fn default_stdlib_rules() -> Vec<StdlibRule> {
    StdlibRule::ALL.to_vec()
}

impl Default for PruneSpec {
    fn default() -> Self {
        PruneSpec {
            safe: default_safe_rules(),
            keep_litellm_providers: Vec::new(),
            litellm_proxy_paths: Vec::new(),
            keep_botocore_services: None,
            drop_packages: Vec::new(),
            stdlib: default_stdlib_rules(),
        }
    }
}

/// `[budget]`: the build fails when the layer is bigger than this.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct BudgetSpec {
    /// Maximum size of `python-litellm-<arch>.zip`, in MB (10^6 bytes).
    #[serde(default = "default_zipped_mb")]
    pub(crate) zipped_mb: f64,
    /// Maximum size of the unzipped layer, in MB (10^6 bytes).
    #[serde(default = "default_unzipped_mb")]
    pub(crate) unzipped_mb: f64,
    /// How the layer reaches Lambda: through S3 (what Serverless does; Lambda then allows up to
    /// 250 MB unzipped) or by a direct upload (Lambda's 50 MB zipped limit applies too).
    #[serde(default)]
    pub(crate) upload: Upload,
}

/// How the layer zip is uploaded to Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Upload {
    /// Through an S3 bucket (Serverless's deployment bucket).
    #[default]
    S3,
    /// Directly through the Lambda API (`PublishLayerVersion` with `ZipFile`): 50 MB zipped at most.
    Direct,
}

fn default_zipped_mb() -> f64 {
    lambda::DIRECT_UPLOAD_LIMIT_MB
}
fn default_unzipped_mb() -> f64 {
    lambda::UNZIPPED_LIMIT_MB
}

impl Default for BudgetSpec {
    fn default() -> Self {
        BudgetSpec { zipped_mb: default_zipped_mb(), unzipped_mb: default_unzipped_mb(), upload: Upload::default() }
    }
}

/// `[verify]`: what `cargo xtask verify` imports besides `litellm`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerifySpec {
    #[serde(default)]
    pub imports: Vec<String>,
}

/// `[providers]`: which LLM providers of the catalog (`xtask/data/providers.toml`) the layer serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ProvidersSpec {
    /// Catalog names, e.g. `["openai", "bedrock"]`; OpenAI alone by default.
    #[serde(default = "default_providers")]
    pub(crate) enabled: Vec<String>,
}

fn default_providers() -> Vec<String> {
    vec!["openai".to_string()]
}

impl Default for ProvidersSpec {
    fn default() -> Self {
        ProvidersSpec { enabled: default_providers() }
    }
}

impl LayerSpec {
    /// The enabled providers, from the catalog (names were checked when the spec was read).
    pub(crate) fn enabled_providers(&self) -> Result<Vec<Provider>> {
        Ok(Catalog::builtin().enabled(&self.providers.enabled)?.into_iter().cloned().collect())
    }

    /// `[packages] allow-secret-files` and the enabled providers' `allow-secret-files` (botocore's
    /// CA bundle for Bedrock): what the install step lets through its secret-file check.
    pub fn allowed_secret_files(&self) -> Result<Vec<String>> {
        let mut allowed = self.packages.allow_secret_files.clone();
        for provider in self.enabled_providers()? {
            for path in provider.allow_secret_files {
                if !allowed.contains(&path) {
                    allowed.push(path);
                }
            }
        }
        Ok(allowed)
    }

    /// `[packages] requirements` followed by the enabled providers' extra requirements: what
    /// `lock` resolves and records.
    pub(crate) fn all_requirements(&self) -> Result<Vec<String>> {
        let providers = self.enabled_providers()?;
        let mut all = self.packages.requirements.clone();
        for extra in crate::providers::requirements(&providers.iter().collect::<Vec<_>>()) {
            if !all.contains(&extra) {
                all.push(extra);
            }
        }
        Ok(all)
    }

    /// `[verify] imports` followed by the enabled providers' modules not already listed.
    pub(crate) fn verify_imports(&self) -> Result<Vec<String>> {
        let mut imports = self.verify.imports.clone();
        for provider in self.enabled_providers()? {
            for module in provider.imports {
                if !imports.contains(&module) {
                    imports.push(module);
                }
            }
        }
        Ok(imports)
    }

    /// The Node service's model config: `models.yaml` beside `[serverless] file`.
    pub(crate) fn model_config_path(&self) -> PathBuf {
        let serverless = crate::project_root().join(&self.serverless.file);
        serverless.parent().map(|dir| dir.join("models.yaml")).unwrap_or_else(|| PathBuf::from("models.yaml"))
    }

    /// Check that every model of the service's `models.yaml` goes to an enabled provider (run by
    /// `layer`, and meant for `deploy` before anything is uploaded). Returns the file checked, or
    /// `None` when the service has no models.yaml.
    pub(crate) fn check_model_config(&self) -> Result<Option<PathBuf>> {
        let path = self.model_config_path();
        if !path.exists() {
            return Ok(None);
        }
        crate::providers::check_model_config(&path, &self.providers.enabled, &self.path)?;
        Ok(Some(path))
    }
}

/// `[pack]`: which modules get bytecode and which ship without source (see `layer/profile.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PackSpec {
    #[serde(default)]
    pub(crate) bytecode: BytecodeChoice,
    #[serde(default)]
    pub(crate) sourceless: Sourceless,
    #[serde(default)]
    pub(crate) compression: Compression,
}

/// `pack.compression`: how the zips' entries are deflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zlib-style deflate at level 9: a cold build deflates the ~114 MB tree in seconds.
    #[default]
    Deflate,
    /// Zopfli (15 iterations), still plain deflate that every unzip reads: a few percent smaller
    /// for minutes of CPU on a cold build; a warm rebuild copies the unchanged entries.
    Zopfli,
}

impl Compression {
    /// The `zip` crate's deflate level: 1–9 use flate2, 10 and above use zopfli with
    /// `level - 9` iterations.
    pub(crate) fn zip_level(self) -> i64 {
        match self {
            Compression::Deflate => 9,
            Compression::Zopfli => 24,
        }
    }

    /// How the summary and the output record name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Compression::Deflate => "deflate level 9",
            Compression::Zopfli => "zopfli, 15 iterations",
        }
    }
}

/// `pack.bytecode`: which `.py` files get a `.pyc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BytecodeChoice {
    /// Only the modules of the import profile beside the lock (every module when there is no
    /// current profile); the others ship as `.py` and compile in memory when first imported.
    #[default]
    Profile,
    /// Every module: the biggest layer, no module ever compiled on Lambda.
    All,
}

/// `pack.sourceless`: whether profiled modules ship as `.pyc` without their `.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Sourceless {
    /// Every `.py` ships (tracebacks show source lines).
    #[default]
    Off,
    /// Modules of the import profile ship as `.pyc` only (tracebacks show file and line, no text).
    Profile,
}

impl<'de> Deserialize<'de> for Sourceless {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Flag(false) => Ok(Sourceless::Off),
            Raw::Word(word) if word == "profile" => Ok(Sourceless::Profile),
            Raw::Flag(true) => Err(serde::de::Error::custom(
                "sourceless = true is not supported: use \"profile\" (only the modules of the import profile ship \
                 without source) or false",
            )),
            Raw::Word(word) => {
                Err(serde::de::Error::custom(format!("sourceless = {word:?}: expected false or \"profile\"")))
            }
        }
    }
}

/// `[serverless]`: how the layer is wired into the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ServerlessSpec {
    /// serverless.yml to patch, relative to the repository root.
    #[serde(default = "default_serverless_file")]
    pub(crate) file: PathBuf,
    /// A key of older specs, no longer used: read only to refuse it with a message that names
    /// its replacement (docs/architecture.md §9).
    #[serde(default)]
    layer_path: Option<toml::Value>,
}

fn default_serverless_file() -> PathBuf {
    PathBuf::from("amplify-lambda-js/serverless.yml")
}

impl Default for ServerlessSpec {
    fn default() -> Self {
        ServerlessSpec { file: default_serverless_file(), layer_path: None }
    }
}

impl LayerSpec {
    /// Read and validate a spec file.
    pub fn load(path: &Path) -> Result<LayerSpec> {
        let text = fs_err::read_to_string(path)
            .with_context(|| "reading the layer spec (create it, or pass --spec FILE)".to_string())?;
        Self::parse(&text, path)
    }

    /// Parse and validate spec text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<LayerSpec> {
        let mut spec: LayerSpec =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        spec.path = path.to_path_buf();
        if spec.prune.keep_botocore_services.is_none()
            && let Ok(providers) = Catalog::builtin().enabled(&spec.providers.enabled)
        {
            spec.prune.keep_botocore_services = Some(crate::providers::botocore_services(&providers));
        }
        spec.validate().with_context(|| format!("{}: invalid layer spec", path.display()))?;
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        let manifest = Manifest::pinned();
        if !manifest.has_release(self.python.version, &self.python.release) {
            bail!(
                "python.release = {:?}: no pinned python-build-standalone {} build from that release; pinned releases: {}",
                self.python.release,
                self.python.version,
                manifest.releases_for(self.python.version).join(", ")
            );
        }
        if let Some(mirror) = &self.python.mirror {
            url::Url::parse(mirror).with_context(|| format!("python.mirror = {mirror:?} is not a URL"))?;
        }
        if self.packages.requirements.is_empty() {
            bail!("packages.requirements is empty: name at least one requirement, e.g. \"litellm==1.78.7\"");
        }
        for requirement in &self.packages.requirements {
            pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(requirement).map_err(|e| {
                anyhow::anyhow!("packages.requirements: {requirement:?} is not a PEP 508 requirement: {e}")
            })?;
        }
        for hook in &self.packages.allow_startup_hooks {
            match hook {
                AllowedStartupHook::NameOnly(name) => bail!(
                    "packages.allow-startup-hooks: {name:?} allows a startup hook by name alone; allow it by \
                     distribution name and content instead: {{ name = {name:?}, sha256 = \"<hex>\" }} (the \
                     refusal message of `cargo xtask layer` prints the sha256)"
                ),
                AllowedStartupHook::Pinned { name, sha256 } => {
                    pep508_rs::PackageName::from_str(name).map_err(|e| {
                        anyhow::anyhow!("packages.allow-startup-hooks: {name:?} is not a package name: {e}")
                    })?;
                    crate::cache::Sha256Hex::parse(sha256)
                        .with_context(|| format!("packages.allow-startup-hooks: the entry for {name:?}"))?;
                }
            }
        }
        for path in &self.packages.allow_secret_files {
            if let Err(why) = crate::files::enclosed_relative_path(path) {
                bail!(
                    "packages.allow-secret-files: {path:?} is not a path inside site-packages ({why}); write it as \
                     `certifi/cacert.pem`"
                );
            }
        }
        for (key, names) in
            [("packages.exclude", &self.packages.exclude), ("prune.drop-packages", &self.prune.drop_packages)]
        {
            for name in names {
                pep508_rs::PackageName::from_str(name)
                    .map_err(|e| anyhow::anyhow!("{key}: {name:?} is not a package name: {e}"))?;
            }
        }
        if self.providers.enabled.is_empty() {
            bail!("providers.enabled is empty: name at least one provider, e.g. [\"openai\"]");
        }
        Catalog::builtin().enabled(&self.providers.enabled).context("providers.enabled")?;
        let url = url::Url::parse(&self.index.url)
            .with_context(|| format!("index.url = {:?} is not a URL", self.index.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("index.url = {:?}: only http and https indexes are supported", self.index.url);
        }
        for path in &self.prune.litellm_proxy_paths {
            if let Err(why) = crate::files::enclosed_relative_path(path) {
                bail!(
                    "prune.litellm-proxy-paths: {path:?} is not a path inside litellm/proxy ({why}); write it as \
                     `swagger`"
                );
            }
        }
        for (key, value) in
            [("budget.zipped-mb", self.budget.zipped_mb), ("budget.unzipped-mb", self.budget.unzipped_mb)]
        {
            if !(value.is_finite() && value > 0.0) {
                bail!("{key} = {value}: must be a positive number of megabytes");
            }
        }
        if self.budget.zipped_mb > lambda::DIRECT_UPLOAD_LIMIT_MB && self.budget.upload == Upload::Direct {
            bail!(
                "budget.zipped-mb = {}: Lambda accepts at most {} MB zipped by direct upload; lower it, or set \
                 budget.upload = \"s3\" (Serverless uploads layers through S3)",
                self.budget.zipped_mb,
                lambda::DIRECT_UPLOAD_LIMIT_MB
            );
        }
        if self.budget.unzipped_mb > lambda::UNZIPPED_LIMIT_MB {
            bail!(
                "budget.unzipped-mb = {}: Lambda allows at most {} MB unzipped for a function and its layers",
                self.budget.unzipped_mb,
                lambda::UNZIPPED_LIMIT_MB
            );
        }
        if self.serverless.layer_path.is_some() {
            bail!(
                "serverless.layer-path is no longer used: the layer deploys as the built zip, and serverless.yml \
                 reads its path from layer-build-<arch>/serverless-layer.json, which `cargo xtask layer` writes; \
                 remove the key (run `cargo xtask patch` once if serverless.yml still names a layer path)"
            );
        }
        Ok(())
    }

    /// The python-build-standalone mirror: `cli` (`--pbs-mirror` / `XTASK_PBS_MIRROR`) first, else
    /// `[python] mirror`.
    pub(crate) fn pbs_mirror(&self, cli: Option<&str>) -> Option<String> {
        cli.map(String::from).or_else(|| self.python.mirror.clone())
    }
}

/// `[python] version`, parsed into a [`PythonVersion`]; a bad value names the key.
fn python_version_key<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<PythonVersion, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|error| serde::de::Error::custom(format!("python.version = {text:?}: {error}")))
}

#[cfg(test)]
mod tests;
