//! An installed distribution: what the install step hands to prune, pack, the size report and the SBOM.

use serde::{Deserialize, Serialize};

/// One distribution installed into `site-packages/` from a locked wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledDist {
    /// Normalized name (PEP 503), e.g. `typing-extensions`.
    pub name: String,
    pub version: String,
    /// The wheel it came from, e.g. `litellm-1.78.7-py3-none-any.whl`.
    pub wheel_name: String,
    /// The wheel's sha256, as in the lock.
    pub wheel_sha256: String,
    /// The wheel's URL, as in the lock (credentials never present).
    pub wheel_url: String,
    /// The `.dist-info` directory name relative to site-packages, e.g. `litellm-1.78.7.dist-info`.
    pub dist_info: String,
    /// Every file the distribution has in site-packages now: POSIX paths relative to
    /// site-packages, sorted. Pruning removes entries; bytecode compilation adds `.pyc` files.
    pub files: Vec<String>,
}

impl InstalledDist {
    /// Top-level names the distribution occupies in site-packages (first path components other
    /// than its `.dist-info`), sorted and unique: `litellm`, `six.py`, `_cffi_backend.cpython-311-x86_64-linux-gnu.so`.
    pub(crate) fn top_level(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| f.split('/').next())
            .filter(|first| *first != self.dist_info)
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether any file is a compiled extension module (zipimport cannot load those).
    pub(crate) fn has_extension_modules(&self) -> bool {
        self.files.iter().any(|f| f.ends_with(".so") || f.contains(".so."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_skips_dist_info() {
        let dist = InstalledDist {
            name: "six".into(),
            version: "1.17.0".into(),
            wheel_name: "six-1.17.0-py2.py3-none-any.whl".into(),
            wheel_sha256: "0".repeat(64),
            wheel_url: "https://files.example/six.whl".into(),
            dist_info: "six-1.17.0.dist-info".into(),
            files: vec!["six-1.17.0.dist-info/METADATA".into(), "six.py".into()],
        };
        assert_eq!(dist.top_level(), ["six.py"]);
        assert!(!dist.has_extension_modules());
    }
}
