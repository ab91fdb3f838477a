//! Without GitHub: the interpreter download fails once, names the file and the unreachable host,
//! and says how to build anyway; `doctor` reports `layer` as blocked (issue 14, point 7).

use std::process::{Command, Output};

/// A port on 127.0.0.1 that nothing listens on (bound, noted, closed).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cargo xtask <args>` with an empty download cache and the mirror at `mirror`.
fn xtask(args: &[&str], mirror: &str, cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_PBS_MIRROR", mirror)
        .env("XTASK_CACHE_DIR", cache)
        .output()
        .expect("running the xtask binary")
}

#[test]
fn an_unreachable_interpreter_host_is_one_clear_error_with_the_remedies() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mirror = format!("http://127.0.0.1:{}/pbs", closed_port());
    let out_dir = out.path().join("layer-build-arm64");
    let output = xtask(
        &["layer", "--arch", "arm64", "--runtime-only", "--out-dir", out_dir.to_str().unwrap()],
        &mirror,
        cache.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("retrying"), "a refused connection was retried:\n{stderr}");
    let manifest: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(xtask::project_root().join("xtask/data/pbs-manifest.json")).unwrap(),
    )
    .unwrap();
    let text = manifest.to_string();
    let error = stderr.lines().find(|line| line.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    let file = error
        .strip_prefix("error: cannot download ")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("{error}"));
    assert!(file.starts_with("cpython-3.11.") && file.contains("aarch64-unknown-linux-gnu"), "{file}");
    let sha256 = error.split("--python-sha256 ").nth(1).and_then(|rest| rest.split('`').next()).unwrap();
    assert!(text.contains(sha256), "the message's sha256 {sha256} is not pinned in the manifest");
    assert_eq!(
        error,
        format!(
            "error: cannot download {file}: 127.0.0.1 is unreachable from here. Either point at a mirror holding \
             <release>/{file} (`[python] mirror` in layer.toml, or XTASK_PBS_MIRROR), or download the file elsewhere \
             and pass `--python-dist PATH --python-sha256 {sha256}` (the pinned sha256, from \
             xtask/data/pbs-manifest.json); see \"Building without GitHub\" in README.md: 127.0.0.1 is unreachable \
             (connection refused): {mirror}/{}/{}",
            error.split(&format!("{mirror}/")).nth(1).and_then(|rest| rest.split('/').next()).unwrap(),
            file.replace('+', "%2B")
        )
    );
    assert!(!out_dir.exists(), "a failed build left {}", out_dir.display());
}

#[test]
fn doctor_reports_layer_as_blocked_when_the_interpreter_host_is_unreachable() {
    let cache = tempfile::tempdir().unwrap();
    let mirror = format!("http://127.0.0.1:{}/pbs", closed_port());
    let output = xtask(&["doctor", "--for", "layer"], &mirror, cache.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    let line =
        stdout.lines().find(|line| line.contains("python-build-standalone")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.starts_with("MISSING python-build-standalone"), "{line}");
    assert!(line.contains("unreachable"), "{line}");
    assert!(!stdout.contains("ready for `cargo xtask layer`"), "{stdout}");
    assert!(stderr.contains("`cargo xtask layer` needs: ") && stderr.contains("python-build-standalone"), "{stderr}");
}
