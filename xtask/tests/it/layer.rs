//! End-to-end tests of `cargo xtask layer`: the committed lock installed from the real package
//! index into a layer around the PBS-shaped test interpreter, run the way Lambda runs it
//! (read-only `/opt`, Lambda environment, local OpenAI-compatible server), rebuilt byte for byte,
//! and refused with a clear message when over budget or when the lock is stale.
//!
//! The downloads go through one content-addressed cache under `target/test-fixtures/` (every read
//! re-checks the hash, so sharing it between tests is safe).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::pbs_fixture::{PbsFixture, pbs_install_only};
use xtask::arch::Arch;
use xtask::archive::Compression;
use xtask::cache::sha256_file;
use xtask::packaging::pylock::Pylock;
use xtask::progress::Progress;
use xtask::verify::{self, Runner, VerifyOptions};

fn repo_root() -> PathBuf {
    xtask::project_root()
}

fn download_cache() -> PathBuf {
    repo_root().join("target/test-fixtures/download-cache")
}

fn fixture() -> PbsFixture {
    pbs_install_only(Compression::Gzip).expect("building the PBS-shaped fixture from the host CPython")
}

/// `cargo xtask layer --arch <arch> --no-patch` into `out_dir` with the given spec.
fn layer(spec: &Path, arch: Arch, out_dir: &Path, python: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--cache-dir")
        .arg(download_cache())
        .arg("--spec")
        .arg(spec)
        .args(["layer", "--arch", arch.lambda_name(), "--no-patch", "--out-dir"])
        .arg(out_dir)
        .args(python)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running xtask")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn committed_spec() -> PathBuf {
    repo_root().join("litellm-layer/layer.toml")
}

/// Build the x86_64 layer from the committed spec and lock with the fixture interpreter.
fn build_x86_64(out_dir: &Path) -> Output {
    build_x86_64_with(out_dir, &[])
}

