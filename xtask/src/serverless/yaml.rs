//! A YAML document with byte positions: the node tree the editor (`edit.rs`) changes, built from
//! yaml-rust2's marked events, plus the checks that make a file safe to edit (one document, no
//! duplicate keys, no recursive or exploding aliases) and the resolved data used to verify a patch.
//!
//! YAML 1.2 spec: <https://yaml.org/spec/1.2.2/>.

use std::collections::HashMap;
use std::ops::Range;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Why a document cannot be edited. The text is never changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EditError {
    #[error("not valid YAML: {0}; fix the file and run again")]
    Malformed(String),
    #[error("duplicate key: {0}")]
    DuplicateKey(String),
    #[error("refusing to expand aliases: {0}")]
    AliasBomb(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "the patched text would not load as intended ({0}); the file was left unchanged. Edit it by hand or report \
         this as a bug"
    )]
    Verify(String),
}

/// The most nodes a document may expand to once every alias is replaced by what it names. A real
/// serverless.yml has a few hundred; "billion laughs" documents have billions.
pub(crate) const MAX_EXPANDED_NODES: u64 = 100_000;

/// The deepest nesting of collections accepted (the checks below recurse that deep).
pub(crate) const MAX_DEPTH: usize = 100;

/// Index of a node in [`Document::nodes`].
pub(crate) type NodeId = usize;

/// One parsed node with its position in the source text.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    /// Byte offset where the node's content starts (after any anchor or tag). For a block
    /// mapping this is the first key; for an empty scalar it is wherever the next token starts.
    pub(crate) start: usize,
    /// 0-based column (in characters) of `start`.
    pub(crate) col: usize,
    /// 1-based line of `start`.
    pub(crate) line: usize,
    /// Byte offset just after a flow collection's closing bracket; for block collections and
    /// scalars, where the event after the node starts (after trailing blank lines and comments).
    pub(crate) end: usize,
    /// The anchor id (`&name`), 0 when there is none.
    pub(crate) anchor: usize,
    /// The tag (`!Ref`), if any.
    pub(crate) tag: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Scalar { value: String, style: TScalarStyle },
    Sequence { items: Vec<NodeId>, flow: bool },
    Mapping { entries: Vec<(NodeId, NodeId)>, flow: bool },
    Alias { anchor: usize },
}

/// Resolved data: what a YAML loader hands to the program, with aliases expanded. Two texts that
/// load to equal `Data` mean the same thing to Serverless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    Scalar {
        kind: ScalarKind,
        text: String,
        tag: Option<String>,
    },
    Sequence(Vec<Data>),
    /// Entries in file order (order is part of what the patch must keep).
    Mapping(Vec<(Data, Data)>),
}

/// What a scalar resolves to under the YAML 1.2 core schema
/// (<https://yaml.org/spec/1.2.2/#1032-tag-resolution>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl Data {
    /// An untagged string.
    pub(crate) fn str(text: &str) -> Data {
        Data::Scalar { kind: ScalarKind::Str, text: text.to_string(), tag: None }
    }

    /// The string, if this is an untagged (or `!!str`) string scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Data::Scalar { kind: ScalarKind::Str, text, tag: None } => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Data> {
        match self {
            Data::Mapping(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A parsed single-document YAML text.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    pub(crate) text: &'a str,
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
    /// Anchor id → the node it names.
    pub(crate) anchors: HashMap<usize, NodeId>,
}

/// Collects events with their byte positions.
struct Collector<'a> {
    events: Vec<(Event, usize, Marker)>,
    char_to_byte: &'a [usize],
}

impl MarkedEventReceiver for Collector<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let byte = self.char_to_byte.get(mark.index()).copied().unwrap_or(*self.char_to_byte.last().unwrap_or(&0));
        self.events.push((event, byte, mark));
    }
}

fn malformed(error: &ScanError) -> EditError {
    EditError::Malformed(format!(
        "{} at line {} column {}",
        error.info(),
        error.marker().line(),
        error.marker().col() + 1
    ))
}

fn tag_name(tag: &Option<Tag>) -> Option<String> {
    match tag {
        None => None,
        // `!!str x` is the same string as `x`.
        Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => None,
        Some(t) if t.handle == "tag:yaml.org,2002:" => Some(format!("!!{}", t.suffix)),
        Some(t) => Some(format!("{}{}", t.handle, t.suffix)),
    }
}

