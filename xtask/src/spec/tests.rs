//! Unit tests of `spec`.

use super::*;

/// The smallest valid spec, shared with the integration tests.
const MINIMAL: &str = include_str!("../../test_data/spec/minimal-layer.toml");

fn parse(text: &str) -> Result<LayerSpec> {
    LayerSpec::parse(text, Path::new("litellm-layer/layer.toml"))
}

#[test]
fn minimal_spec_gets_defaults() {
    let spec = parse(MINIMAL).unwrap();
    assert_eq!(spec.python.variant, Variant::InstallOnlyStripped);
    assert_eq!(spec.index.url, DEFAULT_INDEX_URL);
    assert_eq!(spec.prune.safe, SafeRule::ALL);
    assert_eq!(spec.prune.stdlib, StdlibRule::ALL);
    let spec =
        parse(&format!("{MINIMAL}\n[prune]\nstdlib = [\"pydoc_data\", \"__phello__\", \"static-libs\"]\n")).unwrap();
    assert_eq!(spec.prune.stdlib, [StdlibRule::PydocData, StdlibRule::Phello, StdlibRule::StaticLibs]);
    assert_eq!(spec.budget.zipped_mb, 50.0);
    assert_eq!(spec.pack.bytecode, BytecodeChoice::Profile);
    assert_eq!(spec.pack.sourceless, Sourceless::Off);
}

#[test]
fn pack_keys() {
    let spec = parse(&format!("{MINIMAL}\n[pack]\nbytecode = \"all\"\nsourceless = \"profile\"\n")).unwrap();
    assert_eq!((spec.pack.bytecode, spec.pack.sourceless), (BytecodeChoice::All, Sourceless::Profile));
    let spec = parse(&format!("{MINIMAL}\n[pack]\nsourceless = false\n")).unwrap();
    assert_eq!((spec.pack.sourceless, spec.pack.compression), (Sourceless::Off, Compression::Deflate));
    let spec = parse(&format!("{MINIMAL}\n[pack]\ncompression = \"zopfli\"\n")).unwrap();
    assert_eq!(spec.pack.compression, Compression::Zopfli);
    for (value, want) in [
        (
            "sourceless = true",
            "sourceless = true is not supported: use \"profile\" (only the modules of the import profile ship without source) or false",
        ),
        ("sourceless = \"all\"", "sourceless = \"all\": expected false or \"profile\""),
        ("bytecode = \"some\"", "unknown variant `some`, expected `profile` or `all`"),
        ("compression = \"zstd\"", "unknown variant `zstd`, expected `deflate` or `zopfli`"),
    ] {
        let msg = format!("{:#}", parse(&format!("{MINIMAL}\n[pack]\n{value}\n")).unwrap_err());
        assert!(msg.contains(want), "want {want:?} in: {msg}");
        assert!(msg.contains("litellm-layer/layer.toml"), "{msg}");
    }
}

#[test]
fn the_committed_spec_is_valid() {
    let path = crate::project_root().join("litellm-layer/layer.toml");
    let spec = LayerSpec::load(&path).unwrap();
    assert!(spec.packages.requirements.iter().any(|r| r.starts_with("litellm==")));
}

#[test]
fn unknown_key_names_the_key_and_file() {
    let err = parse(&format!("{MINIMAL}\n[budget]\nzipped-mib = 3\n")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("litellm-layer/layer.toml"), "{msg}");
    assert!(msg.contains("unknown field `zipped-mib`"), "{msg}");
}

#[test]
fn unknown_top_level_table_is_refused() {
    let msg = format!("{:#}", parse(&format!("{MINIMAL}\n[pythn]\nversion = 1\n")).unwrap_err());
    assert!(msg.contains("unknown field `pythn`"), "{msg}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (MINIMAL.replace("\"3.11\"", "\"3.9\""), "python.version"),
        (MINIMAL.replace("20260127", "19990101"), "python.release"),
        (MINIMAL.replace("litellm==1.78.7", "litellm==="), "packages.requirements"),
        (format!("{MINIMAL}\n[budget]\nzipped-mb = -1\n"), "budget.zipped-mb"),
        (
            format!("{MINIMAL}\n[prune]\nsafe = [\"everything\"]\n"),
            "unknown variant `everything`, expected one of `tests`, `docs`, `examples`, `type-stubs`, `c-sources`, `build-tools`, `console-scripts`, `record`",
        ),
        (
            format!("{MINIMAL}\n[prune]\nstdlib = [\"test\", \"tests\"]\n"),
            "unknown variant `tests`, expected one of `test`, `idlelib`, `tkinter`, `turtledemo`, `ensurepip`, \
             `lib2to3`, `pydoc_data`, `distutils`, `config`, `__phello__`, `static-libs`, `headers`, `test-extensions`",
        ),
        (format!("{MINIMAL}\n[index]\nurl = \"ftp://x\"\n"), "index.url"),
        (
            format!("{MINIMAL}\n[budget]\nzipped-mb = 60\nupload = \"direct\"\n"),
            "at most 50 MB zipped by direct upload",
        ),
        (format!("{MINIMAL}\n[budget]\nupload = \"ftp\"\n"), "unknown variant `ftp`"),
        (format!("{MINIMAL}\n[providers]\nenabled = []\n"), "providers.enabled is empty"),
        (MINIMAL.replace("release = \"20260127\"", "release = \"20260127\"\nvariant = \"debug\""), "variant"),
    ];
    for (text, want) in cases {
        let msg = format!("{:#}", parse(&text).unwrap_err());
        assert!(msg.contains(want), "want {want:?} in: {msg}");
        assert!(msg.contains("litellm-layer/layer.toml"), "{msg}");
    }
}

