//! `cargo xtask deploy`: deploy exactly the layer zip that was built (and described by its SBOM).
//!
//! Steps, in order:
//! 1. layer: hash the layer's inputs ([`crate::layer::freshness::layer_inputs_digest`]) and compare them with the
//!    stamp of `layer-build-<arch>/`; rebuild with `crate::layer::run` when stale (never with
//!    `--dry-run` or `--no-build`: those stop and say what to run).
//! 2. artifact: the zip's sha256 must be the SBOM's subject, and the build's
//!    `serverless-layer.json` must name that zip.
//! 3. serverless.yml: must read the build through Serverless variables
//!    ([`crate::serverless::check_service_file`]; read-only, `cargo xtask patch` fixes it).
//! 4. npm: `npm ci` in the service when `node_modules/.bin/serverless` is missing (a dry run
//!    installs nothing and stops instead).
//! 5. package: the pinned Serverless Framework v3 (`serverless package --stage <stage>`, with
//!    `LAYER_ARCH` set), then check the CloudFormation template it wrote ([`template::check_template`])
//!    and that the layer artifact it recorded is, byte for byte, the built zip. Nothing is deployed
//!    from a package that fails a check. A dry run packages offline ([`offline`]).
//! 6. deploy: `serverless deploy --stage <stage> --package .serverless` deploys exactly the checked
//!    artifacts. `--dry-run` stops after step 5 and prints the plan (JSON with `--json`).
//!
//! Serverless runs with the inherited environment (AWS credentials come from there and are never
//! printed); its output is streamed to stderr so that stdout holds only the plan.

pub(crate) mod offline;
pub(crate) mod template;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::arch::Arch;
use crate::cache::Sha256Hex;
use crate::flags::{DeployArgs, GlobalArgs};
use crate::layer::freshness::{Freshness, layer_freshness, layer_inputs_digest};
use crate::progress::{Progress, human_bytes};
use crate::serverless::{ARCH_VARIABLE, LAYER_NAME, LayerWiring, WIRING_FILE};
use crate::spec::LayerSpec;

/// Where `serverless package` writes its artifacts, relative to the service directory.
const PACKAGE_DIR: &str = ".serverless";
/// The template `package` writes for an update of the stack (the one `deploy` submits).
const TEMPLATE_FILE: &str = "cloudformation-template-update-stack.json";
/// The service as `package` resolved it (the layer's artifact path among it).
const STATE_FILE: &str = "serverless-state.json";

pub fn run(global: &GlobalArgs, args: &DeployArgs) -> Result<()> {
    let root = crate::project_root();
    let progress = Progress::new();
    let spec = LayerSpec::load(&global.spec_path())?;
    let service_dir = crate::serverless::service_dir(&spec);
    let layer_out_dir = root.join(args.arch.build_dir_name());
    // Every configured model must go to a provider the layer was built for: refused before any upload.
    if let Some(checked) = spec.check_model_config()? {
        progress.note(format!("models: every model of {} goes to an enabled provider", checked.display()));
    }

    progress.step(format!("layer ({})", args.arch), || {
        ensure_layer_fresh(&root, global, args, &layer_out_dir, &progress)
    })?;
    let built = progress.step("layer artifact", || BuiltLayer::check(&layer_out_dir, args.arch, &service_dir))?;
    progress.note(format!("{}: sha256 {} (the SBOM's subject)", built.zip.display(), built.sha256));
    crate::serverless::check_service_file(&spec, &progress)?;
    if args.dry_run {
        if !serverless_bin_path(&service_dir).exists() {
            bail!(
                "{} is missing and a dry run installs nothing: run `npm ci` in {} first",
                serverless_bin_path(&service_dir).display(),
                service_dir.display()
            );
        }
    } else {
        progress.step("npm dependencies", || ensure_node_modules(&service_dir, &progress))?;
    }
    let serverless = serverless_bin(&service_dir)?;
    let package_dir = service_dir.join(PACKAGE_DIR);

    let (summary, answered) = progress.step(format!("serverless package --stage {}", args.stage), || {
        let answered = if args.dry_run {
            let stand_in = offline::StandInCloudFormation::start()?;
            progress.note(format!("dry run: AWS calls go to a stand-in CloudFormation at {}", stand_in.endpoint()));
            let mut command = serverless_command(&serverless.bin, &service_dir, args.arch);
            stand_in.configure(&mut command, &serverless.package_dir);
            run_serverless(command, &["package", "--stage", &args.stage], &service_dir)?;
            stand_in.actions()
        } else {
            let command = serverless_command(&serverless.bin, &service_dir, args.arch);
            run_serverless(command, &["package", "--stage", &args.stage], &service_dir)?;
            Vec::new()
        };
        let expected = template::Expected::from_wiring(args.arch, &built.wiring);
        anyhow::Ok((check_packaged_template(&package_dir, &expected)?, answered))
    })?;
    let packaged = progress.step("packaged layer artifact", || built.check_packaged(&package_dir, &service_dir))?;
    let plan = Plan::new(args, &package_dir, &built, packaged, &summary, answered)?;
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
        let command = serverless_command(&serverless.bin, &service_dir, args.arch);
        run_serverless(command, &["deploy", "--stage", &args.stage, "--package", PACKAGE_DIR], &service_dir)
    })?;
    progress.note(format!("deployed stage {} to {} ({})", plan.stage, plan.region, progress.timing_summary()));
    Ok(())
}

