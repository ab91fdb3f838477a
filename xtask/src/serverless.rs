//! The project's policy for the Serverless service file (`amplify-lambda-js/serverless.yml`): which
//! keys must hold which values, checked by `deploy` and written only by the explicit
//! `cargo xtask patch`.
//!
//! Nothing a build produces is written into the tracked file. Everything that depends on a build
//! (architecture, the layer zip, the interpreter's paths) lives in `layer-build-<arch>/`
//! `serverless-layer.json` ([`LayerWiring`], written by `cargo xtask layer`), and serverless.yml reads
//! it with Serverless variables:
//!
//! ```yaml
//! custom:
//!   layer: ${file(../layer-build-${env:LAYER_ARCH, 'arm64'}/serverless-layer.json)}
//! provider:
//!   architecture: ${self:custom.layer.architecture}
//! layers:
//!   pythonLiteLLM:
//!     package:
//!       artifact: ${self:custom.layer.artifact}
//! ```
//!
//! The layer is the reproducible zip the SBOM describes (`package.artifact`), never a directory
//! Serverless zips again. The YAML editing itself (precise text edits, verified by parsing again) is
//! the general editor in `serverless/edit.rs`.

mod edit;
mod yaml;

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::flags::{GlobalArgs, PatchArgs};
use crate::progress::Progress;
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

use edit::Desired;
use yaml::{Data, Document, EditError};

/// The layer's key under `layers:` (Serverless names its CloudFormation resource
/// `PythonLiteLLMLambdaLayer`, which the functions reference).
pub(crate) const LAYER_NAME: &str = "pythonLiteLLM";

/// The Lambda runtime the layer is built for.
pub(crate) const NODE_RUNTIME: &str = crate::lambda::NODE_RUNTIME;

/// The environment variable that picks the build serverless.yml reads (`deploy --arch` sets it).
pub(crate) const ARCH_VARIABLE: &str = "LAYER_ARCH";

/// The file in `layer-build-<arch>/` that serverless.yml reads with `${file(...)}`.
pub(crate) const WIRING_FILE: &str = "serverless-layer.json";

/// Why a file was not patched. The file is never changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PatchError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(
        "layers.{LAYER_NAME}.allowedAccounts contains '*', which makes the layer public to every AWS account; \
         remove it (or list the account ids that may use the layer), or pass --allow-public-layer if that is intended"
    )]
    PublicLayer,
    #[error(
        "layers.{LAYER_NAME}.path is set: Serverless would zip that directory again instead of uploading the \
         reproducible zip the SBOM describes; remove the `path` line (the layer is `package.artifact`)"
    )]
    DirectoryLayer,
    #[error("{file} is out of date: {changes}; run `cargo xtask patch` to update it")]
    OutOfDate { file: String, changes: String },
}

/// What the patch sets. The values do not depend on the architecture: that is chosen at deploy
/// time through `LAYER_ARCH` and read from the build directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatchPlan {
    /// The path from the service directory to the repository root, with a final `/` (`../`).
    pub(crate) root_from_service: String,
    /// Accept `allowedAccounts: ['*']` on the layer (with a warning) instead of refusing.
    pub(crate) allow_public_layer: bool,
}

impl PatchPlan {
    /// The plan for the spec's `[serverless] file`.
    pub(crate) fn new(spec: &LayerSpec, allow_public_layer: bool) -> PatchPlan {
        let service_dir = service_dir(spec);
        let up = relative_path(&service_dir, &crate::project_root());
        let root_from_service = if up.as_os_str().is_empty() { String::new() } else { format!("{}/", up.display()) };
        PatchPlan { root_from_service, allow_public_layer }
    }

    /// The `${file(...)}` variable that loads the build's wiring.
    pub(crate) fn wiring_variable(&self) -> String {
        format!(
            "${{file({}layer-build-${{env:{ARCH_VARIABLE}, '{}'}}/{WIRING_FILE})}}",
            self.root_from_service,
            Arch::Arm64.lambda_name()
        )
    }

