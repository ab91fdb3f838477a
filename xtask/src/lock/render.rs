//! Write a [`Pylock`] as reviewable TOML: keys in spec order, packages sorted, each wheel an inline
//! table on its own line, so a version bump is a small diff.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/pylock-toml/>.

use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value, value};

use crate::packaging::pylock::{LockedPackage, Pylock, Yanked};

/// The lock as TOML text.
pub(crate) fn render(lock: &Pylock) -> String {
    let mut doc = DocumentMut::new();
    doc.insert("lock-version", value(&lock.lock_version));
    if !lock.environments.is_empty() {
        doc.insert("environments", Item::Value(Value::Array(multiline(lock.environments.iter().map(Value::from)))));
    }
    if let Some(requires_python) = &lock.requires_python {
        doc.insert("requires-python", value(requires_python));
    }
    doc.insert("created-by", value(&lock.created_by));
    let mut packages = ArrayOfTables::new();
    for package in &lock.packages {
        packages.push(package_table(package));
    }
    doc.insert("packages", Item::ArrayOfTables(packages));
    if let Some(inputs) = lock.inputs() {
        let mut tool = Table::new();
        tool.set_implicit(true);
        let mut ours = Table::new();
        ours.decor_mut().set_prefix(
            "\n# What this lock was resolved from; `cargo xtask lock --check` compares it with layer.toml.\n",
        );
        ours.insert("requirements", Item::Value(Value::Array(inline(inputs.requirements.iter().map(Value::from)))));
        ours.insert("exclude", Item::Value(Value::Array(inline(inputs.exclude.iter().map(Value::from)))));
        ours.insert("index-url", value(&inputs.index_url));
        ours.insert("python-full-version", value(&inputs.python_full_version));
        ours.insert("architectures", Item::Value(Value::Array(inline(inputs.architectures.iter().map(Value::from)))));
        ours.insert("format", value(i64::from(inputs.format)));
        tool.insert("litellm-layer", Item::Table(ours));
        doc.insert("tool", Item::Table(tool));
    }
    doc.to_string()
}

fn package_table(package: &LockedPackage) -> Table {
    let mut table = Table::new();
    table.decor_mut().set_prefix("\n");
    table.insert("name", value(&package.name));
    table.insert("version", value(&package.version));
    if let Some(marker) = &package.marker {
        table.insert("marker", value(marker));
    }
    if let Some(requires_python) = &package.requires_python {
        table.insert("requires-python", value(requires_python));
    }
    if !package.dependencies.is_empty() {
        let deps = package.dependencies.iter().map(|d| {
            let mut dep = InlineTable::new();
            dep.insert("name", Value::from(d.name.as_str()));
            Value::InlineTable(dep)
        });
        table.insert("dependencies", Item::Value(Value::Array(inline(deps))));
    }
    if let Some(index) = &package.index {
        table.insert("index", value(index));
    }
    let wheels = package.wheels.iter().map(|wheel| {
        let mut entry = InlineTable::new();
        entry.insert("name", Value::from(wheel.name.as_str()));
        entry.insert("url", Value::from(wheel.url.as_str()));
        if let Some(size) = wheel.size {
            entry.insert("size", Value::from(size as i64));
        }
        if let Some(upload_time) = &wheel.upload_time {
            entry.insert("upload-time", Value::from(*upload_time));
        }
        let mut hashes = InlineTable::new();
        hashes.insert("sha256", Value::from(wheel.hashes.sha256.as_str()));
        entry.insert("hashes", Value::InlineTable(hashes));
        Value::InlineTable(entry)
    });
    table.insert("wheels", Item::Value(Value::Array(multiline(wheels))));
    // `[packages.tool.litellm-layer]` (PEP 751 `[packages.tool]`), only when there is something to
    // say, so a lock with nothing yanked or excluded has no such table.
    let notes = package.tool.as_ref().and_then(|t| t.litellm_layer.as_ref());
    if let Some(notes) = notes.filter(|n| n.yanked.is_some() || n.excluded.is_some()) {
        let mut ours = Table::new();
        match &notes.yanked {
            Some(Yanked::Flag(flag)) => _ = ours.insert("yanked", value(*flag)),
            Some(Yanked::Reason(reason)) => _ = ours.insert("yanked", value(reason)),
            None => {}
        }
        if let Some(reason) = &notes.excluded {
            ours.insert("excluded", value(reason));
        }
        let mut tool = Table::new();
        tool.set_implicit(true);
        tool.insert("litellm-layer", Item::Table(ours));
        table.insert("tool", Item::Table(tool));
    }
    table
}