/// Step 1: rebuild the layer when its stamp does not match its inputs (unless building is off).
fn ensure_layer_fresh(
    root: &Path,
    global: &GlobalArgs,
    args: &DeployArgs,
    out_dir: &Path,
    progress: &Progress,
) -> Result<()> {
    let digest = layer_inputs_digest(root, &global.spec, args.arch)?;
    let reason = match layer_freshness(out_dir, args.arch, &digest) {
        Freshness::Fresh => {
            progress.note(format!("layer is up to date: {}", out_dir.display()));
            return Ok(());
        }
        Freshness::Stale(reason) => reason,
    };
    let no_build = if args.dry_run {
        Some("a dry run builds nothing")
    } else if args.no_build {
        Some("--no-build builds nothing")
    } else {
        None
    };
    if let Some(why) = no_build {
        bail!(
            "the {} layer in {} does not match the current inputs ({reason}); {why}: run `cargo xtask layer --arch {}` first",
            args.arch,
            out_dir.display(),
            args.arch
        );
    }
    progress.note(format!("rebuilding the layer: {reason}"));
    let options = crate::layer::BuildOptions {
        arch: args.arch,
        python: args.python.clone(),
        runtime_only: false,
        out_dir: Some(out_dir.to_path_buf()),
        force: false,
    };
    crate::layer::build(global, &options).context("rebuilding the stale layer")?;
    match layer_freshness(out_dir, args.arch, &digest) {
        Freshness::Fresh => Ok(()),
        Freshness::Stale(reason) => {
            bail!("the layer build finished but the layer is still not current ({reason}); refusing to deploy it")
        }
    }
}

/// The built layer: its zip, the zip's sha256 (checked against the SBOM) and the build's wiring.
#[derive(Debug, Clone)]
pub(crate) struct BuiltLayer {
    pub(crate) zip: PathBuf,
    pub(crate) sha256: Sha256Hex,
    pub(crate) sbom: PathBuf,
    pub(crate) wiring: LayerWiring,
}

impl BuiltLayer {
    /// Step 2: the zip in `out_dir` is the SBOM's subject, and the wiring serverless.yml reads names it.
    pub(crate) fn check(out_dir: &Path, arch: Arch, service_dir: &Path) -> Result<BuiltLayer> {
        let zip = out_dir.join(arch.layer_zip_name());
        let sbom = out_dir.join(crate::layer::sbom::sbom_file_name(arch));
        let sha256 = crate::cache::sha256_file(&zip).context("hashing the built layer zip")?;
        let subject = crate::layer::sbom::subject::read(&sbom)?;
        if subject != sha256 {
            bail!(
                "{}: sha256 {sha256} is not the subject of the SBOM {} (sha256 {subject}); the zip changed after \
                 the build: rebuild with `cargo xtask layer --arch {arch}` (or take both files from the same CI run). \
                 Nothing was deployed",
                zip.display(),
                sbom.display()
            );
        }
        let wiring = LayerWiring::load(out_dir, arch)?;
        let named = wiring.artifact_path(service_dir);
        if !same_file(&named, &zip) {
            bail!(
                "{}: artifact {} (from {}) is not the built zip {}; run `cargo xtask layer --arch {arch}` again",
                out_dir.join(WIRING_FILE).display(),
                wiring.artifact,
                service_dir.display(),
                zip.display()
            );
        }
        Ok(BuiltLayer { zip, sha256, sbom, wiring })
    }

