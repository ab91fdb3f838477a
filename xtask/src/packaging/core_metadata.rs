//! A distribution's core metadata (`*.dist-info/METADATA`): the header fields, and the ones the
//! resolver needs.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/core-metadata/>.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::packaging::wheel_name::normalize_name;

/// The fields of core metadata the resolver needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CoreMetadata {
    pub(crate) name: String,
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) requires_dist: Vec<String>,
    #[serde(default)]
    pub(crate) requires_python: Option<String>,
    #[serde(default)]
    pub(crate) provides_extra: Vec<String>,
}

/// The header fields of core metadata
/// (<https://packaging.python.org/en/latest/specifications/core-metadata/>): RFC 822 style
/// `Name: value` lines, names as written; a continuation line (starting with whitespace) is
/// appended to its field after a `\n`; the first empty line ends the headers (setuptools folds
/// blank lines inside a field, such as a license text, into lines of spaces).
pub(crate) fn header_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    fields
}

/// Parse core metadata (an email-header block; the body, if any, is the description).
pub(crate) fn parse_metadata(text: &str) -> Result<CoreMetadata> {
    let fields: Vec<(String, String)> = header_fields(text)
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.replace('\n', " ")))
        .collect();
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let all = |key: &str| fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let name = get("name").context("METADATA has no Name field")?;
    let version = get("version").context("METADATA has no Version field")?;
    Ok(CoreMetadata {
        name: normalize_name(&name),
        version,
        requires_dist: all("requires-dist"),
        requires_python: get("requires-python").filter(|s| !s.is_empty()),
        provides_extra: all("provides-extra").iter().map(|e| normalize_name(e)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_metadata_fields() {
        let text = "Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.0\nRequires-Python: >=3.8\n\
                    Requires-Dist: httpx>=0.23\nRequires-Dist: h2<5,>=3; extra == \"http2\"\nProvides-Extra: HTTP2\n\
                    Summary: a\n  continued\n\nRequires-Dist: not-a-header\n";
        let metadata = parse_metadata(text).unwrap();
        assert_eq!(metadata.name, "demo-pkg");
        assert_eq!(metadata.requires_dist, ["httpx>=0.23", "h2<5,>=3; extra == \"http2\""]);
        assert_eq!(metadata.requires_python.as_deref(), Some(">=3.8"));
        assert_eq!(metadata.provides_extra, ["http2"]);
        assert!(parse_metadata("Version: 1\n").unwrap_err().to_string().contains("no Name"));
    }
}
