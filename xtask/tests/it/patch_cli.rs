//! End-to-end: `cargo xtask patch` on a copy of a realistic serverless.yml, with and without `--check`.

use std::path::Path;
use std::process::{Command, Output};

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
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/serverless/realistic.yml");
    let original = fs_err::read_to_string(&fixture).unwrap();
    fs_err::write(&file, &original).unwrap();
    let file_arg = file.to_str().unwrap();

    let check = xtask(&["patch", "--check", "--file", file_arg]);
    assert!(!check.status.success());
    let message = stderr(&check);
    assert!(
        message.contains(&format!("error: {file_arg} is out of date: provider.architecture: x86_64 -> arm64")),
        "{message}"
    );
    assert_eq!(fs_err::read_to_string(&file).unwrap(), original);

    let patch = xtask(&["patch", "--arch", "arm64", "--file", file_arg]);
    assert!(patch.status.success(), "{}", stderr(&patch));
    assert!(stderr(&patch).contains("layers.pythonLiteLLM.compatibleArchitectures: added"), "{}", stderr(&patch));
    let patched = fs_err::read_to_string(&file).unwrap();
    assert!(patched.contains("  architecture: arm64 # the old Docker build was x86 only\n"), "{patched}");

    let check = xtask(&["patch", "--check", "--file", file_arg]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stderr(&check).contains("is up to date"), "{}", stderr(&check));

    let other_arch = xtask(&["patch", "--check", "--arch", "x86_64", "--file", file_arg]);
    assert!(!other_arch.status.success());
    assert!(stderr(&other_arch).contains("run `cargo xtask patch --arch x86_64`"), "{}", stderr(&other_arch));
}
