//! Pruning the interpreter's standard library by the named rules of `[prune] stdlib` (docs/architecture.md §6, §7).
//!
//! Each rule names the paths it removes; every removal is measured first, so the size report can
//! say what each rule saved. Nothing is followed through symlinks: a rule only deletes real
//! directories and files (or the symlinks themselves) inside the python root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::python_version::PythonVersion;
use crate::spec::StdlibRule;

/// What one rule removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PruneRuleReport {
    pub(crate) rule: StdlibRule,
    /// Files (and symlinks) removed.
    pub(crate) files: u64,
    /// Bytes of regular files removed.
    pub(crate) bytes: u64,
    /// The removed paths, relative to the python root, sorted (directories as one path each).
    pub(crate) paths: Vec<String>,
}

/// The stdlib prune as a whole: sizes of the python root before and after, and each rule's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StdlibPruneReport {
    pub(crate) files_before: u64,
    pub(crate) bytes_before: u64,
    pub(crate) files_after: u64,
    pub(crate) bytes_after: u64,
    pub(crate) rules: Vec<PruneRuleReport>,
}

/// Apply `rules` (in order) to the python root of a CPython `minor` install.
pub(crate) fn prune_stdlib(
    python_root: &Path,
    minor: PythonVersion,
    rules: &[StdlibRule],
) -> Result<StdlibPruneReport> {
    let (files_before, bytes_before) = measure(python_root)?;
    let mut reports = Vec::new();
    for &rule in rules {
        let mut targets = rule_targets(rule, python_root, minor)?;
        targets.sort();
        targets.dedup();
        let mut report = PruneRuleReport { rule, files: 0, bytes: 0, paths: Vec::new() };
        for target in targets {
            let (files, bytes) = measure(&target)?;
            remove(&target)?;
            report.files += files;
            report.bytes += bytes;
            let relative = target.strip_prefix(python_root).unwrap_or(&target);
            report.paths.push(relative.to_string_lossy().to_string());
        }
        reports.push(report);
    }
    let (files_after, bytes_after) = measure(python_root)?;
    Ok(StdlibPruneReport { files_before, bytes_before, files_after, bytes_after, rules: reports })
}

