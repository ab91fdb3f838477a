//! `cargo xtask deploy`: rebuild the layer if stale, patch serverless.yml, run serverless deploy.
//!
//! Steps, in order:
//! 1. layer: hash the layer's inputs ([`crate::layer::freshness::layer_inputs_digest`]) and compare them with the
//!    stamp of `layer-build-<arch>/`; rebuild with `crate::layer::run` when stale.
//! 2. serverless.yml: bring it in line with the architecture and the layer path.
//! 3. npm: `npm ci` in the service when `node_modules/.bin/serverless` is missing.
//! 4. package: the pinned Serverless Framework v3 (`serverless package --stage <stage>`), then check
//!    the CloudFormation template it wrote ([`template::check_template`]). Nothing is deployed from a
//!    template that fails a check.
//! 5. deploy: `serverless deploy --stage <stage> --package .serverless` deploys exactly the checked
//!    artifacts. `--dry-run` stops after step 4 and prints the plan (JSON with `--json`).
//!
//! Serverless runs with the inherited environment (AWS credentials come from there and are never
//! printed); its output is streamed to stderr so that stdout holds only the plan.

pub(crate) mod template;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::arch::Arch;
use crate::flags::{DeployArgs, GlobalArgs};
use crate::layer::freshness::{Freshness, layer_freshness, layer_inputs_digest};
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

/// Where `serverless package` writes its artifacts, relative to the service directory.
const PACKAGE_DIR: &str = ".serverless";
/// The template `package` writes for an update of the stack (the one `deploy` submits).
const TEMPLATE_FILE: &str = "cloudformation-template-update-stack.json";

pub fn run(global: &GlobalArgs, args: &DeployArgs) -> Result<()> {
    let root = crate::project_root();
    let progress = Progress::new();
    let spec_path = root.join(&global.spec);
    let spec = LayerSpec::load(&spec_path)?;
    let service_file = root.join(&spec.serverless.file);
    let service_dir = service_file
        .parent()
        .with_context(|| format!("serverless.file = {:?} has no parent directory", spec.serverless.file))?
        .to_path_buf();
    let layer_out_dir = root.join(args.arch.build_dir_name());

    progress.step(format!("layer ({})", args.arch), || {
        ensure_layer_fresh(&root, global, args, &layer_out_dir, &progress)
    })?;
    crate::serverless::patch_after_build(&spec, args.arch, false, false, &progress)?;
    check_service_file(&service_file, args.arch, &spec, &progress)?;
    progress.step("npm dependencies", || ensure_node_modules(&service_dir, &progress))?;
    let serverless = serverless_bin(&service_dir)?;

    let summary = progress.step(format!("serverless package --stage {}", args.stage), || {
        run_serverless(&serverless, &service_dir, &["package", "--stage", &args.stage])?;
        check_packaged_template(&service_dir.join(PACKAGE_DIR), args.arch, spec.python.version)
    })?;
    let plan = Plan::new(args, &service_dir, &layer_out_dir, &summary)?;
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan).context("serialising the plan")?);
        } else {
            print!("{}", plan.text());
        }
        progress.note(format!("dry run: nothing deployed ({})", progress.timing_summary()));
        return Ok(());
    }
    eprint!("{}", plan.text());
    progress.step(format!("serverless deploy --stage {}", args.stage), || {
        run_serverless(&serverless, &service_dir, &["deploy", "--stage", &args.stage, "--package", PACKAGE_DIR])
    })?;
    progress.note(format!("deployed stage {} to {} ({})", plan.stage, plan.region, progress.timing_summary()));
    Ok(())
}

