//! Tests of the SBOM: schema validity, hashes, reproducibility, timestamps, credentials, the
//! dependency graph and refused inputs.

use super::*;
use serde_json::Value;

const LOCK: &str = r#"
lock-version = "1.0"
requires-python = "==3.11.*"
created-by = "litellm-layer"

[[packages]]
name = "litellm"
version = "1.78.7"
dependencies = [{ name = "openai" }, { name = "tiktoken" }, { name = "boto3" }, { name = "ghost" }, { name = "tokenizers" }]
wheels = [{ name = "litellm-1.78.7-py3-none-any.whl", url = "https://files.example/litellm-1.78.7-py3-none-any.whl", upload-time = 2025-10-02T08:00:00Z, hashes = { sha256 = "1111111111111111111111111111111111111111111111111111111111111111" } }]

[[packages]]
name = "openai"
version = "1.54.0"
dependencies = [{ name = "httpx" }, { name = "typing-extensions" }]
wheels = [{ name = "openai-1.54.0-py3-none-any.whl", url = "https://deploy-user:s3cret-token@pypi.example/openai-1.54.0-py3-none-any.whl", upload-time = 2025-11-20T10:30:00+02:00, hashes = { sha256 = "2222222222222222222222222222222222222222222222222222222222222222" } }]

[[packages]]
name = "httpx"
version = "0.27.0"
wheels = [{ name = "httpx-0.27.0-py3-none-any.whl", url = "https://files.example/httpx-0.27.0-py3-none-any.whl", hashes = { sha256 = "3333333333333333333333333333333333333333333333333333333333333333" } }]

[[packages]]
name = "typing-extensions"
version = "4.12.2"
wheels = [{ name = "typing_extensions-4.12.2-py3-none-any.whl", url = "https://files.example/typing_extensions-4.12.2-py3-none-any.whl", hashes = { sha256 = "4444444444444444444444444444444444444444444444444444444444444444" } }]

[[packages]]
name = "tiktoken"
version = "0.8.0"
dependencies = [{ name = "regex" }]
wheels = [
  { name = "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", url = "https://files.example/tiktoken-aarch64.whl", hashes = { sha256 = "5555555555555555555555555555555555555555555555555555555555555555" } },
  { name = "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", url = "https://files.example/tiktoken-x86_64.whl", hashes = { sha256 = "5656565656565656565656565656565656565656565656565656565656565656" } },
]

[[packages]]
name = "regex"
version = "2024.9.11"
wheels = [{ name = "regex-2024.9.11-cp311-cp311-manylinux_2_17_aarch64.whl", url = "https://files.example/regex-aarch64.whl", hashes = { sha256 = "6666666666666666666666666666666666666666666666666666666666666666" } }]

[[packages]]
name = "tokenizers"
version = "0.20.3"
wheels = [{ name = "tokenizers-0.20.3-cp39-abi3-manylinux_2_17_aarch64.whl", url = "https://files.example/tokenizers-aarch64.whl", hashes = { sha256 = "7777777777777777777777777777777777777777777777777777777777777777" } }]

[[packages]]
name = "setuptools"
version = "75.0.0"
wheels = [{ name = "setuptools-75.0.0-py3-none-any.whl", url = "https://files.example/setuptools.whl", hashes = { sha256 = "8888888888888888888888888888888888888888888888888888888888888888" } }]

[[packages]]
name = "boto3"
version = "1.40.0"
dependencies = [{ name = "s3transfer" }]
wheels = [{ name = "boto3-1.40.0-py3-none-any.whl", url = "https://files.example/boto3.whl", hashes = { sha256 = "abababababababababababababababababababababababababababababababab" } }]

[packages.tool.litellm-layer]
excluded = "in [packages] exclude of layer.toml"

