//! Patch `amplify-lambda-js/serverless.yml` for the layer, keeping everything else byte for byte.
//!
//! The patch is a set of precise text edits (replace one scalar, insert a few lines at the end of
//! a block mapping) located with a YAML parser that reports positions (`serverless/yaml.rs`).
//! Nothing is re-serialised: comments, key order, quoting, anchors and `${...}` variables outside
//! the edited values stay as they were. After editing, the new text is parsed again and must load
//! to exactly the old data with the intended values set; otherwise nothing is written.

mod yaml;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use yaml_rust2::scanner::TScalarStyle;

use crate::arch::Arch;
use crate::flags::{GlobalArgs, PatchArgs};
use crate::progress::Progress;
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

use yaml::{Data, Document, NodeId, NodeKind, ScalarKind};

/// The layer's key under `layers:` (Serverless names its CloudFormation resource
/// `PythonLiteLLMLambdaLayer`, which the functions reference).
pub const LAYER_NAME: &str = "pythonLiteLLM";

/// The Lambda runtime the layer is built for.
pub const NODE_RUNTIME: &str = crate::lambda::NODE_RUNTIME;

/// Why a file was not patched. The file is never changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("not valid YAML: {0}; fix the file and run again")]
    Malformed(String),
    #[error("duplicate key: {0}")]
    DuplicateKey(String),
    #[error("refusing to expand aliases: {0}")]
    AliasBomb(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "layers.{LAYER_NAME}.allowedAccounts contains '*', which makes the layer public to every AWS account; \
         remove it (or list the account ids that may use the layer), or pass --allow-public-layer if that is intended"
    )]
    PublicLayer,
    #[error(
        "the patched text would not load as intended ({0}); the file was left unchanged. Edit it by hand or report \
         this as a bug"
    )]
    Verify(String),
    #[error(
        "{file} is out of date: {changes}; run `cargo xtask patch --arch {arch}` (or `cargo xtask layer`) to update it"
    )]
    OutOfDate { file: String, changes: String, arch: Arch },
}

/// What the patch sets, derived from the architecture and the layer spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    pub arch: Arch,
    /// The layer's `path`, with `{arch}` already replaced.
    pub layer_path: String,
    /// CPython minor version in the layer, e.g. 3.11.
    pub python_minor: PythonVersion,
    /// Accept `allowedAccounts: ['*']` on the layer (with a warning) instead of refusing.
    pub allow_public_layer: bool,
}

impl PatchPlan {
    /// The plan for `arch` from the spec's `[serverless] layer-path` and `[python] version`.
    pub fn new(spec: &LayerSpec, arch: Arch, allow_public_layer: bool) -> PatchPlan {
        PatchPlan {
            arch,
            layer_path: spec.serverless.layer_path.replace("{arch}", arch.lambda_name()),
            python_minor: spec.python.version,
            allow_public_layer,
        }
    }

    /// The values the file must hold, as a tree of keys in the order they are inserted when missing.
    fn desired(&self) -> Desired {
        let arch = self.arch.lambda_name().to_string();
        Desired::Map(vec![
            (
                "provider",
                Desired::Map(vec![
                    ("architecture", Desired::Str(arch.clone())),
                    (
                        "environment",
                        Desired::Map(vec![
                            ("PYTHONHOME", Desired::Str(crate::lambda::PYTHON_HOME.to_string())),
                            ("PYTHONPATH", Desired::Str(crate::lambda::pythonpath(self.python_minor))),
                            // A string, not a YAML boolean: LiteLLM compares the variable with "True".
                            ("LITELLM_LOCAL_MODEL_COST_MAP", Desired::Str("True".to_string())),
                        ]),
                    ),
                ]),
            ),
            (
                "layers",
                Desired::Map(vec![(
                    LAYER_NAME,
                    Desired::Map(vec![
                        ("path", Desired::Str(self.layer_path.clone())),
                        ("compatibleRuntimes", Desired::List(vec![NODE_RUNTIME.to_string()])),
                        ("compatibleArchitectures", Desired::List(vec![arch])),
                    ]),
                )]),
            ),
        ])
    }
}