/// The paths a rule removes (top-level ones: a directory stands for everything under it), as
/// documented on each `StdlibRule` variant.
fn rule_targets(rule: StdlibRule, python_root: &Path, minor: PythonVersion) -> Result<Vec<PathBuf>> {
    let stdlib = python_root.join(minor.stdlib_dir());
    let lib = python_root.join("lib");
    let bin = python_root.join("bin");
    let lib_dynload = stdlib.join("lib-dynload");
    let site_packages = stdlib.join("site-packages");
    let mut targets = Vec::new();
    let mut push_if_exists = |path: PathBuf| {
        if std::fs::symlink_metadata(&path).is_ok() {
            targets.push(path);
        }
    };
    match rule {
        StdlibRule::Test => {
            push_if_exists(stdlib.join("test"));
            for package in real_dirs(&stdlib)? {
                for name in ["test", "tests", "idle_test"] {
                    let inner = package.join(name);
                    if is_real_dir(&inner) {
                        push_if_exists(inner);
                    }
                }
            }
        }
        StdlibRule::Idlelib => {
            push_if_exists(stdlib.join("idlelib"));
            for path in children_matching(&bin, |name| name.starts_with("idle"))? {
                push_if_exists(path);
            }
        }
        StdlibRule::Tkinter => {
            push_if_exists(stdlib.join("tkinter"));
            for path in children_matching(&lib_dynload, |name| name.starts_with("_tkinter"))? {
                push_if_exists(path);
            }
            let tcl_tk = |name: &str| {
                ["tcl", "tk", "itcl", "thread", "tix", "Tix", "libtcl", "libtk", "libtix"]
                    .iter()
                    .any(|p| name.starts_with(p))
            };
            for path in children_matching(&lib, tcl_tk)? {
                push_if_exists(path);
            }
        }
        StdlibRule::Turtledemo | StdlibRule::PydocData | StdlibRule::Distutils => {
            push_if_exists(stdlib.join(rule.name()));
        }
        StdlibRule::Lib2to3 => {
            push_if_exists(stdlib.join("lib2to3"));
            for path in children_matching(&bin, |name| name.starts_with("2to3"))? {
                push_if_exists(path);
            }
        }
        StdlibRule::Phello => {
            push_if_exists(stdlib.join("__phello__"));
            push_if_exists(stdlib.join("__hello__.py"));
        }
        StdlibRule::Ensurepip => {
            push_if_exists(stdlib.join("ensurepip"));
            let preinstalled = |name: &str| {
                let dist = |d: &str| name == d || (name.starts_with(&format!("{d}-")) && name.ends_with(".dist-info"));
                dist("pip")
                    || dist("setuptools")
                    || name == "pkg_resources"
                    || name == "_distutils_hack"
                    || name == "distutils-precedence.pth"
            };
            for path in children_matching(&site_packages, preinstalled)? {
                push_if_exists(path);
            }
            for path in children_matching(&bin, |name| name == "pip" || name.starts_with("pip3"))? {
                push_if_exists(path);
            }
        }
        StdlibRule::Config => {
            let prefix = format!("config-{minor}");
            for path in children_matching(&stdlib, |name| name.starts_with(&prefix))? {
                push_if_exists(path);
            }
        }
        StdlibRule::StaticLibs => {
            for entry in walkdir::WalkDir::new(python_root).follow_root_links(false).sort_by_file_name() {
                let entry = entry.with_context(|| format!("walking {}", python_root.display()))?;
                if entry.file_type().is_file() && entry.file_name().to_string_lossy().ends_with(".a") {
                    push_if_exists(entry.into_path());
                }
            }
        }
        StdlibRule::Headers => push_if_exists(python_root.join("include")),
        StdlibRule::TestExtensions => {
            let test_module = |name: &str| {
                ["_test", "_xxtest", "_ctypes_test", "xxlimited", "xxsubtype"].iter().any(|p| name.starts_with(p))
            };
            for path in children_matching(&lib_dynload, test_module)? {
                push_if_exists(path);
            }
        }
    }
    Ok(targets)
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// The real (not symlinked) subdirectories of `dir`, sorted; none when `dir` is missing.
fn real_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    children_matching(dir, |_| true).map(|paths| paths.into_iter().filter(|p| is_real_dir(p)).collect())
}

/// The children of `dir` whose names match, sorted; none when `dir` is missing.
fn children_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    if !is_real_dir(dir) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if matches(&entry.file_name().to_string_lossy()) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Count the files (symlinks included) and the bytes of regular files at or under `path`,
/// without following symlinks.
pub(crate) fn measure(path: &Path) -> Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in walkdir::WalkDir::new(path).follow_root_links(false) {
        let entry = entry.with_context(|| format!("walking {}", path.display()))?;
        if entry.file_type().is_dir() {
            continue;
        }
        files += 1;
        if entry.file_type().is_file() {
            bytes += entry.metadata().with_context(|| format!("reading {}", entry.path().display()))?.len();
        }
    }
    Ok((files, bytes))
}