[[packages]]
name = "s3transfer"
version = "0.14.0"
wheels = [{ name = "s3transfer-0.14.0-py3-none-any.whl", url = "https://files.example/s3transfer.whl", hashes = { sha256 = "acacacacacacacacacacacacacacacacacacacacacacacacacacacacacacacac" } }]

[packages.tool.litellm-layer]
excluded = "needed only by excluded boto3"

[[packages]]
name = "cffi"
version = "1.17.1"
marker = "platform_machine == 'x86_64'"
wheels = [{ name = "cffi-1.17.1-cp311-cp311-manylinux_2_17_x86_64.whl", url = "https://files.example/cffi.whl", hashes = { sha256 = "9999999999999999999999999999999999999999999999999999999999999999" } }]

[tool.litellm-layer]
requirements = ["litellm==1.78.7"]
exclude = ["boto3"]
index-url = "https://deploy-user:s3cret-token@pypi.example/simple"
python-full-version = "3.11.14"
architectures = ["arm64", "x86_64"]
"#;

/// (name, version, wheel, METADATA)
const DISTS: &[(&str, &str, &str, &str)] = &[
    (
        "litellm",
        "1.78.7",
        "litellm-1.78.7-py3-none-any.whl",
        "Metadata-Version: 2.1\nName: litellm\nVersion: 1.78.7\nLicense: MIT\n\
             Classifier: License :: OSI Approved :: MIT License\n\nLiteLLM\n\nLicense: not a header\n",
    ),
    (
        "openai",
        "1.54.0",
        "openai-1.54.0-py3-none-any.whl",
        "Metadata-Version: 2.4\nName: openai\nVersion: 1.54.0\nLicense-Expression: Apache-2.0\nLicense: ignored\n",
    ),
    (
        "httpx",
        "0.27.0",
        "httpx-0.27.0-py3-none-any.whl",
        "Metadata-Version: 2.3\nName: httpx\nVersion: 0.27.0\nLicense: BSD-3-Clause\n\
             Classifier: License :: OSI Approved :: BSD License\n",
    ),
    (
        "typing-extensions",
        "4.12.2",
        "typing_extensions-4.12.2-py3-none-any.whl",
        "Metadata-Version: 2.1\nName: typing_extensions\nVersion: 4.12.2\n\
             Classifier: License :: OSI Approved :: Python Software Foundation License\n",
    ),
    (
        "tiktoken",
        "0.8.0",
        "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "Metadata-Version: 2.1\nName: tiktoken\nVersion: 0.8.0\nLicense: MIT License\n        \n        \
             Copyright (c) 2022 OpenAI\nRequires-Dist: regex\n",
    ),
    (
        "regex",
        "2024.9.11",
        "regex-2024.9.11-cp311-cp311-manylinux_2_17_aarch64.whl",
        "Metadata-Version: 2.4\nName: regex\nVersion: 2024.9.11\nLicense-Expression: Apache-2.0 AND CNRI-Python\n",
    ),
];

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Vec<PathBuf>,
    lock: Pylock,
    dists: Vec<InstalledDist>,
    cpython: CpythonInfo,
    dropped: Vec<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let site_packages = dir.path().join("site-packages");
        let lock = Pylock::parse(LOCK, Path::new("pylock.toml")).unwrap();
        let mut dists = Vec::new();
        for (name, version, wheel, metadata) in DISTS {
            let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
            fs_err::create_dir_all(site_packages.join(&dist_info)).unwrap();
            fs_err::write(site_packages.join(&dist_info).join("METADATA"), metadata).unwrap();
            let locked = lock.packages.iter().find(|p| p.name == *name).unwrap();
            let locked_wheel = locked.wheels.iter().find(|w| w.name == *wheel).unwrap();
            dists.push(InstalledDist {
                name: name.to_string(),
                version: version.to_string(),
                wheel_name: wheel.to_string(),
                wheel_sha256: locked_wheel.hashes.sha256.clone(),
                wheel_url: locked_wheel.url.clone(),
                files: vec![format!("{dist_info}/METADATA")],
                dist_info,
            });
        }
        Fixture {
                _dir: dir,
                roots: vec![site_packages],
                lock,
                dists,
                cpython: CpythonInfo {
                    version: "3.11.14".to_string(),
                    url: "https://mirror-user:mirror-pass@mirror.example/cpython-3.11.14+20260127-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz".to_string(),
                    sha256: "abababababababababababababababababababababababababababababababab".to_string(),
                },
                dropped: vec!["tokenizers".to_string()],
            }
    }

    fn input(&self) -> SbomInput<'_> {
        SbomInput {
            arch: Arch::Arm64,
            cpython: &self.cpython,
            lock: &self.lock,
            dists: &self.dists,
            metadata: MetadataSource::SitePackages(&self.roots),
            dropped: &self.dropped,
            source_date_epoch: SourceDateEpoch::default(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&sbom_json(&self.input()).unwrap()).unwrap()
    }
}