/// The result of patching: the new text, or `None` when the file is already right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutcome {
    pub new_text: Option<String>,
    /// One line per change, e.g. `provider.architecture: x86_64 -> arm64`.
    pub changes: Vec<String>,
    /// Things the user should know even when nothing changed (a public layer, a replaced variable).
    pub warnings: Vec<String>,
}

impl PatchOutcome {
    pub fn is_unchanged(&self) -> bool {
        self.new_text.is_none()
    }
}

/// A value the patch wants at a key.
#[derive(Debug, Clone)]
enum Desired {
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

/// Compute the patched text of a serverless.yml. Pure: reads nothing, writes nothing; `file` is
/// only used in messages.
pub fn patch_text(text: &str, plan: &PatchPlan, file: &Path) -> Result<PatchOutcome> {
    patch_text_inner(text, plan).with_context(|| format!("{}: not patched", file.display()))
}

fn patch_text_inner(text: &str, plan: &PatchPlan) -> Result<PatchOutcome, PatchError> {
    // A UTF-8 byte order mark is kept but not shown to the parser (yaml-rust2 reads it as content).
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        let mut outcome = patch_text_inner(rest, plan)?;
        outcome.new_text = outcome.new_text.map(|new_text| format!("\u{feff}{new_text}"));
        return Ok(outcome);
    }
    let document = Document::parse(text)?;
    let root = document.root;
    let root_data = document.data(root);
    if !matches!(root_data, Data::Mapping(_)) {
        return Err(PatchError::Unsupported(
            "the top level of the file is not a mapping (expected keys such as service, provider, layers)".to_string(),
        ));
    }

    let mut warnings = Vec::new();
    let layer = root_data.get("layers").and_then(|layers| layers.get(LAYER_NAME));
    if let Some(accounts) = layer.and_then(|layer| layer.get("allowedAccounts")) {
        let public = match accounts {
            Data::Sequence(items) => items.iter().any(|item| item.as_str() == Some("*")),
            other => other.as_str() == Some("*"),
        };
        if public {
            if !plan.allow_public_layer {
                return Err(PatchError::PublicLayer);
            }
            warnings.push(format!(
                "layers.{LAYER_NAME}.allowedAccounts contains '*': THE LAYER IS PUBLIC, every AWS account can use \
                 it (allowed by --allow-public-layer)"
            ));
        }
    }
    if let Some(runtime) = root_data.get("provider").and_then(|p| p.get("runtime"))
        && runtime.as_str() != Some(NODE_RUNTIME)
    {
        warnings.push(format!("provider.runtime is {}, but the layer is built for {NODE_RUNTIME}", describe(runtime)));
    }

    let mut patcher = Patcher::new(&document);
    let Desired::Map(top) = plan.desired() else { unreachable!("the plan is a mapping") };
    patcher.apply_mapping(root, &top, &mut Vec::new(), 0)?;
    warnings.extend(patcher.warnings.iter().cloned());
    if patcher.edits.is_empty() {
        return Ok(PatchOutcome { new_text: None, changes: Vec::new(), warnings });
    }

    let new_text = patcher.apply_edits()?;
    let expected = document.data_with(root, &patcher.replace, &patcher.append);
    let reparsed = Document::parse(&new_text).map_err(|e| PatchError::Verify(e.to_string()))?;
    let actual = reparsed.data(reparsed.root);
    if actual != expected {
        return Err(PatchError::Verify(format!("first difference at {}", first_difference(&expected, &actual))));
    }
    Ok(PatchOutcome { new_text: Some(new_text), changes: patcher.changes, warnings })
}

/// Patch a file in place (temp file + rename in the same directory), or with `check` only report:
/// an out-of-date file is then an error naming what differs, and nothing is written.
pub fn patch_file(path: &Path, plan: &PatchPlan, check: bool) -> Result<PatchOutcome> {
    let text = fs_err::read_to_string(path).context("reading serverless.yml (pass --file to patch another one)")?;
    let outcome = patch_text(&text, plan, path)?;
    let Some(new_text) = &outcome.new_text else { return Ok(outcome) };
    if check {
        return Err(PatchError::OutOfDate {
            file: path.display().to_string(),
            changes: outcome.changes.join("; "),
            arch: plan.arch,
        }
        .into());
    }
    write_atomically(path, new_text.as_bytes())?;
    Ok(outcome)
}