impl<'a> Document<'a> {
    /// Parse `text`; refuse anything that is not exactly one well-formed document without
    /// duplicate keys and without alias bombs.
    pub(crate) fn parse(text: &'a str) -> Result<Document<'a>, EditError> {
        let mut char_to_byte: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        char_to_byte.push(text.len());
        let mut collector = Collector { events: Vec::new(), char_to_byte: &char_to_byte };
        Parser::new_from_str(text).load(&mut collector, true).map_err(|e| malformed(&e))?;
        let events = collector.events;

        let documents = events.iter().filter(|(e, _, _)| matches!(e, Event::DocumentStart)).count();
        if documents != 1 {
            return Err(EditError::Unsupported(format!(
                "the file holds {documents} YAML documents; expected exactly one"
            )));
        }

        let mut document = Document { text, nodes: Vec::new(), root: 0, anchors: HashMap::new() };
        // Each open collection: its node id and its pending children.
        // Each open collection also keeps where its event pointed, in case it turns out to be a flow one.
        let mut stack: Vec<(NodeId, Vec<NodeId>, usize, usize)> = Vec::new();
        // Expanded size of each finished node, to catch alias bombs before expanding anything.
        let mut sizes: Vec<u64> = Vec::new();
        let mut root = None;
        for (index, (event, byte, mark)) in events.iter().enumerate() {
            let next_byte = events.get(index + 1).map(|(_, b, _)| *b).unwrap_or(text.len());
            let finished = match event {
                Event::Scalar(value, style, anchor, tag) => {
                    let id = document.push(Node {
                        kind: NodeKind::Scalar { value: value.clone(), style: *style },
                        start: *byte,
                        col: mark.col(),
                        line: mark.line(),
                        end: next_byte,
                        anchor: *anchor,
                        tag: tag_name(tag),
                    });
                    sizes.push(1);
                    Some(id)
                }
                Event::Alias(anchor) => {
                    let Some(&target) = document.anchors.get(anchor) else {
                        return Err(EditError::Malformed(format!("unknown alias at line {}", mark.line())));
                    };
                    if sizes[target] == u64::MAX {
                        return Err(EditError::AliasBomb(format!(
                            "alias {} at line {} refers to a node that contains it (a recursive alias)",
                            alias_text(text, *byte),
                            mark.line()
                        )));
                    }
                    let id = document.push(Node {
                        kind: NodeKind::Alias { anchor: *anchor },
                        start: *byte,
                        col: mark.col(),
                        line: mark.line(),
                        end: next_byte,
                        anchor: 0,
                        tag: None,
                    });
                    sizes.push(sizes[target]);
                    Some(id)
                }
                Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                    // Whether the collection is a flow one is known at its end (a closing bracket).
                    let is_sequence = matches!(event, Event::SequenceStart(..));
                    let kind = if is_sequence {
                        NodeKind::Sequence { items: Vec::new(), flow: false }
                    } else {
                        NodeKind::Mapping { entries: Vec::new(), flow: false }
                    };
                    // A block sequence's event points at its first dash, or, for a sequence not
                    // indented under its key (`key:\n- item`), at the first item: move back to the dash.
                    let (start, col) = match (is_sequence, dash_before(text, *byte)) {
                        (true, Some(dash)) => (dash, mark.col() - (byte - dash)),
                        _ => (*byte, mark.col()),
                    };
                    let id = document.push(Node {
                        kind,
                        start,
                        col,
                        line: mark.line(),
                        end: text.len(),
                        anchor: *anchor,
                        tag: tag_name(tag),
                    });
                    // Keep `sizes` indexed by node id; the real size is set when the node ends.
                    sizes.push(u64::MAX);
                    if *anchor != 0 {
                        document.anchors.insert(*anchor, id);
                    }
                    stack.push((id, Vec::new(), *byte, mark.col()));
                    if stack.len() > MAX_DEPTH {
                        return Err(EditError::Unsupported(format!(
                            "the file nests collections more than {MAX_DEPTH} levels deep (line {})",
                            mark.line()
                        )));
                    }
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some((id, children, event_byte, event_col)) = stack.pop() else {
                        return Err(EditError::Malformed("unbalanced collection".to_string()));
                    };
                    let size = children.iter().fold(1u64, |total, child| total.saturating_add(sizes[*child]));
                    sizes[id] = size;
                    let node = &mut document.nodes[id];
                    let closing = if matches!(event, Event::SequenceEnd) { b']' } else { b'}' };
                    // A block collection ends where the next token starts, never at a bracket.
                    let is_flow = text.as_bytes().get(*byte) == Some(&closing);
                    node.end = if is_flow { byte + 1 } else { *byte };
                    if is_flow {
                        node.start = event_byte;
                        node.col = event_col;
                    }
                    match &mut node.kind {
                        NodeKind::Sequence { items, flow } => {
                            *items = children;
                            *flow = is_flow;
                        }
                        NodeKind::Mapping { entries, flow } => {
                            *flow = is_flow;
                            if children.len() % 2 != 0 {
                                return Err(EditError::Malformed(format!(
                                    "mapping at line {} has a key without a value",
                                    node.line
                                )));
                            }
                            *entries = children.chunks(2).map(|pair| (pair[0], pair[1])).collect();
                        }
                        _ => unreachable!("only collections are pushed on the stack"),
                    }
                    Some(id)
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {
                    None
                }
            };
            if let Some(id) = finished {
                if let NodeKind::Scalar { .. } | NodeKind::Alias { .. } = document.nodes[id].kind {
                    let anchor = document.nodes[id].anchor;
                    if anchor != 0 {
                        document.anchors.insert(anchor, id);
                    }
                }
                if sizes[id] > MAX_EXPANDED_NODES {
                    return Err(EditError::AliasBomb(format!(
                        "the node at line {} expands to more than {MAX_EXPANDED_NODES} nodes through aliases \
                         (an alias bomb?)",
                        document.nodes[id].line
                    )));
                }
                match stack.last_mut() {
                    Some((_, children, _, _)) => children.push(id),
                    None => root = Some(id),
                }
            }
        }
        document.root = root.ok_or_else(|| EditError::Unsupported("the file is empty".to_string()))?;
        document.check_duplicate_keys(document.root, &mut Vec::new())?;
        Ok(document)
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Follow aliases to the node they name.
    pub(crate) fn resolve(&self, mut id: NodeId) -> NodeId {
        while let NodeKind::Alias { anchor } = self.nodes[id].kind {
            id = self.anchors[&anchor];
        }
        id
    }

    /// The entries of a mapping node (after following aliases), or `None` for other kinds.
    pub(crate) fn entries(&self, id: NodeId) -> Option<&[(NodeId, NodeId)]> {
        match &self.nodes[self.resolve(id)].kind {
            NodeKind::Mapping { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The value node of `key` in mapping `id`.
    pub(crate) fn lookup(&self, id: NodeId, key: &str) -> Option<(NodeId, NodeId)> {
        self.entries(id)?.iter().copied().find(|(k, _)| self.data(*k).as_str() == Some(key))
    }

    /// The resolved data of a node.
    pub(crate) fn data(&self, id: NodeId) -> Data {
        self.data_with(id, &HashMap::new(), &HashMap::new())
    }

    /// The resolved data of a node, with `replace`d nodes swapped for the given data and entries
    /// `append`ed to mappings: what the document should load to after a patch.
    pub(crate) fn data_with(
        &self,
        id: NodeId,
        replace: &HashMap<NodeId, Data>,
        append: &HashMap<NodeId, Vec<(Data, Data)>>,
    ) -> Data {
        if let Some(data) = replace.get(&id) {
            return data.clone();
        }
        let node = &self.nodes[id];
        match &node.kind {
            NodeKind::Scalar { value, style } => {
                let kind = match (style, &node.tag) {
                    (TScalarStyle::Plain, None) => resolve_plain(value),
                    _ => ScalarKind::Str,
                };
                Data::Scalar { kind, text: value.clone(), tag: node.tag.clone() }
            }
            NodeKind::Alias { anchor } => self.data_with(self.anchors[anchor], replace, append),
            NodeKind::Sequence { items, .. } => {
                Data::Sequence(items.iter().map(|item| self.data_with(*item, replace, append)).collect())
            }
            NodeKind::Mapping { entries, .. } => {
                let mut out: Vec<(Data, Data)> = entries
                    .iter()
                    .map(|(k, v)| (self.data_with(*k, replace, append), self.data_with(*v, replace, append)))
                    .collect();
                if let Some(extra) = append.get(&id) {
                    out.extend(extra.iter().cloned());
                }
                Data::Mapping(out)
            }
        }
    }

    /// Refuse a mapping with the same key twice: YAML forbids it, and loaders disagree on which
    /// value wins.
    fn check_duplicate_keys(&self, id: NodeId, path: &mut Vec<String>) -> Result<(), EditError> {
        match &self.nodes[id].kind {
            NodeKind::Mapping { entries, .. } => {
                let mut seen: Vec<(Data, usize)> = Vec::new();
                for (key, value) in entries {
                    let key_data = self.data(*key);
                    let key_line = self.nodes[*key].line;
                    let label = key_label(&key_data);
                    if let Some((_, first_line)) = seen.iter().find(|(k, _)| *k == key_data) {
                        let mut full = path.clone();
                        full.push(label);
                        return Err(EditError::DuplicateKey(format!(
                            "key {} appears twice (lines {first_line} and {key_line}); remove one of them",
                            full.join(".")
                        )));
                    }
                    seen.push((key_data, key_line));
                    path.push(label);
                    self.check_duplicate_keys(*value, path)?;
                    path.pop();
                }
                Ok(())
            }
            NodeKind::Sequence { items, .. } => {
                for (index, item) in items.iter().enumerate() {
                    path.push(index.to_string());
                    self.check_duplicate_keys(*item, path)?;
                    path.pop();
                }
                Ok(())
            }
            NodeKind::Scalar { .. } | NodeKind::Alias { .. } => Ok(()),
        }
    }

    /// The byte range of a scalar's text as written (quotes included, anchor and tag excluded).
    /// Only single-line plain scalars and quoted scalars have one; block scalars (`|`, `>`) and
    /// plain scalars folded over several lines are refused by the caller.
    pub(crate) fn scalar_span(&self, id: NodeId) -> Option<Range<usize>> {
        let node = &self.nodes[id];
        let NodeKind::Scalar { value, style } = &node.kind else { return None };
        let rest = &self.text[node.start..];
        let length = match style {
            TScalarStyle::Plain => {
                if value.is_empty() || !rest.starts_with(value.as_str()) {
                    return None;
                }
                value.len()
            }
            TScalarStyle::SingleQuoted => quoted_length(rest, b'\'')?,
            TScalarStyle::DoubleQuoted => quoted_length(rest, b'"')?,
            TScalarStyle::Literal | TScalarStyle::Folded => return None,
        };
        Some(node.start..node.start + length)
    }
}

/// The offset of the dash that opens a block sequence whose event points at `at`: `at` itself
/// when it is a dash followed by a space or line break, else a dash before `at` on the same line
/// with only spaces between.
fn dash_before(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let is_dash =
        |i: usize| bytes.get(i) == Some(&b'-') && matches!(bytes.get(i + 1), None | Some(b' ' | b'\n' | b'\r'));
    if is_dash(at) {
        return Some(at);
    }
    let line = &text[..at];
    let before_item = line.trim_end_matches(' ');
    let dash = before_item.len().checked_sub(1)?;
    (before_item.len() < at && is_dash(dash)).then_some(dash)
}

/// Length of a quoted scalar starting at `rest[0] == quote`, closing quote included.
fn quoted_length(rest: &str, quote: u8) -> Option<usize> {
    let bytes = rest.as_bytes();
    if bytes.first() != Some(&quote) {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A key for messages: its text when it is a scalar.
pub(crate) fn key_label(key: &Data) -> String {
    match key {
        Data::Scalar { text, .. } => text.clone(),
        _ => "<complex key>".to_string(),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub(crate) fn resolve_plain(value: &str) -> ScalarKind {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => return ScalarKind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN"
        | ".NAN" => return ScalarKind::Float,
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = value.strip_prefix("0x")
        && digits(hex, 16)
    {
        return ScalarKind::Int;
    }
    if let Some(oct) = value.strip_prefix("0o")
        && digits(oct, 8)
    {
        return ScalarKind::Int;
    }
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits(unsigned, 10) {
        return ScalarKind::Int;
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (whole.is_empty() && digits(fraction, 10))
                || (digits(whole, 10) && (fraction.is_empty() || digits(fraction, 10)))
        }
        None => digits(mantissa, 10),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    if mantissa_ok && exponent_ok {
        return ScalarKind::Float;
    }
    ScalarKind::Str
}

/// The alias as written at `start` (`*name`), for messages.
pub(crate) fn alias_text(text: &str, start: usize) -> &str {
    let rest = &text[start..];
    let end = rest
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
        .map_or(rest.len(), |(i, _)| i);
    &rest[..end]
}

#[cfg(test)]
mod tests;
