//! Tests of `edit.rs`.

use super::*;

use std::path::PathBuf;

/// A Lambda architecture, for the test tree below.
#[derive(Debug, Clone, Copy)]
enum Arch {
    Arm64,
    X86_64,
}

/// A tree of literal values shaped like a serverless.yml layer wiring, with the values that
/// differ between architectures: the edits switch scalars, lists and whole entries.
fn plan(arch: Arch) -> Vec<(&'static str, Desired)> {
    let arch = match arch {
        Arch::Arm64 => "arm64",
        Arch::X86_64 => "x86_64",
    };
    let text = |value: &str| Desired::Str(value.to_string());
    vec![
        (
            "provider",
            Desired::Map(vec![
                ("architecture", text(arch)),
                (
                    "environment",
                    Desired::Map(vec![
                        ("PYTHONHOME", text("/opt/python")),
                        ("PYTHONPATH", text("/opt/python/lib/python3.11")),
                        ("LITELLM_LOCAL_MODEL_COST_MAP", text("True")),
                    ]),
                ),
            ]),
        ),
        (
            "layers",
            Desired::Map(vec![(
                "pythonLiteLLM",
                Desired::Map(vec![
                    ("path", Desired::Str(format!("../layer-build-{arch}/layer"))),
                    ("compatibleRuntimes", Desired::List(vec!["nodejs22.x".to_string()])),
                    ("compatibleArchitectures", Desired::List(vec![arch.to_string()])),
                ]),
            )]),
        ),
    ]
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/serverless").join(name);
    fs_err::read_to_string(path).expect("fixture exists")
}

