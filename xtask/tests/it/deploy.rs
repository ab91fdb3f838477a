//! End-to-end tests of `cargo xtask deploy`: a dry run offline, a deploy to moto.
//!
//! Each test works on a temporary git repository holding a copy of the real spec and service, a
//! stand-in lock, and a prepared `layer-build-arm64/` as `cargo xtask layer` leaves it (zip, SBOM
//! whose subject is the zip, `serverless-layer.json`, a fresh build stamp), so no layer is built.
//! The service's npm dependencies come from a fixture installed once with `npm ci`. The deploy to
//! moto lists `test_data/deploy/local-endpoint-plugin.cjs` in the copy's serverless.yml (a real
//! deploy has no stand-in); the dry run needs nothing of the kind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::moto::{self, MotoServer};
use serde_json::Value;
use xtask::arch::Arch;
use xtask::layer::freshness::{Freshness, StaleReason, layer_freshness, layer_inputs_digest, write_stamp};
use xtask::progress::Progress;
use xtask::serverless::LayerWiring;

const SPEC: &str = "litellm-layer/layer.toml";

/// A CycloneDX document with the layer as its subject, as the SBOM step writes it (abridged).
const SBOM: &str = r#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
    "metadata": {"component": {"type": "application", "bom-ref": "python-litellm-arm64", "name": "python-litellm-arm64"}}}"#;

/// The chat function's Function URL (issue 12), added to copies whose serverless.yml lacks it.
const FUNCTION_URL: &str = "    url:\n      authorizer: aws_iam\n      invokeMode: RESPONSE_STREAM\n";

fn repo_root() -> PathBuf {
    xtask::project_root()
}

fn test_data(name: &str) -> PathBuf {
    repo_root().join("xtask/test_data/deploy").join(name)
}

/// The service's `node_modules`, installed once per package-lock.json by the command's own `npm ci`.
fn node_modules() -> PathBuf {
    static NODE_MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    NODE_MODULES
        .get_or_init(|| {
            let service = repo_root().join("amplify-lambda-js");
            let lock = fs_err::read(service.join("package-lock.json")).map_err(|e| e.to_string())?;
            let key = &xtask::cache::sha256_bytes(&lock).to_string()[..16];
            let dir = moto::fixtures_dir().join(format!("deploy-node-{key}"));
            let dir = moto::build_fixture_once(&dir, |staging| {
                for file in ["package.json", "package-lock.json"] {
                    fs_err::copy(service.join(file), staging.join(file))?;
                }
                xtask::deploy::install_node_modules(staging, &Progress::new())
            })
            .map_err(|e| format!("{e:#}"))?;
            Ok(dir.join("node_modules"))
        })
        .clone()
        .expect("installing the service's npm dependencies")
}

