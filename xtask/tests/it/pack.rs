//! End-to-end tests of the bytecode, layout and pack steps on a small layer tree built here.
//!
//! The tree has the shape the install step hands over: `layer/python/bin/python3.11` (plus the
//! `python3` symlink), a tiny "stdlib" with a timestamp `__pycache__` as python-build-standalone
//! ships, and site-packages holding pure, namespace, native and data distributions. The host
//! `python3` (3.11) is the build python; tests skip with a note when it is another version.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use fs_err as fs;
use xtask::layer::bytecode::BuildPython;
use xtask::layer::dist::InstalledDist;
use xtask::layer::pack::{self, PackOutcome, PackRequest, Placement, ZipPosition};
use xtask::progress::Progress;

/// The host's `python3` when it is CPython 3.11, the fixtures' version; else `None`, saying why.
fn host_python() -> Option<BuildPython> {
    BuildPython::host_if_minor("3.11")
}

fn dist(name: &str, dist_info: &str, files: &[(&str, &str)]) -> (InstalledDist, Vec<(String, String)>) {
    let mut contents: Vec<(String, String)> = files.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
    let version = dist_info.trim_end_matches(".dist-info").split('-').nth(1).unwrap_or("1.0").to_string();
    contents
        .push((format!("{dist_info}/METADATA"), format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")));
    let mut paths: Vec<String> = contents.iter().map(|(p, _)| p.clone()).collect();
    paths.sort();
    let dist = InstalledDist {
        name: name.into(),
        version,
        wheel_name: format!("{name}-1.0-py3-none-any.whl"),
        wheel_sha256: "0".repeat(64),
        wheel_url: format!("https://files.example/{name}.whl"),
        dist_info: dist_info.into(),
        files: paths,
    };
    (dist, contents)
}

/// Build the fixture layer under `root/layer`. `variant` changes filesystem mtimes and
/// permissions (as a different umask would), never contents.
fn fixture(root: &Path, variant: u32) -> (PathBuf, Vec<InstalledDist>) {
    let layer = root.join("layer");
    let python = layer.join("python");
    let lib = python.join("lib/python3.11");
    let site_packages = lib.join("site-packages");
    fs::create_dir_all(python.join("bin")).unwrap();
    fs::create_dir_all(lib.join("stdlib_package/__pycache__")).unwrap();
    fs::create_dir_all(&site_packages).unwrap();
    fs::write(python.join("bin/python3.11"), "#!/bin/false\nnot really an interpreter\n").unwrap();
    std::os::unix::fs::symlink("python3.11", python.join("bin/python3")).unwrap();
    fs::write(lib.join("stdlib_module.py"), "VALUE = 42\n").unwrap();
    fs::write(lib.join("stdlib_package/__init__.py"), "# a stdlib package\n").unwrap();
    fs::write(lib.join("stdlib_package/__pycache__/__init__.cpython-311.pyc"), "timestamp pyc from PBS").unwrap();
    fs::write(lib.join("stdlib_package/__pycache__/__init__.cpython-311.opt-1.pyc"), "opt-1").unwrap();

    let specs = [
        dist(
            "purepkg",
            "purepkg-1.2.dist-info",
            &[
                ("purepkg/__init__.py", "from purepkg.sub import mod\nNAME = 'purepkg'\n"),
                ("purepkg/py.typed", ""),
                ("purepkg/sub/__init__.py", ""),
                ("purepkg/sub/mod.py", "def where():\n    return __file__\n"),
                ("purepkg-1.2.dist-info/entry_points.txt", "[purepkg.plugins]\nhello = purepkg:NAME\n"),
            ],
        ),
        dist(
            "tiktoken-ext-fake",
            "tiktoken_ext_fake-0.1.dist-info",
            &[("tiktoken_ext/openai_public.py", "ENCODINGS = ['cl100k_base']\n")],
        ),
        dist(
            "nativepkg",
            "nativepkg-2.0.dist-info",
            &[
                ("nativepkg/__init__.py", "KIND = 'native'\n"),
                ("nativepkg/_speedups.cpython-311-x86_64-linux-gnu.so", "\u{7f}ELF not really"),
                ("nativepkg/legacy_py2.py", "print 'python 2 only'\n"),
            ],
        ),
        dist(
            "datapkg",
            "datapkg-3.0.dist-info",
            &[
                (
                    "datapkg/__init__.py",
                    "import json, os\nTABLE = json.load(open(os.path.join(os.path.dirname(__file__), 'table.json')))\n",
                ),
                ("datapkg/table.json", "{\"rows\": 3}\n"),
            ],
        ),
    ];
    let mut dists = Vec::new();
    for (dist, contents) in specs {
        for (path, text) in contents {
            let path = site_packages.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dists.push(dist);
    }
    // A wheel's own stale legacy .pyc and __pycache__ go away.
    fs::create_dir_all(site_packages.join("purepkg/__pycache__")).unwrap();
    fs::write(site_packages.join("purepkg/__pycache__/__init__.cpython-311.pyc"), "stale").unwrap();
    dists[0].files.push("purepkg/__pycache__/__init__.cpython-311.pyc".into());
    dists[0].files.sort();

    // Vary mtimes and permissions per variant.
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + u64::from(variant) * 86_400 * 97);
    for entry in walkdir::WalkDir::new(&layer).follow_links(false) {
        let entry = entry.unwrap();
        if entry.file_type().is_symlink() {
            continue;
        }
        let is_dir = entry.file_type().is_dir();
        let mode = match (variant, is_dir) {
            (0, true) => 0o755,
            (0, false) => 0o644,
            (_, true) => 0o700,
            (_, false) => 0o600,
        };
        let executable = entry.path().ends_with("bin/python3.11");
        fs::set_permissions(
            entry.path(),
            std::fs::Permissions::from_mode(if executable { mode | 0o100 } else { mode }),
        )
        .unwrap();
        if !is_dir {
            std::fs::File::options().write(true).open(entry.path()).unwrap().set_modified(when).unwrap();
        }
    }
    (layer, dists)
}

fn build(root: &Path, variant: u32, epoch: Option<u64>) -> Option<(PackOutcome, Vec<InstalledDist>)> {
    let python = host_python()?;
    let (layer, mut dists) = fixture(root, variant);
    let out_zip = root.join("python-litellm-x86_64.zip");
    let request = PackRequest {
        layer_dir: &layer,
        python_minor: "3.11".parse().unwrap(),
        build_python: &python,
        out_zip: &out_zip,
        source_date_epoch: epoch,
        zip_position: ZipPosition::default(),
        bytecode_plan: &Default::default(),
        previous_out_dir: None,
        compression: Default::default(),
    };
    let outcome = pack::build(&request, &mut dists, &Progress::new()).unwrap();
    Some((outcome, dists))
}

/// One central-directory record, read by hand so nothing the zip crate hides goes unchecked.
#[derive(Debug)]
struct RawEntry {
    name: String,
    version_made_by: u16,
    flags: u16,
    method: u16,
    dos_time: u16,
    dos_date: u16,
    central_extra_len: u16,
    local_extra_len: u16,
    unix_mode: u32,
    content: Vec<u8>,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn raw_entries(bytes: &[u8]) -> Vec<RawEntry> {
    let eocd =
        (0..bytes.len() - 21).rev().find(|&i| u32_at(bytes, i) == 0x0605_4b50).expect("no end of central directory");
    assert_eq!(u16_at(bytes, eocd + 20), 0, "archive comment present");
    let count = u16_at(bytes, eocd + 10) as usize;
    let mut at = u32_at(bytes, eocd + 16) as usize;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entries = Vec::new();
    for _ in 0..count {
        assert_eq!(u32_at(bytes, at), 0x0201_4b50, "bad central directory record");
        let name_len = u16_at(bytes, at + 28) as usize;
        let extra_len = u16_at(bytes, at + 30);
        let comment_len = u16_at(bytes, at + 32) as usize;
        let local = u32_at(bytes, at + 42) as usize;
        let name = String::from_utf8(bytes[at + 46..at + 46 + name_len].to_vec()).unwrap();
        let mut content = Vec::new();
        archive.by_name(&name).unwrap().read_to_end(&mut content).unwrap();
        entries.push(RawEntry {
            version_made_by: u16_at(bytes, at + 4),
            flags: u16_at(bytes, at + 8),
            method: u16_at(bytes, at + 10),
            dos_time: u16_at(bytes, at + 12),
            dos_date: u16_at(bytes, at + 14),
            central_extra_len: extra_len,
            local_extra_len: u16_at(bytes, local + 28),
            unix_mode: u32_at(bytes, at + 38) >> 16,
            content,
            name,
        });
        at += 46 + name_len + extra_len as usize + comment_len;
    }
    entries
}

#[test]
fn two_builds_are_byte_identical() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let Some((a, _)) = build(first.path(), 0, None) else { return };
    let (b, _) = build(second.path(), 1, None).unwrap();
    let a_bytes = fs::read(&a.layer_zip).unwrap();
    assert_eq!(a_bytes, fs::read(&b.layer_zip).unwrap(), "layer zips differ");
    assert_eq!(
        fs::read(a.site_packages_zip.as_ref().unwrap()).unwrap(),
        fs::read(b.site_packages_zip.as_ref().unwrap()).unwrap(),
        "site-packages.zip differs"
    );
    // SOURCE_DATE_EPOCH changes the bytes (the mtime), and only that.
    let third = tempfile::tempdir().unwrap();
    let (c, _) = build(third.path(), 0, Some(1_709_214_331)).unwrap();
    let c_bytes = fs::read(&c.layer_zip).unwrap();
    assert_ne!(a_bytes, c_bytes);
    let dates: Vec<(u16, u16)> = raw_entries(&c_bytes).iter().map(|e| (e.dos_date, e.dos_time)).collect();
    // 2024-02-29 13:45:30 in DOS format.
    let want = (((2024 - 1980) << 9) | (2 << 5) | 29, (13 << 11) | (45 << 5) | 15);
    assert!(dates.iter().all(|d| *d == want), "{dates:?}");
}

#[test]
fn layer_zip_entries_modes_and_no_extra_fields() {
    let dir = tempfile::tempdir().unwrap();
    let Some((outcome, dists)) = build(dir.path(), 1, None) else { return };
    let entries = raw_entries(&fs::read(&outcome.layer_zip).unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries not sorted");
    for entry in &entries {
        assert_eq!((entry.central_extra_len, entry.local_extra_len), (0, 0), "extra field on {}", entry.name);
        assert_eq!(entry.version_made_by >> 8, 3, "{} not made by unix", entry.name);
        assert_eq!(entry.flags & 0x8, 0, "{} uses a data descriptor", entry.name);
        assert_eq!((entry.dos_date, entry.dos_time), ((1 << 5) | 1, 0), "{} mtime not 1980-01-01", entry.name);
        assert!(entry.name.starts_with("python/"), "{}", entry.name);
        let want_mode = if entry.name.ends_with('/') {
            0o040755
        } else if entry.name == "python/bin/python3" {
            0o120777
        } else if entry.name == "python/bin/python3.11" {
            0o100755
        } else {
            0o100644
        };
        assert_eq!(entry.unix_mode, want_mode, "mode of {}", entry.name);
        if entry.name.ends_with(".py") || entry.name.ends_with(".pyc") {
            assert_eq!(entry.method, 8, "{} not deflated", entry.name);
        }
    }
    // Every parent directory has its own entry.
    for name in &names {
        let mut parent = name.trim_end_matches('/');
        while let Some((dir, _)) = parent.rsplit_once('/') {
            assert!(names.contains(&format!("{dir}/").as_str()), "no directory entry for {dir}/ (from {name})");
            parent = dir;
        }
    }
    let symlink = entries.iter().find(|e| e.name == "python/bin/python3").unwrap();
    assert_eq!(symlink.content, b"python3.11");

    // Layout: pure and namespace dists in the zip, native and data dists on disk with __pycache__.
    let placements: BTreeMap<&str, Placement> =
        outcome.placements.iter().map(|p| (p.name.as_str(), p.placement)).collect();
    assert_eq!(placements["purepkg"], Placement::Zip);
    assert_eq!(placements["tiktoken-ext-fake"], Placement::Zip);
    assert_eq!(placements["nativepkg"], Placement::Dir);
    assert_eq!(placements["datapkg"], Placement::Dir);
    let has = |name: &str| names.contains(&name);
    let sp = "python/lib/python3.11/site-packages";
    assert!(has("python/lib/python3.11/site-packages.zip"));
    assert!(has("python/lib/python3.11/sitecustomize.py"));
    assert!(has("python/lib/python3.11/__pycache__/sitecustomize.cpython-311.pyc"));
    assert!(has("python/lib/python3.11/stdlib_package/__pycache__/__init__.cpython-311.pyc"));
    assert!(!names.iter().any(|n| n.contains(".opt-1.pyc") || n.contains(".opt-2.pyc")));
    assert!(has(&format!("{sp}/nativepkg/__pycache__/__init__.cpython-311.pyc")));
    assert!(has(&format!("{sp}/datapkg/table.json")));
    assert!(!names.iter().any(|n| n.starts_with(&format!("{sp}/purepkg"))), "purepkg left on disk");
    assert!(!names.iter().any(|n| n.starts_with(&format!("{sp}/tiktoken_ext"))), "tiktoken_ext left on disk");
    // The stdlib pyc is the one we compiled (unchecked-hash, Lambda path), not PBS's stale one.
    let stdlib_pyc =
        entries.iter().find(|e| e.name.ends_with("stdlib_package/__pycache__/__init__.cpython-311.pyc")).unwrap();
    assert_eq!(u32::from_le_bytes(stdlib_pyc.content[4..8].try_into().unwrap()), 0b01);
    assert!(
        String::from_utf8_lossy(&stdlib_pyc.content).contains("/opt/python/lib/python3.11/stdlib_package/__init__.py")
    );

    // The py2-only file was skipped with its name, and got no pyc.
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert!(outcome.skipped[0].source.ends_with("nativepkg/legacy_py2.py"));
    assert!(!has(&format!("{sp}/nativepkg/__pycache__/legacy_py2.cpython-311.pyc")));
    // The hand-off lists are updated with the new .pyc files.
    let pure = dists.iter().find(|d| d.name == "purepkg").unwrap();
    assert!(pure.files.contains(&"purepkg/sub/mod.pyc".to_string()), "{:?}", pure.files);
    assert!(!pure.files.iter().any(|f| f.contains("__pycache__")), "{:?}", pure.files);
    let native = dists.iter().find(|d| d.name == "nativepkg").unwrap();
    assert!(native.files.contains(&"nativepkg/__pycache__/__init__.cpython-311.pyc".to_string()));
    assert!(!native.files.iter().any(|f| f.contains("legacy_py2.cpython")));
}

#[test]
fn site_packages_zip_has_directories_and_legacy_pyc_only() {
    let dir = tempfile::tempdir().unwrap();
    let Some((outcome, _)) = build(dir.path(), 0, None) else { return };
    let entries = raw_entries(&fs::read(outcome.site_packages_zip.as_ref().unwrap()).unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "purepkg-1.2.dist-info/",
            "purepkg-1.2.dist-info/METADATA",
            "purepkg-1.2.dist-info/entry_points.txt",
            "purepkg/",
            "purepkg/__init__.py",
            "purepkg/__init__.pyc",
            "purepkg/py.typed",
            "purepkg/sub/",
            "purepkg/sub/__init__.py",
            "purepkg/sub/__init__.pyc",
            "purepkg/sub/mod.py",
            "purepkg/sub/mod.pyc",
            "tiktoken_ext/",
            "tiktoken_ext/openai_public.py",
            "tiktoken_ext/openai_public.pyc",
            "tiktoken_ext_fake-0.1.dist-info/",
            "tiktoken_ext_fake-0.1.dist-info/METADATA",
        ]
    );
    for entry in &entries {
        assert_eq!((entry.central_extra_len, entry.local_extra_len), (0, 0), "extra field on {}", entry.name);
        let want = if entry.name.ends_with('/') { 0o040755 } else { 0o100644 };
        assert_eq!(entry.unix_mode, want, "mode of {}", entry.name);
    }
    let pyc = entries.iter().find(|e| e.name == "purepkg/sub/mod.pyc").unwrap();
    assert!(
        String::from_utf8_lossy(&pyc.content)
            .contains("/opt/python/lib/python3.11/site-packages.zip/purepkg/sub/mod.py")
    );
}

/// Rewrite a zip, replacing the content of every `.py` entry; directory entries and `.pyc` stay.
fn poison_sources(from: &Path, to: &Path) {
    let mut archive = zip::ZipArchive::new(fs::File::open(from).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(fs::File::create(to).unwrap());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().unwrap().to_string();
        let options = zip::write::SimpleFileOptions::default();
        if file.is_dir() {
            writer.add_directory(name, options).unwrap();
            continue;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        if name.ends_with(".py") {
            content = format!("raise ImportError('the source of {name} was used, not its .pyc')\n").into_bytes();
        }
        writer.start_file(name, options).unwrap();
        writer.write_all(&content).unwrap();
    }
    writer.finish().unwrap();
}

fn run_python(args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new("python3");
    command.args(["-s"]).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PYTHON") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn zipimport_uses_the_pyc_and_finds_namespace_packages() {
    let dir = tempfile::tempdir().unwrap();
    let Some((outcome, _)) = build(dir.path(), 0, None) else { return };
    let poisoned = dir.path().join("poisoned.zip");
    poison_sources(outcome.site_packages_zip.as_ref().unwrap(), &poisoned);
    let script = "import purepkg, tiktoken_ext.openai_public as o, importlib.metadata as m\n\
                  print(purepkg.mod.where())\n\
                  print(purepkg.mod.where.__code__.co_filename)\n\
                  print(type(purepkg.__loader__).__name__, o.ENCODINGS[0], list(o.__spec__.parent and __import__('tiktoken_ext').__path__)[0].endswith('poisoned.zip/tiktoken_ext'))\n\
                  print(m.version('purepkg'), [e.value for e in m.entry_points(group='purepkg.plugins')])\n";
    let out = run_python(&["-c", script], &[("PYTHONPATH", &poisoned)]);
    let lines: Vec<&str> = out.lines().collect();
    // zipimport names the file it loaded: the .pyc.
    assert!(lines[0].ends_with("poisoned.zip/purepkg/sub/mod.pyc"), "{out}");
    assert_eq!(lines[1], "/opt/python/lib/python3.11/site-packages.zip/purepkg/sub/mod.py", "{out}");
    assert_eq!(lines[2], "zipimporter cl100k_base True", "{out}");
    assert_eq!(lines[3], "1.2 ['purepkg:NAME']", "{out}");
}

/// Every path under `root` with its size and mtime: what "nothing was written" compares.
fn snapshot(root: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut all = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.unwrap();
        let metadata = entry.path().symlink_metadata().unwrap();
        all.push((entry.path().to_path_buf(), metadata.len(), metadata.modified().ok()));
    }
    all
}

#[test]
fn the_layout_imports_from_zip_and_dir_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let Some((outcome, _)) = build(dir.path(), 0, None) else { return };
    // Unpack the layer zip the way Lambda does, then run against the unpacked copy.
    let opt = dir.path().join("opt");
    zip::ZipArchive::new(fs::File::open(&outcome.layer_zip).unwrap()).unwrap().extract(&opt).unwrap();
    assert_eq!(fs::read_link(opt.join("python/bin/python3")).unwrap(), Path::new("python3.11"));
    let lib = opt.join("python/lib/python3.11");
    let before = snapshot(&opt);
    let python_path = std::env::join_paths([&lib, &lib.join("site-packages")]).unwrap();
    let script = "import sys, purepkg, nativepkg, datapkg, importlib.metadata as m\n\
                  i = sys.path.index(next(p for p in sys.path if p.endswith('site-packages.zip')))\n\
                  print(sys.path[i - 1].endswith('site-packages'), purepkg.__file__.endswith('site-packages.zip/purepkg/__init__.pyc'))\n\
                  print(nativepkg.KIND, datapkg.TABLE['rows'], m.version('purepkg'), m.version('nativepkg'), m.version('datapkg'))\n";
    let out = run_python(&["-c", script], &[("PYTHONPATH", Path::new(&python_path))]);
    assert_eq!(out, "True True\nnative 3 1.2 2.0 3.0\n");
    assert_eq!(before, snapshot(&opt), "importing wrote into the layer tree");
}

#[test]
fn bad_trees_are_refused_with_clear_errors() {
    let Some(python) = host_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (layer, mut dists) = fixture(dir.path(), 0);
    let out_zip = dir.path().join("out.zip");
    let request = PackRequest {
        layer_dir: &layer,
        python_minor: "3.11".parse().unwrap(),
        build_python: &python,
        out_zip: &out_zip,
        source_date_epoch: None,
        zip_position: ZipPosition::default(),
        bytecode_plan: &Default::default(),
        previous_out_dir: None,
        compression: Default::default(),
    };
    let lib = layer.join("python/lib/python3.11");

    // A symlink leaving the layer.
    std::os::unix::fs::symlink("/etc/passwd", layer.join("python/bin/escape")).unwrap();
    let err = format!("{:#}", pack::build(&request, &mut dists.clone(), &Progress::new()).unwrap_err());
    assert!(err.contains("symlink python/bin/escape -> /etc/passwd points outside"), "{err}");
    assert!(err.contains("replace it with a copy"), "{err}");
    assert!(!out_zip.exists(), "a failed build left a zip behind");
    fs::remove_file(layer.join("python/bin/escape")).unwrap();

    // A foreign sitecustomize.py.
    fs::write(lib.join("sitecustomize.py"), "import os\n").unwrap();
    let err = format!("{:#}", pack::build(&request, &mut dists.clone(), &Progress::new()).unwrap_err());
    assert!(err.contains("sitecustomize.py exists and was not written by xtask"), "{err}");
    fs::remove_file(lib.join("sitecustomize.py")).unwrap();

    // The layer zip inside the layer tree.
    let inside = layer.join("python/out.zip");
    let err = format!(
        "{:#}",
        pack::build(&PackRequest { out_zip: &inside, ..request.clone() }, &mut dists, &Progress::new()).unwrap_err()
    );
    assert!(err.contains("must not be inside the layer tree"), "{err}");
}

#[test]
fn size_report_accounts_for_every_byte() {
    use xtask::layer::report::{RuleSavings, SizeReport, check_budget};
    let dir = tempfile::tempdir().unwrap();
    let Some((outcome, dists)) = build(dir.path(), 0, None) else { return };
    let rules = vec![RuleSavings { rule: "tests".into(), files: 2, bytes: 300 }];
    let report = SizeReport::compute(&outcome, &dists, rules).unwrap();
    let parts: u64 = report.distributions.iter().map(|d| d.sizes.unzipped).sum::<u64>()
        + report.stdlib.unzipped
        + report.interpreter.unzipped
        + report.other.unzipped;
    assert_eq!(parts, report.total.unzipped, "{report:#?}");
    assert_eq!(report.total.zipped, outcome.layer_zip_bytes);
    let pure = report.distributions.iter().find(|d| d.name == "purepkg").unwrap();
    assert_eq!(pure.placement, Placement::Zip);
    assert!(pure.sizes.unzipped > 0 && pure.sizes.zipped > 0, "{pure:?}");
    let data = report.distributions.iter().find(|d| d.name == "datapkg").unwrap();
    assert_eq!(data.placement, Placement::Dir);
    // __init__.py + its pyc + table.json + METADATA.
    assert_eq!(data.files, 4, "{data:?}");
    let stdlib_module = fs::metadata(outcome.layer_dir.join("python/lib/python3.11/stdlib_module.py")).unwrap().len();
    assert!(report.stdlib.unzipped > stdlib_module);
    assert_eq!(
        report.interpreter.unzipped,
        fs::metadata(outcome.layer_dir.join("python/bin/python3.11")).unwrap().len() + "python3.11".len() as u64
    );

    report.write(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("size-report.json")).unwrap()).unwrap();
    assert_eq!(json["prune_rules"][0]["rule"], "tests");
    assert_eq!(json["total"]["zipped"], outcome.layer_zip_bytes);
    let markdown = fs::read_to_string(dir.path().join("size-report.md")).unwrap();
    assert!(markdown.contains("| purepkg | 1.2 | site-packages.zip | "), "{markdown}");
    check_budget(&report, 50.0, 250.0, true).unwrap();
    let err = check_budget(&report, 0.000_1, 250.0, true).unwrap_err().to_string();
    assert!(err.contains("is over 0.0001 MB (layer.toml [budget] zipped-mb = 0.0001)"), "{err}");
}