/// Step 1: rebuild the layer when its stamp does not match its inputs.
fn ensure_layer_fresh(
    root: &Path,
    global: &GlobalArgs,
    args: &DeployArgs,
    out_dir: &Path,
    progress: &Progress,
) -> Result<()> {
    let digest = layer_inputs_digest(root, &global.spec, args.arch)?;
    match layer_freshness(out_dir, args.arch, &digest) {
        Freshness::Fresh => {
            progress.note(format!("layer is up to date: {}", out_dir.display()));
            return Ok(());
        }
        Freshness::Stale(reason) => progress.note(format!("rebuilding the layer: {reason}")),
    }
    let options = crate::layer::BuildOptions {
        arch: args.arch,
        python: args.python.clone(),
        // The next step brings serverless.yml in line; one writer is enough.
        patch_serverless: false,
        allow_public_layer: false,
        runtime_only: false,
        out_dir: Some(out_dir.to_path_buf()),
    };
    crate::layer::build(global, &options).context("rebuilding the stale layer")?;
    match layer_freshness(out_dir, args.arch, &digest) {
        Freshness::Fresh => Ok(()),
        Freshness::Stale(reason) => {
            bail!("the layer build finished but the layer is still not current ({reason}); refusing to deploy it")
        }
    }
}

/// Step 2 (after `crate::serverless` patched the file): re-parse serverless.yml and refuse to go on
/// unless it matches the target: `provider.architecture` is the target and some layer's `path` (or
/// `package.artifact`) is the spec's `serverless.layer-path` for the target and exists.
fn check_service_file(file: &Path, arch: Arch, spec: &LayerSpec, progress: &Progress) -> Result<()> {
    let text = fs_err::read_to_string(file).context("reading the Serverless service definition")?;
    let documents = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid YAML: {e}", file.display()))?;
    let Some(service) = documents.first() else { bail!("{}: the file is empty", file.display()) };
    let fix = format!("run `cargo xtask patch --arch {arch}` (or `cargo xtask layer --arch {arch}`, which patches it)");
    let architecture = &service["provider"]["architecture"];
    match architecture.as_str() {
        Some(found) if found == arch.lambda_name() => {}
        Some(found) => bail!("{}: provider.architecture is {found}, expected {arch}; {fix}", file.display()),
        None => bail!(
            "{}: provider.architecture is missing (Lambda would default to x86_64), expected {arch}; {fix}",
            file.display()
        ),
    }
    let layer_path = spec.serverless.layer_path.replace("{arch}", arch.lambda_name());
    // A layer is either a directory Serverless zips (`path`) or a ready zip (`package.artifact`).
    let paths: Vec<&str> = match service["layers"].as_hash() {
        Some(layers) => layers
            .values()
            .flat_map(|layer| [layer["path"].as_str(), layer["package"]["artifact"].as_str()])
            .flatten()
            .collect(),
        None => Vec::new(),
    };
    if !paths.contains(&layer_path.as_str()) {
        bail!(
            "{}: no entry under layers: has path (or package.artifact) {layer_path} (found: {}); {fix}",
            file.display(),
            if paths.is_empty() { "none".to_string() } else { paths.join(", ") }
        );
    }
    let layer_source = file.parent().unwrap_or(Path::new(".")).join(&layer_path);
    if !layer_source.exists() {
        bail!(
            "{}: the layer {layer_path} does not exist ({}); run `cargo xtask layer --arch {arch}`",
            file.display(),
            layer_source.display()
        );
    }
    progress.note(format!("{}: architecture {arch}, layer path {layer_path}", file.display()));
    Ok(())
}

/// The Serverless Framework binary npm installs for the service.
fn serverless_bin_path(service_dir: &Path) -> PathBuf {
    service_dir.join("node_modules").join(".bin").join("serverless")
}

/// Step 3: `npm ci` in `service_dir` when the pinned Serverless Framework is not installed.
pub fn ensure_node_modules(service_dir: &Path, progress: &Progress) -> Result<()> {
    if serverless_bin_path(service_dir).exists() {
        progress.note(format!("{} is installed", serverless_bin_path(service_dir).display()));
        return Ok(());
    }
    install_node_modules(service_dir, progress)
}