    /// Step 5: the layer artifact `serverless package` recorded is this zip, byte for byte.
    pub(crate) fn check_packaged(&self, package_dir: &Path, service_dir: &Path) -> Result<PackagedLayer> {
        let state_path = package_dir.join(STATE_FILE);
        let state: Value = serde_json::from_str(
            &fs_err::read_to_string(&state_path).context("reading the state `serverless package` wrote")?,
        )
        .with_context(|| format!("{}: not valid JSON", state_path.display()))?;
        let layers = follow_refs(&state, &state["service"]["layers"]);
        let layer = follow_refs(&state, &layers[LAYER_NAME]);
        let package = follow_refs(&state, &layer["package"]);
        let Some(artifact) = follow_refs(&state, &package["artifact"]).as_str() else {
            bail!(
                "{}: service.layers.{LAYER_NAME}.package.artifact is missing: Serverless packaged the layer from a \
                 directory, not the built zip; run `cargo xtask patch` and package again. Nothing was deployed",
                state_path.display()
            );
        };
        let path = service_dir.join(artifact);
        let sha256 = crate::cache::sha256_file(&path).context("hashing the packaged layer artifact")?;
        if sha256 != self.sha256 {
            bail!(
                "the packaged layer artifact {} has sha256 {sha256}, but the built zip {} (the SBOM's subject) has \
                 {}; nothing was deployed",
                path.display(),
                self.zip.display(),
                self.sha256
            );
        }
        let bytes = fs_err::metadata(&path)?.len();
        Ok(PackagedLayer { artifact: artifact.to_string(), path, bytes, sha256: sha256.to_string() })
    }
}

/// `value`, or what its `{"$ref": "$[\"a\"][\"b\"]"}` names: Serverless writes its state with
/// shared objects replaced by such references (the JSONPath-like form of `json-cycle`). An
/// unreadable or dangling reference gives `null`.
fn follow_refs<'a>(root: &'a Value, mut value: &'a Value) -> &'a Value {
    // A reference names a place in the document, so a chain longer than the document is a cycle.
    for _ in 0..64 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return value };
        let Some(mut rest) = reference.strip_prefix('$') else { return &Value::Null };
        let mut target = root;
        while !rest.is_empty() {
            let Some(inner) = rest.strip_prefix('[') else { return &Value::Null };
            let Some(end) = inner.find(']') else { return &Value::Null };
            let (key, after) = (&inner[..end], &inner[end + 1..]);
            target = match serde_json::from_str::<Value>(key) {
                Ok(Value::String(name)) => &target[name.as_str()],
                Ok(Value::Number(index)) => match index.as_u64() {
                    Some(index) => &target[index as usize],
                    None => return &Value::Null,
                },
                _ => return &Value::Null,
            };
            rest = after;
        }
        value = target;
    }
    &Value::Null
}

/// Whether two paths name the same file (after resolving symbolic links and `..`).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs_err::canonicalize(a), fs_err::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The layer artifact as `serverless package` recorded it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PackagedLayer {
    /// `package.artifact` as written in the packaged state (relative to the service directory).
    pub(crate) artifact: String,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

/// The Serverless Framework binary npm installs for the service.
fn serverless_bin_path(service_dir: &Path) -> PathBuf {
    service_dir.join("node_modules").join(".bin").join("serverless")
}

/// Step 3: `npm ci` in `service_dir` when the pinned Serverless Framework is not installed.
pub(crate) fn ensure_node_modules(service_dir: &Path, progress: &Progress) -> Result<()> {
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

/// The installed Serverless Framework: its launcher and its package directory.
struct Serverless {
    bin: PathBuf,
    package_dir: PathBuf,
}

/// The installed Serverless Framework, refused unless it is major version 3 (v4 needs a login and
/// downloads a binary, docs/architecture.md §9).
fn serverless_bin(service_dir: &Path) -> Result<Serverless> {
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
    let package_dir = package_json.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Serverless { bin, package_dir })
}

/// The Serverless Framework run from the service directory for `arch`'s build; its stdout and
/// stderr go to our stderr.
fn serverless_command(bin: &Path, service_dir: &Path, arch: Arch) -> Command {
    let mut command = Command::new(bin);
    command
        .current_dir(service_dir)
        .env(ARCH_VARIABLE, arch.lambda_name())
        .stdin(Stdio::null())
        .stdout(std::io::stderr());
    command
}

