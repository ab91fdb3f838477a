//! End-to-end tests of `cargo xtask verify`: layer-shaped trees (built once under
//! `target/test-fixtures/` from the host's CPython 3.11, Debian's arm64 CPython and
//! `pip install --target` of litellm 1.78.7, and boto3 for the provider tests) verified natively
//! and under qemu, every provider against its mock, and broken trees whose failures must be named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::arm64_sysroot::{self, fixtures_dir};
use xtask::arch::Arch;
use xtask::progress::Progress;
use xtask::verify::{self, Isolation, Runner, VerifyOptions, VerifyReport};

const LITELLM: &str = "litellm==1.78.7";

/// The modules `layer.toml` asks verify to import.
fn spec_imports() -> Vec<String> {
    let spec = xtask::spec::LayerSpec::load(&xtask::project_root().join("litellm-layer/layer.toml")).unwrap();
    spec.verify.imports
}

/// Build `target/test-fixtures/<name>` once with `build(staging_dir)`, behind a lock file, renamed
/// into place only when complete.
fn cached(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let dir = fixtures_dir();
    fs_err::create_dir_all(&dir).unwrap();
    let lock = fs_err::File::create(dir.join(format!(".{name}.lock"))).unwrap();
    lock.lock().unwrap();
    let target = dir.join(name);
    if !target.exists() {
        let staging = tempfile::Builder::new().prefix(&format!(".{name}-")).tempdir_in(&dir).unwrap();
        let built = staging.path().join("out");
        fs_err::create_dir_all(&built).unwrap();
        build(&built);
        fs_err::rename(&built, &target).unwrap();
    }
    target
}

fn run_ok(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `pip install --target` of litellm (and its dependencies), cached. `platform` selects wheels for
/// another machine.
fn pip_litellm(name: &str, platform: Option<Arch>) -> PathBuf {
    pip_install(name, platform, &[LITELLM])
}

/// `pip install --target` of `requirements` (and their dependencies), cached.
fn pip_install(name: &str, platform: Option<Arch>, requirements: &[&str]) -> PathBuf {
    cached(name, |out| {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check", "--target"])
            .arg(out);
        if let Some(arch) = platform {
            let machine = arch.manylinux_name();
            pip.args(["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11"]);
            for tag in ["manylinux_2_34", "manylinux_2_28", "manylinux2014"] {
                pip.args(["--platform", &format!("{tag}_{machine}")]);
            }
        }
        pip.args(requirements);
        run_ok(&mut pip, &format!("pip install --target {}", requirements.join(" ")));
        let _ = fs_err::remove_dir_all(out.join("bin"));
    })
}

/// Copy a tree (files, directories, symbolic links).
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs_err::create_dir_all(&target).unwrap();
        } else if entry.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Byte-compile a layer's `lib/python3.11` with unchecked-hash .pyc, as the bytecode step does,
/// with the host's CPython 3.11 (same magic number as any 3.11).
fn compile(layer_root: &Path) {
    compile_paths(layer_root, &[layer_root.join("python/lib/python3.11")]);
}

/// Byte-compile `paths` (inside `layer_root`) as [`compile`] does.
fn compile_paths(layer_root: &Path, paths: &[PathBuf]) {
    run_ok(
        Command::new("python3")
            .args(["-m", "compileall", "-q", "-j", "2", "--invalidation-mode", "unchecked-hash", "-s"])
            .arg(layer_root)
            .args(["-p", "/opt", "-x", r"(/test/|/tests/|lib2to3/|bad_|badsyntax)"])
            .args(paths),
        "compileall",
    );
}

/// Stdlib parts a layer never ships (docs/architecture.md §7).
fn stdlib_skipped(relative: &Path) -> bool {
    let first = relative.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
    matches!(
        first.as_deref(),
        Some("site-packages" | "test" | "idlelib" | "tkinter" | "turtledemo" | "ensurepip" | "lib2to3" | "__phello__")
    ) || first.as_deref().is_some_and(|f| f.starts_with("config-3.11"))
        || relative.components().any(|c| c.as_os_str() == "__pycache__")
}

