//! End-to-end tests of `cargo xtask deploy`: package against a stand-in CloudFormation, deploy to moto.
//!
//! Each test works on a temporary copy of the repository (`XTASK_PROJECT_ROOT`): the real spec and
//! service, a stand-in lock, a prepared `layer-build-arm64/` with a fresh build stamp (so no layer is
//! built), and the service's npm dependencies from a fixture installed once with `npm ci`. The copy's
//! serverless.yml also lists `test_data/deploy/local-endpoint-plugin.cjs`, which sends Serverless's
//! AWS calls to a local endpoint; the committed file is never changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::moto::{self, MotoServer};
use crate::support::{Reply, TestServer};
use serde_json::Value;
use xtask::arch::Arch;
use xtask::layer::freshness::{Freshness, StaleReason, layer_freshness, layer_inputs_digest, write_stamp};
use xtask::progress::Progress;

const SPEC: &str = "litellm-layer/layer.toml";

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

/// A temporary copy of the repository, ready to deploy for arm64 without building the layer.
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

        // A prepared layer: a python/ tree for Serverless to zip, the artifact zip and a fresh stamp.
        let layer_out = root.join("layer-build-arm64");
        let site_packages = layer_out.join("layer/python/lib/python3.11/site-packages");
        fs_err::create_dir_all(&site_packages).unwrap();
        fs_err::write(site_packages.join("hello.py"), "print('hello from the layer')\n").unwrap();
        let mut empty_zip = b"PK\x05\x06".to_vec();
        empty_zip.resize(22, 0);
        fs_err::write(layer_out.join("python-litellm-arm64.zip"), empty_zip).unwrap();
        write_stamp(&layer_out, &layer_inputs_digest(root, Path::new(SPEC), Arch::Arm64).unwrap()).unwrap();

        // The service, with the local-endpoint plugin added to the copy only.
        let service = root.join("amplify-lambda-js");
        copy_service(&repo_root().join("amplify-lambda-js"), &service);
        fs_err::copy(test_data("local-endpoint-plugin.cjs"), service.join("local-endpoint-plugin.cjs")).unwrap();
        let yml = fs_err::read_to_string(service.join("serverless.yml")).unwrap();
        fs_err::write(service.join("serverless.yml"), with_plugin(&yml, "./local-endpoint-plugin.cjs")).unwrap();
        std::os::unix::fs::symlink(node_modules(), service.join("node_modules")).unwrap();
        Repo { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn service_file(&self) -> PathBuf {
        self.root().join("amplify-lambda-js/serverless.yml")
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

/// Copy the service's files, leaving out what npm and Serverless generate.
fn copy_service(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == ".serverless" {
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

/// A stand-in CloudFormation: every call is a DescribeStacks for a stack that does not exist yet.
fn cloudformation_without_stacks() -> TestServer {
    TestServer::start(|_| {
        Reply::new(
            400,
            "text/xml",
            "<ErrorResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><Error><Type>Sender</Type>\
             <Code>ValidationError</Code><Message>Stack with id amplify-lambda-js-dev does not exist</Message>\
             </Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
        )
    })
}

#[test]
fn dry_run_packages_offline_checks_the_template_and_prints_the_plan() {
    let repo = Repo::new();
    let server = cloudformation_without_stacks();
    let output = repo.deploy(&server.url(""), &["--stage", "dev", "--dry-run", "--json"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    assert!(stderr.contains("layer is up to date"), "{stderr}");
    assert!(stderr.contains("==> serverless package --stage dev"), "{stderr}");
    assert!(stderr.contains("dry run: nothing deployed"), "{stderr}");
    let calls = server.requests();
    assert!(!calls.is_empty(), "serverless package made no AWS call to the local endpoint");
    for call in &calls {
        let auth = call.header("authorization").unwrap_or("");
        assert!(auth.contains("/us-east-1/cloudformation/aws4_request"), "{auth}");
        assert!(auth.contains("Credential=testing/"), "not the fake credentials: {auth}");
    }

    let plan: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(plan["stage"], "dev");
    assert_eq!(plan["region"], "us-east-1");
    assert_eq!(plan["arch"], "arm64");
    assert_eq!(plan["functions"], serde_json::json!(["amplify-lambda-js-dev-chat"]));
    assert_eq!(plan["layer_resources"], serde_json::json!(["PythonLiteLLMLambdaLayer"]));
    let layer_zip = plan["layer_zip"]["path"].as_str().unwrap();
    assert!(layer_zip.ends_with("layer-build-arm64/python-litellm-arm64.zip"), "{layer_zip}");
    assert_eq!(plan["layer_zip"]["bytes"], 22);
    let packaged = Path::new(plan["packaged_layer_zip"]["path"].as_str().unwrap());
    assert!(packaged.ends_with("amplify-lambda-js/.serverless/pythonLiteLLM.zip"), "{}", packaged.display());
    assert_eq!(plan["packaged_layer_zip"]["bytes"], fs_err::metadata(packaged).unwrap().len());
    let checks: Vec<&str> = plan["checks_passed"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(
        checks,
        [
            "layer PythonLiteLLMLambdaLayer: CompatibleArchitectures [arm64], CompatibleRuntimes has nodejs22.x",
            "function ChatLambdaFunction: Runtime nodejs22.x, Architectures [arm64]",
            "function ChatLambdaFunction: Environment PYTHONHOME=/opt/python, PYTHONPATH=/opt/python/lib/python3.11, \
             LITELLM_LOCAL_MODEL_COST_MAP=True",
            "function ChatLambdaFunction: Layers references PythonLiteLLMLambdaLayer",
        ]
    );

    // The packaged layer holds the prepared tree, under python/ as Lambda unpacks it into /opt.
    let archive = zip::ZipArchive::new(fs_err::File::open(packaged).unwrap()).unwrap();
    let names: Vec<String> = archive.file_names().map(|name| name.unwrap().into_owned()).collect();
    assert!(names.iter().any(|name| name == "python/lib/python3.11/site-packages/hello.py"), "{names:?}");
    // The committed serverless.yml was not touched.
    assert!(
        !fs_err::read_to_string(repo_root().join("amplify-lambda-js/serverless.yml")).unwrap().contains("plugins:")
    );
}

#[test]
fn a_service_set_up_for_another_architecture_is_patched_before_packaging() {
    let repo = Repo::new();
    let yml = fs_err::read_to_string(repo.service_file()).unwrap();
    fs_err::write(repo.service_file(), yml.replace("architecture: arm64", "architecture: x86_64")).unwrap();
    let server = cloudformation_without_stacks();
    let output = repo.deploy(&server.url(""), &["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("provider.architecture"), "the patch was not reported: {stderr}");
    let patched = fs_err::read_to_string(repo.service_file()).unwrap();
    assert!(patched.contains("  architecture: arm64\n") && !patched.contains("x86_64"), "{patched}");
}

#[test]
fn a_public_layer_is_refused_before_packaging() {
    let repo = Repo::new();
    let yml = fs_err::read_to_string(repo.service_file()).unwrap();
    let public =
        yml.replace("    compatibleRuntimes:\n", "    allowedAccounts:\n      - '*'\n    compatibleRuntimes:\n");
    assert_ne!(public, yml, "fixture did not change");
    fs_err::write(repo.service_file(), &public).unwrap();
    let server = cloudformation_without_stacks();
    let output = repo.deploy(&server.url(""), &["--stage", "dev", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("allowedAccounts contains '*', which makes the layer public"), "{stderr}");
    assert!(!stderr.contains("==> serverless package"), "{stderr}");
    assert!(server.requests().is_empty());
    assert_eq!(fs_err::read_to_string(repo.service_file()).unwrap(), public, "a refused patch changed the file");
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
