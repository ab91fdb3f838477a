//! The minor version through the whole pipeline's path logic, for the versions only these tests
//! cover (3.12, 3.13; 3.11 is also built and verified end to end): spec → interpreter step →
//! install (markers, tags) → bytecode paths → verify (the interpreter it runs and its environment,
//! the bytecode check, the ELF check) → the serverless.yml wiring and the deploy template check.
//! The Node side's half is `amplify-lambda-js/test/pythonExec.test.mjs`.

use std::path::Path;
use std::str::FromStr;

use crate::arch::Arch;
use crate::layer::install::Target;
use crate::packaging::pylock::Pylock;
use crate::packaging::tags::TargetTags;
use crate::packaging::wheel_name::WheelFilename;
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

const VERSIONS: [&str; 2] = ["3.12", "3.13"];

fn spec_for(version: &str) -> LayerSpec {
    let text = format!(
        "[python]\nversion = \"{version}\"\nrelease = \"20260127\"\n\n[packages]\nrequirements = [\"litellm==1.78.7\"]\n"
    );
    LayerSpec::parse(&text, Path::new("litellm-layer/layer.toml")).unwrap()
}

#[test]
fn the_spec_parses_each_version_once_and_the_manifest_pins_it() {
    for version in VERSIONS {
        let spec = spec_for(version);
        assert_eq!(spec.python.version.to_string(), version);
        let manifest = crate::manifest::Manifest::pinned();
        for arch in Arch::ALL {
            let artifact = manifest.find(spec.python.version, "20260127", arch, spec.python.variant).unwrap();
            assert!(artifact.file_name().starts_with(&format!("cpython-{version}.")), "{}", artifact.file_name());
            assert_eq!(artifact.minor_version(), Some(spec.python.version));
        }
    }
}

#[test]
fn install_targets_the_version_in_markers_and_wheel_tags() {
    let lock = Pylock::parse("lock-version = \"1.0\"\ncreated-by = \"test\"\n", Path::new("pylock.toml")).unwrap();
    for (version, minor) in [("3.12", 12), ("3.13", 13)] {
        let spec = spec_for(version);
        let target = Target::new(Arch::Arm64, &spec, &lock).unwrap();
        assert_eq!(target.python.minor(), minor);
        assert_eq!(target.python_full_version, format!("{version}.0"));
        let environment = target.marker_environment().unwrap();
        assert_eq!(environment.python_version().version.to_string(), version);
        let marker = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&format!(
            "demo; python_version == '{version}' and platform_machine == 'aarch64'"
        ))
        .unwrap();
        assert!(marker.evaluate_markers(&environment, &[]), "{version}");

        let tags = TargetTags::lambda(Arch::Arm64, spec.python.version);
        let cp = spec.python.version.cp_tag();
        let own = WheelFilename::from_str(&format!("demo-1.0-{cp}-{cp}-manylinux_2_17_aarch64.whl")).unwrap();
        let old = WheelFilename::from_str("demo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl").unwrap();
        let abi3 = WheelFilename::from_str("demo-1.0-cp38-abi3-manylinux_2_17_aarch64.whl").unwrap();
        assert!(tags.is_compatible(&own), "{version}");
        assert!(!tags.is_compatible(&old), "{version}: a cp311 extension does not load in {version}");
        assert!(tags.is_compatible(&abi3), "{version}");
    }
}

#[test]
fn verify_checks_the_versions_interpreter() {
    for version in VERSIONS {
        let python: PythonVersion = version.parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("python/bin");
        fs_err::create_dir_all(&bin).unwrap();
        fs_err::write(bin.join(format!("python{version}")), b"\x7fELF").unwrap();
        fs_err::write(bin.join("python3.11"), b"\x7fELF").unwrap();
        let files = crate::verify::elf::native_files(dir.path(), python).unwrap();
        assert_eq!(files, [bin.join(format!("python{version}"))], "{version}");
    }
}

