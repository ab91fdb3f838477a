//! One binary, two clones: each run works on the clone it was started from (issue 14, point 2).
//!
//! The test builds the binary once (cargo's `CARGO_BIN_EXE_xtask`) and runs `doctor --offline` from
//! two checkouts whose `layer.toml` differ, the way a shared `CARGO_TARGET_DIR` reuses one binary.

use std::path::Path;
use std::process::Command;

/// A minimal checkout: the workspace markers and a layer spec with `requirement`.
fn clone_with(requirement: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = xtask::project_root();
    fs_err::create_dir_all(dir.path().join("xtask/src")).unwrap();
    fs_err::create_dir_all(dir.path().join("litellm-layer")).unwrap();
    fs_err::copy(root.join("Cargo.toml"), dir.path().join("Cargo.toml")).unwrap();
    fs_err::copy(root.join("xtask/Cargo.toml"), dir.path().join("xtask/Cargo.toml")).unwrap();
    let spec = fs_err::read_to_string(root.join("litellm-layer/layer.toml")).unwrap();
    let pinned = spec.lines().find(|line| line.starts_with("requirements = ")).unwrap();
    let spec = spec.replace(pinned, &format!("requirements = [\"{requirement}\"]"));
    fs_err::write(dir.path().join("litellm-layer/layer.toml"), spec).unwrap();
    dir
}

/// `cargo xtask doctor --offline` run from `cwd`, as a user would outside of cargo.
fn doctor(cwd: &Path, cargo_manifest_dir: Option<&Path>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(["doctor", "--offline", "--for", "layer"]).current_dir(cwd);
    command.env_remove("XTASK_PROJECT_ROOT").env_remove("CARGO_MANIFEST_DIR");
    if let Some(dir) = cargo_manifest_dir {
        command.env("CARGO_MANIFEST_DIR", dir);
    }
    let output = command.output().expect("running the xtask binary");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The `layer spec` line of doctor's report.
fn spec_line(report: &str) -> &str {
    report.lines().find(|line| line.contains("layer spec")).unwrap_or_else(|| panic!("no layer spec line:\n{report}"))
}

#[test]
fn one_binary_serves_two_clones() {
    let first = clone_with("litellm==1.78.7");
    let second = clone_with("litellm==1.70.0");
    for (clone, requirement) in [(&first, "litellm==1.78.7"), (&second, "litellm==1.70.0")] {
        let expected =
            format!("{} (python 3.11, {requirement})", clone.path().join("litellm-layer/layer.toml").display());
        // From the root and from a subdirectory, without cargo's environment.
        for cwd in [clone.path().to_path_buf(), clone.path().join("xtask/src")] {
            let report = doctor(&cwd, None);
            assert!(spec_line(&report).ends_with(&expected), "run from {}:\n{report}", cwd.display());
        }
    }
    // Under `cargo xtask`, cargo's run-time CARGO_MANIFEST_DIR names the clone that was asked for.
    let report = doctor(first.path(), Some(&second.path().join("xtask")));
    let expected =
        format!("{} (python 3.11, litellm==1.70.0)", second.path().join("litellm-layer/layer.toml").display());
    assert!(spec_line(&report).ends_with(&expected), "{report}");
}

#[test]
fn outside_any_clone_the_binary_says_where_to_run_it() {
    let outside = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["doctor", "--offline"])
        .current_dir(outside.path())
        .env_remove("XTASK_PROJECT_ROOT")
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: cannot find the repository: no directory at or above {} holds xtask/Cargo.toml beside a \
             Cargo.toml; run `cargo xtask` inside a checkout (or set XTASK_PROJECT_ROOT to one)\n",
            outside.path().display()
        )
    );
}