    /// The values the file must hold, as a tree of keys in the order they are inserted when missing.
    fn desired(&self) -> Vec<(&'static str, Desired)> {
        let from_build = |key: &str| Desired::Str(format!("${{self:custom.layer.{key}}}"));
        vec![
            ("custom", Desired::Map(vec![("layer", Desired::Str(self.wiring_variable()))])),
            (
                "provider",
                Desired::Map(vec![
                    ("architecture", from_build("architecture")),
                    (
                        "environment",
                        Desired::Map(vec![
                            ("PYTHONHOME", from_build("pythonHome")),
                            ("PYTHONPATH", from_build("pythonPath")),
                            // A string, not a YAML boolean: LiteLLM compares the variable with "True".
                            ("LITELLM_LOCAL_MODEL_COST_MAP", Desired::Str("True".to_string())),
                        ]),
                    ),
                ]),
            ),
            (
                "layers",
                Desired::Map(vec![(
                    LAYER_NAME,
                    Desired::Map(vec![
                        ("package", Desired::Map(vec![("artifact", from_build("artifact"))])),
                        ("compatibleRuntimes", Desired::List(vec![NODE_RUNTIME.to_string()])),
                        ("compatibleArchitectures", Desired::List(vec!["${self:custom.layer.architecture}".into()])),
                    ]),
                )]),
            ),
        ]
    }
}

/// The result of patching: the new text, or `None` when the file is already right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatchOutcome {
    pub(crate) new_text: Option<String>,
    /// One line per change, e.g. `provider.architecture: arm64 -> ${self:custom.layer.architecture}`.
    pub(crate) changes: Vec<String>,
    /// Things the user should know even when nothing changed (a public layer, a replaced variable).
    pub(crate) warnings: Vec<String>,
}

impl PatchOutcome {
    pub(crate) fn is_unchanged(&self) -> bool {
        self.new_text.is_none()
    }
}

/// Compute the patched text of a serverless.yml. Pure: reads nothing, writes nothing; `file` is
/// only used in messages.
pub(crate) fn patch_text(text: &str, plan: &PatchPlan, file: &Path) -> Result<PatchOutcome> {
    patch_text_inner(text, plan).with_context(|| format!("{}: not patched", file.display()))
}

fn patch_text_inner(text: &str, plan: &PatchPlan) -> Result<PatchOutcome, PatchError> {
    let document = Document::parse(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let root_data = document.data(document.root);
    let mut warnings = Vec::new();
    let layer = root_data.get("layers").and_then(|layers| layers.get(LAYER_NAME));
    if let Some(accounts) = layer.and_then(|layer| layer.get("allowedAccounts")) {
        let public = match accounts {
            Data::Sequence(items) => items.iter().any(|item| item.as_str() == Some("*")),
            other => other.as_str() == Some("*"),
        };
        if public {
            if !plan.allow_public_layer {
                return Err(PatchError::PublicLayer);
            }
            warnings.push(format!(
                "layers.{LAYER_NAME}.allowedAccounts contains '*': THE LAYER IS PUBLIC, every AWS account can use \
                 it (allowed by --allow-public-layer)"
            ));
        }
    }
    if layer.and_then(|layer| layer.get("path")).is_some() {
        return Err(PatchError::DirectoryLayer);
    }
    if let Some(runtime) = root_data.get("provider").and_then(|p| p.get("runtime"))
        && runtime.as_str() != Some(NODE_RUNTIME)
    {
        warnings.push(format!(
            "provider.runtime is {}, but the layer is built for {NODE_RUNTIME}",
            edit::describe(runtime)
        ));
    }
    let edited = edit::edit_text(text, &plan.desired())?;
    warnings.extend(edited.warnings);
    Ok(PatchOutcome { new_text: edited.new_text, changes: edited.changes, warnings })
}

/// Patch a file in place (temp file + rename in the same directory), or with `check` only report:
/// an out-of-date file is then an error naming what differs, and nothing is written.
pub(crate) fn patch_file(path: &Path, plan: &PatchPlan, check: bool) -> Result<PatchOutcome> {
    let text = fs_err::read_to_string(path).context("reading serverless.yml (pass --file to patch another one)")?;
    let outcome = patch_text(&text, plan, path)?;
    let Some(new_text) = &outcome.new_text else { return Ok(outcome) };
    if check {
        return Err(
            PatchError::OutOfDate { file: path.display().to_string(), changes: outcome.changes.join("; ") }.into()
        );
    }
    crate::files::write_atomically(path, new_text.as_bytes())?;
    Ok(outcome)
}

/// `cargo xtask patch`: relative `--file` and `--spec` paths are taken from the repository root.
pub fn run(global: &GlobalArgs, args: &PatchArgs) -> Result<()> {
    let progress = Progress::new();
    let spec = LayerSpec::load(&global.spec_path())?;
    let plan = PatchPlan::new(&spec, args.allow_public_layer);
    patch_and_report(&from_root(&args.file), &plan, args.check, &progress)?;
    Ok(())
}

/// The read-only check `deploy` runs: the spec's `[serverless] file` must hold the wiring.
pub(crate) fn check_service_file(spec: &LayerSpec, progress: &Progress) -> Result<PatchOutcome> {
    patch_and_report(&from_root(&spec.serverless.file), &PatchPlan::new(spec, false), true, progress)
}

fn patch_and_report(file: &Path, plan: &PatchPlan, check: bool, progress: &Progress) -> Result<PatchOutcome> {
    let shown = file.strip_prefix(crate::project_root()).unwrap_or(file).display().to_string();
    let verb = if check { "checking" } else { "patching" };
    let outcome = progress.step(format!("{verb} {shown}"), || patch_file(file, plan, check))?;
    for warning in &outcome.warnings {
        progress.warn(warning);
    }
    if outcome.is_unchanged() {
        progress.note(format!("{shown} reads the layer build through {}", plan.wiring_variable()));
    } else {
        for change in &outcome.changes {
            progress.note(change);
        }
    }
    Ok(outcome)
}

fn from_root(path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { crate::project_root().join(path) }
}

/// The directory of the spec's `[serverless] file`.
pub(crate) fn service_dir(spec: &LayerSpec) -> PathBuf {
    let file = from_root(&spec.serverless.file);
    file.parent().map(Path::to_path_buf).unwrap_or(file)
}

/// What serverless.yml reads from a build (`layer-build-<arch>/serverless-layer.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerWiring {
    /// The Lambda architecture name (`arm64`, `x86_64`).
    pub architecture: String,
    /// The layer zip, relative to the service directory (Serverless resolves it from there).
    pub artifact: String,
    pub python_home: String,
    pub python_path: String,
    pub description: String,
}