/// A temporary git repository, ready to deploy for arm64 without building the layer.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();

        fs_err::create_dir_all(root.join("litellm-layer")).unwrap();
        fs_err::copy(repo_root().join(SPEC), root.join(SPEC)).unwrap();
        fs_err::copy(test_data("pylock.toml"), root.join("litellm-layer/pylock.toml")).unwrap();
        fs_err::copy(repo_root().join(".gitignore"), root.join(".gitignore")).unwrap();

        // A prepared layer: the zip, its SBOM, the wiring serverless.yml reads and a fresh stamp.
        let layer_out = root.join("layer-build-arm64");
        fs_err::create_dir_all(&layer_out).unwrap();
        let mut empty_zip = b"PK\x05\x06".to_vec();
        empty_zip.resize(22, 0);
        let zip = layer_out.join("python-litellm-arm64.zip");
        fs_err::write(&zip, empty_zip).unwrap();
        let sbom = layer_out.join("python-litellm-arm64.cdx.json");
        fs_err::write(&sbom, SBOM).unwrap();
        xtask::layer::sbom::subject::record(&sbom, &zip).unwrap();
        LayerWiring {
            architecture: "arm64".into(),
            artifact: "../layer-build-arm64/python-litellm-arm64.zip".into(),
            python_home: "/opt/python".into(),
            python_path: "/opt/python/lib/python3.11".into(),
            description: "CPython 3.11 with LiteLLM (built by cargo xtask layer)".into(),
        }
        .write(&layer_out)
        .unwrap();
        write_stamp(&layer_out, &layer_inputs_digest(root, Path::new(SPEC), Arch::Arm64).unwrap()).unwrap();

        let service = root.join("amplify-lambda-js");
        copy_service(&repo_root().join("amplify-lambda-js"), &service);
        let yml = fs_err::read_to_string(service.join("serverless.yml")).unwrap();
        if !yml.contains("invokeMode: RESPONSE_STREAM") {
            let with_url = yml.replace(
                "    layers:\n      - !Ref PythonLiteLLMLambdaLayer\n",
                &format!("{FUNCTION_URL}    layers:\n      - !Ref PythonLiteLLMLambdaLayer\n"),
            );
            assert_ne!(with_url, yml, "cannot add the Function URL to the copy");
            fs_err::write(service.join("serverless.yml"), with_url).unwrap();
        }
        std::os::unix::fs::symlink(node_modules(), service.join("node_modules")).unwrap();

        // A repository, so that `git status` can tell what a command changed. The symbolic link to
        // the shared node_modules is the test's own set-up (`node_modules/` ignores directories only).
        git(root, &["init", "--quiet"]);
        fs_err::write(root.join(".git/info/exclude"), "/amplify-lambda-js/node_modules\n").unwrap();
        git(root, &["add", "--all"]);
        git(
            root,
            &["-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--quiet", "-m", "copy"],
        );
        Repo { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn service_file(&self) -> PathBuf {
        self.root().join("amplify-lambda-js/serverless.yml")
    }

    /// `git status --porcelain --ignored=no`: empty when no tracked file changed and nothing new
    /// that is not ignored appeared.
    fn status(&self) -> String {
        let output = Command::new("git").args(["status", "--porcelain"]).current_dir(self.root()).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `cargo xtask deploy ...` on this copy with no AWS configuration at all: no credentials, no
    /// profile, a home without `~/.aws`.
    fn dry_run(&self, args: &[&str]) -> Output {
        let home = self.root().join("target/empty-home");
        fs_err::create_dir_all(&home).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.arg("deploy").args(args).current_dir(self.root()).env("XTASK_PROJECT_ROOT", self.root());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command.env("HOME", &home);
        command.output().expect("running cargo xtask deploy")
    }

    /// `cargo xtask deploy ...` on this copy, talking to `endpoint` with fake credentials.
    fn deploy(&self, endpoint: &str, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.arg("deploy").args(args).current_dir(self.root()).env("XTASK_PROJECT_ROOT", self.root());
        moto::fake_aws_env(&mut command, endpoint);
        // Poll the stack every half second instead of every five.
        command.env("SLS_AWS_MONITORING_FREQUENCY", "500");
        command.output().expect("running cargo xtask deploy")
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git").args(args).current_dir(dir).status().expect("running git");
    assert!(status.success(), "git {args:?} failed");
}

/// Copy the service's files, leaving out what npm and Serverless generate.
fn copy_service(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == ".serverless" || name.to_string_lossy().starts_with(".venv") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_service(&entry.path(), &to.join(&name));
        } else {
            fs_err::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// serverless.yml with one more plugin, whether or not it already has a `plugins:` list.
fn with_plugin(yml: &str, plugin: &str) -> String {
    match yml.find("\nplugins:\n") {
        Some(at) => {
            let (head, tail) = yml.split_at(at + "\nplugins:\n".len());
            format!("{head}  - {plugin}\n{tail}")
        }
        None => format!("{}\nplugins:\n  - {plugin}\n", yml.trim_end()),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn dry_run_packages_offline_checks_the_template_and_the_artifact_and_changes_nothing() {
    let repo = Repo::new();
    let zip_sha256 =
        xtask::cache::sha256_file(&repo.root().join("layer-build-arm64/python-litellm-arm64.zip")).unwrap();
    let output = repo.dry_run(&["--stage", "dev", "--dry-run", "--json"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    assert!(stderr.contains("layer is up to date"), "{stderr}");
    assert!(
        stderr.contains(&format!("python-litellm-arm64.zip: sha256 {zip_sha256} (the SBOM's subject)")),
        "{stderr}"
    );
    assert!(stderr.contains("==> serverless package --stage dev"), "{stderr}");
    assert!(stderr.contains("dry run: AWS calls go to a stand-in CloudFormation at http://127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("dry run: nothing deployed"), "{stderr}");
    assert!(!stderr.contains("npm ci"), "a dry run installs nothing: {stderr}");

    let plan: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(plan["stage"], "dev");
    assert_eq!(plan["region"], "us-east-1");
    assert_eq!(plan["arch"], "arm64");
    assert_eq!(plan["functions"], serde_json::json!(["amplify-lambda-js-dev-chat"]));
    assert_eq!(plan["layer_resources"], serde_json::json!(["PythonLiteLLMLambdaLayer"]));
    assert_eq!(plan["aws_calls_answered_offline"], serde_json::json!(["DescribeStacks"]));
    let layer_zip = plan["layer_zip"]["path"].as_str().unwrap();
    assert!(layer_zip.ends_with("layer-build-arm64/python-litellm-arm64.zip"), "{layer_zip}");
    assert_eq!(plan["layer_zip"]["bytes"], 22);
    assert_eq!(plan["layer_zip"]["sha256"], zip_sha256.as_str());
    assert_eq!(plan["packaged_layer"]["artifact"], "../layer-build-arm64/python-litellm-arm64.zip");
    assert_eq!(plan["packaged_layer"]["sha256"], zip_sha256.as_str());
    let checks: Vec<&str> = plan["checks_passed"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(
        checks,
        [
            "layer PythonLiteLLMLambdaLayer: CompatibleArchitectures [arm64], CompatibleRuntimes has nodejs22.x, \
             uploads python-litellm-arm64.zip",
            "function ChatLambdaFunction: Runtime nodejs22.x, Architectures [arm64]",
            "function ChatLambdaFunction: Environment PYTHONHOME=/opt/python, PYTHONPATH=/opt/python/lib/python3.11, \
             LITELLM_LOCAL_MODEL_COST_MAP=True",
            "function ChatLambdaFunction: Layers references PythonLiteLLMLambdaLayer",
            "function ChatLambdaFunction: Function URL ChatLambdaFunctionUrl InvokeMode RESPONSE_STREAM, AuthType AWS_IAM",
        ]
    );
    // Serverless did not zip a layer of its own.
    let packaged: Vec<String> = fs_err::read_dir(repo.root().join("amplify-lambda-js/.serverless"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!packaged.iter().any(|name| name.contains("pythonLiteLLM")), "{packaged:?}");
    assert_eq!(repo.status(), "", "the dry run changed the repository");
}

#[test]
fn dry_run_for_another_architecture_reads_that_build_without_editing_serverless_yml() {
    let repo = Repo::new();
    let output = repo.dry_run(&["--stage", "dev", "--arch", "x86_64", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the x86_64 layer in {} does not match the current inputs (no build stamp at {} (never built, or \
             the build failed)); a dry run builds nothing: run `cargo xtask layer --arch x86_64` first",
            repo.root().join("layer-build-x86_64").display(),
            repo.root().join("layer-build-x86_64/build-inputs.json").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("==> serverless package"), "{stderr}");
    assert_eq!(repo.status(), "");
}

#[test]
fn a_zip_that_is_not_the_sboms_subject_is_never_packaged() {
    let repo = Repo::new();
    let zip = repo.root().join("layer-build-arm64/python-litellm-arm64.zip");
    let mut bytes = fs_err::read(&zip).unwrap();
    bytes[21] = 1;
    fs_err::write(&zip, &bytes).unwrap();
    let output = repo.dry_run(&["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("is not the subject of the SBOM"), "{stderr}");
    assert!(stderr.contains("Nothing was deployed"), "{stderr}");
    assert!(!stderr.contains("==> serverless package"), "{stderr}");
}

#[test]
fn a_service_file_with_literal_wiring_is_refused_and_left_alone() {
    let repo = Repo::new();
    let yml = fs_err::read_to_string(repo.service_file()).unwrap();
    let literal = yml.replace("  architecture: ${self:custom.layer.architecture}\n", "  architecture: arm64\n");
    assert_ne!(literal, yml, "fixture did not change");
    fs_err::write(repo.service_file(), &literal).unwrap();
    let output = repo.dry_run(&["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is out of date: provider.architecture: arm64 -> ${{self:custom.layer.architecture}}; run `cargo xtask \
             patch` to update it",
            repo.service_file().display()
        )),
        "{stderr}"
    );
    assert_eq!(fs_err::read_to_string(repo.service_file()).unwrap(), literal, "a check changed the file");
}

#[test]
fn a_public_layer_is_refused_before_packaging() {
    let repo = Repo::new();
    let yml = fs_err::read_to_string(repo.service_file()).unwrap();
    let public =
        yml.replace("    compatibleRuntimes:\n", "    allowedAccounts:\n      - '*'\n    compatibleRuntimes:\n");
    assert_ne!(public, yml, "fixture did not change");
    fs_err::write(repo.service_file(), &public).unwrap();
    let output = repo.dry_run(&["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("allowedAccounts contains '*', which makes the layer public"), "{stderr}");
    assert!(!stderr.contains("==> serverless package"), "{stderr}");
    assert_eq!(fs_err::read_to_string(repo.service_file()).unwrap(), public, "a refused check changed the file");
}

#[test]
fn a_dry_run_without_node_modules_says_what_to_run() {
    let repo = Repo::new();
    fs_err::remove_file(repo.root().join("amplify-lambda-js/node_modules")).unwrap();
    let output = repo.dry_run(&["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let service = repo.root().join("amplify-lambda-js");
    assert!(
        stderr.contains(&format!(
            "error: {} is missing and a dry run installs nothing: run `npm ci` in {} first",
            service.join("node_modules/.bin/serverless").display(),
            service.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_prepared_layer_is_fresh_until_layer_toml_changes() {
    let repo = Repo::new();
    let out = repo.root().join("layer-build-arm64");
    let digest = layer_inputs_digest(repo.root(), Path::new(SPEC), Arch::Arm64).unwrap();
    assert_eq!(layer_freshness(&out, Arch::Arm64, &digest), Freshness::Fresh);

    let spec = fs_err::read_to_string(repo.root().join(SPEC)).unwrap();
    fs_err::write(repo.root().join(SPEC), format!("{spec}\n# any change to layer.toml makes the layer stale\n"))
        .unwrap();
    let changed = layer_inputs_digest(repo.root(), Path::new(SPEC), Arch::Arm64).unwrap();
    assert_eq!(layer_freshness(&out, Arch::Arm64, &changed), Freshness::Stale(StaleReason::InputsChanged));
    // Another architecture has no build at all.
    let x86 = layer_inputs_digest(repo.root(), Path::new(SPEC), Arch::X86_64).unwrap();
    let Freshness::Stale(StaleReason::NoStamp(path)) =
        layer_freshness(&repo.root().join("layer-build-x86_64"), Arch::X86_64, &x86)
    else {
        panic!("x86_64 has no build")
    };
    assert!(path.ends_with("layer-build-x86_64/build-inputs.json"));
}

#[test]
fn deploy_to_moto_creates_the_stack_and_the_layer_version() {
    let repo = Repo::new();
    let service = repo.root().join("amplify-lambda-js");
    fs_err::copy(test_data("local-endpoint-plugin.cjs"), service.join("local-endpoint-plugin.cjs")).unwrap();
    let yml = fs_err::read_to_string(repo.service_file()).unwrap();
    fs_err::write(repo.service_file(), with_plugin(&yml, "./local-endpoint-plugin.cjs")).unwrap();
    let moto = MotoServer::start().expect("starting moto_server");
    let output = repo.deploy(&moto.endpoint(), &["--stage", "dev"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}\nmoto:\n{}", moto.log_tail());
    assert!(stderr.contains("plan: stage dev in us-east-1 (arm64)"), "{stderr}");
    assert!(
        stderr.contains("    ok function ChatLambdaFunction: Layers references PythonLiteLLMLambdaLayer"),
        "{stderr}"
    );
    assert!(stderr.contains("==> serverless deploy --stage dev"), "{stderr}");
    assert!(stderr.contains("deployed stage dev to us-east-1"), "{stderr}");
    assert!(!stderr.contains("testing"), "credentials must never be printed:\n{stderr}");

    let stacks = moto
        .query(
            "cloudformation",
            &[("Action", "DescribeStacks"), ("Version", "2010-05-15"), ("StackName", "amplify-lambda-js-dev")],
        )
        .unwrap();
    assert!(stacks.contains("<StackName>amplify-lambda-js-dev</StackName>"), "{stacks}");
    assert!(
        stacks.contains("<StackStatus>CREATE_COMPLETE</StackStatus>")
            || stacks.contains("<StackStatus>UPDATE_COMPLETE</StackStatus>"),
        "{stacks}"
    );
    let resources = moto
        .query(
            "cloudformation",
            &[("Action", "DescribeStackResources"), ("Version", "2010-05-15"), ("StackName", "amplify-lambda-js-dev")],
        )
        .unwrap();
    assert!(resources.contains("<LogicalResourceId>PythonLiteLLMLambdaLayer</LogicalResourceId>"), "{resources}");

    // moto names the layer after the stack and logical id, not after LayerName.
    let layers = moto.get_json("lambda", "/2018-10-31/layers").unwrap();
    let layer = layers["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|layer| layer["LayerName"].as_str().is_some_and(|name| name.contains("PythonLiteLLMLambdaLayer")))
        .unwrap_or_else(|| panic!("no layer in moto: {layers}"));
    let name = layer["LayerName"].as_str().unwrap();
    let versions = moto.get_json("lambda", &format!("/2018-10-31/layers/{name}/versions")).unwrap();
    let versions = versions["LayerVersions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["CompatibleRuntimes"], serde_json::json!(["nodejs22.x"]));
    assert_eq!(versions[0]["Description"], "CPython 3.11 with LiteLLM (built by cargo xtask layer)");

    let function = moto.get_json("lambda", "/2015-03-31/functions/amplify-lambda-js-dev-chat").unwrap();
    assert_eq!(function["Configuration"]["Runtime"], "nodejs22.x");
    assert_eq!(function["Configuration"]["Environment"]["Variables"]["PYTHONHOME"], "/opt/python");
    // moto drops Layers and Architectures; the template the stack was deployed from carries them.
    let reply = moto
        .query(
            "cloudformation",
            &[("Action", "GetTemplate"), ("Version", "2010-05-15"), ("StackName", "amplify-lambda-js-dev")],
        )
        .unwrap();
    let template: Value = serde_json::from_str(&xml_text(&reply, "TemplateBody")).unwrap();
    let properties = &template["Resources"]["ChatLambdaFunction"]["Properties"];
    assert_eq!(properties["Architectures"], serde_json::json!(["arm64"]));
    assert_eq!(properties["Layers"], serde_json::json!([{"Ref": "PythonLiteLLMLambdaLayer"}]));
}

/// The text of the first `<tag>` element of an XML reply, with the five predefined entities decoded.
fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("no <{tag}> in {xml}")) + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap_or_else(|| panic!("<{tag}> not closed"));
    xml[start..end]
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