/// Replace `path` with `bytes` through a temporary file in the same directory, keeping its permissions.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".serverless.yml.")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(bytes).with_context(|| format!("writing {}", temp.path().display()))?;
    temp.as_file().sync_all().with_context(|| format!("writing {}", temp.path().display()))?;
    let permissions = fs_err::metadata(path)?.permissions();
    fs_err::set_permissions(temp.path(), permissions)?;
    temp.persist(path).map_err(|e| anyhow::anyhow!("replacing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// `cargo xtask patch`: relative `--file` and `--spec` paths are taken from the repository root.
pub fn run(global: &GlobalArgs, args: &PatchArgs) -> Result<()> {
    let progress = Progress::new();
    let spec = LayerSpec::load(&global.spec_path())?;
    let plan = PatchPlan::new(&spec, args.arch, args.allow_public_layer);
    patch_and_report(&from_root(&args.file), &plan, args.check, &progress)?;
    Ok(())
}

/// The step `cargo xtask layer` runs after a build: patch (or with `check`, only check) the
/// spec's `[serverless] file` (relative to the repository root), reporting changes and warnings.
pub fn patch_after_build(
    spec: &LayerSpec,
    arch: Arch,
    allow_public_layer: bool,
    check: bool,
    progress: &Progress,
) -> Result<PatchOutcome> {
    let plan = PatchPlan::new(spec, arch, allow_public_layer);
    patch_and_report(&from_root(&spec.serverless.file), &plan, check, progress)
}

fn patch_and_report(file: &Path, plan: &PatchPlan, check: bool, progress: &Progress) -> Result<PatchOutcome> {
    let shown = file.strip_prefix(crate::project_root()).unwrap_or(file).display().to_string();
    let verb = if check { "checking" } else { "patching" };
    let outcome = progress.step(format!("{verb} {shown} for {}", plan.arch), || patch_file(file, plan, check))?;
    for warning in &outcome.warnings {
        progress.warn(warning);
    }
    if outcome.is_unchanged() {
        progress.note(format!("{shown} is up to date"));
    } else {
        for change in &outcome.changes {
            progress.note(change);
        }
    }
    Ok(outcome)
}

fn from_root(path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { crate::project_root().join(path) }
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
    ) -> Result<(), PatchError> {
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
            return Err(PatchError::Unsupported(format!(
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
            return Err(PatchError::Unsupported(format!(
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
    ) -> Result<(), PatchError> {
        let label = path.join(".");
        let current = self.document.data(value_id);
        let wanted = desired.to_data();
        if current == wanted {
            return Ok(());
        }
        let node = self.document.node(value_id);
        if let (NodeKind::Alias { .. }, Desired::Str(_) | Desired::List(_)) = (&node.kind, desired) {
            return Err(PatchError::Unsupported(format!(
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
                _ => Err(PatchError::Unsupported(format!(
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
    fn replace_scalar(&mut self, id: NodeId, value: &str, label: &str) -> Result<(), PatchError> {
        let node = self.document.node(id);
        let NodeKind::Scalar { value: old, style } = &node.kind else {
            return Err(PatchError::Unsupported(format!(
                "{label} (line {}) is {}, expected a single value; fix it by hand and run again",
                node.line,
                describe(&self.document.data(id))
            )));
        };
        if let Some(tag) = &node.tag {
            return Err(PatchError::Unsupported(format!(
                "{label} (line {}) has the tag {tag}; remove the tag or set the value to {value} by hand",
                node.line
            )));
        }
        let Some(range) = self.document.scalar_span(id) else {
            return Err(PatchError::Unsupported(format!(
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
    fn replace_list(&mut self, id: NodeId, items: &[String], label: &str) -> Result<(), PatchError> {
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
                    return Err(PatchError::Unsupported(format!(
                        "{label} (line {}) must become {}; write it as a list by hand and run again",
                        node.line,
                        describe(&wanted)
                    )));
                };
                self.edits.push(Edit { range, text: render_flow_list(items), depth: 0 });
            }
            NodeKind::Mapping { .. } | NodeKind::Alias { .. } => {
                return Err(PatchError::Unsupported(format!(
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
    ) -> Result<(), PatchError> {
        let key = self.document.node(key_id);
        let colon = self
            .document
            .scalar_span(key_id)
            .map(|span| {
                span.end + self.text[span.end..].len() - self.text[span.end..].trim_start_matches([' ', '\t']).len()
            })
            .filter(|at| self.text.as_bytes().get(*at) == Some(&b':'));
        let Some(colon) = colon else {
            return Err(PatchError::Unsupported(format!(
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
    fn apply_edits(&mut self) -> Result<String, PatchError> {
        self.edits.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(b.depth.cmp(&a.depth)));
        for pair in self.edits.windows(2) {
            if pair[0].range.end > pair[1].range.start {
                return Err(PatchError::Verify(format!(
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
fn describe(data: &Data) -> String {
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
mod tests {
    use super::*;

    fn plan(arch: Arch) -> PatchPlan {
        PatchPlan {
            arch,
            layer_path: format!("../layer-build-{}/layer", arch.lambda_name()),
            python_minor: "3.11".parse().unwrap(),
            allow_public_layer: false,
        }
    }

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/serverless").join(name);
        fs_err::read_to_string(path).expect("fixture exists")
    }

    fn patch(text: &str, plan: &PatchPlan) -> Result<PatchOutcome> {
        patch_text(text, plan, Path::new("serverless.yml"))
    }

    fn refusal(text: &str, plan: &PatchPlan) -> String {
        format!("{:#}", patch(text, plan).expect_err("the patch must be refused"))
    }

    /// Patch, and check that patching the result again changes nothing.
    fn patch_twice(text: &str, plan: &PatchPlan) -> PatchOutcome {
        let outcome = patch(text, plan).unwrap();
        let new_text = outcome.new_text.as_deref().expect("the fixture is out of date");
        let again = patch(new_text, plan).unwrap();
        assert!(again.is_unchanged(), "second run changed: {:?}", again.changes);
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
    fn committed_serverless_yml_is_up_to_date() {
        let root = crate::project_root();
        let spec = LayerSpec::load(&root.join("litellm-layer/layer.toml")).unwrap();
        let text = fs_err::read_to_string(root.join("amplify-lambda-js/serverless.yml")).unwrap();
        let arm = PatchPlan::new(&spec, Arch::Arm64, false);
        assert_eq!(arm.layer_path, "../layer-build-arm64/layer");
        let outcome = patch(&text, &arm).unwrap();
        assert!(outcome.is_unchanged(), "the committed file is out of date: {:?}", outcome.changes);
        let x86 = patch(&text, &PatchPlan::new(&spec, Arch::X86_64, false)).unwrap();
        assert_eq!(x86.changes.len(), 3, "{:?}", x86.changes);
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
        let text = "provider:\n  architecture: arm64\n  environment: &env\n    A: b\nfunctions:\n  f:\n    environment: *env\n";
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
    fn another_runtime_is_warned_about() {
        let outcome = patch("provider:\n  runtime: nodejs18.x\n", &plan(Arch::Arm64)).unwrap();
        assert_eq!(outcome.warnings, ["provider.runtime is nodejs18.x, but the layer is built for nodejs22.x"]);
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
        let msg =
            refusal("provider:\n  architecture: arm64\n  name: aws\n  architecture: x86_64\n", &plan(Arch::Arm64));
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
    fn a_public_layer_is_refused_unless_allowed() {
        let text = fixture("realistic.yml").replace(
            "    description: \"CPython with LiteLLM\"\n",
            "    description: \"CPython with LiteLLM\"\n    allowedAccounts:\n      - '*'\n",
        );
        let msg = refusal(&text, &plan(Arch::Arm64));
        assert_eq!(
            msg,
            "serverless.yml: not patched: layers.pythonLiteLLM.allowedAccounts contains '*', which makes the layer \
             public to every AWS account; remove it (or list the account ids that may use the layer), or pass \
             --allow-public-layer if that is intended"
        );
        let allowed = patch(&text, &PatchPlan { allow_public_layer: true, ..plan(Arch::Arm64) }).unwrap();
        assert!(allowed.new_text.unwrap().contains("    allowedAccounts:\n      - '*'\n"));
        assert_eq!(allowed.warnings.len(), 1);
        assert!(allowed.warnings[0].contains("THE LAYER IS PUBLIC"), "{:?}", allowed.warnings);
        // A single '*' (not a list) counts too; account ids do not.
        let scalar = "layers:\n  pythonLiteLLM:\n    allowedAccounts: '*'\n";
        assert!(refusal(scalar, &plan(Arch::Arm64)).contains("allowedAccounts contains '*'"));
        let ids = "layers:\n  pythonLiteLLM:\n    allowedAccounts: ['123456789012']\n";
        assert!(patch(ids, &plan(Arch::Arm64)).is_ok());
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
            (
                "provider:\n  architecture: !Sub x86_64\n",
                "provider.architecture (line 2) has the tag !Sub; remove the tag",
            ),
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

    #[test]
    fn patch_file_writes_atomically_and_check_reports_out_of_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        let original = fixture("realistic.yml");
        fs_err::write(&path, &original).unwrap();

        let msg = format!("{:#}", patch_file(&path, &plan(Arch::Arm64), true).unwrap_err());
        assert!(
            msg.starts_with(&format!("{} is out of date: provider.architecture: x86_64 -> arm64; ", path.display())),
            "{msg}"
        );
        assert!(msg.ends_with("; run `cargo xtask patch --arch arm64` (or `cargo xtask layer`) to update it"), "{msg}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), original, "--check wrote the file");

        let written = patch_file(&path, &plan(Arch::Arm64), false).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), written.new_text.unwrap());
        let names: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["serverless.yml"], "a temporary file was left behind");

        let checked = patch_file(&path, &plan(Arch::Arm64), true).unwrap();
        assert!(checked.is_unchanged());
    }

    #[test]
    fn patch_after_build_uses_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        fs_err::write(&path, fixture("four-space.yml")).unwrap();
        let mut spec = LayerSpec::load(&crate::project_root().join("litellm-layer/layer.toml")).unwrap();
        spec.serverless.file = path.clone();
        spec.serverless.layer_path = "../build/{arch}/layer".to_string();
        let progress = Progress::new();
        let outcome = patch_after_build(&spec, Arch::Arm64, false, false, &progress).unwrap();
        assert!(outcome.changes.contains(&"layers: added".to_string()), "{:?}", outcome.changes);
        assert!(fs_err::read_to_string(&path).unwrap().contains("        path: ../build/arm64/layer\n"));
        assert!(patch_after_build(&spec, Arch::Arm64, false, true, &progress).unwrap().is_unchanged());
    }

    #[cfg(unix)]
    #[test]
    fn patch_file_keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        fs_err::write(&path, fixture("four-space.yml")).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        patch_file(&path, &plan(Arch::Arm64), false).unwrap();
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn refused_files_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serverless.yml");
        for (text, want) in [
            ("provider: [unclosed\n", "not valid YAML"),
            ("provider:\n  a: 1\n  a: 2\n", "duplicate key"),
            ("layers:\n  pythonLiteLLM:\n    allowedAccounts: ['*']\n", "allowedAccounts contains '*'"),
        ] {
            fs_err::write(&path, text).unwrap();
            let msg = format!("{:#}", patch_file(&path, &plan(Arch::Arm64), false).unwrap_err());
            assert!(msg.contains(want), "want {want:?} in: {msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_eq!(fs_err::read_to_string(&path).unwrap(), text);
        }
        let missing = format!("{:#}", patch_file(&dir.path().join("nope.yml"), &plan(Arch::Arm64), false).unwrap_err());
        assert!(missing.contains("nope.yml"), "{missing}");
    }
}
