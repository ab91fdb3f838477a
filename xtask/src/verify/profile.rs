//! The modules the verify workload loaded: the "every loaded module had bytecode" check, and the
//! import profile `cargo xtask verify --record-profile` writes (format in `layer/profile.rs`).
//!
//! The check script lists every module loaded from a `.py` or `.pyc` file with the path it came
//! from. A module loaded from `x.py` had bytecode when the built layer (not the sandbox copy, which
//! the writable probe may have added `.pyc` files to) holds `__pycache__/x.cpython-3XY.pyc`, or,
//! inside `site-packages.zip`, the legacy `x.pyc` beside it (the only one zipimport reads).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::layer::bytecode;
use crate::layer::profile::recorded_name;
use crate::verify::CheckResult;

/// What the check script reported under `"check": "modules"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoadedModules {
    /// `sys.implementation._multiarch` of the interpreter that ran the workload.
    pub(crate) multiarch: String,
    /// `(module name, file it was loaded from)`, as the interpreter saw the path.
    pub(crate) modules: Vec<(String, String)>,
    /// Modules whose source text was read during the workload (`inspect.getsource`, tracebacks).
    pub(crate) source_read: Vec<String>,
}

impl LoadedModules {
    /// The `modules` line among the check script's results, if it got that far.
    pub(crate) fn from_results(results: &[Value]) -> Option<LoadedModules> {
        let line = results.iter().find(|r| r["check"] == "modules")?;
        let modules = line["modules"]
            .as_array()?
            .iter()
            .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_string(), pair.get(1)?.as_str()?.to_string())))
            .collect();
        let source_read = line["source_read"]
            .as_array()
            .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Some(LoadedModules { multiarch: line["multiarch"].as_str().unwrap_or("").to_string(), modules, source_read })
    }

    /// The names to record in the import profile (the multiarch triple replaced by a placeholder).
    pub(crate) fn profile_names(&self) -> BTreeSet<String> {
        self.modules.iter().map(|(name, _)| recorded_name(name)).collect()
    }

    /// The names to record as keeping their source.
    pub(crate) fn keep_source_names(&self) -> BTreeSet<String> {
        self.source_read.iter().map(|name| recorded_name(name)).collect()
    }
}

/// The path of `origin` inside the layer's `python/` directory, given the prefixes under which
/// the interpreter saw that directory (`/opt/python/`, or the sandbox copy's path).
fn layer_relative<'a>(origin: &'a str, python_prefixes: &[String]) -> Option<&'a str> {
    python_prefixes.iter().find_map(|prefix| origin.strip_prefix(prefix.as_str()))
}

/// Where the bytecode of `relative` (a `.py` path inside `python/`) must be, and whether it is
/// inside `site-packages.zip` (then the path is the zip member's name).
fn expected_bytecode(relative: &str) -> Option<(bool, String)> {
    if let Some((_, member)) = relative.split_once("/site-packages.zip/") {
        return Some((true, bytecode::legacy_pyc_path(member)));
    }
    // `lib/python3.X/...`: the cache tag comes from the version directory.
    let version = relative.strip_prefix("lib/python")?.split('/').next()?;
    let tag = version.parse::<crate::python_version::PythonVersion>().ok()?.cache_tag();
    Some((false, bytecode::pycache_path(relative, &tag)))
}

/// "every loaded module had bytecode": each module the workload loaded from a `.py` file has its
/// `.pyc` in the built layer at `layer_dir` (holding `python/`).
pub(crate) fn bytecode_check(
    layer_dir: &Path,
    python_prefixes: &[String],
    loaded: &LoadedModules,
) -> Result<CheckResult> {
    let python = layer_dir.join("python");
    let mut zip_members: Option<BTreeSet<String>> = None;
    let (mut from_pyc, mut sourceless, mut outside) = (0usize, 0usize, 0usize);
    let mut missing = Vec::new();
    for (name, origin) in &loaded.modules {
        let Some(relative) = layer_relative(origin, python_prefixes) else {
            outside += 1;
            continue;
        };
        if let Some(stem) = relative.strip_suffix(".pyc") {
            // zipimport names the .pyc it loaded even when the .py is beside it.
            let source = format!("{stem}.py");
            let has_source = match source.split_once("/site-packages.zip/") {
                Some((lib, member)) => zip_members_of(&mut zip_members, &python, lib)?.contains(member),
                None => python.join(&source).is_file(),
            };
            sourceless += usize::from(!has_source);
            from_pyc += 1;
            continue;
        }
        let Some((in_zip, pyc)) = expected_bytecode(relative) else {
            missing.push(format!("{name} ({relative}: not under lib/python3.X)"));
            continue;
        };
        let present = if in_zip {
            let lib = relative.split_once("/site-packages.zip/").map_or("", |(lib, _)| lib);
            zip_members_of(&mut zip_members, &python, lib)?.contains(&pyc)
        } else {
            python.join(&pyc).is_file()
        };
        if present {
            from_pyc += 1;
        } else {
            missing.push(format!("{name} ({relative})"));
        }
    }
    let ok = missing.is_empty() && from_pyc > 0;
    let detail = if ok {
        format!(
            "{from_pyc} modules loaded from .pyc ({sourceless} without source){}",
            if outside > 0 { format!("; {outside} from outside the layer") } else { String::new() }
        )
    } else {
        let mut lines = vec![format!(
            "{} of {} modules loaded from .py had no .pyc in the layer (each compiles on every cold start); \
             the import profile is stale or incomplete: run `cargo xtask verify --record-profile`, then rebuild the layer:",
            missing.len(),
            missing.len() + from_pyc
        )];
        lines.extend(missing.iter().take(20).map(|m| format!("  {m}")));
        if missing.len() > 20 {
            lines.push(format!("  ... and {} more", missing.len() - 20));
        }
        lines.join("\n") + "\n"
    };
    Ok(CheckResult { name: "every loaded module had bytecode".into(), ok, detail })
}