fn component<'v>(sbom: &'v Value, name: &str) -> &'v Value {
    sbom["components"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

fn properties(sbom: &Value, name: &str) -> Vec<String> {
    sbom["metadata"]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == format!("litellm-layer:{name}"))
        .map(|p| p["value"].as_str().unwrap().to_string())
        .collect()
}

/// The vendored CycloneDX schemas, resolved offline.
struct VendoredSchemas(BTreeMap<String, Value>);

impl jsonschema::Retrieve for VendoredSchemas {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0.get(uri.as_str()).cloned().ok_or_else(|| format!("schema {uri} is not vendored").into())
    }
}

#[test]
fn sbom_validates_against_the_cyclonedx_1_5_schema() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/cyclonedx");
    let load =
        |name: &str| -> Value { serde_json::from_str(&fs_err::read_to_string(dir.join(name)).unwrap()).unwrap() };
    let mut vendored = BTreeMap::new();
    vendored.insert("http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json".to_string(), load("spdx.schema.json"));
    vendored
        .insert("http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json".to_string(), load("jsf-0.82.schema.json"));
    let validator = jsonschema::options()
        .with_retriever(VendoredSchemas(vendored))
        .should_validate_formats(true)
        .build(&load("bom-1.5.schema.json"))
        .unwrap();

    let sbom = Fixture::new().json();
    let errors: Vec<String> = validator.iter_errors(&sbom).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["bomFormat"], "CycloneDX");

    // The check can fail: a broken document is rejected.
    let mut broken = sbom.clone();
    broken["components"][0]["hashes"][0]["content"] = Value::from("not-hex");
    assert!(!validator.is_valid(&broken));
    // The SPDX schema is resolved too: an unknown license id is rejected.
    let mut unknown_license = sbom.clone();
    let litellm =
        unknown_license["components"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "litellm").unwrap();
    litellm["licenses"][0]["license"]["id"] = Value::from("Not-A-License-1.0");
    assert!(!validator.is_valid(&unknown_license));
}

#[test]
fn every_hash_equals_the_lock() {
    let fixture = Fixture::new();
    let sbom = fixture.json();
    let components = sbom["components"].as_array().unwrap();
    assert_eq!(components.len(), 1 + DISTS.len());
    for (name, version, wheel, _) in DISTS {
        let locked = fixture.lock.packages.iter().find(|p| p.name == *name).unwrap();
        let locked_sha256 = &locked.wheels.iter().find(|w| w.name == *wheel).unwrap().hashes.sha256;
        let purl = format!("pkg:pypi/{name}@{version}");
        let component = components.iter().find(|c| c["purl"] == purl.as_str()).unwrap_or_else(|| panic!("{purl}"));
        assert_eq!(component["bom-ref"], purl.as_str());
        assert_eq!(component["hashes"], serde_json::json!([{"alg": "SHA-256", "content": locked_sha256}]));
        assert_eq!(component["type"], "library");
    }
    let cpython = component(&sbom, "cpython");
    assert_eq!(cpython["version"], "3.11.14");
    assert_eq!(cpython["hashes"][0]["content"], fixture.cpython.sha256.as_str());
    assert_eq!(cpython["externalReferences"][0]["type"], "distribution");
}

