//! End-to-end tests of the runtime step of `cargo xtask layer`: the real binary, a PBS-shaped
//! archive built from the host CPython (`crate::support::pbs_fixture`), served from 127.0.0.1
//! when a download is involved. Every failure's message is checked, and so is what it left on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::pbs_fixture::{self, PbsFixture, serve_bytes};
use crate::support::tar_bytes::{RawEntry, gzip, raw_tar, tiny_python_entries};
use xtask::archive::Compression;
use xtask::cache::sha256_bytes;
use xtask::manifest::{Manifest, Variant};

fn fixture() -> PbsFixture {
    pbs_fixture::pbs_install_only(Compression::Gzip).expect("building the PBS-shaped fixture from the host python3")
}

/// Run the xtask binary with a clean environment for the settings it reads.
fn xtask(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    for name in ["XTASK_PBS_MIRROR", "XTASK_CACHE_DIR", "GITHUB_ACTIONS"] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running the xtask binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// `layer --arch x86_64 --runtime-only` into `<dir>/out` with the cache in `<dir>/cache`.
fn build_runtime(dir: &Path, dist: &str, sha256: &str, extra: &[&str]) -> Output {
    let out = dir.join("out");
    let cache = dir.join("cache");
    let mut args = vec![
        "layer",
        "--arch",
        "x86_64",
        "--python-dist",
        dist,
        "--python-sha256",
        sha256,
        "--out-dir",
        out.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    xtask(&args, &[])
}

fn build_runtime_only(dir: &Path, dist: &str, sha256: &str) -> Output {
    build_runtime(dir, dist, sha256, &["--runtime-only"])
}

/// Every path under `root` with its kind, size and link target, sorted: a snapshot to compare.
fn snapshot(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let relative = entry.path().strip_prefix(root).unwrap().display().to_string();
        let meta = entry.path().symlink_metadata().unwrap();
        let line = if meta.is_symlink() {
            format!("{relative} -> {}", std::fs::read_link(entry.path()).unwrap().display())
        } else if meta.is_dir() {
            format!("{relative}/")
        } else {
            format!("{relative} {}", meta.len())
        };
        lines.push(line);
    }
    lines
}

/// Compare two snapshots, printing only the lines that differ.
fn assert_same_tree(now: &[String], before: &[String]) {
    let added: Vec<&String> = now.iter().filter(|l| !before.contains(l)).collect();
    let removed: Vec<&String> = before.iter().filter(|l| !now.contains(l)).collect();
    assert!(added.is_empty() && removed.is_empty(), "tree changed: added {added:?}, removed {removed:?}");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Regular files stored in the cache's blob store.
fn cached_blobs(cache: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(cache.join("sha256"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Run the extracted interpreter the way the layer will, with `PYTHONHOME` at the tree.
fn run_extracted(python_root: &Path, script: &str) -> Output {
    Command::new(python_root.join("bin/python3.11"))
        .args(["-c", script])
        .env("PYTHONHOME", python_root)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .output()
        .unwrap()
}

#[test]
fn runtime_only_build_runs_the_extracted_interpreter_and_prunes_the_stdlib() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let output = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains(&format!("built the runtime for x86_64 in {}", dir.path().join("out").display())), "{out}");
    assert!(out.contains(&format!("CPython {}", fixture.version)), "{out}");
    assert!(out.contains("steps: fetch "), "{out}");
    for rule in xtask::spec::StdlibRule::ALL.map(|rule| rule.name()) {
        assert!(err.lines().any(|l| l.trim_start().starts_with(&format!("{rule} "))), "no line for {rule}: {err}");
    }
    assert!(err.contains("python tree: "), "{err}");

    let python_root = dir.path().join("out/layer/python");
    let run = run_extracted(&python_root, "import ssl, json, sqlite3, zlib, sys; print(sys.prefix)");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), python_root.display().to_string());

    let stdlib = python_root.join("lib/python3.11");
    for gone in [
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "distutils",
        "config-3.11-x86_64-linux-gnu",
        "__phello__",
        "site-packages/pip",
        "lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so",
        "lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so",
        "unittest/test",
    ] {
        assert!(stdlib.join(gone).symlink_metadata().is_err(), "{gone} survived the prune");
    }
    assert!(!python_root.join("include").exists());
    for kept in ["json/__init__.py", "unittest/case.py", "lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"] {
        assert!(stdlib.join(kept).is_file(), "{kept} was pruned");
    }
    assert_eq!(std::fs::read_link(python_root.join("bin/python3")).unwrap(), Path::new("python3.11"));
    // Nothing but the output and the cache in the parent: no staging or extraction leftovers,
    // and the stamp sits beside layer/, never inside it.
    assert_eq!(names_in(dir.path()), ["cache", "out"]);
    assert_eq!(names_in(&dir.path().join("out")), [".xtask-layer-build", "layer", "runtime-stamp.json"]);
    assert_eq!(names_in(&dir.path().join("out/layer")), ["python"]);

    // The same archive and rules again: the runtime is reused, not extracted.
    let before = snapshot(&dir.path().join("out"));
    let again = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("reused the runtime of"), "{}", stderr(&again));
    assert!(!stderr(&again).contains("==> extract"), "{}", stderr(&again));
    assert!(stdout(&again).contains("reused"), "{}", stdout(&again));
    let without_stamp = |lines: Vec<String>| -> Vec<String> {
        lines.into_iter().filter(|l| !l.starts_with("runtime-stamp.json")).collect()
    };
    assert_same_tree(&without_stamp(snapshot(&dir.path().join("out"))), &without_stamp(before));
    let run = run_extracted(&python_root, "import ssl, json, sqlite3, zlib");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // A runtime file changed on disk without changing its size: its content hash no longer
    // matches the stamp, so it is not copied into the next build, which extracts again.
    let os_py = python_root.join("lib/python3.11/os.py");
    let original = std::fs::read(&os_py).unwrap();
    let payload = b"raise SystemExit('tampered')\n";
    let mut tampered = payload.to_vec();
    tampered.extend_from_slice(&original[payload.len()..]);
    assert_eq!(tampered.len(), original.len());
    std::fs::write(&os_py, &tampered).unwrap();
    let third = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    let err = stderr(&third);
    assert!(third.status.success(), "{err}");
    assert!(err.contains(&format!("not reusing the previous runtime: {} changed", os_py.display())), "{err}");
    assert!(err.contains("==> extract"), "{err}");
    let run = run_extracted(&python_root, "import os, ssl");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn a_tar_zst_archive_works_too() {
    let fixture = pbs_fixture::pbs_install_only(Compression::Zstd).unwrap();
    assert!(fixture.file_name.ends_with(".tar.zst"));
    let dir = tempfile::tempdir().unwrap();
    let output = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("(tar.zst)"), "{}", stderr(&output));
    let run = run_extracted(&dir.path().join("out/layer/python"), "import ssl, json, sqlite3, zlib");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn a_hash_mismatch_prints_both_hashes_and_leaves_nothing() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let output = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), &wrong);
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains(&format!("sha256 mismatch for {}", fixture.path.display())), "{err}");
    assert!(err.contains(&format!("expected {wrong}")), "{err}");
    assert!(err.contains(&format!("computed {}", fixture.sha256)), "{err}");
    assert!(!err.contains("==> extract"), "nothing may be extracted: {err}");
    assert!(cached_blobs(&dir.path().join("cache")).is_empty());
    assert_eq!(names_in(dir.path()), ["cache"], "no output and no staging directory");
}

