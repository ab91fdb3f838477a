//! The lock's top-level fields, checked against this tool (`lock-version`, unknown keys).
//!
//! PEP 751 (<https://packaging.python.org/en/latest/specifications/pylock-toml/>):
//! "`lock-version` [...] If a tool supports the major version but not the minor version, a tool
//! SHOULD warn when an unknown key is seen. If a tool doesn't support a major version, it MUST
//! raise an error." (`requires-python` and `environments` are checked against the build by
//! `layer::resolved`.)

use anyhow::{Result, anyhow, bail};

/// The `lock-version` this tool reads and writes.
pub(crate) const LOCK_VERSION: (u64, u64) = (1, 0);

/// The top-level keys of PEP 751 (`tool` holds this tool's own table).
const KNOWN_KEYS: &[&str] = &[
    "lock-version",
    "environments",
    "requires-python",
    "extras",
    "dependency-groups",
    "default-groups",
    "created-by",
    "packages",
    "tool",
];

/// Check `lock-version` and the top-level keys of a lock's text. Returns warnings (a newer minor
/// version, unknown keys); a newer major version or an unreadable version is an error.
pub(crate) fn check_top_level(text: &str, lock_version: &str, shown: &str) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let parsed = lock_version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u64>().ok()?, minor.parse::<u64>().ok()?)));
    let Some((major, minor)) = parsed else {
        bail!("{shown}: lock-version = {lock_version:?} is not MAJOR.MINOR; this tool reads lock-version 1.0");
    };
    if major != LOCK_VERSION.0 {
        bail!(
            "{shown}: lock-version = {lock_version:?}; this tool reads lock-version {}.x only: re-run `cargo xtask lock` \
             to write a lock it can install",
            LOCK_VERSION.0
        );
    }
    if minor > LOCK_VERSION.1 {
        warnings.push(format!(
            "{shown}: lock-version {lock_version} is newer than {}.{}, which this tool reads; keys it does not know are \
             ignored",
            LOCK_VERSION.0, LOCK_VERSION.1
        ));
    }
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow!("{shown}: {}", e.to_string().trim_end()))?;
    for key in table.keys().filter(|key| !KNOWN_KEYS.contains(&key.as_str())) {
        warnings.push(format!("{shown}: unknown top-level key {key:?} is ignored"));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::packaging::pylock::Pylock;

    const ENVIRONMENTS: &str = r#"environments = ["sys_platform == 'linux' and platform_machine == 'x86_64' and implementation_name == 'cpython'"]
requires-python = "==3.11.*"
created-by = "test"
"#;

    fn lock_text(version: &str, extra: &str) -> String {
        format!("lock-version = \"{version}\"\n{ENVIRONMENTS}{extra}")
    }

    fn parse(text: &str) -> Result<Pylock> {
        Pylock::parse(text, Path::new("pylock.toml"))
    }

    #[test]
    fn lock_version_minor_warns_and_major_refuses() {
        assert!(parse(&lock_text("1.0", "")).unwrap().warnings.is_empty());
        assert_eq!(
            parse(&lock_text("1.3", "")).unwrap().warnings,
            [
                "pylock.toml: lock-version 1.3 is newer than 1.0, which this tool reads; keys it does not know are ignored"
            ]
        );
        assert_eq!(
            format!("{:#}", parse(&lock_text("2.0", "")).unwrap_err()),
            "pylock.toml: lock-version = \"2.0\"; this tool reads lock-version 1.x only: re-run `cargo xtask lock` to \
             write a lock it can install"
        );
        assert_eq!(
            format!("{:#}", parse(&lock_text("one", "")).unwrap_err()),
            "pylock.toml: lock-version = \"one\" is not MAJOR.MINOR; this tool reads lock-version 1.0"
        );
    }

    #[test]
    fn unknown_top_level_keys_warn() {
        let lock = parse(&lock_text("1.0", "signed-by = \"someone\"\n")).unwrap();
        assert_eq!(lock.warnings, ["pylock.toml: unknown top-level key \"signed-by\" is ignored"]);
    }
}
