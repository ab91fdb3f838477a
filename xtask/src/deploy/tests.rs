//! Tests of `deploy.rs`.

use super::*;

const MINIMAL_SBOM: &str = r#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
    "metadata": {"component": {"type": "application", "bom-ref": "layer", "name": "python-litellm-arm64"}}}"#;

/// A repository with `amplify-lambda-js/` and a built `layer-build-arm64/` (zip, sealed SBOM, wiring).
fn built() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let service = root.path().join("amplify-lambda-js");
    let out = root.path().join("layer-build-arm64");
    fs_err::create_dir_all(&service).unwrap();
    fs_err::create_dir_all(&out).unwrap();
    let zip = out.join("python-litellm-arm64.zip");
    fs_err::write(&zip, b"the layer").unwrap();
    let sbom = out.join("python-litellm-arm64.cdx.json");
    fs_err::write(&sbom, MINIMAL_SBOM).unwrap();
    crate::layer::sbom::subject::record(&sbom, &zip).unwrap();
    let wiring = LayerWiring {
        architecture: "arm64".into(),
        artifact: "../layer-build-arm64/python-litellm-arm64.zip".into(),
        python_home: "/opt/python".into(),
        python_path: "/opt/python/lib/python3.11".into(),
        description: "CPython 3.11 with LiteLLM (built by cargo xtask layer)".into(),
    };
    wiring.write(&out).unwrap();
    (root, service, out)
}

#[test]
fn the_built_zip_is_the_sboms_subject() {
    let (_root, service, out) = built();
    let layer = BuiltLayer::check(&out, Arch::Arm64, &service).unwrap();
    assert_eq!(layer.sha256, crate::cache::sha256_bytes(b"the layer"));
}

#[test]
fn a_zip_changed_after_the_build_is_refused() {
    let (_root, service, out) = built();
    let zip = out.join("python-litellm-arm64.zip");
    fs_err::write(&zip, b"another layer").unwrap();
    let err = format!("{:#}", BuiltLayer::check(&out, Arch::Arm64, &service).unwrap_err());
    assert_eq!(
        err,
        format!(
            "{}: sha256 {} is not the subject of the SBOM {} (sha256 {}); the zip changed after the build: \
             rebuild with `cargo xtask layer --arch arm64` (or take both files from the same CI run). Nothing \
             was deployed",
            zip.display(),
            crate::cache::sha256_bytes(b"another layer"),
            out.join("python-litellm-arm64.cdx.json").display(),
            crate::cache::sha256_bytes(b"the layer"),
        )
    );
}

#[test]
fn wiring_that_names_another_file_is_refused() {
    let (_root, service, out) = built();
    let mut wiring = LayerWiring::load(&out, Arch::Arm64).unwrap();
    wiring.artifact = "../elsewhere.zip".into();
    wiring.write(&out).unwrap();
    let err = format!("{:#}", BuiltLayer::check(&out, Arch::Arm64, &service).unwrap_err());
    assert_eq!(
        err,
        format!(
            "{}: artifact ../elsewhere.zip (from {}) is not the built zip {}; run `cargo xtask layer --arch arm64` again",
            out.join(WIRING_FILE).display(),
            service.display(),
            out.join("python-litellm-arm64.zip").display()
        )
    );
}

#[test]
fn references_in_the_serverless_state_are_followed() {
    let state = serde_json::json!({
        "service": {
            "layers": {"$ref": "$[\"service\"][\"initialServerlessConfig\"][\"layers\"]"},
            "initialServerlessConfig": {"layers": {"l": {"list": [1, {"$ref": "$[\"service\"][\"x\"]"}]}}},
            "x": "found",
            "loop": {"$ref": "$[\"service\"][\"loop\"]"}
        }
    });
    let layers = follow_refs(&state, &state["service"]["layers"]);
    assert_eq!(follow_refs(&state, &layers["l"]["list"][1]), "found");
    assert_eq!(follow_refs(&state, &state["service"]["loop"]), &Value::Null);
    assert_eq!(follow_refs(&state, &serde_json::json!({"$ref": "#/nope"})), &Value::Null);
}

/// A `.serverless/serverless-state.json` whose layer artifact is `artifact`.
fn packaged(service: &Path, artifact: Option<&str>) -> PathBuf {
    let package_dir = service.join(PACKAGE_DIR);
    fs_err::create_dir_all(&package_dir).unwrap();
    let layer = match artifact {
        Some(artifact) => serde_json::json!({"package": {"artifact": artifact}}),
        None => serde_json::json!({"path": "../layer-build-arm64/layer"}),
    };
    let state = serde_json::json!({"service": {"layers": {"pythonLiteLLM": layer}}});
    fs_err::write(package_dir.join(STATE_FILE), state.to_string()).unwrap();
    package_dir
}

#[test]
fn the_packaged_artifact_must_be_the_built_zip() {
    let (root, service, out) = built();
    let layer = BuiltLayer::check(&out, Arch::Arm64, &service).unwrap();
    let package_dir = packaged(&service, Some("../layer-build-arm64/python-litellm-arm64.zip"));
    let recorded = layer.check_packaged(&package_dir, &service).unwrap();
    assert_eq!(recorded.sha256, layer.sha256.to_string());
    assert_eq!(recorded.bytes, 9);

    fs_err::write(root.path().join("other.zip"), b"a re-zipped layer").unwrap();
    let package_dir = packaged(&service, Some("../other.zip"));
    let err = format!("{:#}", layer.check_packaged(&package_dir, &service).unwrap_err());
    assert_eq!(
        err,
        format!(
            "the packaged layer artifact {} has sha256 {}, but the built zip {} (the SBOM's subject) has {}; \
             nothing was deployed",
            service.join("../other.zip").display(),
            crate::cache::sha256_bytes(b"a re-zipped layer"),
            layer.zip.display(),
            layer.sha256
        )
    );

    let package_dir = packaged(&service, None);
    let err = format!("{:#}", layer.check_packaged(&package_dir, &service).unwrap_err());
    assert_eq!(
        err,
        format!(
            "{}: service.layers.pythonLiteLLM.package.artifact is missing: Serverless packaged the layer from a \
             directory, not the built zip; run `cargo xtask patch` and package again. Nothing was deployed",
            package_dir.join(STATE_FILE).display()
        )
    );
}

#[test]
fn missing_package_lock_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let err = ensure_node_modules(dir.path(), &Progress::new()).unwrap_err().to_string();
    let expected = format!(
        "package-lock.json is missing: run `npm install` in {} and commit package.json and package-lock.json",
        dir.path().display()
    );
    assert!(err.ends_with(&expected), "{err}");
}

#[test]
fn serverless_v4_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("node_modules/serverless");
    fs_err::create_dir_all(package.join("bin")).unwrap();
    fs_err::create_dir_all(dir.path().join("node_modules/.bin")).unwrap();
    fs_err::write(package.join("package.json"), r#"{"name": "serverless", "version": "4.4.0"}"#).unwrap();
    fs_err::write(package.join("bin/serverless.js"), "").unwrap();
    std::os::unix::fs::symlink("../serverless/bin/serverless.js", dir.path().join("node_modules/.bin/serverless"))
        .unwrap();
    let err = serverless_bin(dir.path()).err().unwrap().to_string();
    assert!(err.contains("serverless 4.4.0 is installed, expected the Serverless Framework v3"), "{err}");
    assert!(err.contains("run `npm install --save-dev osls@3`"), "{err}");
}