/// An x86_64 layer-shaped tree holding only the host's CPython 3.11 and its pruned stdlib.
fn x86_64_stdlib_layer() -> PathBuf {
    cached("layer-x86_64-stdlib", |out| {
        let prefix = Command::new("python3").args(["-c", "import sys; print(sys.base_prefix)"]).output().unwrap();
        let prefix = PathBuf::from(String::from_utf8_lossy(&prefix.stdout).trim());
        let python = out.join("python");
        fs_err::create_dir_all(python.join("bin")).unwrap();
        fs_err::copy(prefix.join("bin/python3.11"), python.join("bin/python3.11")).unwrap();
        std::os::unix::fs::symlink("python3.11", python.join("bin/python3")).unwrap();
        fs_err::create_dir_all(python.join("lib")).unwrap();
        for name in ["libpython3.11.so.1.0"] {
            if prefix.join("lib").join(name).exists() {
                fs_err::copy(prefix.join("lib").join(name), python.join("lib").join(name)).unwrap();
            }
        }
        let stdlib_from = prefix.join("lib/python3.11");
        for entry in walkdir::WalkDir::new(&stdlib_from).sort_by_file_name() {
            let entry = entry.unwrap();
            let relative = entry.path().strip_prefix(&stdlib_from).unwrap();
            if stdlib_skipped(relative) {
                continue;
            }
            let target = python.join("lib/python3.11").join(relative);
            if entry.file_type().is_dir() {
                fs_err::create_dir_all(&target).unwrap();
            } else if !entry.file_type().is_symlink() {
                fs_err::copy(entry.path(), &target).unwrap();
            }
        }
        fs_err::create_dir_all(python.join("lib/python3.11/site-packages")).unwrap();
        compile(out);
    })
}

/// The x86_64 stdlib layer plus litellm 1.78.7 and its dependencies in `site-packages/`.
fn x86_64_litellm_layer() -> PathBuf {
    let stdlib = x86_64_stdlib_layer();
    let packages = pip_litellm("pip-litellm-x86_64", None);
    cached("layer-x86_64-litellm", |out| {
        copy_tree(&stdlib, out);
        copy_tree(&packages, &out.join("python/lib/python3.11/site-packages"));
        compile(out);
    })
}

/// The x86_64 litellm layer plus boto3 and what it brings beyond litellm's closure (the
/// distributions the `bedrock` provider adds), only those byte-compiled anew.
fn x86_64_providers_layer() -> PathBuf {
    let litellm = x86_64_litellm_layer();
    let boto3 = pip_install(
        "pip-boto3-x86_64",
        None,
        &["--no-deps", "boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six"],
    );
    cached("layer-x86_64-providers", |out| {
        copy_tree(&litellm, out);
        let site_packages = out.join("python/lib/python3.11/site-packages");
        copy_tree(&boto3, &site_packages);
        let added: Vec<PathBuf> = fs_err::read_dir(&boto3)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| !name.to_string_lossy().ends_with(".dist-info"))
            .map(|name| site_packages.join(name))
            .collect();
        compile_paths(out, &added);
    })
}

/// A writable copy of a cached layer, for tests that break it.
fn copy_of(layer: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("verify-test-layer-").tempdir().unwrap();
    copy_tree(layer, dir.path());
    dir
}

fn options(arch: Arch, layer_dir: &Path, runner: Runner, runs: u32) -> VerifyOptions {
    VerifyOptions {
        arch,
        python: "3.11".parse().unwrap(),
        source_date_epoch: Default::default(),
        layer_dir: layer_dir.to_path_buf(),
        imports: spec_imports(),
        providers: vec!["openai".into()],
        runs,
        timeout: verify::default_timeout(&runner),
        runner,
        size_report: None,
        isolation: None,
    }
}

fn verify_native(layer: &Path, runs: u32, size_report: Option<PathBuf>) -> VerifyReport {
    let mut options = options(Arch::X86_64, layer, Runner::Native, runs);
    options.size_report = size_report;
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    eprintln!("{}", report.render());
    report
}

fn is_x86_64_host() -> bool {
    Arch::host() == Some(Arch::X86_64)
}