/// The import-time benchmark on a real LiteLLM install; run by hand:
/// `pip install --target /tmp/ll-sp litellm==1.78.7` then
/// `XTASK_BENCH_SITE_PACKAGES=/tmp/ll-sp cargo test -p xtask --release --test pack -- --ignored --nocapture bench_import_litellm`.
#[test]
#[ignore = "benchmark: needs XTASK_BENCH_SITE_PACKAGES pointing at a pip --target install of litellm"]
fn bench_import_litellm() {
    let site_packages =
        PathBuf::from(std::env::var_os("XTASK_BENCH_SITE_PACKAGES").expect("set XTASK_BENCH_SITE_PACKAGES"));
    let runs = std::env::var("XTASK_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(11);
    let work = tempfile::tempdir().unwrap();
    let python = host_python().expect("host python3 must be 3.11");
    let report = xtask::bench::import_time::measure(
        &python,
        &site_packages,
        work.path(),
        runs,
        &Default::default(),
        &Progress::new(),
    )
    .unwrap();
    println!("{report}");
}

/// Issue 15: with an import profile, only profiled modules get a `.pyc`; with `sourceless`, the
/// profiled modules of distributions ship without `.py` (except those that read their own source),
/// the stdlib keeps its sources, and the unpacked layer still imports without writing.
#[test]
fn an_import_profile_compiles_only_its_modules_and_drops_their_sources() {
    let Some(python) = host_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (layer, mut dists) = fixture(dir.path(), 0);
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect();
    let plan = xtask::layer::profile::BytecodePlan {
        profiled: Some(names(&["purepkg", "purepkg.sub", "nativepkg", "datapkg", "stdlib_module"])),
        sourceless: true,
        keep_source: names(&["purepkg.sub"]),
        cache_dir: Some(dir.path().join("bytecode-cache")),
    };
    let out_zip = dir.path().join("python-litellm-x86_64.zip");
    let request = PackRequest {
        layer_dir: &layer,
        python_minor: "3.11".parse().unwrap(),
        build_python: &python,
        out_zip: &out_zip,
        source_date_epoch: None,
        zip_position: ZipPosition::default(),
        bytecode_plan: &plan,
        previous_out_dir: None,
        compression: Default::default(),
    };
    let outcome = pack::build(&request, &mut dists, &Progress::new()).unwrap();
    assert_eq!((outcome.compiled, outcome.from_cache), (5, 0));

    let lib = layer.join("python/lib/python3.11");
    let archive = zip::ZipArchive::new(fs::File::open(lib.join("site-packages.zip")).unwrap()).unwrap();
    let mut members: Vec<String> = Vec::new();
    for name in archive.file_names() {
        members.push(name.unwrap().into_owned());
    }
    let python_files: Vec<&str> =
        members.iter().map(String::as_str).filter(|m| m.ends_with(".py") || m.ends_with(".pyc")).collect();
    assert_eq!(
        python_files,
        [
            "purepkg/__init__.pyc",
            "purepkg/sub/__init__.py",
            "purepkg/sub/__init__.pyc",
            "purepkg/sub/mod.py",
            "tiktoken_ext/openai_public.py",
        ]
    );
    let site_packages = lib.join("site-packages");
    for (path, present) in [
        ("nativepkg/__init__.pyc", true),
        ("nativepkg/__init__.py", false),
        ("nativepkg/legacy_py2.py", true),
        ("datapkg/__init__.pyc", true),
        ("datapkg/__init__.py", false),
    ] {
        assert_eq!(site_packages.join(path).exists(), present, "{path}");
    }
    assert!(lib.join("stdlib_module.py").is_file() && lib.join("__pycache__/stdlib_module.cpython-311.pyc").is_file());
    assert!(!lib.join("stdlib_package/__pycache__").exists(), "an unprofiled stdlib module got bytecode");
    let native = dists.iter().find(|d| d.name == "nativepkg").unwrap();
    assert!(native.files.contains(&"nativepkg/__init__.pyc".to_string()));
    assert!(!native.files.contains(&"nativepkg/__init__.py".to_string()));

    // The unpacked layer imports from the .pyc files (and the .py of unprofiled modules).
    let opt = dir.path().join("opt");
    zip::ZipArchive::new(fs::File::open(&outcome.layer_zip).unwrap()).unwrap().extract(&opt).unwrap();
    let lib = opt.join("python/lib/python3.11");
    let python_path = std::env::join_paths([&lib, &lib.join("site-packages")]).unwrap();
    let script = "import purepkg, datapkg, nativepkg\n\
                  print(purepkg.__file__.rsplit('/', 2)[-2:], purepkg.sub.mod.where().rsplit('/', 1)[-1])\n\
                  print(datapkg.TABLE['rows'], nativepkg.__file__.rsplit('/', 1)[-1])\n";
    let before = snapshot(&opt);
    let out = run_python(&["-B", "-c", script], &[("PYTHONPATH", Path::new(&python_path))]);
    assert_eq!(out, "['purepkg', '__init__.pyc'] mod.py\n3 __init__.pyc\n");
    assert_eq!(before, snapshot(&opt), "importing wrote into the layer tree");

    // A second build of the same tree takes every .pyc from the bytecode cache.
    let again = tempfile::tempdir().unwrap();
    let (layer, mut dists) = fixture(again.path(), 0);
    let out_zip = again.path().join("python-litellm-x86_64.zip");
    let outcome =
        pack::build(&PackRequest { layer_dir: &layer, out_zip: &out_zip, ..request }, &mut dists, &Progress::new())
            .unwrap();
    assert_eq!((outcome.compiled, outcome.from_cache), (5, 5));
}
