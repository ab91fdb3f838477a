//! End-to-end: `cargo xtask patch` on a service file with literal values, with and without `--check`.

use std::process::{Command, Output};

/// A service file from before the wiring: the values a build used to write into it.
const LITERAL: &str = "service: chat\nprovider:\n  name: aws\n  runtime: nodejs22.x\n  architecture: arm64 # keep me\n  \
                       environment:\n    PYTHONHOME: /opt/python\n    PYTHONPATH: /opt/python/lib/python3.11\n    \
                       LITELLM_LOCAL_MODEL_COST_MAP: \"True\"\nlayers:\n  pythonLiteLLM:\n    package:\n      \
                       artifact: ../layer-build-arm64/python-litellm-arm64.zip\n    compatibleRuntimes:\n      \
                       - nodejs22.x\n    compatibleArchitectures:\n      - arm64\n";

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("running the xtask binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn patch_then_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serverless.yml");
    fs_err::write(&file, LITERAL).unwrap();
    let file_arg = file.to_str().unwrap();

    let check = xtask(&["patch", "--check", "--file", file_arg]);
    assert!(!check.status.success());
    let message = stderr(&check);
    assert!(
        message.contains(&format!(
            "error: {file_arg} is out of date: provider.architecture: arm64 -> ${{self:custom.layer.architecture}}; "
        )),
        "{message}"
    );
    assert!(message.ends_with("custom: added; run `cargo xtask patch` to update it\n"), "{message}");
    assert_eq!(fs_err::read_to_string(&file).unwrap(), LITERAL);

    let patch = xtask(&["patch", "--file", file_arg]);
    assert!(patch.status.success(), "{}", stderr(&patch));
    assert!(stderr(&patch).contains("custom: added"), "{}", stderr(&patch));
    let patched = fs_err::read_to_string(&file).unwrap();
    assert!(patched.contains("  architecture: \"${self:custom.layer.architecture}\" # keep me\n"), "{patched}");

    let check = xtask(&["patch", "--check", "--file", file_arg]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(
        stderr(&check).contains(
            "serverless.yml reads the layer build through \
             ${file(../layer-build-${env:LAYER_ARCH, 'arm64'}/serverless-layer.json)}"
        ),
        "{}",
        stderr(&check)
    );
}