#[test]
fn two_runs_give_identical_bytes() {
    let fixture = Fixture::new();
    let first = sbom_json(&fixture.input()).unwrap();
    let second = sbom_json(&Fixture::new().input()).unwrap();
    assert_eq!(first, second);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sbom_file_name(Arch::Arm64));
    write_sbom(&fixture.input(), &path).unwrap();
    assert_eq!(fs_err::read_to_string(&path).unwrap(), first);
    assert_eq!(path.file_name().unwrap(), "python-litellm-arm64.cdx.json");

    // The serial number is a UUID v5 of the inputs: another input, another serial.
    let sbom: Value = serde_json::from_str(&first).unwrap();
    let serial = sbom["serialNumber"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(serial.strip_prefix("urn:uuid:").unwrap()).unwrap();
    assert_eq!(uuid.get_version_num(), 5);
    let mut other = Fixture::new();
    other.cpython.sha256 = "cd".repeat(32);
    assert_ne!(other.json()["serialNumber"], sbom["serialNumber"]);
}

#[test]
fn timestamp_comes_from_source_date_epoch_or_the_lock() {
    let fixture = Fixture::new();
    let input = fixture.input();
    let fixed = SbomInput { source_date_epoch: SourceDateEpoch::at(1_700_000_000), ..input };
    assert_eq!(timestamp(&fixed).unwrap(), "2023-11-14T22:13:20Z");
    // Before 1980 (a zip cannot say) the SBOM says 1980, as the layer zip does.
    let zero = SbomInput { source_date_epoch: "0".parse().unwrap(), ..input };
    assert_eq!(timestamp(&zero).unwrap(), "1980-01-01T00:00:00Z");
    // Newest shipped wheel: openai's 2025-11-20T10:30:00+02:00.
    assert_eq!(timestamp(&input).unwrap(), "2025-11-20T08:30:00Z");
    assert_eq!(fixture.json()["metadata"]["timestamp"], "2025-11-20T08:30:00Z");
    let no_upload_times = Fixture { dists: fixture.dists[2..3].to_vec(), ..Fixture::new() };
    assert_eq!(timestamp(&no_upload_times.input()).unwrap(), "1980-01-01T00:00:00Z");
}

#[test]
fn credentials_never_appear() {
    let text = sbom_json(&Fixture::new().input()).unwrap();
    for secret in ["s3cret-token", "deploy-user", "mirror-pass", "mirror-user"] {
        assert!(!text.contains(secret), "{secret} leaked into the SBOM");
    }
    let sbom: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        component(&sbom, "openai")["externalReferences"][0]["url"],
        "https://***@pypi.example/openai-1.54.0-py3-none-any.whl"
    );
    assert_eq!(properties(&sbom, "index-url"), ["https://***@pypi.example/simple"]);
}