#[test]
fn native_layer_with_litellm_passes_every_check() {
    if !is_x86_64_host() {
        eprintln!("skipped: the native fixture is built from an x86_64 host CPython");
        return;
    }
    let layer = x86_64_litellm_layer();
    let reports = tempfile::tempdir().unwrap();
    let size_report = reports.path().join("size-report.json");
    fs_err::write(&size_report, r#"{"totals": {"zipped_bytes": 1}}"#).unwrap();
    let report = verify_native(&layer, 3, Some(size_report.clone()));
    let text = report.render();
    assert!(report.passed(), "{text}");
    for module in spec_imports() {
        assert!(text.contains(&format!("ok   import {module}  ")), "{module} in:\n{text}");
    }
    for line in [
        "ok   token_counter offline (gpt-3.5-turbo)  ",
        &format!("ok   completion  'echo: verify {} x86_64'", std::process::id()),
        "ok   streaming completion  ",
        "ok   answers came from the local server  http://127.0.0.1:",
        "ok   no network beyond 127.0.0.1  none attempted",
        "ok   no file written into the layer tree  ",
        "ok   native files are x86_64 ELF  ",
        "ok   import litellm time  ",
    ] {
        assert!(text.contains(line), "want {line:?} in:\n{text}");
    }
    assert!(text.contains("verify x86_64: PASSED"), "{text}");
    assert_eq!(report.mode, "native");
    assert_eq!(report.import_litellm_ms.len(), 3);
    let written: serde_json::Value = serde_json::from_str(&fs_err::read_to_string(&size_report).unwrap()).unwrap();
    assert_eq!(written["totals"]["zipped_bytes"], 1, "other keys are kept");
    assert_eq!(written["verify"]["runs"], 3);
    assert_eq!(written["verify"]["mode"], "native");
    assert_eq!(written["verify"]["passed"], true);
    assert!(written["verify"]["import_litellm_ms_median"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_missing_distribution_fails_naming_the_module() {
    if !is_x86_64_host() {
        return;
    }
    let layer = copy_of(&x86_64_litellm_layer());
    let site_packages = layer.path().join("python/lib/python3.11/site-packages");
    fs_err::remove_dir_all(site_packages.join("httpx")).unwrap();
    let report = verify_native(layer.path(), 1, None);
    let text = report.render();
    assert!(!report.passed());
    assert!(text.contains("FAIL import litellm\n"), "{text}");
    assert!(text.contains("ModuleNotFoundError: No module named 'httpx'"), "{text}");
    assert!(text.contains("FAIL import httpx\n"), "{text}");
    assert!(text.contains("verify x86_64: FAILED") && text.contains("import litellm; "), "{text}");
    // Without litellm nothing can be timed, and that is a failure too.
    assert!(text.contains("FAIL import litellm time"), "{text}");
}

#[test]
fn a_shared_object_for_another_machine_is_named() {
    if !is_x86_64_host() {
        return;
    }
    let layer = copy_of(&x86_64_stdlib_layer());
    let lib = layer.path().join("python/lib/python3.11");
    let real = fs_err::read_dir(lib.join("lib-dynload"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".so"))
        .expect("a lib-dynload .so");
    let mut bytes = fs_err::read(&real).unwrap();
    bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
    let package = lib.join("site-packages/fastthing");
    fs_err::create_dir_all(&package).unwrap();
    fs_err::write(package.join("_speedups.cpython-311-aarch64-linux-gnu.so"), bytes).unwrap();
    fs_err::write(package.join("libhelper.so.1"), "not a shared object\n").unwrap();
    let report = verify_native(layer.path(), 1, None);
    let text = report.render();
    assert!(text.contains("FAIL native files are x86_64 ELF"), "{text}");
    assert!(
        text.contains(
            "python/lib/python3.11/site-packages/fastthing/_speedups.cpython-311-aarch64-linux-gnu.so: ELF for aarch64, expected x86_64 for x86_64"
        ),
        "{text}"
    );
    assert!(text.contains("python/lib/python3.11/site-packages/fastthing/libhelper.so.1: not an ELF file"), "{text}");
}

#[test]
fn a_layer_that_writes_into_its_tree_is_caught() {
    if !is_x86_64_host() {
        return;
    }
    let layer = copy_of(&x86_64_stdlib_layer());
    let lib = layer.path().join("python/lib/python3.11");
    // The bytecode of `json` is missing, so Python writes it when it can.
    fs_err::remove_dir_all(lib.join("json/__pycache__")).unwrap();
    // A start-up hook writing beside itself.
    fs_err::write(
        lib.join("sitecustomize.py"),
        "import os\nwith open(os.path.join(os.path.dirname(__file__), 'written-at-startup.txt'), 'w') as f:\n    f.write('x')\n",
    )
    .unwrap();
    // Both ways of making the sandbox read-only: the best this host offers, and permission bits
    // alone (what a host without mount namespaces gets).
    for isolation in [None, Some(Isolation::PermissionBits)] {
        let mut options = options(Arch::X86_64, layer.path(), Runner::Native, 1);
        options.isolation = isolation;
        let report = verify::verify_layer(&options, &Progress::new()).unwrap();
        let text = report.render();
        assert!(text.contains("FAIL no file written into the layer tree"), "{text}");
        assert!(text.contains("change(s) when the tree was writable"), "{text}");
        assert!(text.contains("added python/lib/python3.11/json/__pycache__"), "{text}");
        assert!(text.contains("added python/lib/python3.11/written-at-startup.txt"), "{text}");
        if isolation.is_some() {
            assert!(text.contains("(native, permission bits only"), "{text}");
        }
    }
}

#[test]
fn missing_qemu_with_require_arch_run_fails_with_the_fix() {
    if !is_x86_64_host() {
        return;
    }
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let required = Command::new(xtask)
        .args(["verify", "--arch", "arm64", "--require-arch-run"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&required.stderr);
    assert!(!required.status.success(), "{stderr}");
    assert!(
        stderr.contains("error: cannot run the arm64 layer on this x86_64 host: qemu-aarch64-static is not on PATH"),
        "{stderr}"
    );
    assert!(stderr.contains("install it with `apt-get install qemu-user-static`"), "{stderr}");
    assert!(stderr.contains("(--require-arch-run was given)"), "{stderr}");

    let skipped = Command::new(xtask).args(["verify", "--arch", "arm64"]).env("PATH", "/nonexistent").output().unwrap();
    let stdout = String::from_utf8_lossy(&skipped.stdout);
    assert!(skipped.status.success(), "{}", String::from_utf8_lossy(&skipped.stderr));
    assert!(stdout.contains("verify arm64: skipped, nothing was verified"), "{stdout}");
    assert!(stdout.contains("apt-get install qemu-user-static"), "{stdout}");
}

#[test]
fn arm64_layer_with_litellm_passes_under_qemu() {
    let Some(qemu) = arm64_sysroot::qemu() else {
        eprintln!("skipped: qemu-aarch64-static is not installed (apt-get install qemu-user-static)");
        return;
    };
    let fixture = arm64_sysroot::arm64_fixture().unwrap();
    let (ok, output) = arm64_sysroot::run_under_qemu(
        &qemu,
        &fixture.sysroot,
        "import ssl, json, zlib, platform, sys; print(platform.machine(), '/opt/python/lib/python3.11/site-packages' in sys.path)",
    )
    .unwrap();
    assert!(ok && output.trim() == "aarch64 True", "{output}");
    assert!(fixture.archive.exists());

    let packages = pip_litellm("pip-litellm-arm64", Some(Arch::Arm64));
    let layer = cached("layer-arm64-litellm", |out| {
        copy_tree(&fixture.layer_root, out);
        copy_tree(&packages, &out.join("python/lib/python3.11/site-packages"));
        compile(out);
    });
    let runner = Runner::Qemu { qemu, sysroot: fixture.sysroot.clone() };
    let mut options = options(Arch::Arm64, &layer, runner, 1);
    let reports = tempfile::tempdir().unwrap();
    options.size_report = Some(reports.path().join("size-report.json"));
    options.timeout = Duration::from_secs(900);
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    let text = report.render();
    eprintln!("{text}");
    assert!(report.passed(), "{text}");
    assert_eq!(report.mode, "qemu");
    assert!(text.contains("ok   native files are aarch64 ELF"), "{text}");
    assert!(text.contains(&format!("ok   completion  'echo: verify {} arm64'", std::process::id())), "{text}");
    assert!(text.contains("ok   token_counter offline"), "{text}");
    let written = fs_err::read_to_string(reports.path().join("size-report.json")).unwrap();
    assert!(written.contains("\"mode\": \"qemu\""), "{written}");
}

#[test]
fn every_provider_passes_against_its_mock() {
    if !is_x86_64_host() {
        return;
    }
    let layer = x86_64_providers_layer();
    let mut options = options(Arch::X86_64, &layer, Runner::Native, 1);
    options.providers = ["anthropic", "azure", "bedrock", "openai"].map(String::from).to_vec();
    let catalog = xtask::providers::Catalog::builtin();
    for provider in catalog.enabled(&options.providers).unwrap() {
        options.imports.extend(provider.imports.iter().cloned());
    }
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    let text = report.render();
    eprintln!("{text}");
    assert!(report.passed(), "{text}");
    let prompt = format!("verify {} x86_64", std::process::id());
    for line in [
        format!("ok   completion  'echo: {prompt}'"),
        format!("ok   azure: completion against the Azure OpenAI mock  'echo: {prompt} via azure'"),
        "ok   azure: streaming completion against the Azure OpenAI mock  ".to_string(),
        "ok   azure: the Azure OpenAI mock answered both, refused nothing  http://127.0.0.1:".to_string(),
        format!("ok   anthropic: completion against the Anthropic mock  'echo: {prompt} via anthropic'"),
        "ok   anthropic: streaming completion against the Anthropic mock  ".to_string(),
        "ok   anthropic: the Anthropic mock answered both, refused nothing  http://127.0.0.1:".to_string(),
        format!("ok   bedrock: completion against the Amazon Bedrock mock  'echo: {prompt} via bedrock'"),
        "ok   bedrock: streaming completion against the Amazon Bedrock mock  ".to_string(),
        "ok   bedrock: the Amazon Bedrock mock answered both, refused nothing  http://127.0.0.1:".to_string(),
        "ok   bedrock: boto3 client \"bedrock-runtime\" constructs  BedrockRuntime, API 2023-09-30".to_string(),
        "ok   bedrock: boto3 client \"sts\" constructs  STS, API 2011-06-15".to_string(),
        "ok   no network beyond 127.0.0.1  none attempted".to_string(),
    ] {
        assert!(text.contains(&line), "want {line:?} in:\n{text}");
    }
}

#[test]
fn only_the_enabled_providers_run_and_a_missing_service_model_fails_its_checks() {
    if !is_x86_64_host() {
        return;
    }
    // What an over-eager botocore-services prune would leave: no bedrock-runtime service model.
    let layer = copy_of(&x86_64_providers_layer());
    fs_err::remove_dir_all(layer.path().join("python/lib/python3.11/site-packages/botocore/data/bedrock-runtime"))
        .unwrap();
    let mut options = options(Arch::X86_64, layer.path(), Runner::Native, 1);
    options.providers = vec!["bedrock".into()];
    let report = verify::verify_layer(&options, &Progress::new()).unwrap();
    let text = report.render();
    assert!(!report.passed(), "{text}");
    for line in [
        "ok   bedrock: completion against the Amazon Bedrock mock  ",
        "FAIL bedrock: streaming completion against the Amazon Bedrock mock\n",
        "FAIL bedrock: boto3 client \"bedrock-runtime\" constructs\n",
        "botocore.exceptions.UnknownServiceError: Unknown service: 'bedrock-runtime'.",
        "       botocore has no service model for 'bedrock-runtime' (botocore/data/bedrock-runtime/ is not in the \
         layer): the botocore-services prune rule keeps only the services of the enabled providers; add it to the \
         provider's botocore-services in xtask/data/providers.toml or to [prune] keep-botocore-services in \
         layer.toml\n",
        "ok   bedrock: boto3 client \"sts\" constructs  ",
        // The mock answered the stream; the layer failed to decode it without the service model.
        "ok   bedrock: the Amazon Bedrock mock answered both, refused nothing  http://127.0.0.1:",
    ] {
        assert!(text.contains(line), "want {line:?} in:\n{text}");
    }
    for absent in ["azure:", "anthropic:", "ok   completion  ", "answers came from the local server"] {
        assert!(!text.contains(absent), "{absent:?} in:\n{text}");
    }
}
