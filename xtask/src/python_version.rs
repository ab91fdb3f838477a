//! The CPython minor version the layer ships and every name derived from it: the interpreter
//! (`python3.X`), the standard library directory (`lib/python3.X`), the bytecode cache tag
//! (`cpython-3X`), the wheel tags (`cp3X`), the Lambda runtime name and the range of `.pyc`
//! magic numbers (the paths under `/opt` are `lambda`'s, from these). Parsed once, from `[python] version` in `layer.toml`; no
//! other module spells a minor version out.

use std::fmt;
use std::ops::RangeInclusive;
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
    pub const SUPPORTED: [PythonVersion; 3] =
        [PythonVersion { minor: 11 }, PythonVersion { minor: 12 }, PythonVersion { minor: 13 }];

    /// The minor version of a full version such as `3.11.14` (or `3.12.0rc1`).
    pub fn from_full_version(full: &str) -> Result<PythonVersion, PythonVersionError> {
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
    pub fn minor(self) -> u32 {
        u32::from(self.minor)
    }

    /// `3.11`, as `layer.toml`, the pinned manifest and `python_version` markers write it.
    pub fn dotted(self) -> String {
        format!("3.{}", self.minor)
    }

    /// The interpreter's file name in `bin/`: `python3.11`. Also the Lambda runtime name
    /// (`CompatibleRuntimes`).
    pub fn interpreter_name(self) -> String {
        format!("python3.{}", self.minor)
    }

    /// The standard library directory relative to the Python home: `lib/python3.11`.
    pub fn stdlib_dir(self) -> String {
        format!("lib/python3.{}", self.minor)
    }

    /// The site-packages directory relative to the Python home: `lib/python3.11/site-packages`.
    pub fn site_packages_dir(self) -> String {
        format!("lib/python3.{}/site-packages", self.minor)
    }

    /// The C headers directory relative to the Python home: `include/python3.11`.
    pub fn include_dir(self) -> String {
        format!("include/python3.{}", self.minor)
    }

    /// The `sys.implementation.cache_tag` of the `.pyc` files: `cpython-311` (PEP 3147).
    pub fn cache_tag(self) -> String {
        format!("cpython-3{}", self.minor)
    }

    /// The interpreter and ABI tag of wheels built for it: `cp311`
    /// (<https://packaging.python.org/en/latest/specifications/platform-compatibility-tags/>).
    pub fn cp_tag(self) -> String {
        format!("cp3{}", self.minor)
    }

    /// The `.pyc` magic numbers (the first two bytes, little-endian) this minor version's
    /// releases write: the range CPython reserves for it in `Lib/importlib/_bootstrap_external.py`.
    pub fn magic_numbers(self) -> RangeInclusive<u16> {
        match self.minor {
            11 => 3450..=3499,
            12 => 3500..=3549,
            _ => 3550..=3599,
        }
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
                3450..=3499,
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
                3500..=3549,
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
                3550..=3599,
            ),
        ];
        for (text, names, magic) in table {
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
            assert_eq!(v.magic_numbers(), magic, "{text}");
            assert_eq!(v.to_string(), text);
            assert_eq!(v.dotted(), text);
        }
    }

    #[test]
    fn magic_numbers_of_the_final_releases_fall_in_their_range() {
        // The magic numbers of 3.11.0, 3.12.0 and 3.13.0 (`importlib.util.MAGIC_NUMBER`).
        for (text, magic) in [("3.11", 3495), ("3.12", 3531), ("3.13", 3571)] {
            assert!(version(text).magic_numbers().contains(&magic), "{text}");
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
