//! The import profile: the modules the `cargo xtask verify` workload loads, committed beside the
//! lock as `import-profile.toml`, and what the pack step makes of it.
//!
//! `cargo xtask verify --record-profile` writes it from the modules loaded by the workload
//! (`import litellm` and the `[verify] imports`, token counting, a completion and a streaming
//! completion, both also through `acompletion`). The file is tied to the lock by its sha256 and to
//! the workload by a digest of the check script and the import list. `layer` compiles `.pyc` for
//! the profiled modules only (`[pack] bytecode = "profile"`) and can ship them without source
//! (`[pack] sourceless = "profile"`); with no profile, or one made for another lock, it compiles
//! every module, as `bytecode = "all"` does.
//!
//! Module names of pure-Python modules do not depend on the architecture, so a profile recorded on
//! the host architecture serves an arm64 cross-build of the same lock. The one name that does is
//! the interpreter's build configuration, `_sysconfigdata_<abiflags>_<platform>_<multiarch>`
//! (`_sysconfigdata__linux_x86_64-linux-gnu` in python-build-standalone,
//! `_sysconfigdata__aarch64-linux-gnu` in Debian's build): it is recorded as
//! `_sysconfigdata_{build}` and stands for whichever `_sysconfigdata_*` module the target has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Deserialize;

use crate::progress::Progress;
use crate::sha256::Sha256;
use crate::spec::{BytecodeChoice, LayerSpec, Sourceless};

/// The profile's file name, beside `pylock.toml`.
pub(crate) const PROFILE_FILE_NAME: &str = "import-profile.toml";

/// How the interpreter's build-configuration module (`_sysconfigdata_*`) is recorded.
pub(crate) const SYSCONFIGDATA: &str = "_sysconfigdata_{build}";

/// The committed import profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ImportProfile {
    /// sha256 of the `pylock.toml` the profiled layer was built from.
    pub(crate) lock_sha256: String,
    /// [`workload_sha256`] of the verify workload that loaded the modules.
    pub(crate) workload_sha256: String,
    /// The architecture the workload ran on (informational).
    pub(crate) recorded_on: String,
    /// Dotted module names, sorted.
    pub(crate) modules: BTreeSet<String>,
    /// Modules whose source text the workload read (`inspect.getsource`: anyio parses its own
    /// `__init__.py` at import time): they keep their `.py` even with `sourceless = "profile"`.
    #[serde(default)]
    pub(crate) keep_source: BTreeSet<String>,
}

/// `import-profile.toml` beside the lock `lock_path`.
pub(crate) fn profile_path(lock_path: &Path) -> PathBuf {
    lock_path.parent().unwrap_or(Path::new(".")).join(PROFILE_FILE_NAME)
}

/// sha256 of a file's bytes, as lower-case hex (the lock's identity in the profile).
pub(crate) fn file_sha256(path: &Path) -> Result<String> {
    Ok(hex(&Sha256::digest(fs_err::read(path)?)))
}

