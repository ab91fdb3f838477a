//! Tests of `yaml.rs`.

use super::*;

#[test]
fn plain_scalars_resolve_like_the_core_schema() {
    for (text, kind) in [
        ("", ScalarKind::Null),
        ("~", ScalarKind::Null),
        ("True", ScalarKind::Bool),
        ("false", ScalarKind::Bool),
        ("12", ScalarKind::Int),
        ("-3", ScalarKind::Int),
        ("0x1F", ScalarKind::Int),
        ("1.5e3", ScalarKind::Float),
        (".5", ScalarKind::Float),
        ("-.inf", ScalarKind::Float),
        ("3.11", ScalarKind::Float),
        ("arm64", ScalarKind::Str),
        ("x86_64", ScalarKind::Str),
        ("1.2.3", ScalarKind::Str),
        ("../layer", ScalarKind::Str),
        ("yes", ScalarKind::Str),
    ] {
        assert_eq!(resolve_plain(text), kind, "{text:?}");
    }
}

#[test]
fn flow_and_block_collections_are_told_apart() {
    let text = "x:\n- [b]\n- c\ny: {a: [1]}\nz:\n  - d\n";
    let document = Document::parse(text).unwrap();
    let kinds: Vec<(usize, bool)> = document
        .nodes
        .iter()
        .filter_map(|node| match &node.kind {
            NodeKind::Sequence { flow, .. } | NodeKind::Mapping { flow, .. } => Some((node.start, *flow)),
            _ => None,
        })
        .collect();
    // The root mapping's event points at its first ':'; sequences start at their dash.
    assert_eq!(kinds, [(1, false), (3, false), (5, true), (16, true), (20, true), (30, false)]);
    let (_, x) = document.lookup(document.root, "x").unwrap();
    assert_eq!(document.node(x).col, 0);
}

#[test]
fn scalar_spans_cover_quotes_and_escapes() {
    let text = "a: 'it''s' # c\nb: \"q\\\"x\" \nc: plain value # c\nd: |\n  block\ne: é\n";
    let document = Document::parse(text).unwrap();
    let span = |key: &str| {
        let (_, value) = document.lookup(document.root, key).unwrap();
        document.scalar_span(value).map(|range| &text[range])
    };
    assert_eq!(span("a"), Some("'it''s'"));
    assert_eq!(span("b"), Some("\"q\\\"x\""));
    assert_eq!(span("c"), Some("plain value"));
    assert_eq!(span("d"), None);
    assert_eq!(span("e"), Some("é"));
}

#[test]
fn positions_are_bytes_even_after_multibyte_text() {
    let text = "# ünïcødé ✓ comment\nkey: 'välue'\nnext: x\n";
    let document = Document::parse(text).unwrap();
    let (key, value) = document.lookup(document.root, "next").unwrap();
    assert_eq!(&text[document.node(key).start..document.node(value).start], "next: ");
    assert_eq!(document.data(document.lookup(document.root, "key").unwrap().1), Data::str("välue"));
}