impl LayerWiring {
    /// The wiring of a build that will live in `out_dir` (its final place, not a staging directory).
    pub(crate) fn new(spec: &LayerSpec, arch: Arch, python: PythonVersion, out_dir: &Path) -> LayerWiring {
        let artifact = relative_path(&service_dir(spec), &out_dir.join(arch.layer_zip_name()));
        LayerWiring {
            architecture: arch.lambda_name().to_string(),
            artifact: artifact.display().to_string(),
            python_home: crate::lambda::PYTHON_HOME.to_string(),
            python_path: crate::lambda::pythonpath(python),
            description: format!("CPython {python} with LiteLLM (built by cargo xtask layer)"),
        }
    }

    /// Write `dir/serverless-layer.json` (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("serialising the layer wiring")?;
        text.push('\n');
        let path = dir.join(WIRING_FILE);
        crate::files::write_atomically(&path, text.as_bytes())
    }

    /// Read `build_dir/serverless-layer.json`; `arch` is the build it must describe.
    pub fn load(build_dir: &Path, arch: Arch) -> Result<LayerWiring> {
        let path = build_dir.join(WIRING_FILE);
        let text = fs_err::read_to_string(&path).with_context(|| {
            format!("the layer build has no wiring for serverless.yml; run `cargo xtask layer --arch {arch}`")
        })?;
        let wiring: LayerWiring = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not the wiring `cargo xtask layer` writes; run `cargo xtask layer --arch {arch}`",
                path.display()
            )
        })?;
        if wiring.architecture != arch.lambda_name() {
            anyhow::bail!(
                "{}: architecture is {:?}, expected {arch}; run `cargo xtask layer --arch {arch}`",
                path.display(),
                wiring.architecture
            );
        }
        Ok(wiring)
    }

    /// The artifact's path as Serverless resolves it (from the service directory).
    pub(crate) fn artifact_path(&self, service_dir: &Path) -> PathBuf {
        service_dir.join(&self.artifact)
    }
}