#[test]
fn a_truncated_download_is_refused_and_not_cached() {
    let fixture = fixture();
    let bytes = std::fs::read(&fixture.path).unwrap();
    let half = bytes.len() / 2;
    let server = serve_bytes(&format!("/{}", fixture.file_name), bytes, Some(half));
    let url = server.url(&format!("/{}", fixture.file_name));
    let dir = tempfile::tempdir().unwrap();
    let output = build_runtime_only(dir.path(), &url, fixture.sha256.as_str());
    let err = stderr(&output);
    assert!(!output.status.success());
    // reqwest notices the early close against Content-Length; the cache notices a short body.
    assert!(
        err.contains(&format!("downloading {url}: request or response body error"))
            && err.contains("end of file before message length reached")
            || err.contains(&format!("truncated download from {url}")),
        "{err}"
    );
    assert!(!err.contains("==> extract"), "{err}");
    assert!(cached_blobs(&dir.path().join("cache")).is_empty());
    assert_eq!(names_in(dir.path()), ["cache"]);
    assert!(!server.requests().is_empty());
}

#[test]
fn a_download_over_http_is_verified_and_extracted() {
    let fixture = fixture();
    let server = serve_bytes(&format!("/pbs/{}", fixture.file_name), std::fs::read(&fixture.path).unwrap(), None);
    // Credentials in the URL must not show up in messages or the stamp.
    let url = server.url(&format!("/pbs/{}", fixture.file_name)).replace("http://", "http://user:s3cret@");
    let dir = tempfile::tempdir().unwrap();
    let output = build_runtime_only(dir.path(), &url, fixture.sha256.as_str());
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{err}");
    assert!(err.contains("downloaded"), "{err}");
    assert!(!err.contains("s3cret") && !out.contains("s3cret"), "{err}");
    let stamp = std::fs::read_to_string(dir.path().join("out/runtime-stamp.json")).unwrap();
    assert!(!stamp.contains("s3cret") && stamp.contains("***@127.0.0.1"), "{stamp}");
    assert_eq!(cached_blobs(&dir.path().join("cache")).len(), 1);
}