#[test]
fn dependency_graph_is_the_lock_restricted_to_what_ships() {
    let sbom = Fixture::new().json();
    let refs: BTreeSet<&str> =
        sbom["components"].as_array().unwrap().iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
    let layer_ref = sbom["metadata"]["component"]["bom-ref"].as_str().unwrap();
    assert_eq!(layer_ref, "python-litellm-arm64");
    let graph: BTreeMap<&str, Vec<&str>> = sbom["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let on =
                d["dependsOn"].as_array().map(|a| a.iter().map(|r| r.as_str().unwrap()).collect()).unwrap_or_default();
            (d["ref"].as_str().unwrap(), on)
        })
        .collect();
    for (from, to) in &graph {
        assert!(refs.contains(from) || *from == layer_ref, "dangling ref {from}");
        for target in to {
            assert!(refs.contains(target), "dangling dependsOn {target} of {from}");
        }
    }
    // boto3 (excluded), ghost (not in the lock) and tokenizers (dropped) are left out.
    assert_eq!(graph["pkg:pypi/litellm@1.78.7"], ["pkg:pypi/openai@1.54.0", "pkg:pypi/tiktoken@0.8.0"]);
    assert_eq!(graph["pkg:pypi/openai@1.54.0"], ["pkg:pypi/httpx@0.27.0", "pkg:pypi/typing-extensions@4.12.2"]);
    assert_eq!(graph["python-litellm-arm64"], ["cpython@3.11.14", "pkg:pypi/litellm@1.78.7"]);
    assert!(graph["pkg:pypi/regex@2024.9.11"].is_empty());
    let keys: Vec<&&str> = graph.keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // boto3 and s3transfer are locked (so pip and uv can install the lock) but excluded: they are
    // neither components nor "locked-not-shipped".
    assert_eq!(properties(&sbom, "excluded-package"), ["boto3", "s3transfer"]);
    assert_eq!(properties(&sbom, "dropped-package"), ["tokenizers"]);
    // setuptools was locked and installed but pruned; cffi is for x86_64 only.
    assert_eq!(properties(&sbom, "locked-not-shipped"), ["setuptools"]);
    assert_eq!(properties(&sbom, "arch"), ["arm64"]);
}

#[test]
fn inconsistent_inputs_are_refused() {
    let mut fixture = Fixture::new();
    fixture.dists[1].wheel_sha256 = "ef".repeat(32);
    let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
    assert_eq!(
        err,
        format!(
            "installed distribution openai 1.54.0 came from a wheel with sha256 {} but the lock says {}; rebuild the layer",
            "ef".repeat(32),
            "2".repeat(64)
        )
    );

    let mut fixture = Fixture::new();
    fixture.dists[0].version = "1.78.8".to_string();
    let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
    assert_eq!(err, "installed distribution litellm 1.78.8 is not in the lock; rebuild the layer from the lock");

    let fixture = Fixture::new();
    fs_err::remove_file(fixture.roots[0].join("httpx-0.27.0.dist-info/METADATA")).unwrap();
    let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
    assert!(err.starts_with("httpx-0.27.0.dist-info/METADATA of httpx 0.27.0 is in none of: "), "{err}");

    let mut fixture = Fixture::new();
    fixture.dropped.push("openai".to_string());
    let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
    assert_eq!(err, "distribution openai is listed as dropped but still ships");

    let mut fixture = Fixture::new();
    fixture.lock.packages.iter_mut().find(|p| p.name == "regex").unwrap().set_excluded(Some("test".into()));
    let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
    assert_eq!(err, "distribution regex is excluded in layer.toml but still ships");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.cdx.json");
    assert!(write_sbom(&fixture.input(), &path).is_err());
    assert!(!path.exists(), "a refused SBOM was written");
}

#[test]
fn licenses_come_from_metadata() {
    let sbom = Fixture::new().json();
    let licenses = |name: &str| component(&sbom, name)["licenses"].clone();
    assert_eq!(licenses("litellm"), serde_json::json!([{"license": {"id": "MIT"}}]));
    assert_eq!(licenses("openai"), serde_json::json!([{"license": {"id": "Apache-2.0"}}]));
    assert_eq!(
        licenses("httpx"),
        serde_json::json!([{"license": {"id": "BSD-3-Clause"}}, {"license": {"name": "BSD License"}}])
    );
    assert_eq!(licenses("typing_extensions"), serde_json::json!([{"license": {"id": "PSF-2.0"}}]));
    assert_eq!(licenses("tiktoken"), serde_json::json!([{"license": {"name": "MIT License"}}]));
    assert_eq!(licenses("regex"), serde_json::json!([{"expression": "Apache-2.0 AND CNRI-Python"}]));
}