/// Run `npm ci` in `service_dir` (needs its `package-lock.json`), streaming npm's output to stderr.
pub fn install_node_modules(service_dir: &Path, progress: &Progress) -> Result<()> {
    let lock = service_dir.join("package-lock.json");
    if !lock.is_file() {
        bail!(
            "{} is missing: run `npm install` in {} and commit package.json and package-lock.json",
            lock.display(),
            service_dir.display()
        );
    }
    progress.note(format!("npm ci in {}", service_dir.display()));
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(service_dir)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| {
            anyhow::anyhow!("running npm: {e}; install Node.js 20 or newer with npm (see `cargo xtask doctor`)")
        })?;
    if !status.success() {
        bail!("`npm ci` failed in {} ({status}); see npm's output above", service_dir.display());
    }
    if !serverless_bin_path(service_dir).exists() {
        bail!(
            "{}: package.json does not provide the Serverless Framework; run `npm install --save-dev osls@3` in {}",
            serverless_bin_path(service_dir).display(),
            service_dir.display()
        );
    }
    Ok(())
}

/// The installed Serverless Framework, refused unless it is major version 3 (v4 needs a login and
/// downloads a binary, docs/architecture.md §9).
fn serverless_bin(service_dir: &Path) -> Result<PathBuf> {
    let bin = serverless_bin_path(service_dir);
    let target = fs_err::canonicalize(&bin).context("resolving the Serverless Framework binary")?;
    let package_json = target
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("package.json"))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{}: cannot find the package.json of the package it belongs to", target.display()))?;
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(&package_json)?)
        .with_context(|| format!("{}: not valid JSON", package_json.display()))?;
    let name = manifest["name"].as_str().unwrap_or("?");
    let version = manifest["version"].as_str().unwrap_or("?");
    if !matches!(name, "osls" | "serverless") || !version.starts_with("3.") {
        bail!(
            "{}: {name} {version} is installed, expected the Serverless Framework v3 (osls@3 or serverless@3); \
             run `npm install --save-dev osls@3` in {}",
            bin.display(),
            service_dir.display()
        );
    }
    Ok(bin)
}

/// Run the Serverless Framework from the service directory; its stdout and stderr go to our stderr.
fn run_serverless(bin: &Path, service_dir: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(bin)
        .args(args)
        .current_dir(service_dir)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {}", bin.display()))?;
    if !status.success() {
        bail!("`serverless {}` failed in {} ({status}); see its output above", args.join(" "), service_dir.display());
    }
    Ok(())
}

/// Read the template `package` wrote and check it.
fn check_packaged_template(package_dir: &Path, arch: Arch, python: PythonVersion) -> Result<template::TemplateSummary> {
    let path = package_dir.join(TEMPLATE_FILE);
    let text = fs_err::read_to_string(&path).context("reading the template `serverless package` wrote")?;
    let template: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    template::check_template(&template, arch, python).map_err(|failures| {
        let lines: Vec<String> = failures.iter().map(|failure| format!("  - {failure}")).collect();
        anyhow::anyhow!(
            "{}: {} check(s) failed, nothing was deployed:\n{}",
            path.display(),
            failures.len(),
            lines.join("\n")
        )
    })
}

/// What would be (or is about to be) deployed.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stage: String,
    pub region: String,
    pub arch: String,
    /// The layer artifact `cargo xtask layer` built.
    pub layer_zip: Artifact,
    /// The layer zip `serverless package` made from `layer-build-<arch>/layer` (what is uploaded).
    pub packaged_layer_zip: Artifact,
    pub layer_resources: Vec<String>,
    pub functions: Vec<String>,
    pub checks_passed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub path: PathBuf,
    pub bytes: u64,
}

impl Artifact {
    fn of(path: PathBuf) -> Result<Artifact> {
        let bytes = fs_err::metadata(&path).context("reading the size of a layer zip")?.len();
        Ok(Artifact { path, bytes })
    }
}

