//! Wheel file names: `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/binary-distribution-format/#file-name-convention>
//! and compressed tag sets: <https://packaging.python.org/en/latest/specifications/platform-compatibility-tags/#compressed-tag-sets>.

use std::fmt;
use std::str::FromStr;

use pep440_rs::Version;

/// A parsed wheel file name. `Display` gives the file name back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFilename {
    /// The distribution name as written (escaped: `-` replaced by `_`).
    pub(crate) name: String,
    pub version: Version,
    /// Optional build tag; must start with a digit.
    pub(crate) build: Option<String>,
    /// Python tags of the compressed set, e.g. `["py2", "py3"]`.
    pub python_tags: Vec<String>,
    /// ABI tags, e.g. `["cp311"]` or `["abi3"]` or `["none"]`.
    pub abi_tags: Vec<String>,
    /// Platform tags, e.g. `["manylinux_2_17_x86_64", "manylinux2014_x86_64"]` or `["any"]`.
    pub platform_tags: Vec<String>,
    original: String,
}

/// Why a file name is not a wheel name. Each variant carries the offending name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WheelFilenameError {
    #[error("{0:?} is not a wheel file name (it must end in .whl)")]
    NotAWheel(String),
    #[error("{0:?} is not a valid wheel file name: expected 5 or 6 dash-separated parts, found {1}")]
    WrongPartCount(String, usize),
    #[error("{0:?} is not a valid wheel file name: version {1:?} is not PEP 440: {2}")]
    InvalidVersion(String, String, String),
    #[error("{0:?} is not a valid wheel file name: build tag {1:?} must start with a digit")]
    InvalidBuildTag(String, String),
    #[error("{0:?} is not a valid wheel file name: empty {1}")]
    EmptyPart(String, &'static str),
}

impl FromStr for WheelFilename {
    type Err = WheelFilenameError;

    fn from_str(filename: &str) -> Result<Self, Self::Err> {
        let stem = filename.strip_suffix(".whl").ok_or_else(|| WheelFilenameError::NotAWheel(filename.to_string()))?;
        let parts: Vec<&str> = stem.split('-').collect();
        let (name, version, build, python, abi, platform) = match parts.as_slice() {
            [name, version, python, abi, platform] => (*name, *version, None, *python, *abi, *platform),
            [name, version, build, python, abi, platform] => (*name, *version, Some(*build), *python, *abi, *platform),
            _ => return Err(WheelFilenameError::WrongPartCount(filename.to_string(), parts.len())),
        };
        for (part, what) in
            [(name, "name"), (version, "version"), (python, "python tag"), (abi, "abi tag"), (platform, "platform tag")]
        {
            if part.is_empty() {
                return Err(WheelFilenameError::EmptyPart(filename.to_string(), what));
            }
        }
        let parsed_version = Version::from_str(version).map_err(|e| {
            WheelFilenameError::InvalidVersion(filename.to_string(), version.to_string(), e.to_string())
        })?;
        if let Some(build) = build
            && !build.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(WheelFilenameError::InvalidBuildTag(filename.to_string(), build.to_string()));
        }
        let split = |tags: &str| tags.split('.').map(str::to_string).collect::<Vec<_>>();
        Ok(WheelFilename {
            name: name.to_string(),
            version: parsed_version,
            build: build.map(str::to_string),
            python_tags: split(python),
            abi_tags: split(abi),
            platform_tags: split(platform),
            original: filename.to_string(),
        })
    }
}

impl fmt::Display for WheelFilename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl WheelFilename {
    /// The PEP 503 normalized distribution name (`Typing_Extensions` → `typing-extensions`).
    pub(crate) fn normalized_name(&self) -> String {
        normalize_name(&self.name)
    }

    /// The build tag's sort key: (leading number, rest), as the spec orders build tags.
    pub(crate) fn build_key(&self) -> (u64, String) {
        match &self.build {
            None => (0, String::new()),
            Some(build) => {
                let digits: String = build.chars().take_while(char::is_ascii_digit).collect();
                (digits.parse().unwrap_or(0), build[digits.len()..].to_string())
            }
        }
    }
}

/// PEP 503 name normalization: lower-case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_was_separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_was_separator {
                out.push('-');
            }
            last_was_separator = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_was_separator = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_binary_wheel_with_compressed_platform_tags() {
        let name = "tokenizers-0.22.1-cp39-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl";
        let wheel: WheelFilename = name.parse().unwrap();
        assert_eq!(wheel.name, "tokenizers");
        assert_eq!(wheel.version.to_string(), "0.22.1");
        assert_eq!(wheel.python_tags, ["cp39"]);
        assert_eq!(wheel.abi_tags, ["abi3"]);
        assert_eq!(wheel.platform_tags, ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]);
        assert_eq!(wheel.to_string(), name);
    }

    #[test]
    fn parses_build_tags_and_normalizes_names() {
        let wheel: WheelFilename = "Typing_Extensions-4.15.0-1a-py3-none-any.whl".parse().unwrap();
        assert_eq!(wheel.build.as_deref(), Some("1a"));
        assert_eq!(wheel.build_key(), (1, "a".to_string()));
        assert_eq!(wheel.normalized_name(), "typing-extensions");
        assert_eq!(normalize_name("zope.interface__x"), "zope-interface-x");
    }

    #[test]
    fn errors_carry_the_offending_name() {
        let cases = [
            ("litellm-1.78.7.tar.gz", "is not a wheel file name"),
            ("litellm-py3-none-any.whl", "expected 5 or 6 dash-separated parts, found 4"),
            ("litellm-one-py3-none-any.whl", "version \"one\" is not PEP 440"),
            ("litellm-1.0-x1-py3-none-any.whl", "build tag \"x1\" must start with a digit"),
        ];
        for (name, want) in cases {
            let err = name.parse::<WheelFilename>().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains(want), "want {want:?}: {err}");
        }
    }
}