#[test]
fn a_file_that_is_neither_gzip_nor_zstd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let page = b"<!DOCTYPE html><html><body>proxy login required</body></html>".to_vec();
    let dist = dir.path().join("cpython-3.11.7+x-x86_64-unknown-linux-gnu-install_only.tar.gz");
    std::fs::write(&dist, &page).unwrap();
    let output = build_runtime_only(dir.path(), dist.to_str().unwrap(), sha256_bytes(&page).as_str());
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("not a .tar.gz or .tar.zst archive: found text starting with '<'"), "{err}");
    assert!(err.contains("bytes 3c 21 44 4f"), "{err}");
    assert!(err.contains("cpython-3.11.7+x-x86_64"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_hostile_archive_is_refused_and_nothing_is_written_outside() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = tiny_python_entries();
    entries.push(RawEntry::file("python/../../escaped.txt", "pwned"));
    let bytes = gzip(&raw_tar(&entries));
    let dist = dir.path().join("work/evil.tar.gz");
    std::fs::create_dir_all(dist.parent().unwrap()).unwrap();
    std::fs::write(&dist, &bytes).unwrap();
    let output = build_runtime_only(dir.path(), dist.to_str().unwrap(), sha256_bytes(&bytes).as_str());
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains("refusing entry \"python/../../escaped.txt\": path contains '..'"), "{err}");
    assert!(!dir.path().join("escaped.txt").exists());
    assert!(!dir.path().join("out").exists());
    assert_eq!(names_in(dir.path()), ["cache", "work"]);
}

