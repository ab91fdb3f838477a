//! The CPython minor version the layer ships and every name derived from it: the interpreter
//! (`python3.X`, also the Lambda runtime name), the standard library directory (`lib/python3.X`),
//! the bytecode cache tag (`cpython-3X`) and the wheel tags (`cp3X`); the paths under `/opt` are
//! `lambda`'s, built from these. Parsed once, from `[python] version` in `layer.toml`; no other
//! module spells a minor version out. (Which `.pyc` magic number a version writes is not
//! hard-coded: the bytecode step asks the build interpreter, and checks it is the same minor
//! version, docs/architecture.md §4.)

use std::fmt;
use std::str::FromStr;

/// A CPython 3 minor version the layer can be built for (3.11, 3.12 or 3.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PythonVersion {
    minor: u8,
}

/// A version string that is not a supported `3.<minor>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PythonVersionError {
    #[error("{0:?} is not a minor version of the form \"3.11\"")]
    Malformed(String),
    #[error("python {0} is not supported: the layer is built for 3.11, 3.12 or 3.13")]
    Unsupported(String),
}

impl PythonVersion {
    /// The minor versions python-build-standalone is pinned for in `data/pbs-manifest.json`.
    pub(crate) const SUPPORTED: [PythonVersion; 3] =
        [PythonVersion { minor: 11 }, PythonVersion { minor: 12 }, PythonVersion { minor: 13 }];

    /// The minor version of a full version such as `3.11.14` (or `3.12.0rc1`).
    pub(crate) fn from_full_version(full: &str) -> Result<PythonVersion, PythonVersionError> {
        let mut parts = full.splitn(3, '.');
        let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(PythonVersionError::Malformed(full.to_string()));
        };
        let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
        if minor.is_empty() {
            return Err(PythonVersionError::Malformed(full.to_string()));
        }
        format!("{major}.{minor}").parse()
    }

    /// The minor number: 11 for 3.11.
    pub(crate) fn minor(self) -> u32 {
        u32::from(self.minor)
    }

    /// `3.11`, as `layer.toml`, the pinned manifest and `python_version` markers write it.
    pub(crate) fn dotted(self) -> String {
        format!("3.{}", self.minor)
    }

    /// The interpreter's file name in `bin/`: `python3.11`. Also the Lambda runtime name
    /// (`CompatibleRuntimes`).
    pub(crate) fn interpreter_name(self) -> String {
        format!("python3.{}", self.minor)
    }

    /// The standard library directory relative to the Python home: `lib/python3.11`.
    pub(crate) fn stdlib_dir(self) -> String {
        format!("lib/python3.{}", self.minor)
    }

    /// The site-packages directory relative to the Python home: `lib/python3.11/site-packages`.
    pub(crate) fn site_packages_dir(self) -> String {
        format!("lib/python3.{}/site-packages", self.minor)
    }

    /// The C headers directory relative to the Python home: `include/python3.11`.
    pub(crate) fn include_dir(self) -> String {
        format!("include/python3.{}", self.minor)
    }

    /// The `sys.implementation.cache_tag` of the `.pyc` files: `cpython-311` (PEP 3147).
    pub(crate) fn cache_tag(self) -> String {
        format!("cpython-3{}", self.minor)
    }

    /// The interpreter and ABI tag of wheels built for it: `cp311`
    /// (<https://packaging.python.org/en/latest/specifications/platform-compatibility-tags/>).
    pub(crate) fn cp_tag(self) -> String {
        format!("cp3{}", self.minor)
    }
}

impl FromStr for PythonVersion {
    type Err = PythonVersionError;