#[test]
fn bytecode_goes_where_the_versions_interpreter_looks_and_verify_checks_it_there() {
    use crate::verify::profile::{LoadedModules, bytecode_check};
    for version in VERSIONS {
        let python: PythonVersion = version.parse().unwrap();
        let tag = python.cache_tag();
        let cpython = format!("cpython-3{}", python.minor());
        // The bytecode step writes `__pycache__/<name>.cpython-3X.pyc` and bakes the path Lambda
        // sees into `co_filename` (the pack step prefixes it with `lambda::pythonpath`).
        assert_eq!(
            crate::layer::bytecode::pycache_path("site-packages/pkg/mod.py", &tag),
            format!("site-packages/pkg/__pycache__/mod.{cpython}.pyc")
        );
        assert_eq!(crate::lambda::pythonpath(python), format!("/opt/python/lib/python{version}"));

        // verify's "every loaded module had bytecode" reads the cache tag from the stdlib
        // directory the module came from: a `.pyc` of another version does not count.
        let layer = tempfile::tempdir().unwrap();
        let lib = layer.path().join("python").join(python.stdlib_dir());
        fs_err::create_dir_all(lib.join("json/__pycache__")).unwrap();
        fs_err::create_dir_all(lib.join("site-packages/pkg/__pycache__")).unwrap();
        fs_err::write(lib.join(format!("json/__pycache__/decoder.{cpython}.pyc")), b"").unwrap();
        fs_err::write(lib.join("site-packages/pkg/__pycache__/mod.cpython-311.pyc"), b"").unwrap();
        let opt_lib = crate::lambda::pythonpath(python);
        let loaded = LoadedModules {
            multiarch: "aarch64-linux-gnu".into(),
            modules: vec![
                ("json.decoder".into(), format!("{opt_lib}/json/decoder.py")),
                ("pkg.mod".into(), format!("{opt_lib}/site-packages/pkg/mod.py")),
            ],
            source_read: vec![],
        };
        let check = bytecode_check(layer.path(), &["/opt/python/".to_string()], &loaded).unwrap();
        assert!(!check.ok, "{version}");
        assert_eq!(
            check.detail,
            format!(
                "1 of 2 modules loaded from .py had no .pyc in the layer (each compiles on every cold start); the \
                 import profile is stale or incomplete: run `cargo xtask verify --record-profile`, then rebuild the \
                 layer:\n  pkg.mod (lib/python{version}/site-packages/pkg/mod.py)\n"
            ),
            "{version}"
        );
    }
}

#[test]
fn verify_runs_the_versions_interpreter_with_lambdas_environment() {
    use crate::verify::runner::Sandbox;
    use crate::verify::{Isolation, Runner};
    for version in VERSIONS {
        let python: PythonVersion = version.parse().unwrap();
        for runner in
            [Runner::Native, Runner::Qemu { qemu: "/usr/bin/qemu-aarch64".into(), sysroot: "/sysroot".into() }]
        {
            let sandbox =
                Sandbox { dir: tempfile::tempdir().unwrap(), python, isolation: Isolation::PermissionBits, runner };
            let command = sandbox.python(true, &["-c".into(), "pass".into()]);
            let opt = sandbox.opt();
            let interpreter = opt.join(format!("python/bin/python{version}"));
            let args: Vec<&std::ffi::OsStr> = command.get_args().collect();
            match &sandbox.runner {
                Runner::Native => {
                    assert_eq!(command.get_program(), interpreter.as_os_str(), "{version}");
                    assert_eq!(args, ["-c", "pass"], "{version}");
                }
                Runner::Qemu { qemu, .. } => {
                    assert_eq!(command.get_program(), qemu.as_os_str(), "{version}");
                    let root = sandbox.root();
                    let want: Vec<&std::ffi::OsStr> =
                        vec!["-L".as_ref(), root.as_os_str(), interpreter.as_os_str(), "-c".as_ref(), "pass".as_ref()];
                    assert_eq!(args, want, "{version}");
                }
            }
            let env: std::collections::BTreeMap<_, _> = command.get_envs().collect();
            let env_of = |name: &str| env[std::ffi::OsStr::new(name)].map(std::path::PathBuf::from);
            let python_home = match &sandbox.runner {
                Runner::Native => opt.join("python"),
                Runner::Qemu { .. } => std::path::PathBuf::from("/opt/python"),
            };
            assert_eq!(env_of("PYTHONHOME"), Some(python_home.clone()), "{version}");
            assert_eq!(env_of("PYTHONPATH"), Some(python_home.join(format!("lib/python{version}"))), "{version}");
        }
    }
}

#[test]
fn the_build_wiring_and_the_deploy_check_expect_the_versions_pythonpath() {
    let template_text = include_str!("../test_data/deploy/template-arm64.json");
    let out_dir = crate::project_root().join("layer-build-arm64");
    for version in VERSIONS {
        let spec = spec_for(version);
        let python = spec.python.version;
        // serverless.yml reads PYTHONHOME and PYTHONPATH from the build's wiring file.
        let wiring = crate::serverless::LayerWiring::new(&spec, Arch::Arm64, python, &out_dir);
        assert_eq!(wiring.python_home, "/opt/python");
        assert_eq!(wiring.python_path, format!("/opt/python/lib/python{version}"));
        assert_eq!(wiring.description, format!("CPython {version} with LiteLLM (built by cargo xtask layer)"));

        // The template `serverless package` wrote for 3.11 fails the check for this version...
        let expected = crate::deploy::template::Expected::from_wiring(Arch::Arm64, &wiring);
        let template: serde_json::Value = serde_json::from_str(template_text).unwrap();
        let failures = crate::deploy::template::check_template(&template, &expected).unwrap_err();
        let messages: Vec<String> = failures.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 1, "{version}: {messages:?}");
        assert!(
            messages[0].starts_with(&format!(
                "ChatLambdaFunction: Properties.Environment.Variables.PYTHONPATH is \"/opt/python/lib/python3.11\", \
                 expected \"/opt/python/lib/python{version}\""
            )),
            "{version}: {}",
            messages[0]
        );
        // ...and passes once the environment names the version's standard library.
        let fixed = template_text.replace("/opt/python/lib/python3.11", &crate::lambda::pythonpath(python));
        let fixed: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        crate::deploy::template::check_template(&fixed, &expected).unwrap();
    }
}