/// [`build_x86_64`] with more `layer` arguments (`--force`).
fn build_x86_64_with(out_dir: &Path, extra: &[&str]) -> Output {
    let fixture = fixture();
    let mut python = vec!["--python-dist", fixture.path.to_str().unwrap(), "--python-sha256", fixture.sha256.as_str()];
    python.extend(extra);
    layer(&committed_spec(), Arch::X86_64, out_dir, &python)
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn x86_64_layer_runs_read_only_like_lambda_and_answers() {
    if Arch::host() != Some(Arch::X86_64) {
        eprintln!("skipped: this end-to-end test runs the x86_64 layer natively");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("layer-build-x86_64");
    let output = build_x86_64(&out_dir);
    assert_success(&output, "layer");
    let stdout = text(&output.stdout);
    assert!(stdout.contains("built the layer for x86_64"), "{stdout}");

    // The layout of docs/architecture.md §5 (and the README).
    let python = out_dir.join("layer/python");
    for path in [
        "bin/python3.11",
        "lib/python3.11/sitecustomize.py",
        "lib/python3.11/site-packages.zip",
        "lib/python3.11/site-packages/litellm/__init__.pyc",
    ] {
        assert!(python.join(path).exists(), "{path} is missing from the layer");
    }
    // Issue 15: the committed import profile and `sourceless = "profile"`: litellm's profiled
    // modules ship as .pyc only, anyio (which parses its own source at import) keeps its .py.
    let site_packages = python.join("lib/python3.11/site-packages");
    assert!(!site_packages.join("litellm/__init__.py").exists(), "a profiled module kept its source");
    let zip =
        zip::ZipArchive::new(fs_err::File::open(python.join("lib/python3.11/site-packages.zip")).unwrap()).unwrap();
    let mut members = Vec::new();
    for name in zip.file_names() {
        members.push(name.unwrap().into_owned());
    }
    for wanted in ["anyio/__init__.py", "anyio/__init__.pyc", "httpx/__init__.pyc"] {
        assert!(members.iter().any(|m| m == wanted), "{wanted} is not in site-packages.zip");
    }
    assert!(!members.iter().any(|m| m == "httpx/__init__.py"), "httpx/__init__ kept its source");
    assert!(out_dir.join("python-litellm-x86_64.zip").is_file());
    // The SBOM's subject is the zip, and serverless.yml's wiring names it (nothing tracked is edited).
    assert_eq!(
        xtask::layer::sbom::subject::read(&out_dir.join("python-litellm-x86_64.cdx.json")).unwrap(),
        xtask::cache::sha256_file(&out_dir.join("python-litellm-x86_64.zip")).unwrap()
    );
    let wiring = xtask::serverless::LayerWiring::load(&out_dir, Arch::X86_64).unwrap();
    assert_eq!(wiring.python_path, "/opt/python/lib/python3.11");
    assert!(wiring.artifact.ends_with("/python-litellm-x86_64.zip"), "{}", wiring.artifact);
    assert!(out_dir.join("size-report.md").is_file());
    assert!(!python.join("lib/python3.11/site-packages/hf_xet").exists(), "excluded hf-xet was installed");
    // The lock pins hf-xet (so pip and uv can install it); the layer skips it and says so.
    let stderr = text(&output.stderr);
    assert!(stderr.contains("    skipped hf-xet 1.8.0 (in [packages] exclude of layer.toml)\n"), "{stderr}");

    // Every shipped distribution in the SBOM carries the lock's sha256 for its wheel.
    let lock = Pylock::load(&repo_root().join("litellm-layer/pylock.toml")).unwrap();
    let sbom: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(out_dir.join("python-litellm-x86_64.cdx.json")).unwrap()).unwrap();
    let components = sbom["components"].as_array().unwrap();
    let mut pypi = 0;
    for component in components {
        let Some(purl) = component["purl"].as_str().filter(|p| p.starts_with("pkg:pypi/")) else { continue };
        pypi += 1;
        let name = purl.trim_start_matches("pkg:pypi/").split('@').next().unwrap();
        let hash = component["hashes"][0]["content"].as_str().unwrap();
        let locked = lock.packages.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{purl} not in the lock"));
        assert!(locked.wheels.iter().any(|w| w.hashes.sha256 == hash), "{purl}: sha256 {hash} is not the lock's");
    }
    assert!(pypi >= 40, "only {pypi} pypi components");
    assert!(!components.iter().any(|c| c["name"] == "hf-xet"), "the SBOM lists excluded hf-xet as shipped");
    let excluded: Vec<&str> = sbom["metadata"]["properties"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "litellm-layer:excluded-package")
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert_eq!(excluded, ["hf-xet"]);

    // Run it as Lambda would: a read-only /opt, the Lambda environment, a local server.
    let options = VerifyOptions {
        arch: Arch::X86_64,
        python: "3.11".parse().unwrap(),
        source_date_epoch: Default::default(),
        layer_dir: out_dir.join("layer"),
        imports: vec!["litellm".into(), "openai".into(), "tiktoken".into()],
        providers: vec!["openai".into()],
        runs: 1,
        runner: Runner::Native,
        size_report: Some(out_dir.join("size-report.json")),
        timeout: Duration::from_secs(300),
        isolation: None,
    };
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    assert!(report.passed(), "{}", report.render());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    for wanted in [
        "import litellm",
        "completion",
        "streaming completion",
        "async completion and streaming (acompletion)",
        "every loaded module had bytecode",
        "every extension module loads (dlopen, PyInit_<name>)",
        "no file written into the layer tree",
    ] {
        assert!(names.contains(&wanted), "no {wanted:?} check in {names:?}");
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("one/layer-build-x86_64");
    let second = dir.path().join("two/layer-build-x86_64");
    assert_success(&build_x86_64(&first), "first build");
    assert_success(&build_x86_64(&second), "second build");
    for file in ["python-litellm-x86_64.zip", "python-litellm-x86_64.cdx.json"] {
        assert_eq!(
            sha256_file(&first.join(file)).unwrap(),
            sha256_file(&second.join(file)).unwrap(),
            "{file} differs between two builds of the same inputs"
        );
    }
    let cold_zip = sha256_file(&second.join("python-litellm-x86_64.zip")).unwrap();

    // Nothing changed: the output is up to date and left alone (docs/architecture.md §14).
    let again = build_x86_64(&first);
    assert_success(&again, "rebuild");
    let stdout = text(&again.stdout);
    assert!(stdout.contains("the layer for x86_64 is up to date in "), "{stdout}");
    assert!(stdout.contains("files checked against output-record.json; --force rebuilds"), "{stdout}");
    assert!(!text(&again.stderr).contains("==> install"), "{}", text(&again.stderr));

    // A forced rebuild reuses the interpreter, the downloads, the bytecode and the compressed
    // entries of both zips, and writes the same bytes as the cold build into `second`.
    let forced = build_x86_64_with(&first, &["--force"]);
    assert_success(&forced, "forced rebuild");
    let stderr = text(&forced.stderr);
    assert!(stderr.contains("reused the runtime of "), "{stderr}");
    assert!(stderr.contains("50 from cache, 0 downloaded"), "{stderr}");
    // Every module the import profile names comes from the bytecode cache.
    let bytecode = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("bytecode: "))
        .unwrap_or_else(|| panic!("no bytecode line in {stderr}"));
    let (compiled, rest) = bytecode.split_once(" .pyc (").unwrap_or_else(|| panic!("bytecode line: {bytecode}"));
    assert!(compiled.parse::<usize>().unwrap() > 2000, "{bytecode}");
    assert!(rest.starts_with(&format!("{compiled} from the bytecode cache)")), "{bytecode}");
    for zip in ["site-packages.zip", "python-litellm-x86_64.zip"] {
        let copied = stderr
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{zip}: ")))
            .unwrap_or_else(|| panic!("no line about {zip} in {stderr}"));
        assert!(!copied.starts_with("0 entries"), "{zip}: {copied}");
        assert!(copied.ends_with("copied still compressed from the previous build"), "{zip}: {copied}");
    }
    assert!(stderr.contains("linked to the previous output's"), "{stderr}");
    assert_eq!(sha256_file(&first.join("python-litellm-x86_64.zip")).unwrap(), cold_zip, "the warm zip differs");

    // A damaged output is noticed and rebuilt (without copying from the damaged zip).
    let zip = first.join("python-litellm-x86_64.zip");
    let mut bytes = fs_err::read(&zip).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs_err::write(&zip, bytes).unwrap();
    let repaired = build_x86_64(&first);
    assert_success(&repaired, "rebuild over a damaged zip");
    let stderr = text(&repaired.stderr);
    assert!(stderr.contains(&format!("rebuilding: {} changed since the last build", zip.display())), "{stderr}");
    assert!(
        stderr.contains(
            "python-litellm-x86_64.zip: no previous zip vouched for by its output record; deflating every entry"
        ),
        "{stderr}"
    );
    assert_eq!(sha256_file(&zip).unwrap(), cold_zip, "the rebuilt zip differs");
}

#[test]
fn over_budget_fails_with_the_breakdown_and_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec_dir = dir.path().join("spec");
    fs_err::create_dir_all(&spec_dir).unwrap();
    let spec = fs_err::read_to_string(committed_spec()).unwrap().replace("zipped-mb = 70", "zipped-mb = 5");
    fs_err::write(spec_dir.join("layer.toml"), spec).unwrap();
    fs_err::copy(repo_root().join("litellm-layer/pylock.toml"), spec_dir.join("pylock.toml")).unwrap();
    let out_dir = dir.path().join("layer-build-x86_64");
    fs_err::create_dir_all(&out_dir).unwrap();
    fs_err::write(out_dir.join(".xtask-layer-build"), "previous build\n").unwrap();
    fs_err::write(out_dir.join("python-litellm-x86_64.zip"), "previous zip").unwrap();

    let fixture = fixture();
    let python = ["--python-dist", fixture.path.to_str().unwrap(), "--python-sha256", fixture.sha256.as_str()];
    let output = layer(&spec_dir.join("layer.toml"), Arch::X86_64, &out_dir, &python);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // Issue 15: the estimate fails the build before anything is byte-compiled.
    assert!(
        stderr.contains(
            "estimated before byte-compiling (the exact size is checked after packing): the layer is too big: zipped"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("==> bytecode"), "{stderr}");
    assert!(stderr.contains("is over 5 MB (layer.toml [budget] zipped-mb = 5)"), "{stderr}");
    assert!(stderr.contains("top contributors (zipped):") && stderr.contains("litellm 1.78.7"), "{stderr}");
    assert_eq!(fs_err::read_to_string(out_dir.join("python-litellm-x86_64.zip")).unwrap(), "previous zip");
    let leftovers: Vec<_> = fs_err::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn a_lock_made_from_other_inputs_is_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fs_err::read_to_string(committed_spec()).unwrap().replace("litellm==1.78.7", "litellm==1.78.6");
    fs_err::write(dir.path().join("layer.toml"), spec).unwrap();
    fs_err::copy(repo_root().join("litellm-layer/pylock.toml"), dir.path().join("pylock.toml")).unwrap();
    let out_dir = dir.path().join("layer-build-x86_64");
    let output = layer(&dir.path().join("layer.toml"), Arch::X86_64, &out_dir, &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("the layer installs exactly the lock; run `cargo xtask lock`"), "{stderr}");
    assert!(stderr.contains("packages.requirements"), "{stderr}");
    assert!(!out_dir.exists(), "a refused build created {}", out_dir.display());
}

/// Issue 7: the whole pipeline for arm64 on this x86_64 host — the real lock's aarch64 wheels
/// around an arm64 PBS-shaped interpreter (Debian's, test-only), byte-compiled by the host
/// interpreter, then verified under qemu with the layer at /opt.
#[test]
fn arm64_layer_from_the_real_lock_passes_verify_under_qemu() {
    if Arch::host() != Some(Arch::X86_64) {
        eprintln!("skipped: cross-arch test for x86_64 hosts");
        return;
    }
    let Some(qemu) = crate::support::arm64_sysroot::qemu() else {
        panic!("qemu-aarch64-static is not installed: apt-get install qemu-user-static (.ci/run does)");
    };
    let arm64 = crate::support::arm64_sysroot::arm64_fixture().expect("building the arm64 fixture");
    // Name the archive as python-build-standalone does, so the layer knows its CPython version.
    let (ok, version) = crate::support::arm64_sysroot::run_under_qemu(
        &qemu,
        &arm64.sysroot,
        "import platform; print(platform.python_version())",
    )
    .unwrap();
    assert!(ok, "{version}");
    let dir = tempfile::tempdir().unwrap();
    let archive =
        dir.path().join(format!("cpython-{}+debian12-aarch64-unknown-linux-gnu-install_only.tar.gz", version.trim()));
    fs_err::copy(&arm64.archive, &archive).unwrap();
    let arm64_sha = sha256_file(&archive).unwrap();
    let host = fixture();
    let out_dir = dir.path().join("layer-build-arm64");
    let python = [
        "--python-dist",
        archive.to_str().unwrap(),
        "--python-sha256",
        arm64_sha.as_str(),
        "--build-python-dist",
        host.path.to_str().unwrap(),
        "--build-python-sha256",
        host.sha256.as_str(),
    ];
    let output = layer(&committed_spec(), Arch::Arm64, &out_dir, &python);
    assert_success(&output, "arm64 layer");
    assert!(text(&output.stderr).contains("byte-compiling only"), "{}", text(&output.stderr));

    let options = VerifyOptions {
        arch: Arch::Arm64,
        python: "3.11".parse().unwrap(),
        source_date_epoch: Default::default(),
        layer_dir: out_dir.join("layer"),
        imports: vec!["litellm".into()],
        providers: vec!["openai".into()],
        runs: 1,
        runner: Runner::Qemu { qemu, sysroot: arm64.sysroot.clone() },
        size_report: None,
        timeout: Duration::from_secs(900),
        isolation: None,
    };
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    assert!(report.passed(), "{}", report.render());
}

#[test]
fn enabling_a_provider_makes_the_lock_out_of_date() {
    let dir = tempfile::tempdir().unwrap();
    let committed = fs_err::read_to_string(committed_spec()).unwrap();
    assert!(committed.contains("\nenabled = [\"openai\"]\n"), "the committed spec enables OpenAI alone");
    let spec = committed.replace("\nenabled = [\"openai\"]\n", "\nenabled = [\"openai\", \"bedrock\"]\n");
    fs_err::write(dir.path().join("layer.toml"), spec).unwrap();
    fs_err::copy(repo_root().join("litellm-layer/pylock.toml"), dir.path().join("pylock.toml")).unwrap();
    let out_dir = dir.path().join("layer-build-x86_64");
    let output = layer(&dir.path().join("layer.toml"), Arch::X86_64, &out_dir, &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "packages.requirements: the lock has [\"litellm==1.78.7\"], now [\"litellm==1.78.7\", \"boto3\"]"
        ),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "a refused build created {}", out_dir.display());
}