    fn from_str(text: &str) -> Result<PythonVersion, PythonVersionError> {
        let malformed = || PythonVersionError::Malformed(text.to_string());
        let (major, minor) = text.split_once('.').ok_or_else(malformed)?;
        let digits = |part: &str| !part.is_empty() && part.len() <= 3 && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return Err(malformed());
        }
        let (major, minor): (u16, u16) =
            (major.parse().map_err(|_| malformed())?, minor.parse().map_err(|_| malformed())?);
        PythonVersion::SUPPORTED
            .into_iter()
            .find(|supported| major == 3 && u16::from(supported.minor) == minor)
            .ok_or_else(|| PythonVersionError::Unsupported(text.to_string()))
    }
}

impl TryFrom<String> for PythonVersion {
    type Error = PythonVersionError;

    fn try_from(text: String) -> Result<PythonVersion, PythonVersionError> {
        text.parse()
    }
}

impl From<PythonVersion> for String {
    fn from(version: PythonVersion) -> String {
        version.dotted()
    }
}

impl fmt::Display for PythonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "3.{}", self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> PythonVersion {
        text.parse().unwrap()
    }

    #[test]
    fn every_derived_name_for_each_supported_minor() {
        let table = [
            (
                "3.11",
                [
                    "python3.11",
                    "lib/python3.11",
                    "lib/python3.11/site-packages",
                    "include/python3.11",
                    "cpython-311",
                    "cp311",
                ],
            ),
            (
                "3.12",
                [
                    "python3.12",
                    "lib/python3.12",
                    "lib/python3.12/site-packages",
                    "include/python3.12",
                    "cpython-312",
                    "cp312",
                ],
            ),
            (
                "3.13",
                [
                    "python3.13",
                    "lib/python3.13",
                    "lib/python3.13/site-packages",
                    "include/python3.13",
                    "cpython-313",
                    "cp313",
                ],
            ),
        ];
        for (text, names) in table {
            let v = version(text);
            let derived = [
                v.interpreter_name(),
                v.stdlib_dir(),
                v.site_packages_dir(),
                v.include_dir(),
                v.cache_tag(),
                v.cp_tag(),
            ];
            assert_eq!(derived, names, "{text}");
            assert_eq!(v.to_string(), text);
            assert_eq!(v.dotted(), text);
        }
    }

    #[test]
    fn full_versions_give_their_minor() {
        assert_eq!(PythonVersion::from_full_version("3.11.14"), Ok(version("3.11")));
        assert_eq!(PythonVersion::from_full_version("3.13.0rc1"), Ok(version("3.13")));
        assert_eq!(PythonVersion::from_full_version("3"), Err(PythonVersionError::Malformed("3".into())));
        assert_eq!(
            PythonVersion::from_full_version("3.10.4").unwrap_err().to_string(),
            "python 3.10 is not supported: the layer is built for 3.11, 3.12 or 3.13"
        );
    }

    #[test]
    fn bad_versions_are_named_in_the_error() {
        for (text, message) in [
            ("3.9", "python 3.9 is not supported: the layer is built for 3.11, 3.12 or 3.13"),
            ("2.11", "python 2.11 is not supported: the layer is built for 3.11, 3.12 or 3.13"),
            ("3.11.4", "\"3.11.4\" is not a minor version of the form \"3.11\""),
            ("311", "\"311\" is not a minor version of the form \"3.11\""),
            ("3.", "\"3.\" is not a minor version of the form \"3.11\""),
            ("", "\"\" is not a minor version of the form \"3.11\""),
        ] {
            assert_eq!(text.parse::<PythonVersion>().unwrap_err().to_string(), message, "{text}");
        }
    }

    #[test]
    fn serde_round_trips_as_the_dotted_string() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holder {
            version: PythonVersion,
        }
        let holder: Holder = toml::from_str("version = \"3.12\"").unwrap();
        assert_eq!(holder.version, version("3.12"));
        assert_eq!(toml::to_string(&holder).unwrap(), "version = \"3.12\"\n");
        let err = toml::from_str::<Holder>("version = \"3.8\"").unwrap_err().to_string();
        assert!(err.contains("python 3.8 is not supported"), "{err}");
    }
}