#[test]
fn a_failed_build_leaves_the_previous_output_as_it_was() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let first = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    assert!(first.status.success(), "{}", stderr(&first));
    let before = snapshot(&dir.path().join("out"));
    let stamp_before = std::fs::read(dir.path().join("out/runtime-stamp.json")).unwrap();

    // 1. The hash does not match.
    let failed = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), &"1".repeat(64));
    assert!(stderr(&failed).contains("sha256 mismatch"), "{}", stderr(&failed));
    // 2. The hash matches but the archive is hostile (fails during extraction).
    let mut entries = tiny_python_entries();
    entries.push(RawEntry::symlink("python/lib/escape", "../../../../etc"));
    let hostile = gzip(&raw_tar(&entries));
    let hostile_path = dir.path().join("hostile.tar.gz");
    std::fs::write(&hostile_path, &hostile).unwrap();
    let failed = build_runtime_only(dir.path(), hostile_path.to_str().unwrap(), sha256_bytes(&hostile).as_str());
    assert!(
        stderr(&failed).contains("refusing entry \"python/lib/escape\": symlink to \"../../../../etc\""),
        "{}",
        stderr(&failed)
    );
    // 3. The archive is fine but holds no python3.11 for this layer.toml (fails after extraction).
    let wrong_shape =
        gzip(&raw_tar(&[RawEntry::file("python/bin/python3.12", "x"), RawEntry::dir("python/lib/python3.12/")]));
    let wrong_path = dir.path().join("cpython-3.12.1+x.tar.gz");
    std::fs::write(&wrong_path, &wrong_shape).unwrap();
    let failed = build_runtime_only(dir.path(), wrong_path.to_str().unwrap(), sha256_bytes(&wrong_shape).as_str());
    assert!(
        stderr(&failed).contains("python/bin/python3.11 is missing (bin/ holds: python3.12)"),
        "{}",
        stderr(&failed)
    );
    // 4. The runtime step and the install succeed, but the layer is over its budget (fails last).
    let spec_dir = dir.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let root = xtask::project_root();
    let spec = std::fs::read_to_string(root.join("litellm-layer/layer.toml")).unwrap();
    std::fs::write(spec_dir.join("layer.toml"), spec.replace("zipped-mb = 70", "zipped-mb = 1")).unwrap();
    std::fs::copy(root.join("litellm-layer/pylock.toml"), spec_dir.join("pylock.toml")).unwrap();
    let spec_path = spec_dir.join("layer.toml");
    let shared_cache = root.join("target/test-fixtures/download-cache");
    let out = dir.path().join("out");
    let failed = xtask(
        &[
            "--spec",
            spec_path.to_str().unwrap(),
            "--cache-dir",
            shared_cache.to_str().unwrap(),
            "layer",
            "--arch",
            "x86_64",
            "--no-patch",
            "--python-dist",
            fixture.path.to_str().unwrap(),
            "--python-sha256",
            fixture.sha256.as_str(),
            "--out-dir",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!failed.status.success(), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("the layer is too big"), "{}", stderr(&failed));

    assert_same_tree(&snapshot(&dir.path().join("out")), &before);
    assert_eq!(std::fs::read(dir.path().join("out/runtime-stamp.json")).unwrap(), stamp_before);
    let leftovers: Vec<String> = names_in(dir.path()).into_iter().filter(|n| n.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "staging leftovers: {leftovers:?}");
}

#[test]
fn a_directory_not_made_by_layer_is_never_replaced() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out/precious.txt"), "keep me").unwrap();
    let output = build_runtime_only(dir.path(), fixture.path.to_str().unwrap(), fixture.sha256.as_str());
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains(&format!("refusing to replace {}", dir.path().join("out").display())), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("out/precious.txt")).unwrap(), "keep me");
}

