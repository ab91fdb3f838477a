//! Tests of the interpreter step: archive resolution, version parsing, the layout check and the
//! stdlib prune for each minor version.

use super::*;

/// A home for the host python3 whose stdlib entries are symlinks to the host's and whose
/// site-packages holds a `.pth` file and a `sitecustomize.py` that each write a marker file.
fn home_with_startup_hooks(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let host = BuildPython::host();
    let minor = host.minor_version().ok()?;
    let output = host
        .command()
        .args(["-c", "import sys, sysconfig; print(sysconfig.get_path('stdlib')); print(sys.executable)"])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut lines = text.lines();
    let (stdlib, executable) = (PathBuf::from(lines.next()?), PathBuf::from(lines.next()?));
    let lib = dir.join("home/lib").join(format!("python{minor}"));
    fs_err::create_dir_all(lib.join("site-packages")).unwrap();
    for entry in fs_err::read_dir(&stdlib).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "site-packages" {
            std::os::unix::fs::symlink(entry.path(), lib.join(entry.file_name())).unwrap();
        }
    }
    let marker = dir.join("ran");
    let write_marker = format!("open({:?}, 'a').write('x')", marker.display().to_string());
    fs_err::write(lib.join("site-packages/evil.pth"), format!("import os; {write_marker}\n")).unwrap();
    fs_err::write(lib.join("site-packages/sitecustomize.py"), format!("{write_marker}\n")).unwrap();
    Some((executable, marker))
}

#[test]
fn build_time_interpreters_run_no_startup_hook_of_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let Some((executable, marker)) = home_with_startup_hooks(dir.path()) else {
        eprintln!("skipping: no host python3");
        return;
    };
    let home = dir.path().join("home");
    // The hooks are live: a plain run of that interpreter executes them.
    let status =
        std::process::Command::new(&executable).env("PYTHONHOME", &home).args(["-c", "pass"]).status().unwrap();
    assert!(status.success());
    assert!(marker.exists(), "the fixture's hooks did not run without isolation");
    fs_err::remove_file(&marker).unwrap();

    // The build's interpreter runs (version probe, smoke test, byte-compiling) run none.
    let build_python = BuildPython { interpreter: executable.clone(), home: Some(home.clone()) };
    build_python.minor_version().unwrap();
    let version = smoke_test(&executable, &home).unwrap();
    assert!(version.starts_with("3."), "{version}");
    let output = build_python
        .command()
        .args(["-c", "import sys; print(sys.flags.no_site, sys.flags.safe_path)"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1 True");
    assert!(!marker.exists(), "a startup hook of the tree ran on the build machine");

    // A module in the working directory does not shadow the stdlib either.
    let cwd = dir.path().join("cwd");
    fs_err::create_dir_all(&cwd).unwrap();
    fs_err::write(cwd.join("py_compile.py"), format!("open({:?}, 'a').write('x')\n", marker.display().to_string()))
        .unwrap();
    let status = build_python.command().current_dir(&cwd).args(["-c", "import py_compile"]).status().unwrap();
    assert!(status.success());
    assert!(!marker.exists(), "a module in the working directory shadowed the stdlib");
}

#[test]
fn version_is_read_from_pbs_names() {
    assert_eq!(
        version_from_archive_name("cpython-3.11.14+20260127-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz"),
        Some("3.11.14".to_string())
    );
    assert_eq!(version_from_archive_name("cpython-3.11.7+fixture-x86_64.tar.gz"), Some("3.11.7".to_string()));
    assert_eq!(version_from_archive_name("python.tar.gz"), None);
    assert_eq!(version_from_archive_name("cpython-3.11-x.tar.gz"), None);
}

#[test]
fn url_names_are_percent_decoded() {
    assert_eq!(percent_decode("cpython-3.11.14%2B20260127.tar.gz"), "cpython-3.11.14+20260127.tar.gz");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("%zz"), "%zz");
}