impl Plan {
    fn new(
        args: &DeployArgs,
        service_dir: &Path,
        layer_out_dir: &Path,
        summary: &template::TemplateSummary,
    ) -> Result<Plan> {
        let package_dir = service_dir.join(PACKAGE_DIR);
        let state_path = package_dir.join("serverless-state.json");
        let state: Value = serde_json::from_str(
            &fs_err::read_to_string(&state_path).context("reading the state `serverless package` wrote")?,
        )
        .with_context(|| format!("{}: not valid JSON", state_path.display()))?;
        let region = state["service"]["provider"]["region"]
            .as_str()
            .with_context(|| format!("{}: service.provider.region is missing", state_path.display()))?
            .to_string();
        // The packaged zip is named like the object key the template uploads it to.
        let packaged_name = summary
            .layers
            .first()
            .and_then(|layer| layer.s3_key.as_deref())
            .and_then(|key| key.rsplit('/').next())
            .context("the layer resource has no plain Content.S3Key naming its packaged zip")?;
        if packaged_name.is_empty() || packaged_name.contains("..") {
            bail!("the layer resource's Content.S3Key ends in {packaged_name:?}, not a file name");
        }
        // Serverless zips a layer `path` into the package directory; a `package.artifact` (the
        // zip `cargo xtask layer` built) is uploaded as it is.
        let built_zip = layer_out_dir.join(args.arch.layer_zip_name());
        let packaged_zip = if package_dir.join(packaged_name).is_file() {
            package_dir.join(packaged_name)
        } else if args.arch.layer_zip_name() == packaged_name {
            built_zip.clone()
        } else {
            bail!(
                "the template uploads the layer as {packaged_name}, which is neither in {} nor the built {}",
                package_dir.display(),
                built_zip.display()
            );
        };
        Ok(Plan {
            stage: args.stage.clone(),
            region,
            arch: args.arch.lambda_name().to_string(),
            layer_zip: Artifact::of(built_zip.clone())?,
            packaged_layer_zip: Artifact::of(packaged_zip)?,
            layer_resources: summary.layers.iter().map(|layer| layer.logical_id.clone()).collect(),
            functions: summary
                .functions
                .iter()
                .map(|function| function.function_name.clone().unwrap_or_else(|| function.logical_id.clone()))
                .collect(),
            checks_passed: summary.checks.clone(),
        })
    }