#[test]
fn a_model_of_a_provider_not_enabled_is_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("service");
    fs_err::create_dir_all(&service).unwrap();
    fs_err::write(
        service.join("models.yaml"),
        "model_list:\n  - model_name: haiku\n    litellm_params:\n      model: anthropic/claude-3-5-haiku-latest\n",
    )
    .unwrap();
    let spec = format!(
        "{}\n[serverless]\nfile = {:?}\n",
        fs_err::read_to_string(committed_spec()).unwrap(),
        service.join("serverless.yml").to_str().unwrap()
    );
    fs_err::write(dir.path().join("layer.toml"), spec).unwrap();
    fs_err::copy(repo_root().join("litellm-layer/pylock.toml"), dir.path().join("pylock.toml")).unwrap();
    let out_dir = dir.path().join("layer-build-x86_64");
    let output = layer(&dir.path().join("layer.toml"), Arch::X86_64, &out_dir, &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let models = service.join("models.yaml");
    let spec_path = dir.path().join("layer.toml");
    let want = format!(
        "{models}: model_list[0] (model_name \"haiku\"): model \"anthropic/claude-3-5-haiku-latest\" is served by \
         Anthropic (provider \"anthropic\"), which is not enabled in {spec}\nfix: set `[providers] enabled = \
         [\"anthropic\", \"openai\"]` in {spec} and run `cargo xtask lock`, or remove the model from {models}",
        models = models.display(),
        spec = spec_path.display()
    );
    assert!(stderr.contains(&want), "want:\n{want}\nin:\n{stderr}");
    assert!(!out_dir.exists(), "a refused build created {}", out_dir.display());
}