fn remove(path: &Path) -> Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    if meta.is_dir() {
        // `remove_dir_all` removes symlinks inside without following them.
        fs_err::remove_dir_all(path)?;
    } else {
        fs_err::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, relative: &str, bytes: usize) {
        let path = root.join(relative);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, vec![b'x'; bytes]).unwrap();
    }

    #[test]
    fn each_rule_removes_its_paths_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let keep = [
            "bin/python3.11",
            "lib/python3.11/os.py",
            "lib/python3.11/json/__init__.py",
            "lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
            "lib/python3.11/lib-dynload/_xxsubinterpreters.cpython-311-x86_64-linux-gnu.so",
            "lib/python3.11/unittest/case.py",
            "lib/python3.11/turtle.py",
            "lib/libpython3.11.so.1.0",
        ];
        for path in keep {
            touch(root, path, 10);
        }
        let drop = [
            ("test", "lib/python3.11/test/test_os.py"),
            ("test", "lib/python3.11/unittest/test/test_case.py"),
            ("test", "lib/python3.11/ctypes/test/test_x.py"),
            ("idlelib", "lib/python3.11/idlelib/idle.py"),
            ("idlelib", "bin/idle3.11"),
            ("tkinter", "lib/python3.11/tkinter/__init__.py"),
            ("tkinter", "lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so"),
            ("tkinter", "lib/tcl8.6/init.tcl"),
            ("tkinter", "lib/tk8.6/tk.tcl"),
            ("tkinter", "lib/libtcl8.6.so"),
            ("turtledemo", "lib/python3.11/turtledemo/__main__.py"),
            ("ensurepip", "lib/python3.11/ensurepip/_bundled/pip.whl"),
            ("ensurepip", "lib/python3.11/site-packages/pip/__init__.py"),
            ("ensurepip", "lib/python3.11/site-packages/pip-24.0.dist-info/METADATA"),
            ("ensurepip", "bin/pip3.11"),
            ("lib2to3", "lib/python3.11/lib2to3/main.py"),
            ("lib2to3", "bin/2to3-3.11"),
            ("pydoc_data", "lib/python3.11/pydoc_data/topics.py"),
            ("distutils", "lib/python3.11/distutils/core.py"),
            ("config", "lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a"),
            ("__phello__", "lib/python3.11/__phello__/spam.py"),
            ("__phello__", "lib/python3.11/__hello__.py"),
            ("static-libs", "lib/libffi.a"),
            ("headers", "include/python3.11/Python.h"),
            ("test-extensions", "lib/python3.11/lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so"),
            ("test-extensions", "lib/python3.11/lib-dynload/xxlimited_35.cpython-311-x86_64-linux-gnu.so"),
        ];
        for (_, path) in drop {
            touch(root, path, 100);
        }
        std::os::unix::fs::symlink("python3.11", root.join("bin/python3")).unwrap();
        let report = prune_stdlib(root, "3.11".parse().unwrap(), &StdlibRule::ALL).unwrap();
        for (rule, path) in drop {
            assert!(!root.join(path).exists(), "{rule} left {path}");
            let rule_report = report.rules.iter().find(|r| r.rule.name() == rule).unwrap();
            assert!(rule_report.bytes >= 100, "{rule}: {rule_report:?}");
        }
        for path in keep {
            assert!(root.join(path).exists(), "{path} was removed");
        }
        assert!(root.join("bin/python3").symlink_metadata().is_ok());
        let tkinter = report.rules.iter().find(|r| r.rule == StdlibRule::Tkinter).unwrap();
        assert_eq!(tkinter.files, 5);
        assert_eq!(tkinter.bytes, 500);
        assert!(tkinter.paths.contains(&"lib/tcl8.6".to_string()), "{tkinter:?}");
        let removed: u64 = report.rules.iter().map(|r| r.bytes).sum();
        assert_eq!(report.bytes_before - report.bytes_after, removed);
        assert_eq!(report.bytes_after, 10 * keep.len() as u64);
        assert_eq!(report.files_after, keep.len() as u64 + 1);
    }

    #[test]
    fn rules_do_not_follow_symlinks_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "precious/keep.py", 5);
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("lib/python3.11")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("precious"), dir.path().join("lib/python3.11/test")).unwrap();
        let report = prune_stdlib(dir.path(), "3.11".parse().unwrap(), &[StdlibRule::Test]).unwrap();
        assert_eq!((report.rules[0].files, report.rules[0].bytes), (1, 0), "the symlink itself, not its target");
        assert!(outside.path().join("precious/keep.py").exists());
        assert!(dir.path().join("lib/python3.11/test").symlink_metadata().is_err());
    }
}