    /// The plan as lines of text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("plan: stage {} in {} ({})\n", self.stage, self.region, self.arch));
        out.push_str(&format!(
            "  layer zip:      {} ({})\n",
            self.layer_zip.path.display(),
            human_bytes(self.layer_zip.bytes)
        ));
        out.push_str(&format!(
            "  uploaded layer: {} ({})\n",
            self.packaged_layer_zip.path.display(),
            human_bytes(self.packaged_layer_zip.bytes)
        ));
        out.push_str(&format!("  layer resource: {}\n", self.layer_resources.join(", ")));
        out.push_str(&format!("  functions:      {}\n", self.functions.join(", ")));
        out.push_str("  checks passed:\n");
        for check in &self.checks_passed {
            out.push_str(&format!("    ok {check}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERLESS_YML: &str = include_str!("../../amplify-lambda-js/serverless.yml");

    fn spec() -> LayerSpec {
        LayerSpec::load(&crate::project_root().join("litellm-layer/layer.toml")).unwrap()
    }

    /// A service directory holding `text` as serverless.yml, beside a layer-build-arm64/layer dir.
    fn service(text: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(root.path().join("amplify-lambda-js")).unwrap();
        fs_err::create_dir_all(root.path().join("layer-build-arm64/layer/python")).unwrap();
        let file = root.path().join("amplify-lambda-js/serverless.yml");
        fs_err::write(&file, text).unwrap();
        (root, file)
    }

    #[test]
    fn committed_serverless_yml_matches_arm64() {
        let (_root, file) = service(SERVERLESS_YML);
        check_service_file(&file, Arch::Arm64, &spec(), &Progress::new()).unwrap();
    }

    #[test]
    fn wrong_architecture_in_serverless_yml_is_refused() {
        let (_root, file) = service(SERVERLESS_YML);
        let err = check_service_file(&file, Arch::X86_64, &spec(), &Progress::new()).unwrap_err().to_string();
        assert!(err.ends_with(
            "serverless.yml: provider.architecture is arm64, expected x86_64; run `cargo xtask patch --arch x86_64` \
             (or `cargo xtask layer --arch x86_64`, which patches it)"
        ), "{err}");
    }

    #[test]
    fn missing_architecture_and_wrong_layer_path_are_refused() {
        let (_root, file) = service(&SERVERLESS_YML.replace("  architecture: arm64\n", ""));
        let err = check_service_file(&file, Arch::Arm64, &spec(), &Progress::new()).unwrap_err().to_string();
        assert!(
            err.contains("provider.architecture is missing (Lambda would default to x86_64), expected arm64"),
            "{err}"
        );

        let (_root, file) = service(&SERVERLESS_YML.replace("../layer-build-arm64/layer", "../layer"));
        let err = check_service_file(&file, Arch::Arm64, &spec(), &Progress::new()).unwrap_err().to_string();
        assert!(
            err.contains(
                "no entry under layers: has path (or package.artifact) ../layer-build-arm64/layer (found: ../layer); \
                 run `cargo xtask patch"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_layer_given_as_the_built_zip_is_accepted() {
        let text = SERVERLESS_YML.replace(
            "    path: ../layer-build-arm64/layer\n",
            "    package:\n      artifact: ../layer-build-arm64/python-litellm-arm64.zip\n",
        );
        let (root, file) = service(&text);
        let mut spec = spec();
        spec.serverless.layer_path = "../layer-build-{arch}/python-litellm-{arch}.zip".into();
        let err = check_service_file(&file, Arch::Arm64, &spec, &Progress::new()).unwrap_err().to_string();
        assert!(err.contains("the layer ../layer-build-arm64/python-litellm-arm64.zip does not exist"), "{err}");
        fs_err::write(root.path().join("layer-build-arm64/python-litellm-arm64.zip"), b"PK").unwrap();
        check_service_file(&file, Arch::Arm64, &spec, &Progress::new()).unwrap();
    }

    #[test]
    fn unbuilt_layer_directory_is_refused() {
        let (root, file) = service(SERVERLESS_YML);
        fs_err::remove_dir_all(root.path().join("layer-build-arm64")).unwrap();
        let err = check_service_file(&file, Arch::Arm64, &spec(), &Progress::new()).unwrap_err().to_string();
        assert!(err.contains("the layer ../layer-build-arm64/layer does not exist"), "{err}");
        assert!(err.ends_with("run `cargo xtask layer --arch arm64`"), "{err}");
    }

    #[test]
    fn missing_package_lock_says_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = ensure_node_modules(dir.path(), &Progress::new()).unwrap_err().to_string();
        let expected = format!(
            "package-lock.json is missing: run `npm install` in {} and commit package.json and package-lock.json",
            dir.path().display()
        );
        assert!(err.ends_with(&expected), "{err}");
    }

    #[test]
    fn serverless_v4_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("node_modules/serverless");
        fs_err::create_dir_all(package.join("bin")).unwrap();
        fs_err::create_dir_all(dir.path().join("node_modules/.bin")).unwrap();
        fs_err::write(package.join("package.json"), r#"{"name": "serverless", "version": "4.4.0"}"#).unwrap();
        fs_err::write(package.join("bin/serverless.js"), "").unwrap();
        std::os::unix::fs::symlink("../serverless/bin/serverless.js", dir.path().join("node_modules/.bin/serverless"))
            .unwrap();
        let err = serverless_bin(dir.path()).unwrap_err().to_string();
        assert!(err.contains("serverless 4.4.0 is installed, expected the Serverless Framework v3"), "{err}");
        assert!(err.contains("run `npm install --save-dev osls@3`"), "{err}");
    }
}