/// The path from directory `from` to `to`, both absolute, worked out on their components (`..`
/// for each component of `from` past the common prefix).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().filter(|c| *c != Component::CurDir).collect();
    let to: Vec<Component> = to.components().filter(|c| *c != Component::CurDir).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LayerSpec {
        LayerSpec::load(&crate::project_root().join("litellm-layer/layer.toml")).unwrap()
    }

    fn plan() -> PatchPlan {
        PatchPlan::new(&spec(), false)
    }

    fn patch(text: &str, plan: &PatchPlan) -> Result<PatchOutcome> {
        patch_text(text, plan, Path::new("serverless.yml"))
    }

    fn refusal(text: &str, plan: &PatchPlan) -> String {
        format!("{:#}", patch(text, plan).expect_err("the patch must be refused"))
    }

    /// A service file from before the wiring: literal architecture, paths and a built zip.
    const LITERAL: &str = "service: chat\nprovider:\n  name: aws\n  runtime: nodejs22.x\n  architecture: arm64\n  \
                           environment:\n    PYTHONHOME: /opt/python\n    PYTHONPATH: /opt/python/lib/python3.11\n    \
                           LITELLM_LOCAL_MODEL_COST_MAP: \"True\"\nlayers:\n  pythonLiteLLM:\n    package:\n      \
                           artifact: ../layer-build-arm64/python-litellm-arm64.zip\n    compatibleRuntimes:\n      \
                           - nodejs22.x\n    compatibleArchitectures:\n      - arm64\n";

    #[test]
    fn the_wiring_variable_reads_the_build_picked_by_layer_arch() {
        assert_eq!(plan().root_from_service, "../");
        assert_eq!(
            plan().wiring_variable(),
            "${file(../layer-build-${env:LAYER_ARCH, 'arm64'}/serverless-layer.json)}"
        );
    }

    #[test]
    fn committed_serverless_yml_holds_the_wiring() {
        let text = fs_err::read_to_string(crate::project_root().join("amplify-lambda-js/serverless.yml")).unwrap();
        let outcome = patch(&text, &plan()).unwrap();
        assert!(outcome.is_unchanged(), "the committed file is out of date: {:?}", outcome.changes);
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    }

    #[test]
    fn literal_values_are_replaced_by_the_wiring() {
        let outcome = patch(LITERAL, &plan()).unwrap();
        assert_eq!(
            outcome.changes,
            [
                "provider.architecture: arm64 -> ${self:custom.layer.architecture}",
                "provider.environment.PYTHONHOME: /opt/python -> ${self:custom.layer.pythonHome}",
                "provider.environment.PYTHONPATH: /opt/python/lib/python3.11 -> ${self:custom.layer.pythonPath}",
                "layers.pythonLiteLLM.package.artifact: ../layer-build-arm64/python-litellm-arm64.zip -> \
                 ${self:custom.layer.artifact}",
                "layers.pythonLiteLLM.compatibleArchitectures: [arm64] -> [${self:custom.layer.architecture}]",
                "custom: added",
            ]
        );
        let new_text = outcome.new_text.unwrap();
        assert!(
            new_text.ends_with(
                "custom:\n  layer: \"${file(../layer-build-${env:LAYER_ARCH, 'arm64'}/serverless-layer.json)}\"\n"
            ),
            "{new_text}"
        );
        assert!(patch(&new_text, &plan()).unwrap().is_unchanged());
    }

    #[test]
    fn a_layer_directory_is_refused() {
        let text = LITERAL.replace(
            "    package:\n      artifact: ../layer-build-arm64/python-litellm-arm64.zip\n",
            "    path: ../layer-build-arm64/layer\n",
        );
        assert_eq!(
            refusal(&text, &plan()),
            "serverless.yml: not patched: layers.pythonLiteLLM.path is set: Serverless would zip that directory \
             again instead of uploading the reproducible zip the SBOM describes; remove the `path` line (the layer \
             is `package.artifact`)"
        );
    }

    #[test]
    fn another_runtime_is_warned_about() {
        let outcome = patch("provider:\n  runtime: nodejs18.x\n", &plan()).unwrap();
        assert_eq!(outcome.warnings, ["provider.runtime is nodejs18.x, but the layer is built for nodejs22.x"]);
    }

    #[test]
    fn a_public_layer_is_refused_unless_allowed() {
        let text = LITERAL
            .replace("    compatibleRuntimes:\n", "    allowedAccounts:\n      - '*'\n    compatibleRuntimes:\n");
        let msg = refusal(&text, &plan());
        assert_eq!(
            msg,
            "serverless.yml: not patched: layers.pythonLiteLLM.allowedAccounts contains '*', which makes the layer \
             public to every AWS account; remove it (or list the account ids that may use the layer), or pass \
             --allow-public-layer if that is intended"
        );
        let allowed = patch(&text, &PatchPlan { allow_public_layer: true, ..plan() }).unwrap();
        assert!(allowed.new_text.unwrap().contains("    allowedAccounts:\n      - '*'\n"));
        assert_eq!(
            allowed.warnings,
            ["layers.pythonLiteLLM.allowedAccounts contains '*': THE LAYER IS PUBLIC, every AWS account can use it \
              (allowed by --allow-public-layer)"]
        );
        // A single '*' (not a list) counts too; account ids do not.
        let scalar = "layers:\n  pythonLiteLLM:\n    allowedAccounts: '*'\n";
        assert!(refusal(scalar, &plan()).contains("allowedAccounts contains '*'"));
        let ids = "layers:\n  pythonLiteLLM:\n    allowedAccounts: ['123456789012']\n";
        assert!(patch(ids, &plan()).is_ok());
    }

    #[test]
    fn patch_file_writes_atomically_and_check_reports_out_of_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        fs_err::write(&path, LITERAL).unwrap();

        let msg = format!("{:#}", patch_file(&path, &plan(), true).unwrap_err());
        assert!(
            msg.starts_with(&format!(
                "{} is out of date: provider.architecture: arm64 -> ${{self:custom.layer.architecture}}; ",
                path.display()
            )),
            "{msg}"
        );
        assert!(msg.ends_with("; run `cargo xtask patch` to update it"), "{msg}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), LITERAL, "--check wrote the file");

        let written = patch_file(&path, &plan(), false).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), written.new_text.unwrap());
        let names: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["serverless.yml"], "a temporary file was left behind");
        assert!(patch_file(&path, &plan(), true).unwrap().is_unchanged());
    }

    #[cfg(unix)]
    #[test]
    fn patch_file_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        fs_err::write(&path, LITERAL).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        patch_file(&path, &plan(), false).unwrap();
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn refused_files_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        for (text, want) in [
            ("provider: [unclosed\n", "not valid YAML"),
            ("provider:\n  a: 1\n  a: 2\n", "duplicate key"),
            ("layers:\n  pythonLiteLLM:\n    allowedAccounts: ['*']\n", "allowedAccounts contains '*'"),
        ] {
            fs_err::write(&path, text).unwrap();
            let msg = format!("{:#}", patch_file(&path, &plan(), false).unwrap_err());
            assert!(msg.contains(want), "want {want:?} in: {msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(fs_err::read_to_string(&path).unwrap(), text);
        }
        let missing = format!("{:#}", patch_file(&dir.path().join("nope.yml"), &plan(), false).unwrap_err());
        assert!(missing.contains("nope.yml"), "{missing}");
    }

    #[test]
    fn the_wiring_points_from_the_service_to_the_built_zip() {
        let out_dir = crate::project_root().join("layer-build-x86_64");
        let wiring = LayerWiring::new(&spec(), Arch::X86_64, "3.12".parse().unwrap(), &out_dir);
        assert_eq!(
            wiring,
            LayerWiring {
                architecture: "x86_64".into(),
                artifact: "../layer-build-x86_64/python-litellm-x86_64.zip".into(),
                python_home: "/opt/python".into(),
                python_path: "/opt/python/lib/python3.12".into(),
                description: "CPython 3.12 with LiteLLM (built by cargo xtask layer)".into(),
            }
        );
        let service = service_dir(&spec());
        assert_eq!(wiring.artifact_path(&service), service.join("../layer-build-x86_64/python-litellm-x86_64.zip"));
    }

    #[test]
    fn the_wiring_round_trips_and_refuses_another_build() {
        let dir = tempfile::tempdir().unwrap();
        let wiring = LayerWiring::new(&spec(), Arch::Arm64, "3.11".parse().unwrap(), dir.path());
        wiring.write(dir.path()).unwrap();
        assert_eq!(LayerWiring::load(dir.path(), Arch::Arm64).unwrap(), wiring);
        let err = format!("{:#}", LayerWiring::load(dir.path(), Arch::X86_64).unwrap_err());
        assert_eq!(
            err,
            format!(
                "{}: architecture is \"arm64\", expected x86_64; run `cargo xtask layer --arch x86_64`",
                dir.path().join(WIRING_FILE).display()
            )
        );
        let empty = tempfile::tempdir().unwrap();
        let err = format!("{:#}", LayerWiring::load(empty.path(), Arch::Arm64).unwrap_err());
        assert!(
            err.starts_with("the layer build has no wiring for serverless.yml; run `cargo xtask layer --arch arm64`: "),
            "{err}"
        );
        assert!(err.contains(&empty.path().join(WIRING_FILE).display().to_string()), "{err}");
    }

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(relative_path(Path::new("/r/svc"), Path::new("/r/build/x.zip")), Path::new("../build/x.zip"));
        assert_eq!(relative_path(Path::new("/r"), Path::new("/r/x.zip")), Path::new("x.zip"));
        assert_eq!(relative_path(Path::new("/r/a/b"), Path::new("/r")), Path::new("../.."));
    }
}