fn patch(text: &str, plan: &[(&'static str, Desired)]) -> Result<Edited, String> {
    edit_text(text, plan).map_err(|e| format!("serverless.yml: not patched: {e}"))
}

fn refusal(text: &str, plan: &[(&'static str, Desired)]) -> String {
    patch(text, plan).expect_err("the patch must be refused")
}

/// Patch, and check that patching the result again changes nothing.
fn patch_twice(text: &str, plan: &[(&'static str, Desired)]) -> Edited {
    let outcome = patch(text, plan).unwrap();
    let new_text = outcome.new_text.as_deref().expect("the fixture is out of date");
    let again = patch(new_text, plan).unwrap();
    assert!(again.new_text.is_none(), "second run changed: {:?}", again.changes);
    outcome
}

#[test]
fn realistic_file_is_patched_in_place() {
    let outcome = patch_twice(&fixture("realistic.yml"), &plan(Arch::Arm64));
    insta::assert_snapshot!("realistic_arm64", outcome.new_text.unwrap());
    assert_eq!(
        outcome.changes,
        [
            "provider.architecture: x86_64 -> arm64",
            "provider.environment.PYTHONPATH: /opt/python/lib/python3.9 -> /opt/python/lib/python3.11",
            "provider.environment.PYTHONHOME: added",
            "provider.environment.LITELLM_LOCAL_MODEL_COST_MAP: added",
            "layers.pythonLiteLLM.path: ../python-layer -> ../layer-build-arm64/layer",
            "layers.pythonLiteLLM.compatibleRuntimes: [nodejs18.x, nodejs20.x] -> [nodejs22.x]",
            "layers.pythonLiteLLM.compatibleArchitectures: added",
        ]
    );
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
}

#[test]
fn four_space_file_with_empty_environment_and_no_layers() {
    let outcome = patch_twice(&fixture("four-space.yml"), &plan(Arch::X86_64));
    insta::assert_snapshot!("four_space_x86_64", outcome.new_text.unwrap());
}

#[test]
fn crlf_line_endings_are_kept() {
    let lf = fixture("realistic.yml");
    let crlf = lf.replace('\n', "\r\n");
    let want = patch(&lf, &plan(Arch::Arm64)).unwrap().new_text.unwrap().replace('\n', "\r\n");
    let outcome = patch_twice(&crlf, &plan(Arch::Arm64));
    assert_eq!(outcome.new_text.unwrap(), want);
}

#[test]
fn switching_arch_and_back_restores_the_file() {
    let original = fixture("realistic.yml");
    let arm = patch(&original, &plan(Arch::Arm64)).unwrap().new_text.unwrap();
    let x86 = patch(&arm, &plan(Arch::X86_64)).unwrap();
    assert_eq!(
        x86.changes,
        [
            "provider.architecture: arm64 -> x86_64",
            "layers.pythonLiteLLM.path: ../layer-build-arm64/layer -> ../layer-build-x86_64/layer",
            "layers.pythonLiteLLM.compatibleArchitectures: [arm64] -> [x86_64]",
        ]
    );
    let back = patch(&x86.new_text.unwrap(), &plan(Arch::Arm64)).unwrap().new_text.unwrap();
    assert_eq!(back, arm);
}

#[test]
fn a_boolean_true_becomes_the_string_true() {
    let text = "provider:\n  architecture: arm64\n  environment:\n    PYTHONHOME: /opt/python\n    \
                PYTHONPATH: /opt/python/lib/python3.11\n    LITELLM_LOCAL_MODEL_COST_MAP: True\n";
    let outcome = patch_twice(text, &plan(Arch::Arm64));
    let new_text = outcome.new_text.unwrap();
    assert!(new_text.contains("    LITELLM_LOCAL_MODEL_COST_MAP: \"True\"\n"), "{new_text}");
    assert_eq!(
        outcome.changes[0],
        "provider.environment.LITELLM_LOCAL_MODEL_COST_MAP: true (a bool, not a string) -> True"
    );
}

#[test]
fn a_variable_at_an_edited_key_is_replaced_with_a_warning() {
    let text = "provider:\n  architecture: ${opt:arch, 'x86_64'}\n";
    let outcome = patch_twice(text, &plan(Arch::Arm64));
    assert!(outcome.new_text.unwrap().starts_with("provider:\n  architecture: arm64\n  environment:\n"));
    assert_eq!(
        outcome.warnings,
        ["provider.architecture: the Serverless variable ${opt:arch, 'x86_64'} was replaced by arm64"]
    );
}

#[test]
fn flow_values_are_edited_in_flow_style() {
    let text = "provider: {name: aws, architecture: x86_64, environment: {PYTHONHOME: /usr, \
                PYTHONPATH: /opt/python/lib/python3.11, LITELLM_LOCAL_MODEL_COST_MAP: 'True'}}\n\
                layers:\n  pythonLiteLLM:\n    path: ../layer-build-arm64/layer\n    \
                compatibleRuntimes: [nodejs22.x]\n    compatibleArchitectures: [x86_64, arm64]\n";
    let outcome = patch_twice(text, &plan(Arch::Arm64));
    assert_eq!(
        outcome.new_text.unwrap(),
        "provider: {name: aws, architecture: arm64, environment: {PYTHONHOME: /opt/python, \
         PYTHONPATH: /opt/python/lib/python3.11, LITELLM_LOCAL_MODEL_COST_MAP: 'True'}}\n\
         layers:\n  pythonLiteLLM:\n    path: ../layer-build-arm64/layer\n    \
         compatibleRuntimes: [nodejs22.x]\n    compatibleArchitectures: [arm64]\n"
    );
}

#[test]
fn block_lists_are_rewritten_and_single_values_become_lists() {
    let text = "layers:\n  pythonLiteLLM:\n    compatibleArchitectures:\n      - x86_64 # old\n      - arm64\n    \
                compatibleRuntimes: nodejs20.x\n    path: ../layer-build-arm64/layer # keep me\n";
    let outcome = patch_twice(text, &plan(Arch::Arm64));
    let new_text = outcome.new_text.unwrap();
    assert!(
        new_text.starts_with(
            "layers:\n  pythonLiteLLM:\n    compatibleArchitectures:\n      - arm64\n    \
             compatibleRuntimes: [nodejs22.x]\n    path: ../layer-build-arm64/layer # keep me\n"
        ),
        "{new_text}"
    );
}

#[test]
fn a_missing_final_line_break_is_handled() {
    let text = "service: x\nprovider:\n  name: aws";
    let new_text = patch_twice(text, &plan(Arch::Arm64)).new_text.unwrap();
    assert!(new_text.starts_with("service: x\nprovider:\n  name: aws\n  architecture: arm64\n"), "{new_text}");
}

#[test]
fn an_anchored_mapping_is_edited_once_and_its_aliases_follow() {
    let text =
        "provider:\n  architecture: arm64\n  environment: &env\n    A: b\nfunctions:\n  f:\n    environment: *env\n";
    let new_text = patch_twice(text, &plan(Arch::Arm64)).new_text.unwrap();
    assert!(new_text.contains("    A: b\n    PYTHONHOME: /opt/python\n"), "{new_text}");
    assert!(new_text.ends_with("functions:\n  f:\n    environment: *env\nlayers:\n  pythonLiteLLM:\n    path: ../layer-build-arm64/layer\n    compatibleRuntimes:\n      - nodejs22.x\n    compatibleArchitectures:\n      - arm64\n"), "{new_text}");
}

#[test]
fn non_ascii_text_before_the_edits_is_kept() {
    let text = "# Dienst für Chat ✓\nprovider:\n  description: \"Grüße\"\n  architecture: x86_64\n";
    let new_text = patch_twice(text, &plan(Arch::Arm64)).new_text.unwrap();
    assert!(
        new_text.starts_with("# Dienst für Chat ✓\nprovider:\n  description: \"Grüße\"\n  architecture: arm64\n"),
        "{new_text}"
    );
}

#[test]
fn document_markers_comments_after_keys_and_a_byte_order_mark() {
    let text = "---\nprovider: # settings\n  environment: # filled in by the patch\nlayers:\n...\n";
    let new_text = patch_twice(text, &plan(Arch::Arm64)).new_text.unwrap();
    assert_eq!(
        new_text,
        "---\nprovider: # settings\n  environment: # filled in by the patch\n    PYTHONHOME: /opt/python\n    \
         PYTHONPATH: /opt/python/lib/python3.11\n    LITELLM_LOCAL_MODEL_COST_MAP: \"True\"\n  \
         architecture: arm64\nlayers:\n  pythonLiteLLM:\n    path: ../layer-build-arm64/layer\n    \
         compatibleRuntimes:\n      - nodejs22.x\n    compatibleArchitectures:\n      - arm64\n...\n"
    );
    let with_bom = format!("\u{feff}{text}");
    let outcome = patch_twice(&with_bom, &plan(Arch::Arm64));
    assert_eq!(outcome.new_text.unwrap(), format!("\u{feff}{new_text}"));
}

// Refusals. Each message is part of the test.

#[test]
fn malformed_yaml_is_refused() {
    let msg = refusal("provider:\n  name: aws\n    architecture: arm64\n", &plan(Arch::Arm64));
    assert!(
        msg.starts_with(
            "serverless.yml: not patched: not valid YAML: mapping values are not allowed in this context at line 3"
        ),
        "{msg}"
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let msg = refusal("provider:\n  architecture: arm64\n  name: aws\n  architecture: x86_64\n", &plan(Arch::Arm64));
    assert_eq!(
        msg,
        "serverless.yml: not patched: duplicate key: key provider.architecture appears twice (lines 2 and 4); remove one of them"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..8 {
        let previous = (b'a' + level - 1) as char;
        let name = (b'a' + level) as char;
        text.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    let msg = refusal(&text, &plan(Arch::Arm64));
    assert!(msg.starts_with("serverless.yml: not patched: refusing to expand aliases: the node at line 5 expands to more than 100000 nodes"), "{msg}");
}

#[test]
fn recursive_aliases_are_refused() {
    let msg = refusal("a: &a [x, *a]\n", &plan(Arch::Arm64));
    assert!(msg.contains("alias *a at line 1 refers to a node that contains it"), "{msg}");
}

#[test]
fn flow_mapping_needing_new_keys_is_refused() {
    let msg = refusal("provider:\n  environment: {STAGE: dev}\n", &plan(Arch::Arm64));
    assert_eq!(
        msg,
        "serverless.yml: not patched: provider.environment is a flow mapping ({...}, line 2); the patch must add \
         PYTHONHOME, PYTHONPATH, LITELLM_LOCAL_MODEL_COST_MAP to it. Write it as a block mapping (one key per \
         line) and run again"
    );
}

#[test]
fn unsupported_shapes_are_refused_with_a_reason() {
    let deep = format!("a: {}{}\n", "[".repeat(150), "]".repeat(150));
    let cases = [
        ("provider:\n  architecture: !Sub x86_64\n", "provider.architecture (line 2) has the tag !Sub; remove the tag"),
        (
            "provider:\n  architecture: |\n    x86_64\n",
            "provider.architecture (line 3) is a block (| or >) or multi-line value",
        ),
        (
            "arch: &a x86_64\nprovider:\n  architecture: *a\n",
            "provider.architecture is an alias (*a, line 3) whose value must become arm64",
        ),
        (
            "base: &p\n  name: aws\nprovider: *p\n",
            "provider is an alias (*p); adding architecture, environment would change the anchored mapping",
        ),
        ("provider: aws\n", "provider (line 1) is aws, expected a mapping"),
        ("- a\n- b\n", "the top level of the file is not a mapping"),
        ("a: 1\n---\nb: 2\n", "the file holds 2 YAML documents; expected exactly one"),
        ("# nothing\n", "the file holds 0 YAML documents; expected exactly one"),
        (&deep, "the file nests collections more than 100 levels deep (line 1)"),
    ];
    for (text, want) in cases {
        let msg = refusal(text, &plan(Arch::Arm64));
        assert!(msg.starts_with("serverless.yml: not patched: "), "{msg}");
        assert!(msg.contains(want), "want {want:?} in: {msg}");
    }
}

// patch_file: atomic writes, --check, and the file untouched after a refusal.