/// The workload's identity: the check script and the modules it imports.
pub(crate) fn workload_sha256(check_script: &str, imports: &[String]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(check_script.as_bytes());
    for name in imports {
        hasher.update(b"\0");
        hasher.update(name.as_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` looks like a dotted module name (identifier parts; `-` is allowed because
/// `_sysconfigdata__linux_x86_64-linux-gnu` holds it).
fn is_module_name(name: &str) -> bool {
    let plain = if name == SYSCONFIGDATA { "_sysconfigdata_" } else { name };
    !plain.is_empty()
        && plain.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        })
}

impl ImportProfile {
    /// Read the profile at `path`; `None` when there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<ImportProfile>> {
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let fix = "delete it and run `cargo xtask verify --record-profile` on a freshly built layer";
        let profile: ImportProfile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}; {fix}", path.display(), e.to_string().trim_end()))?;
        for (key, value) in [("lock-sha256", &profile.lock_sha256), ("workload-sha256", &profile.workload_sha256)] {
            if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                bail!("{}: {key} = {value:?} is not 64 lower-case hex digits; {fix}", path.display());
            }
        }
        for (key, names) in [("modules", &profile.modules), ("keep-source", &profile.keep_source)] {
            if let Some(bad) = names.iter().find(|m| !is_module_name(m)) {
                bail!("{}: {bad:?} in {key} is not a dotted module name; {fix}", path.display());
            }
        }
        Ok(Some(profile))
    }

    /// The file's text: a comment saying what it is, the keys, one module per line.
    pub(crate) fn to_toml(&self) -> String {
        let mut out = String::from(
            "# The modules the `cargo xtask verify` workload loads (import, token counting, completion and\n\
             # streaming, sync and async). `cargo xtask layer` compiles .pyc for exactly these ([pack] bytecode)\n\
             # and ships the rest as .py. Written by `cargo xtask verify --record-profile`; do not edit.\n",
        );
        out.push_str(&format!("lock-sha256 = \"{}\"\n", self.lock_sha256));
        out.push_str(&format!("workload-sha256 = \"{}\"\n", self.workload_sha256));
        out.push_str(&format!("recorded-on = \"{}\"\n", self.recorded_on));
        for (key, names) in [("keep-source", &self.keep_source), ("modules", &self.modules)] {
            out.push_str(&format!("{key} = [\n"));
            for name in names {
                out.push_str(&format!("  \"{name}\",\n"));
            }
            out.push_str("]\n");
        }
        out
    }

    /// Write the profile to `path` (temp file in the same directory, then rename).
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        crate::files::write_atomically(path, self.to_toml().as_bytes())
    }

    /// Why this profile does not describe `lock_sha256` and `workload_sha256` (empty: it does).
    pub(crate) fn staleness(&self, lock_sha256: &str, workload_sha256: Option<&str>) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.lock_sha256 != lock_sha256 {
            reasons.push("the lock changed");
        }
        if workload_sha256.is_some_and(|w| w != self.workload_sha256) {
            reasons.push("the verify workload changed");
        }
        reasons
    }
}

/// A loaded module's name as recorded: any `_sysconfigdata_*` module becomes [`SYSCONFIGDATA`].
pub(crate) fn recorded_name(name: &str) -> String {
    if name.starts_with("_sysconfigdata_") { SYSCONFIGDATA.to_string() } else { name.to_string() }
}

/// The module a `.py` file defines, from its path relative to `lib/python3.X` (stdlib) or to
/// `site-packages` (after stripping `site-packages/`): `json/decoder.py` → `json.decoder`,
/// `pkg/__init__.py` → `pkg`. `None` for files no import statement can reach (a part that is not
/// an identifier, such as `litellm/proxy/_experimental/out` or `foo-1.0.dist-info`).
pub(crate) fn module_name_of(relative: &str) -> Option<String> {
    let relative = relative.strip_prefix("site-packages/").unwrap_or(relative);
    let stem = relative.strip_suffix(".py")?;
    let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
    let name = stem.replace('/', ".");
    let importable = name.split('.').all(|part| {
        !part.is_empty()
            && !part.starts_with(|c: char| c.is_ascii_digit())
            && part.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    });
    // `-` only appears in the sysconfigdata module name, which is imported by name.
    let dashed_ok = !name.contains('-') || name.starts_with("_sysconfigdata_");
    (importable && dashed_ok).then_some(name)
}

/// Which modules the pack step compiles and which ship without source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BytecodePlan {
    /// `None`: every module. `Some`: only these (names expanded for the target architecture).
    pub profiled: Option<BTreeSet<String>>,
    /// Profiled modules of distributions ship as `.pyc` only. The stdlib keeps its `.py` files:
    /// the runtime step reuses the previous build's stdlib only when every file it listed is there.
    pub sourceless: bool,
    /// Profiled modules that keep their source all the same (they read it at run time).
    pub keep_source: BTreeSet<String>,
    /// Where compiled `.pyc` files are cached (`<cache>/bytecode`); `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl BytecodePlan {
    /// Whether the module defined by the file at `relative` (to `lib/python3.X`) gets a `.pyc`.
    pub(crate) fn compiles(&self, relative: &str) -> bool {
        match &self.profiled {
            None => true,
            Some(modules) => module_name_of(relative).is_some_and(|m| modules.contains(&recorded_name(&m))),
        }
    }

    /// Whether that file ships as `.pyc` only.
    pub(crate) fn drops_source(&self, relative: &str) -> bool {
        self.sourceless
            && self.profiled.is_some()
            && relative.starts_with("site-packages/")
            && self.compiles(relative)
            && module_name_of(relative).is_none_or(|m| !self.keep_source.contains(&recorded_name(&m)))
    }

    /// The plan for `spec` and the lock at `lock_path`, building `arch`: the profile beside the
    /// lock when `[pack] bytecode = "profile"` and it was made for this lock; else every module,
    /// with a warning saying how to get a current profile.
    pub(crate) fn for_build(spec: &LayerSpec, lock_path: &Path, progress: &Progress) -> Result<BytecodePlan> {
        if spec.pack.bytecode == BytecodeChoice::All {
            return Ok(BytecodePlan::default());
        }
        let path = profile_path(lock_path);
        let record = "run `cargo xtask verify --record-profile` on a layer built from this lock, then rebuild";
        let Some(profile) = ImportProfile::load(&path)? else {
            progress.warn(format!("no import profile at {}: byte-compiling every module; {record}", path.display()));
            return Ok(BytecodePlan::default());
        };
        let lock_sha256 = file_sha256(lock_path)?;
        let stale = profile.staleness(&lock_sha256, None);
        if !stale.is_empty() {
            progress.warn(format!(
                "the import profile {} is stale ({}): byte-compiling every module; {record}",
                path.display(),
                stale.join(", ")
            ));
            return Ok(BytecodePlan::default());
        }
        let (modules, keep_source) = (profile.modules, profile.keep_source);
        progress.note(format!(
            "import profile {} ({} modules, recorded on {}): .pyc for those{}",
            path.display(),
            modules.len(),
            profile.recorded_on,
            if spec.pack.sourceless == Sourceless::Profile {
                ", shipped without their .py in site-packages"
            } else {
                ""
            }
        ));
        Ok(BytecodePlan {
            profiled: Some(modules),
            sourceless: spec.pack.sourceless == Sourceless::Profile,
            keep_source,
            cache_dir: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(modules: &[&str]) -> ImportProfile {
        ImportProfile {
            lock_sha256: "a".repeat(64),
            workload_sha256: "b".repeat(64),
            recorded_on: "x86_64".into(),
            modules: modules.iter().map(|m| m.to_string()).collect(),
            keep_source: ["anyio"].into_iter().map(String::from).collect(),
        }
    }

    #[test]
    fn module_names_from_paths() {
        assert_eq!(module_name_of("json/decoder.py").as_deref(), Some("json.decoder"));
        assert_eq!(module_name_of("site-packages/litellm/__init__.py").as_deref(), Some("litellm"));
        assert_eq!(module_name_of("site-packages/six.py").as_deref(), Some("six"));
        assert_eq!(module_name_of("os.py").as_deref(), Some("os"));
        assert_eq!(
            module_name_of("_sysconfigdata__linux_x86_64-linux-gnu.py").as_deref(),
            Some("_sysconfigdata__linux_x86_64-linux-gnu")
        );
        assert_eq!(module_name_of("site-packages/foo-1.0.dist-info/x.py"), None);
        assert_eq!(module_name_of("site-packages/pkg/3rdparty/x.py"), None);
        assert_eq!(module_name_of("site-packages/pkg/data.json"), None);
    }

    #[test]
    fn round_trip_and_staleness() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_FILE_NAME);
        let written = profile(&["litellm", "json.decoder", "_sysconfigdata_{build}"]);
        written.write(&path).unwrap();
        let read = ImportProfile::load(&path).unwrap().unwrap();
        assert_eq!(read, written);
        assert!(read.staleness(&"a".repeat(64), Some(&"b".repeat(64))).is_empty());
        assert_eq!(
            read.staleness(&"c".repeat(64), Some(&"d".repeat(64))),
            ["the lock changed", "the verify workload changed"]
        );
        assert_eq!(ImportProfile::load(&dir.path().join("missing.toml")).unwrap(), None);
    }

    #[test]
    fn bad_profiles_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_FILE_NAME);
        let good = profile(&["litellm"]).to_toml();
        for (text, want) in [
            (good.replace(&"a".repeat(64), "xyz"), "lock-sha256 = \"xyz\" is not 64 lower-case hex digits"),
            (
                good.replace("\"litellm\"", "\"../etc/passwd\""),
                "\"../etc/passwd\" in modules is not a dotted module name",
            ),
            (format!("{good}extra = 1\n"), "unknown field `extra`"),
        ] {
            fs_err::write(&path, &text).unwrap();
            let message = format!("{:#}", ImportProfile::load(&path).unwrap_err());
            assert!(message.contains(want), "want {want:?} in {message}");
            assert!(message.starts_with(&path.display().to_string()), "{message}");
            assert!(
                message.ends_with("delete it and run `cargo xtask verify --record-profile` on a freshly built layer"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_build_configuration_module_is_recorded_under_one_name() {
        assert_eq!(recorded_name("_sysconfigdata__linux_x86_64-linux-gnu"), "_sysconfigdata_{build}");
        assert_eq!(recorded_name("json"), "json");
        let plan = BytecodePlan {
            profiled: Some([SYSCONFIGDATA.to_string()].into_iter().collect()),
            ..BytecodePlan::default()
        };
        // Debian's arm64 build names it without the platform part.
        assert!(plan.compiles("_sysconfigdata__aarch64-linux-gnu.py"));
        assert!(plan.compiles("_sysconfigdata__linux_x86_64-linux-gnu.py"));
        assert!(!plan.compiles("sysconfig.py"));
    }

    #[test]
    fn plan_decides_per_file() {
        let plan = BytecodePlan {
            profiled: Some(["litellm", "json", "anyio"].into_iter().map(String::from).collect()),
            sourceless: true,
            keep_source: ["anyio"].into_iter().map(String::from).collect(),
            cache_dir: None,
        };
        assert!(plan.compiles("site-packages/anyio/__init__.py"));
        assert!(!plan.drops_source("site-packages/anyio/__init__.py"), "anyio reads its own source");
        assert!(plan.compiles("site-packages/litellm/__init__.py"));
        assert!(plan.drops_source("site-packages/litellm/__init__.py"));
        assert!(plan.compiles("json/__init__.py"));
        assert!(!plan.drops_source("json/__init__.py"), "the stdlib keeps its sources");
        assert!(!plan.compiles("site-packages/litellm/proxy/server.py"));
        assert!(!plan.drops_source("site-packages/litellm/proxy/server.py"));
        let all = BytecodePlan::default();
        assert!(all.compiles("site-packages/anything/x.py") && !all.drops_source("site-packages/anything/x.py"));
    }
}
