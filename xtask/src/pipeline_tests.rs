//! The minor version through the whole pipeline's path logic, for the versions only these tests
//! cover (3.12, 3.13; 3.11 is also built and verified end to end): spec → interpreter step →
//! install (markers, tags) → bytecode and pack paths → verify (sandbox paths, ELF check) → the
//! serverless.yml patch and the deploy template check.

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
        assert_eq!(target.python_minor, minor);
        assert_eq!(target.python_full_version, format!("{version}.0"));
        let environment = target.marker_environment().unwrap();
        assert_eq!(environment.python_version().version.to_string(), version);
        let marker = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(&format!(
            "demo; python_version == '{version}' and platform_machine == 'aarch64'"
        ))
        .unwrap();
        assert!(marker.evaluate_markers(&environment, &[]), "{version}");

        let tags = TargetTags::lambda(Arch::Arm64, spec.python.version.minor());
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
fn the_patch_and_the_deploy_check_expect_the_versions_pythonpath() {
    let template_text = include_str!("../test_data/deploy/template-arm64.json");
    for version in VERSIONS {
        let spec = spec_for(version);
        let python = spec.python.version;
        let plan = crate::serverless::PatchPlan::new(&spec, Arch::Arm64, false);
        let yml = "service: demo\nprovider:\n  name: aws\n  runtime: nodejs22.x\n  architecture: arm64\n  environment:\n    \
                   PYTHONHOME: /opt/python\n    PYTHONPATH: /opt/python/lib/python3.11\n    LITELLM_LOCAL_MODEL_COST_MAP: \"True\"\n\
                   layers:\n  pythonLiteLLM:\n    path: ../layer-build-arm64/layer\n    compatibleRuntimes: [nodejs22.x]\n    \
                   compatibleArchitectures: [arm64]\n";
        let patched = crate::serverless::patch_text(yml, &plan, Path::new("serverless.yml")).unwrap();
        let text = patched.new_text.expect("the 3.11 PYTHONPATH is patched");
        assert!(text.contains(&format!("PYTHONPATH: /opt/python/lib/python{version}\n")), "{version}: {text}");

        // The template `serverless package` wrote for 3.11 fails the check for this version...
        let template: serde_json::Value = serde_json::from_str(template_text).unwrap();
        let failures = crate::deploy::template::check_template(&template, Arch::Arm64, python).unwrap_err();
        let messages: Vec<String> = failures.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [format!(
                "ChatLambdaFunction: Properties.Environment.Variables.PYTHONPATH is \"/opt/python/lib/python3.11\", \
                 expected \"/opt/python/lib/python{version}\"; set `provider.environment.PYTHONPATH: \
                 \"/opt/python/lib/python{version}\"` in serverless.yml (run `cargo xtask patch --arch arm64` and \
                 package again)"
            )]
        );
        // ...and passes once the environment names the version's standard library.
        let fixed = template_text.replace("/opt/python/lib/python3.11", &crate::lambda::pythonpath(python));
        let fixed: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        crate::deploy::template::check_template(&fixed, Arch::Arm64, python).unwrap();
    }
}