/// The member names of `<python>/<lib>/site-packages.zip`, read once.
fn zip_members_of<'a>(
    members: &'a mut Option<BTreeSet<String>>,
    python: &Path,
    lib: &str,
) -> Result<&'a BTreeSet<String>> {
    if members.is_none() {
        *members = Some(zip_member_names(&python.join(lib).join("site-packages.zip"))?);
    }
    Ok(members.get_or_insert_with(BTreeSet::new))
}

fn zip_member_names(path: &Path) -> Result<BTreeSet<String>> {
    let file = fs_err::File::open(path)?;
    let archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("reading {} (rebuild the layer)", path.display()))?;
    let mut names = BTreeSet::new();
    for name in archive.file_names() {
        names.insert(name.with_context(|| format!("reading {} (rebuild the layer)", path.display()))?.into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bytecode_is_found_in_pycache_beside_or_in_the_zip() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("python/lib/python3.11");
        fs_err::create_dir_all(lib.join("json/__pycache__")).unwrap();
        fs_err::create_dir_all(lib.join("site-packages/pkg")).unwrap();
        fs_err::write(lib.join("json/__pycache__/decoder.cpython-311.pyc"), "").unwrap();
        fs_err::write(lib.join("site-packages/pkg/fast.pyc"), "").unwrap();
        crate::layer::pack::write_zip(
            vec![crate::layer::pack::ZipEntry {
                name: "zpkg/__init__.pyc".into(),
                kind: crate::layer::pack::EntryKind::File {
                    path: lib.join("json/__pycache__/decoder.cpython-311.pyc"),
                    executable: false,
                },
            }],
            &lib.join("../python3.11/site-packages.zip"),
            zip::DateTime::default(),
        )
        .unwrap();
        let results = vec![json!({"check": "modules", "multiarch": "x86_64-linux-gnu", "modules": [
            ["json.decoder", "/opt/python/lib/python3.11/json/decoder.py"],
            ["pkg.fast", "/opt/python/lib/python3.11/site-packages/pkg/fast.pyc"],
            ["zpkg", "/opt/python/lib/python3.11/site-packages.zip/zpkg/__init__.pyc"],
            ["_sysconfigdata__linux_x86_64-linux-gnu", "/opt/python/lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py"],
            ["zpkg.other", "/opt/python/lib/python3.11/site-packages.zip/zpkg/other.py"],
            ["elsewhere", "/usr/lib/python3/elsewhere.py"],
        ], "source_read": ["zpkg"]})];
        let loaded = LoadedModules::from_results(&results).unwrap();
        assert!(loaded.profile_names().contains("_sysconfigdata_{build}"));
        assert_eq!(loaded.keep_source_names().into_iter().collect::<Vec<_>>(), ["zpkg"]);
        let check = bytecode_check(dir.path(), &["/opt/python/".to_string()], &loaded).unwrap();
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            "2 of 5 modules loaded from .py had no .pyc in the layer (each compiles on every cold start); the import \
             profile is stale or incomplete: run `cargo xtask verify --record-profile`, then rebuild the layer:\n  \
             _sysconfigdata__linux_x86_64-linux-gnu (lib/python3.11/_sysconfigdata__linux_x86_64-linux-gnu.py)\n  \
             zpkg.other (lib/python3.11/site-packages.zip/zpkg/other.py)\n"
        );
        let good =
            LoadedModules { multiarch: String::new(), modules: loaded.modules[..3].to_vec(), source_read: vec![] };
        let check = bytecode_check(dir.path(), &["/opt/python/".to_string()], &good).unwrap();
        assert!(check.ok, "{}", check.detail);
        assert_eq!(check.detail, "3 modules loaded from .pyc (2 without source)");
    }
}