fn inline(values: impl Iterator<Item = Value>) -> Array {
    values.collect()
}

/// An array with one element per line and a trailing comma.
fn multiline(values: impl Iterator<Item = Value>) -> Array {
    let mut array: Array = values.collect();
    for item in array.iter_mut() {
        item.decor_mut().set_prefix("\n    ");
    }
    array.set_trailing("\n");
    array.set_trailing_comma(true);
    array
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packaging::pylock::{Hashes, LockInputs, LockTool, LockedWheel, PackageRef};

    #[test]
    fn rendered_lock_parses_back_identically() {
        let lock = Pylock {
            lock_version: "1.0".into(),
            environments: vec!["sys_platform == 'linux' and platform_machine == 'aarch64'".into()],
            requires_python: Some("==3.11.*".into()),
            extras: vec![],
            dependency_groups: vec![],
            default_groups: vec![],
            created_by: "litellm-layer-xtask".into(),
            packages: vec![LockedPackage {
                name: "demo".into(),
                version: "1.0".into(),
                marker: Some("platform_machine == 'aarch64'".into()),
                requires_python: Some(">=3.8".into()),
                dependencies: vec![PackageRef { name: "idna".into() }],
                index: Some("https://pypi.org/simple".into()),
                wheels: vec![LockedWheel {
                    name: "demo-1.0-py3-none-any.whl".into(),
                    url: "https://files.example/demo-1.0-py3-none-any.whl".into(),
                    size: Some(10),
                    upload_time: Some("2024-01-02T03:04:05.123456Z".parse().unwrap()),
                    hashes: Hashes { sha256: "a".repeat(64) },
                }],
                tool: Some(LockedPackage::yanked_tool(Some("broken"))),
            }],
            tool: Some(LockTool {
                litellm_layer: LockInputs {
                    requirements: vec!["demo".into()],
                    exclude: vec![],
                    index_url: "https://pypi.org/simple".into(),
                    python_full_version: "3.11.14".into(),
                    architectures: vec!["arm64".into()],
                    format: crate::packaging::pylock::LOCK_FORMAT,
                },
            }),
            warnings: Vec::new(),
        };
        let text = render(&lock);
        assert!(text.contains("wheels = [\n    { name = \"demo-1.0-py3-none-any.whl\""), "{text}");
        assert!(text.contains("\n[packages.tool.litellm-layer]\nyanked = \"broken\"\n"), "{text}");
        let parsed = Pylock::parse(&text, std::path::Path::new("pylock.toml")).unwrap();
        assert_eq!(parsed, lock);

        // An exclusion mark joins the yanked one in the same table, and round-trips too.
        let mut excluded = lock.clone();
        excluded.packages[0].set_excluded(Some("in [packages] exclude of layer.toml".into()));
        let text = render(&excluded);
        assert!(
            text.contains(
                "\n[packages.tool.litellm-layer]\nyanked = \"broken\"\nexcluded = \"in [packages] exclude of layer.toml\"\n"
            ),
            "{text}"
        );
        let parsed = Pylock::parse(&text, std::path::Path::new("pylock.toml")).unwrap();
        assert_eq!(parsed, excluded);
        assert_eq!(parsed.packages[0].excluded(), Some("in [packages] exclude of layer.toml"));
        // Clearing both marks removes the table.
        excluded.packages[0].set_excluded(None);
        excluded.packages[0].tool = None;
        assert!(!render(&excluded).contains("[packages.tool"));
    }
}