fn run_serverless(mut command: Command, args: &[&str], service_dir: &Path) -> Result<()> {
    let status = command.args(args).status().with_context(|| format!("running {:?}", command.get_program()))?;
    if !status.success() {
        bail!("`serverless {}` failed in {} ({status}); see its output above", args.join(" "), service_dir.display());
    }
    Ok(())
}

/// Read the template `package` wrote and check it.
fn check_packaged_template(package_dir: &Path, expected: &template::Expected) -> Result<template::TemplateSummary> {
    let path = package_dir.join(TEMPLATE_FILE);
    let text = fs_err::read_to_string(&path).context("reading the template `serverless package` wrote")?;
    let template: Value = serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    template::check_template(&template, expected).map_err(|failures| {
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
pub(crate) struct Plan {
    pub(crate) stage: String,
    pub(crate) region: String,
    pub(crate) arch: String,
    /// The layer zip `cargo xtask layer` built.
    pub(crate) layer_zip: Artifact,
    /// The SBOM whose subject is the layer zip.
    pub(crate) sbom: PathBuf,
    /// The layer artifact `serverless package` recorded (what is uploaded): the same bytes.
    pub(crate) packaged_layer: PackagedLayer,
    pub(crate) layer_resources: Vec<String>,
    pub(crate) functions: Vec<String>,
    pub(crate) checks_passed: Vec<String>,
    /// AWS calls a dry run answered from the stand-in on 127.0.0.1 (empty for a deploy).
    pub(crate) aws_calls_answered_offline: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Artifact {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

impl Plan {
    fn new(
        args: &DeployArgs,
        package_dir: &Path,
        built: &BuiltLayer,
        packaged: PackagedLayer,
        summary: &template::TemplateSummary,
        answered: Vec<String>,
    ) -> Result<Plan> {
        let state_path = package_dir.join(STATE_FILE);
        let state: Value = serde_json::from_str(
            &fs_err::read_to_string(&state_path).context("reading the state `serverless package` wrote")?,
        )
        .with_context(|| format!("{}: not valid JSON", state_path.display()))?;
        let region = state["service"]["provider"]["region"]
            .as_str()
            .with_context(|| format!("{}: service.provider.region is missing", state_path.display()))?
            .to_string();
        let bytes = fs_err::metadata(&built.zip).context("reading the size of the layer zip")?.len();
        Ok(Plan {
            stage: args.stage.clone(),
            region,
            arch: args.arch.lambda_name().to_string(),
            layer_zip: Artifact { path: built.zip.clone(), bytes, sha256: built.sha256.to_string() },
            sbom: built.sbom.clone(),
            packaged_layer: packaged,
            layer_resources: summary.layers.iter().map(|layer| layer.logical_id.clone()).collect(),
            functions: summary
                .functions
                .iter()
                .map(|function| function.function_name.clone().unwrap_or_else(|| function.logical_id.clone()))
                .collect(),
            checks_passed: summary.checks.clone(),
            aws_calls_answered_offline: answered,
        })
    }

    /// The plan as lines of text.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("plan: stage {} in {} ({})\n", self.stage, self.region, self.arch));
        out.push_str(&format!(
            "  layer zip:      {} ({})\n",
            self.layer_zip.path.display(),
            human_bytes(self.layer_zip.bytes)
        ));
        out.push_str(&format!("  sha256:         {}\n", self.layer_zip.sha256));
        out.push_str(&format!("  SBOM subject:   {} (same sha256)\n", self.sbom.display()));
        out.push_str(&format!("  uploaded layer: {} (package.artifact, same sha256)\n", self.packaged_layer.artifact));
        out.push_str(&format!("  layer resource: {}\n", self.layer_resources.join(", ")));
        out.push_str(&format!("  functions:      {}\n", self.functions.join(", ")));
        if !self.aws_calls_answered_offline.is_empty() {
            out.push_str(&format!(
                "  offline:        answered {} from a stand-in on 127.0.0.1\n",
                self.aws_calls_answered_offline.join(", ")
            ));
        }
        out.push_str("  checks passed:\n");
        for check in &self.checks_passed {
            out.push_str(&format!("    ok {check}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests;