#[test]
fn python_dist_wins_over_the_manifest_and_needs_a_valid_hash() {
    let spec = LayerSpec::parse(
        "[python]\nversion = \"3.11\"\nrelease = \"20260127\"\n[packages]\nrequirements = [\"litellm==1.78.7\"]\n",
        Path::new("layer.toml"),
    )
    .unwrap();
    let given = PythonDistArgs {
        python_dist: Some("https://user:pw@mirror.example/pbs/cpython-3.11.9%2Bx-x86_64.tar.zst".into()),
        python_sha256: Some("A".repeat(64)),
        ..Default::default()
    };
    let resolved = resolve_archive(&spec, Arch::X86_64, &given, None).unwrap();
    assert_eq!(resolved.archive_name, "cpython-3.11.9+x-x86_64.tar.zst");
    assert_eq!(resolved.version.as_deref(), Some("3.11.9"));
    assert_eq!(resolved.sha256.as_str(), "a".repeat(64));
    assert!(!resolved.source.display().contains("pw"));

    let bad = PythonDistArgs {
        python_dist: Some("/tmp/x.tar.gz".into()),
        python_sha256: Some("abc".into()),
        ..Default::default()
    };
    let msg = format!("{:#}", resolve_archive(&spec, Arch::X86_64, &bad, None).unwrap_err());
    assert!(msg.contains("--python-sha256 must be the archive's sha256"), "{msg}");
    assert!(msg.contains("\"abc\" is not a sha256"), "{msg}");

    let pinned = resolve_archive(&spec, Arch::Arm64, &PythonDistArgs::default(), None);
    let pinned = pinned.unwrap();
    assert_eq!(pinned.version.as_deref(), Some("3.11.14"));
    assert!(pinned.archive_name.contains("aarch64-unknown-linux-gnu-install_only_stripped"));
}

/// An extracted tree of CPython `version` for x86_64: the interpreter (an ELF header), the
/// stdlib with a test package, and the headers with `PY_VERSION`.
fn tree_for(root: &Path, version: &str, patch: &str) {
    let python: PythonVersion = version.parse().unwrap();
    let mut elf = vec![0u8; 20];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[18..20].copy_from_slice(&Arch::X86_64.elf_machine().to_le_bytes());
    fs_err::create_dir_all(root.join("bin")).unwrap();
    fs_err::write(root.join("bin").join(python.interpreter_name()), elf).unwrap();
    fs_err::create_dir_all(root.join(python.stdlib_dir()).join("test")).unwrap();
    fs_err::write(root.join(python.stdlib_dir()).join("test/test_os.py"), "# test\n").unwrap();
    fs_err::create_dir_all(root.join(python.include_dir())).unwrap();
    fs_err::write(
        root.join(python.include_dir()).join("patchlevel.h"),
        format!("#define PY_VERSION \"{version}.{patch}\"\n"),
    )
    .unwrap();
}

#[test]
fn layout_version_and_stdlib_prune_follow_the_minor_version() {
    for version in ["3.12", "3.13"] {
        let python: PythonVersion = version.parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        tree_for(dir.path(), version, "4");
        let interpreter = check_layout(dir.path(), python, Arch::X86_64, "demo.tar.gz").unwrap();
        assert_eq!(interpreter, dir.path().join(format!("bin/python{version}")));
        assert_eq!(version_from_patchlevel(dir.path(), python).unwrap(), Some(format!("{version}.4")));
        let report = stdlib::prune_stdlib(dir.path(), python, &[crate::spec::StdlibRule::Test]).unwrap();
        assert_eq!(report.rules[0].files, 1, "{version}");
        assert!(!dir.path().join(format!("lib/python{version}/test")).exists(), "{version}");
    }
}

#[test]
fn a_tree_of_another_minor_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    tree_for(dir.path(), "3.12", "4");
    let err = check_layout(dir.path(), "3.13".parse().unwrap(), Arch::X86_64, "demo.tar.gz").unwrap_err();
    assert_eq!(
        err.to_string(),
        "demo.tar.gz: python/bin/python3.13 is missing (bin/ holds: python3.12); layer.toml asks for python 3.13, \
         so pass a python-build-standalone 3.13 archive"
    );
}
