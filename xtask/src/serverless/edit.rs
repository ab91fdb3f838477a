//! A general YAML editor: make a document hold given values at given keys by precise text edits
//! (replace one scalar, insert lines at the end of a block mapping) located with the
//! position-reporting parser in `yaml.rs`, keeping everything else byte for byte. Nothing is
//! re-serialised; the new text is parsed again and must load to exactly the old data with the
//! intended values set, else the edit is refused. Serverless policy lives in `serverless.rs`.

use std::collections::HashMap;

use yaml_rust2::scanner::TScalarStyle;

use super::yaml::{self, Data, Document, EditError, NodeId, NodeKind, ScalarKind};

/// The result of an edit: the new text, or `None` when the document already holds the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edited {
    pub(crate) new_text: Option<String>,
    /// One line per change, e.g. `provider.architecture: x86_64 -> arm64`.
    pub(crate) changes: Vec<String>,
    /// Things the user should know (a replaced Serverless variable).
    pub(crate) warnings: Vec<String>,
}

/// Make the top-level mapping of `text` hold `desired` (a tree of keys, in the order they are
/// inserted when missing). Pure: reads nothing, writes nothing.
pub(crate) fn edit_text(text: &str, desired: &[(&'static str, Desired)]) -> Result<Edited, EditError> {
    // A UTF-8 byte order mark is kept but not shown to the parser (yaml-rust2 reads it as content).
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        let mut edited = edit_text(rest, desired)?;
        edited.new_text = edited.new_text.map(|new_text| format!("\u{feff}{new_text}"));
        return Ok(edited);
    }
    let document = Document::parse(text)?;
    let root = document.root;
    if !matches!(document.data(root), Data::Mapping(_)) {
        return Err(EditError::Unsupported(
            "the top level of the file is not a mapping (expected keys such as service, provider, layers)".to_string(),
        ));
    }
    let mut patcher = Patcher::new(&document);
    patcher.apply_mapping(root, desired, &mut Vec::new(), 0)?;
    if patcher.edits.is_empty() {
        return Ok(Edited { new_text: None, changes: Vec::new(), warnings: patcher.warnings });
    }
    let new_text = patcher.apply_edits()?;
    let expected = document.data_with(root, &patcher.replace, &patcher.append);
    let reparsed = Document::parse(&new_text).map_err(|e| EditError::Verify(e.to_string()))?;
    let actual = reparsed.data(reparsed.root);
    if actual != expected {
        return Err(EditError::Verify(format!("first difference at {}", first_difference(&expected, &actual))));
    }
    Ok(Edited { new_text: Some(new_text), changes: patcher.changes, warnings: patcher.warnings })
}

/// A value wanted at a key.
#[derive(Debug, Clone)]
pub(crate) enum Desired {
    Str(String),
    List(Vec<String>),
    Map(Vec<(&'static str, Desired)>),
}

impl Desired {
    fn to_data(&self) -> Data {
        match self {
            Desired::Str(s) => Data::str(s),
            Desired::List(items) => Data::Sequence(items.iter().map(|s| Data::str(s)).collect()),
            Desired::Map(entries) => Data::Mapping(entries.iter().map(|(k, v)| (Data::str(k), v.to_data())).collect()),
        }
    }
}

/// One text edit: replace `range` with `text`. Insertions have an empty range; several at the
/// same offset are ordered deepest first (a nested mapping's new keys before its parent's).
#[derive(Debug)]
struct Edit {
    range: std::ops::Range<usize>,
    text: String,
    depth: usize,
}

struct Patcher<'d, 'a> {
    document: &'d Document<'a>,
    text: &'a str,
    newline: &'static str,
    indent_unit: usize,
    /// Columns between a key and the dashes of its block sequence (0 for `key:\n- item`).
    dash_offset: usize,
    edits: Vec<Edit>,
    replace: HashMap<NodeId, Data>,
    append: HashMap<NodeId, Vec<(Data, Data)>>,
    changes: Vec<String>,
    warnings: Vec<String>,
}

impl<'d, 'a> Patcher<'d, 'a> {
    fn new(document: &'d Document<'a>) -> Self {
        let text = document.text;
        let newline =
            if text.find('\n').is_some_and(|i| i > 0 && text.as_bytes()[i - 1] == b'\r') { "\r\n" } else { "\n" };
        let (indent_unit, dash_offset) = detect_indentation(document);
        Patcher {
            document,
            text,
            newline,
            indent_unit,
            dash_offset,
            edits: Vec::new(),
            replace: HashMap::new(),
            append: HashMap::new(),
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Make mapping `id` hold the desired entries: recurse into existing keys, insert missing ones.
    fn apply_mapping(
        &mut self,
        id: NodeId,
        desired: &[(&'static str, Desired)],
        path: &mut Vec<&'static str>,
        depth: usize,
    ) -> Result<(), EditError> {
        let resolved = self.document.resolve(id);
        let mut missing = Vec::new();
        for (key, value) in desired {
            path.push(key);
            match self.document.lookup(resolved, key) {
                Some((key_id, value_id)) => self.apply_value(key_id, value_id, value, path, depth + 1)?,
                None => missing.push((*key, value)),
            }
            path.pop();
        }
        if missing.is_empty() {
            return Ok(());
        }
        let label = if path.is_empty() { "the top level".to_string() } else { path.join(".") };
        let missing_names = missing.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
        if resolved != id {
            return Err(EditError::Unsupported(format!(
                "{label} is an alias ({}); adding {missing_names} would change the anchored mapping and every other \
                 use of it. Write the mapping out in place, or add the keys to the anchor by hand",
                yaml::alias_text(self.text, self.document.node(id).start)
            )));
        }
        let node = self.document.node(resolved);
        let NodeKind::Mapping { entries, flow } = &node.kind else {
            unreachable!("apply_mapping is called on mappings only")
        };
        if *flow {
            return Err(EditError::Unsupported(format!(
                "{label} is a flow mapping ({{...}}, line {}); the patch must add {missing_names} to it. Write it as \
                 a block mapping (one key per line) and run again",
                node.line
            )));
        }
        let column = self.document.node(entries[0].0).col;
        let (at, prefix) = self.block_end(resolved, column);
        let mut text = prefix.to_string();
        if path.is_empty() && self.top_level_keys_are_spaced(entries) {
            text.push_str(self.newline);
        }
        for (key, value) in &missing {
            text.push_str(&self.render_entry(key, value, column));
            let full = if path.is_empty() { key.to_string() } else { format!("{}.{key}", path.join(".")) };
            self.changes.push(format!("{full}: added"));
        }
        self.edits.push(Edit { range: at..at, text, depth });
        self.append
            .entry(resolved)
            .or_default()
            .extend(missing.iter().map(|(key, value)| (Data::str(key), value.to_data())));
        Ok(())
    }

    /// Make the value node of `key_id` hold `desired`.
    fn apply_value(
        &mut self,
        key_id: NodeId,
        value_id: NodeId,
        desired: &Desired,
        path: &mut Vec<&'static str>,
        depth: usize,
    ) -> Result<(), EditError> {
        let label = path.join(".");
        let current = self.document.data(value_id);
        let wanted = desired.to_data();
        if current == wanted {
            return Ok(());
        }
        let node = self.document.node(value_id);
        if let (NodeKind::Alias { .. }, Desired::Str(_) | Desired::List(_)) = (&node.kind, desired) {
            return Err(EditError::Unsupported(format!(
                "{label} is an alias ({}, line {}) whose value must become {}; changing the anchor would change \
                 every use of it. Write the value in place and run again",
                yaml::alias_text(self.text, node.start),
                node.line,
                describe(&wanted)
            )));
        }
        let is_empty_null = matches!(&node.kind, NodeKind::Scalar { value, style: TScalarStyle::Plain } if value.is_empty())
            && node.tag.is_none();
        match desired {
            Desired::Map(children) => match &self.document.node(self.document.resolve(value_id)).kind {
                NodeKind::Mapping { .. } => self.apply_mapping(value_id, children, path, depth),
                _ if is_empty_null => {
                    self.fill_empty(key_id, value_id, desired, depth)?;
                    for (child, _) in children {
                        self.changes.push(format!("{label}.{child}: added"));
                    }
                    Ok(())
                }
                _ => Err(EditError::Unsupported(format!(
                    "{label} (line {}) is {}, expected a mapping; fix it by hand and run again",
                    node.line,
                    describe(&current)
                ))),
            },
            Desired::Str(value) => {
                if is_empty_null {
                    self.fill_empty(key_id, value_id, desired, depth)?;
                    self.changes.push(format!("{label}: set to {value}"));
                    return Ok(());
                }
                self.replace_scalar(value_id, value, &label)?;
                self.changes.push(format!("{label}: {} -> {value}", describe(&current)));
                Ok(())
            }
            Desired::List(items) => {
                if is_empty_null {
                    self.fill_empty(key_id, value_id, desired, depth)?;
                } else {
                    self.replace_list(value_id, items, &label)?;
                }
                self.changes.push(format!("{label}: {} -> {}", describe(&current), describe(&wanted)));
                Ok(())
            }
        }
    }

    /// Replace one scalar's text, keeping its quoting style when it can hold the new value.
    fn replace_scalar(&mut self, id: NodeId, value: &str, label: &str) -> Result<(), EditError> {
        let node = self.document.node(id);
        let NodeKind::Scalar { value: old, style } = &node.kind else {
            return Err(EditError::Unsupported(format!(
                "{label} (line {}) is {}, expected a single value; fix it by hand and run again",
                node.line,
                describe(&self.document.data(id))
            )));
        };
        if let Some(tag) = &node.tag {
            return Err(EditError::Unsupported(format!(
                "{label} (line {}) has the tag {tag}; remove the tag or set the value to {value} by hand",
                node.line
            )));
        }
        let Some(range) = self.document.scalar_span(id) else {
            return Err(EditError::Unsupported(format!(
                "{label} (line {}) is a block (| or >) or multi-line value; write it on one line and run again",
                node.line
            )));
        };
        if old.contains("${") {
            self.warnings.push(format!("{label}: the Serverless variable {old} was replaced by {value}"));
        }
        self.replace.insert(id, Data::str(value));
        self.edits.push(Edit { range, text: render_scalar(value, *style), depth: 0 });
        Ok(())
    }

    /// Make a sequence (or a single value written where a list belongs) hold exactly `items`.
    fn replace_list(&mut self, id: NodeId, items: &[String], label: &str) -> Result<(), EditError> {
        let node = self.document.node(id);
        let wanted = Data::Sequence(items.iter().map(|s| Data::str(s)).collect());
        match &node.kind {
            NodeKind::Sequence { flow: true, .. } => {
                self.edits.push(Edit { range: node.start..node.end, text: render_flow_list(items), depth: 0 });
            }
            NodeKind::Sequence { items: old_items, flow: false } => {
                let all_scalars = old_items.len() == items.len()
                    && old_items.iter().all(|item| {
                        matches!(self.document.node(*item).kind, NodeKind::Scalar { .. })
                            && self.document.node(*item).tag.is_none()
                            && self.document.scalar_span(*item).is_some()
                    });
                if all_scalars {
                    // Same length: change the items that differ one by one, so comments stay.
                    for (item, value) in old_items.clone().iter().zip(items) {
                        if self.document.data(*item) != Data::str(value) {
                            self.replace_scalar(*item, value, label)?;
                        }
                    }
                } else {
                    // Rewrite the items from the first dash to the end of the last item.
                    let (end, _) = self.block_end(id, node.col);
                    let end = self.text[..end].trim_end_matches(['\n', '\r']).len();
                    let indent = " ".repeat(node.col);
                    let text = items
                        .iter()
                        .map(|item| format!("- {}", render_scalar(item, TScalarStyle::Plain)))
                        .collect::<Vec<_>>()
                        .join(&format!("{}{indent}", self.newline));
                    self.edits.push(Edit { range: node.start..end, text, depth: 0 });
                }
            }
            NodeKind::Scalar { .. } => {
                let Some(range) = self.document.scalar_span(id).filter(|_| node.tag.is_none()) else {
                    return Err(EditError::Unsupported(format!(
                        "{label} (line {}) must become {}; write it as a list by hand and run again",
                        node.line,
                        describe(&wanted)
                    )));
                };
                self.edits.push(Edit { range, text: render_flow_list(items), depth: 0 });
            }
            NodeKind::Mapping { .. } | NodeKind::Alias { .. } => {
                return Err(EditError::Unsupported(format!(
                    "{label} (line {}) is {}, expected a list; fix it by hand and run again",
                    node.line,
                    describe(&self.document.data(id))
                )));
            }
        }
        self.replace.insert(id, wanted);
        Ok(())
    }

    /// Give a key with an empty value (`environment:`) the desired value.
    fn fill_empty(
        &mut self,
        key_id: NodeId,
        value_id: NodeId,
        desired: &Desired,
        depth: usize,
    ) -> Result<(), EditError> {
        let key = self.document.node(key_id);
        let colon = self
            .document
            .scalar_span(key_id)
            .map(|span| {
                span.end + self.text[span.end..].len() - self.text[span.end..].trim_start_matches([' ', '\t']).len()
            })
            .filter(|at| self.text.as_bytes().get(*at) == Some(&b':'));
        let Some(colon) = colon else {
            return Err(EditError::Unsupported(format!(
                "the key at line {} is written in a form the patch cannot edit (complex or multi-line key)",
                key.line
            )));
        };
        let edit = match desired {
            Desired::Str(value) => Edit {
                range: colon + 1..colon + 1,
                text: format!(" {}", render_scalar(value, TScalarStyle::Plain)),
                depth,
            },
            Desired::List(_) | Desired::Map(_) => {
                let (at, prefix) = self.line_end_after(colon);
                let mut text = prefix.to_string();
                text.push_str(&self.render_value_lines(desired, key.col));
                Edit { range: at..at, text, depth }
            }
        };
        self.edits.push(edit);
        self.replace.insert(value_id, desired.to_data());
        Ok(())
    }

    /// Where to insert new lines at the end of a block collection whose entries start at
    /// `column`: after its last content line, before trailing blank lines and comments that are
    /// not indented deeper than the entries. Returns the offset and a line break to write first
    /// when the file does not end with one.
    fn block_end(&self, id: NodeId, column: usize) -> (usize, &'static str) {
        let text = self.text;
        let node = self.document.node(id);
        let floor = self.content_end(id);
        // The lines that end at or before the collection's end (the last one may lack a line break).
        let mut line_end =
            if node.end >= text.len() { text.len() } else { text[..node.end].rfind('\n').map_or(0, |i| i + 1) };
        while line_end > 0 {
            let before = &text[..line_end];
            let without_break = before.strip_suffix('\n').unwrap_or(before);
            let line_start = without_break.rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..line_end].trim_end_matches(['\n', '\r']);
            let trimmed = line.trim_start_matches(' ');
            let indent = line.len() - trimmed.len();
            let skippable = trimmed.trim().is_empty() || (trimmed.starts_with('#') && indent <= column);
            if !skippable || line_start <= floor {
                break;
            }
            line_end = line_start;
        }
        if line_end == text.len() && !text.ends_with('\n') { (line_end, self.newline) } else { (line_end, "") }
    }

    /// Whether the file puts a blank line before each top-level key (then a new one gets one too).
    fn top_level_keys_are_spaced(&self, entries: &[(NodeId, NodeId)]) -> bool {
        entries.len() >= 2
            && entries[1..].iter().all(|(key, _)| {
                let line_start = self.text[..self.document.node(*key).start].rfind('\n').unwrap_or(0);
                let before = self.text[..line_start].trim_end_matches('\r');
                let previous_line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
                previous_line.trim().is_empty() || previous_line.trim_start().starts_with('#')
            })
    }

    /// The offset where the last content of a node ends as far as can be told (quoted scalars
    /// and flow collections exactly; other scalars by their start).
    fn content_end(&self, id: NodeId) -> usize {
        let node = self.document.node(id);
        match &node.kind {
            NodeKind::Mapping { entries, flow: false } if !entries.is_empty() => {
                self.content_end(entries[entries.len() - 1].1)
            }
            NodeKind::Sequence { items, flow: false } if !items.is_empty() => self.content_end(items[items.len() - 1]),
            NodeKind::Mapping { .. } | NodeKind::Sequence { .. } => node.end,
            NodeKind::Scalar { .. } => self.document.scalar_span(id).map_or(node.start, |span| span.end),
            NodeKind::Alias { .. } => node.start + yaml::alias_text(self.text, node.start).len(),
        }
    }

    /// The offset just after the line break of the line holding `at`, and a line break to write
    /// first if that line is the last one and has none.
    fn line_end_after(&self, at: usize) -> (usize, &'static str) {
        match self.text[at..].find('\n') {
            Some(i) => (at + i + 1, ""),
            None => (self.text.len(), self.newline),
        }
    }

    /// `key: value` lines at `column`, nested values indented by the file's unit.
    fn render_entry(&self, key: &str, value: &Desired, column: usize) -> String {
        let pad = " ".repeat(column);
        match value {
            Desired::Str(s) => format!("{pad}{key}: {}{}", render_scalar(s, TScalarStyle::Plain), self.newline),
            Desired::List(_) | Desired::Map(_) => {
                format!("{pad}{key}:{}{}", self.newline, self.render_value_lines(value, column))
            }
        }
    }

    /// The lines below `key:` (at `key_column`) for a list or mapping value.
    fn render_value_lines(&self, value: &Desired, key_column: usize) -> String {
        match value {
            Desired::Str(s) => format!("{}{}", render_scalar(s, TScalarStyle::Plain), self.newline),
            Desired::List(items) => {
                let pad = " ".repeat(key_column + self.dash_offset);
                items
                    .iter()
                    .map(|item| format!("{pad}- {}{}", render_scalar(item, TScalarStyle::Plain), self.newline))
                    .collect()
            }
            Desired::Map(entries) => {
                entries.iter().map(|(k, v)| self.render_entry(k, v, key_column + self.indent_unit)).collect()
            }
        }
    }

    /// Apply the edits to the text, back to front.
    fn apply_edits(&mut self) -> Result<String, EditError> {
        self.edits.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(b.depth.cmp(&a.depth)));
        for pair in self.edits.windows(2) {
            if pair[0].range.end > pair[1].range.start {
                return Err(EditError::Verify(format!(
                    "two edits overlap at byte {}; the file's layout is unusual",
                    pair[1].range.start
                )));
            }
        }
        let mut out = String::with_capacity(self.text.len() + 256);
        let mut copied = 0;
        for edit in &self.edits {
            out.push_str(&self.text[copied..edit.range.start]);
            out.push_str(&edit.text);
            copied = edit.range.end;
        }
        out.push_str(&self.text[copied..]);
        Ok(out)
    }
}

/// The file's indentation unit (from the first nested block mapping) and the offset of block
/// sequence dashes from their key (from the first block sequence under a key).
fn detect_indentation(document: &Document) -> (usize, usize) {
    let mut unit = None;
    let mut dash_offset = None;
    for node in &document.nodes {
        let NodeKind::Mapping { entries, flow: false } = &node.kind else { continue };
        for (key, value) in entries {
            let key_col = document.node(*key).col;
            match &document.node(*value).kind {
                NodeKind::Mapping { entries: inner, flow: false } if unit.is_none() && !inner.is_empty() => {
                    let inner_col = document.node(inner[0].0).col;
                    if inner_col > key_col {
                        unit = Some(inner_col - key_col);
                    }
                }
                NodeKind::Sequence { flow: false, .. } if dash_offset.is_none() => {
                    dash_offset = Some(document.node(*value).col.saturating_sub(key_col));
                }
                _ => {}
            }
        }
    }
    let unit = unit.unwrap_or(2);
    (unit, dash_offset.unwrap_or(unit))
}

/// Write a string scalar in `style` when that style can hold it, else plain when that reads back
/// as the same string, else double-quoted.
fn render_scalar(value: &str, style: TScalarStyle) -> String {
    match style {
        TScalarStyle::SingleQuoted if !value.contains(['\n', '\r']) => format!("'{}'", value.replace('\'', "''")),
        TScalarStyle::DoubleQuoted => double_quoted(value),
        _ if is_safe_plain(value) => value.to_string(),
        _ => double_quoted(value),
    }
}

fn double_quoted(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` written plain reads back as the same string in every YAML loader Serverless
/// might use (core schema and YAML 1.1 booleans alike).
fn is_safe_plain(value: &str) -> bool {
    const YAML11_WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off"];
    !value.is_empty()
        && yaml::resolve_plain(value) == ScalarKind::Str
        && !YAML11_WORDS.contains(&value.to_ascii_lowercase().as_str())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '+'))
        && !value.starts_with('-')
}

fn render_flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| render_scalar(item, TScalarStyle::Plain)).collect();
    format!("[{}]", items.join(", "))
}

/// A short description of a value for messages.
pub(crate) fn describe(data: &Data) -> String {
    match data {
        Data::Scalar { kind: ScalarKind::Null, .. } => "empty".to_string(),
        Data::Scalar { kind: ScalarKind::Str, text, tag: None } => text.clone(),
        Data::Scalar { kind: ScalarKind::Str, text, tag: Some(tag) } => format!("{tag} {text}"),
        Data::Scalar { kind, text, .. } => format!("{text} (a {kind:?}, not a string)").to_lowercase(),
        Data::Sequence(items) => format!("[{}]", items.iter().map(describe).collect::<Vec<_>>().join(", ")),
        Data::Mapping(_) => "a mapping".to_string(),
    }
}

/// The path of the first place two data trees differ, for the verification message.
fn first_difference(expected: &Data, actual: &Data) -> String {
    fn walk(expected: &Data, actual: &Data, path: &mut Vec<String>) -> Option<String> {
        match (expected, actual) {
            (Data::Mapping(a), Data::Mapping(b)) if a.len() == b.len() => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    path.push(yaml::key_label(ka));
                    if ka != kb {
                        return Some(path.join("."));
                    }
                    if let Some(found) = walk(va, vb, path) {
                        return Some(found);
                    }
                    path.pop();
                }
                None
            }
            (Data::Sequence(a), Data::Sequence(b)) if a.len() == b.len() => {
                for (index, (va, vb)) in a.iter().zip(b).enumerate() {
                    path.push(index.to_string());
                    if let Some(found) = walk(va, vb, path) {
                        return Some(found);
                    }
                    path.pop();
                }
                None
            }
            _ if expected == actual => None,
            _ => Some(if path.is_empty() { "the top level".to_string() } else { path.join(".") }),
        }
    }
    walk(expected, actual, &mut Vec::new()).unwrap_or_else(|| "an unknown place".to_string())
}

#[cfg(test)]
mod tests;
