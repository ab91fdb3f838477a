//! A wheel's `RECORD`: every file of the wheel with its sha256 and size, parsed with `csv`.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/recording-installed-packages/#the-record-file>
//! and <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#the-dist-info-directory>:
//! "RECORD is a list of (almost) all the files in the wheel and their secure hashes. [...] every
//! file except RECORD, which cannot contain a hash of itself, must include its hash."

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

/// One row of RECORD: `path,sha256=<urlsafe-b64-nopad>,size`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RecordEntry {
    pub(crate) path: String,
    /// `algorithm=digest`, empty only for RECORD itself (and its signatures).
    pub(crate) hash: Option<String>,
    /// Size in bytes, empty only where the hash is.
    pub(crate) size: Option<u64>,
}

/// Why a RECORD is unusable. Each variant names the wheel and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("{wheel}: RECORD is not valid CSV at line {line}: {message}")]
    Csv { wheel: String, line: u64, message: String },
    #[error("{wheel}: RECORD lists {path:?} twice")]
    Duplicate { wheel: String, path: String },
    #[error("{wheel}: RECORD entry {path:?} is not a relative path inside the wheel ({why})")]
    UnsafePath { wheel: String, path: String, why: crate::files::UnsafePath },
    #[error("{wheel}: RECORD entry {path:?} has no hash (only RECORD itself may omit it)")]
    MissingHash { wheel: String, path: String },
    #[error(
        "{wheel}: RECORD entry {path:?} uses hash {hash:?}; only sha256=<urlsafe base64> is accepted \
         (md5 and sha1 are forbidden by the spec)"
    )]
    UnsupportedHash { wheel: String, path: String, hash: String },
}

/// A parsed RECORD, keyed by path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    entries: BTreeMap<String, RecordEntry>,
}

/// RECORD's own file name and its signatures, which may not carry hashes.
pub(crate) fn is_record_or_signature(path: &str, dist_info_dir: &str) -> bool {
    let Some(file) = path.strip_prefix(dist_info_dir).and_then(|rest| rest.strip_prefix('/')) else {
        return false;
    };
    matches!(file, "RECORD" | "RECORD.jws" | "RECORD.p7s")
}

impl Record {
    /// Parse RECORD text. `wheel` names the wheel in errors; `dist_info_dir` is where RECORD lives
    /// (entries there may omit hashes).
    pub(crate) fn parse(wheel: &str, dist_info_dir: &str, bytes: &[u8]) -> Result<Record, RecordError> {
        let mut reader =
            csv::ReaderBuilder::new().has_headers(false).escape(Some(b'"')).flexible(false).from_reader(bytes);
        let mut entries = BTreeMap::new();
        for row in reader.deserialize::<RecordEntry>() {
            let entry = row.map_err(|e| RecordError::Csv {
                wheel: wheel.to_string(),
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            check_path(wheel, &entry.path)?;
            let exempt = is_record_or_signature(&entry.path, dist_info_dir);
            match entry.hash.as_deref() {
                None | Some("") if !exempt => {
                    return Err(RecordError::MissingHash { wheel: wheel.to_string(), path: entry.path });
                }
                Some(hash) if !hash.is_empty() && !is_sha256_b64(hash) => {
                    return Err(RecordError::UnsupportedHash {
                        wheel: wheel.to_string(),
                        path: entry.path.clone(),
                        hash: hash.to_string(),
                    });
                }
                _ => {}
            }
            if entries.contains_key(&entry.path) {
                return Err(RecordError::Duplicate { wheel: wheel.to_string(), path: entry.path });
            }
            entries.insert(entry.path.clone(), entry);
        }
        Ok(Record { entries })
    }

    pub(crate) fn get(&self, path: &str) -> Option<&RecordEntry> {
        self.entries.get(path)
    }

    /// Paths in RECORD order-independent (sorted).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// `sha256=` followed by 43 characters of unpadded URL-safe base64 (32 bytes).
fn is_sha256_b64(hash: &str) -> bool {
    hash.strip_prefix("sha256=").is_some_and(|digest| {
        digest.len() == 43 && digest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The RECORD form of a sha256 digest: `sha256=<urlsafe-b64-nopad>`.
pub(crate) fn record_hash(digest: &[u8]) -> String {
    format!("sha256={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
}

/// Refuse a RECORD path that is absolute, climbs out with `..`, or is otherwise not a plain
/// POSIX path inside the wheel (`crate::files::enclosed_relative_path`).
fn check_path(wheel: &str, path: &str) -> Result<(), RecordError> {
    crate::files::enclosed_relative_path(path).map(drop).map_err(|why| RecordError::UnsafePath {
        wheel: wheel.to_string(),
        path: path.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const WHEEL: &str = "demo-1.0-py3-none-any.whl";

    #[test]
    fn parses_rows_with_quotes_and_empty_fields() {
        let hash = record_hash(&Sha256::digest(b"x"));
        let text = format!("demo/__init__.py,{hash},1\n\"demo/a,b.py\",{hash},1\ndemo-1.0.dist-info/RECORD,,\n");
        let record = Record::parse(WHEEL, "demo-1.0.dist-info", text.as_bytes()).unwrap();
        assert_eq!(record.len(), 3);
        assert_eq!(record.get("demo/a,b.py").unwrap().size, Some(1));
        assert_eq!(record.get("demo-1.0.dist-info/RECORD").unwrap().hash, None);
    }

    #[test]
    fn hash_format_matches_pip() {
        // sha256 of the empty string, as pip/wheel write it.
        assert_eq!(record_hash(&Sha256::digest(b"")), "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let hash = record_hash(&Sha256::digest(b"x"));
        let cases = [
            (
                format!("../x,{hash},1\n"),
                "RECORD entry \"../x\" is not a relative path inside the wheel ('..' component)",
            ),
            (
                format!("/etc/passwd,{hash},1\n"),
                "\"/etc/passwd\" is not a relative path inside the wheel (absolute path)",
            ),
            ("demo/a.py,,\n".to_string(), "RECORD entry \"demo/a.py\" has no hash"),
            ("demo/a.py,md5=abc,1\n".to_string(), "uses hash \"md5=abc\""),
            (format!("demo/a.py,{hash},1\ndemo/a.py,{hash},1\n"), "RECORD lists \"demo/a.py\" twice"),
            (format!("demo/a.py,{hash}\n"), "RECORD is not valid CSV"),
        ];
        for (text, want) in cases {
            let err = Record::parse(WHEEL, "demo-1.0.dist-info", text.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with(WHEEL), "{err}");
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }
}