#[test]
fn providers_default_to_openai_and_add_their_requirements() {
    let spec = parse(MINIMAL).unwrap();
    assert_eq!(spec.providers.enabled, ["openai"]);
    assert_eq!(spec.all_requirements().unwrap(), ["litellm==1.78.7"]);
    assert_eq!(spec.prune.keep_botocore_services, Some(Vec::new()));
    assert!(spec.allowed_secret_files().unwrap().is_empty());
    let spec = parse(&format!("{MINIMAL}\n[providers]\nenabled = [\"openai\", \"bedrock\", \"anthropic\"]\n")).unwrap();
    assert_eq!(spec.all_requirements().unwrap(), ["litellm==1.78.7", "boto3"]);
    // botocore ships its CA bundle; enabling Bedrock lets it through the secret-file check.
    assert_eq!(spec.allowed_secret_files().unwrap(), ["botocore/cacert.pem"]);
    assert_eq!(
        spec.verify_imports().unwrap(),
        [
            "litellm.llms.anthropic.chat.handler",
            "boto3",
            "botocore",
            "litellm.llms.bedrock.chat.converse_handler",
            "openai"
        ]
    );
    assert_eq!(
        spec.prune.keep_botocore_services.as_deref().unwrap(),
        ["bedrock", "bedrock-runtime", "sso", "sso-oidc", "sts"]
    );
}

#[test]
fn an_unknown_provider_is_an_error_naming_the_file_and_the_known_ones() {
    let msg =
        format!("{:#}", parse(&format!("{MINIMAL}\n[providers]\nenabled = [\"openai\", \"gemini\"]\n")).unwrap_err());
    assert_eq!(
        msg,
        "litellm-layer/layer.toml: invalid layer spec: providers.enabled: unknown provider \"gemini\"; known \
             providers: anthropic, azure, bedrock, openai (add one to xtask/data/providers.toml)"
    );
}

#[test]
fn paths_in_the_spec_must_stay_inside_their_directory() {
    for (table, key, value, message) in [
        (
            "packages",
            "allow-secret-files",
            "\"../.aws/credentials\"",
            "packages.allow-secret-files: \"../.aws/credentials\" is not a path inside site-packages ('..' \
             component); write it as `certifi/cacert.pem`",
        ),
        (
            "packages",
            "allow-secret-files",
            "\"/etc/ssl/cert.pem\"",
            "packages.allow-secret-files: \"/etc/ssl/cert.pem\" is not a path inside site-packages (absolute \
             path); write it as `certifi/cacert.pem`",
        ),
        (
            "prune",
            "litellm-proxy-paths",
            "\"swagger\\\\..\"",
            "prune.litellm-proxy-paths: \"swagger\\\\..\" is not a path inside litellm/proxy (backslash); write it \
             as `swagger`",
        ),
        (
            "prune",
            "litellm-proxy-paths",
            "\"\"",
            "prune.litellm-proxy-paths: \"\" is not a path inside litellm/proxy (empty path); write it as `swagger`",
        ),
    ] {
        let text = if table == "packages" {
            MINIMAL.replace("[packages]\n", &format!("[packages]\n{key} = [{value}]\n"))
        } else {
            format!("{MINIMAL}\n[{table}]\n{key} = [{value}]\n")
        };
        let msg = format!("{:#}", parse(&text).unwrap_err());
        assert_eq!(msg, format!("litellm-layer/layer.toml: invalid layer spec: {message}"), "{table}.{key} = {value}");
    }
}

#[test]
fn the_retired_layer_path_key_names_its_replacement() {
    let text = format!("{MINIMAL}\n[serverless]\nlayer-path = \"../layer-build-{{arch}}/layer\"\n");
    assert_eq!(
        format!("{:#}", parse(&text).unwrap_err()),
        "litellm-layer/layer.toml: invalid layer spec: serverless.layer-path is no longer used: the layer deploys \
         as the built zip, and serverless.yml reads its path from layer-build-<arch>/serverless-layer.json, which \
         `cargo xtask layer` writes; remove the key (run `cargo xtask patch` once if serverless.yml still names a \
         layer path)"
    );
    let spec = parse(&format!("{MINIMAL}\n[serverless]\nfile = \"service/serverless.yml\"\n")).unwrap();
    assert_eq!(spec.serverless.file, Path::new("service/serverless.yml"));
}