/// Serve the fixture where the mirror layout puts the pinned artifact, and point a spec at it.
/// The pinned hash cannot match the fixture, so the mismatch message proves which URL was used.
fn assert_mirror_used(
    spec_mirror: Option<&str>,
    env_mirror: Option<&str>,
    server: &crate::support::TestServer,
    served_path: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec =
        String::from("[python]\nversion = \"3.11\"\nrelease = \"20260127\"\nvariant = \"install_only_stripped\"\n");
    if let Some(mirror) = spec_mirror {
        spec.push_str(&format!("mirror = \"{mirror}\"\n"));
    }
    spec.push_str("[packages]\nrequirements = [\"litellm==1.78.7\"]\n");
    let spec_path = dir.path().join("layer.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let env: Vec<(&str, &str)> = env_mirror.map(|m| vec![("XTASK_PBS_MIRROR", m)]).unwrap_or_default();
    let output = xtask(
        &[
            "layer",
            "--arch",
            "x86_64",
            "--runtime-only",
            "--spec",
            spec_path.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &env,
    );
    let err = stderr(&output);
    let pinned = Manifest::pinned();
    let artifact = pinned
        .find("3.11".parse().unwrap(), "20260127", xtask::arch::Arch::X86_64, Variant::InstallOnlyStripped)
        .unwrap();
    assert!(!output.status.success());
    assert!(err.contains(&format!("sha256 mismatch for {}", server.url(served_path))), "{err}");
    assert!(err.contains(&format!("expected {}", artifact.sha256)), "{err}");
    assert!(err.contains(&format!("computed {}", fixture().sha256)), "{err}");
    assert!(cached_blobs(&cache).is_empty());
    assert!(!out.exists());
}

#[test]
fn the_mirror_setting_and_environment_are_used_for_the_pinned_archive() {
    let fixture = fixture();
    let pinned = Manifest::pinned();
    let artifact = pinned
        .find("3.11".parse().unwrap(), "20260127", xtask::arch::Arch::X86_64, Variant::InstallOnlyStripped)
        .unwrap();
    let file_segment = artifact.url.rsplit('/').next().unwrap().to_string();
    let served_path = format!("/pbs/20260127/{file_segment}");
    let server = serve_bytes(&served_path, std::fs::read(&fixture.path).unwrap(), None);
    let mirror = server.url("/pbs");
    // From layer.toml.
    assert_mirror_used(Some(&mirror), None, &server, &served_path);
    // From XTASK_PBS_MIRROR, which wins over layer.toml.
    assert_mirror_used(Some("https://unused.invalid/pbs"), Some(&mirror), &server, &served_path);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [served_path.clone(), served_path]);
}

#[test]
fn an_unknown_arch_is_refused_by_the_binary() {
    let output = xtask(&["layer", "--arch", "riscv64", "--runtime-only"], &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid value 'riscv64' for '--arch <ARCH>'"), "{err}");
    assert!(err.contains("arm64") && err.contains("x86_64"), "{err}");
}

#[test]
fn a_bad_layer_toml_key_is_refused_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("layer.toml");
    std::fs::write(
        &spec_path,
        "[python]\nversion = \"3.11\"\nrelease = \"20260127\"\nflavour = \"stripped\"\n[packages]\nrequirements = [\"litellm==1.78.7\"]\n",
    )
    .unwrap();
    let output = xtask(
        &[
            "layer",
            "--arch",
            "x86_64",
            "--runtime-only",
            "--spec",
            spec_path.to_str().unwrap(),
            "--out-dir",
            dir.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(err.contains(&spec_path.display().to_string()), "{err}");
    assert!(err.contains("unknown field `flavour`"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn a_second_build_of_the_same_output_waits_then_times_out_and_killed_builds_are_cleaned_up() {
    use xtask::cache::{LockKind, RunLock};
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.tar.gz");
    let zeros = "0".repeat(64);
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let digest = xtask::cache::sha256_bytes(out.to_str().unwrap().as_bytes());
    let lock_path = cache.join("locks").join(format!("output-{}.lock", &digest.as_str()[..16]));
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = RunLock::acquire(
        &lock_path,
        LockKind::Exclusive,
        "a test holding the output",
        std::time::Duration::from_secs(1),
        &xtask::progress::Progress::new(),
    )
    .unwrap();
    let args = [
        "layer",
        "--arch",
        "x86_64",
        "--runtime-only",
        "--python-dist",
        missing.to_str().unwrap(),
        "--python-sha256",
        &zeros,
        "--out-dir",
        out.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let output = xtask(&args, &[("XTASK_LOCK_TIMEOUT", "1")]);
    let err = stderr(&output);
    assert!(!output.status.success());
    let holder = format!("pid {} (a test holding the output)", std::process::id());
    assert!(
        err.contains(&format!("waiting for {} (held by {holder}); giving up after 1s", lock_path.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "timed out after 1s waiting for {} (held by {holder}); wait for that run to finish, or stop it if it hung \
             (XTASK_LOCK_TIMEOUT sets the wait in seconds)",
            lock_path.display()
        )),
        "{err}"
    );
    assert_eq!(names_in(dir.path()), ["cache"], "nothing was built or staged");
    drop(held);

    // Directories a killed build left beside the output are removed by the next build; another
    // output's are not.
    for stale in [".out.staging-KILLED", ".out.old-KILLED"] {
        std::fs::create_dir_all(dir.path().join(stale).join("layer")).unwrap();
        std::fs::write(dir.path().join(stale).join(".xtask-layer-build"), "").unwrap();
    }
    std::fs::create_dir_all(dir.path().join(".other.staging-KEEP")).unwrap();
    std::fs::write(dir.path().join(".other.staging-KEEP/.xtask-layer-build"), "").unwrap();
    let output = xtask(&args, &[("XTASK_LOCK_TIMEOUT", "1")]);
    let err = stderr(&output);
    assert!(!output.status.success(), "the archive is missing");
    for stale in [".out.staging-KILLED", ".out.old-KILLED"] {
        assert!(
            err.contains(&format!("removed {} left by an interrupted build", dir.path().join(stale).display())),
            "{err}"
        );
    }
    assert_eq!(names_in(dir.path()), [".other.staging-KEEP", "cache"]);
}
