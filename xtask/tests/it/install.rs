//! End-to-end tests of the install and prune steps on small wheels built here with the zip crate,
//! served from 127.0.0.1 or read from `file://` URLs. Error messages are part of the tests.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::support::TestServer;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use xtask::arch::Arch;
use xtask::cache::{Cache, sha256_file};
use xtask::http::Http;
use xtask::layer::dist::InstalledDist;
use xtask::layer::install::{Target, install_lock, leave_out_excluded, select_wheels, yanked_warnings};
use xtask::layer::prune::{PruneOutcome, prune};
use xtask::lock::write_lock;
use xtask::packaging::pylock::{Hashes, LockedPackage, LockedWheel, Pylock};
use xtask::progress::Progress;
use xtask::spec::LayerSpec;

/// The smallest valid spec, shared with the unit tests of `spec`.
const SPEC: &str = include_str!("../../test_data/spec/minimal-layer.toml");

fn spec(extra: &str) -> LayerSpec {
    LayerSpec::parse(&format!("{SPEC}{extra}"), Path::new("layer.toml")).unwrap()
}

/// A wheel to build: files (path, content), plus knobs to break it.
#[derive(Clone)]
struct WheelFixture {
    name: String,
    version: String,
    tag: String,
    files: Vec<(String, Vec<u8>)>,
    wheel_version: String,
    /// Files present in the wheel but left out of RECORD.
    unrecorded: Vec<String>,
    /// RECORD lines added as they are.
    extra_record_lines: Vec<String>,
    /// (path, wrong content hashed into RECORD instead of the real one)
    wrong_hash: Vec<(String, Vec<u8>)>,
    /// Symlink members (name, target).
    symlinks: Vec<(String, String)>,
    /// Lines added to METADATA, e.g. `Requires-Dist: idna`.
    metadata_lines: Vec<String>,
    /// `Name` and `Version` written into METADATA instead of the wheel's own.
    metadata_identity: Option<(String, String)>,
    /// RECORD's own row instead of `<dist-info>/RECORD,,` (an empty string leaves it out).
    record_own_row: Option<String>,
}

impl WheelFixture {
    fn new(name: &str, version: &str) -> WheelFixture {
        WheelFixture {
            name: name.into(),
            version: version.into(),
            tag: "py3-none-any".into(),
            files: vec![(format!("{name}/__init__.py"), format!("NAME = {name:?}\n").into_bytes())],
            wheel_version: "1.0".into(),
            unrecorded: Vec::new(),
            extra_record_lines: Vec::new(),
            wrong_hash: Vec::new(),
            symlinks: Vec::new(),
            metadata_lines: Vec::new(),
            metadata_identity: None,
            record_own_row: None,
        }
    }

    fn requires(mut self, line: &str) -> Self {
        self.metadata_lines.push(format!("Requires-Dist: {line}"));
        self
    }

    fn file(mut self, path: &str, content: &str) -> Self {
        self.files.push((path.into(), content.as_bytes().to_vec()));
        self
    }

    fn dist_info(&self) -> String {
        format!("{}-{}.dist-info", self.name, self.version)
    }

    fn file_name(&self) -> String {
        format!("{}-{}-{}.whl", self.name, self.version, self.tag)
    }

    /// Write the wheel into `dir`; returns its path.
    fn build(&self, dir: &Path) -> PathBuf {
        let dist_info = self.dist_info();
        let mut files = self.files.clone();
        let (name, version) = self.metadata_identity.clone().unwrap_or((self.name.clone(), self.version.clone()));
        let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for line in &self.metadata_lines {
            metadata.push_str(line);
            metadata.push('\n');
        }
        files.push((format!("{dist_info}/METADATA"), metadata.into_bytes()));
        files.push((
            format!("{dist_info}/WHEEL"),
            format!(
                "Wheel-Version: {}\nGenerator: test\nRoot-Is-Purelib: true\nTag: {}\n",
                self.wheel_version, self.tag
            )
            .into_bytes(),
        ));
        let mut record = String::new();
        for (path, content) in &files {
            if self.unrecorded.contains(path) {
                continue;
            }
            let hashed = self.wrong_hash.iter().find(|(p, _)| p == path).map_or(content.as_slice(), |(_, c)| c);
            record.push_str(&format!("{path},{},{}\n", record_hash(hashed), content.len()));
        }
        for line in &self.extra_record_lines {
            record.push_str(line);
            record.push('\n');
        }
        match &self.record_own_row {
            None => record.push_str(&format!("{dist_info}/RECORD,,\n")),
            Some(row) if row.is_empty() => {}
            Some(row) => {
                record.push_str(row);
                record.push('\n');
            }
        }
        files.push((format!("{dist_info}/RECORD"), record.into_bytes()));

        let path = dir.join(self.file_name());
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (name, content) in &files {
            zip.start_file(name.as_str(), options).unwrap();
            zip.write_all(content).unwrap();
        }
        for (name, target) in &self.symlinks {
            zip.add_symlink(name.as_str(), target.as_str(), options).unwrap();
        }
        zip.finish().unwrap();
        path
    }
}

fn record_hash(content: &[u8]) -> String {
    format!("sha256={}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(content)))
}

fn locked_wheel(path: &Path, url: String) -> LockedWheel {
    LockedWheel {
        name: path.file_name().unwrap().to_str().unwrap().to_string(),
        url,
        size: Some(std::fs::metadata(path).unwrap().len()),
        upload_time: None,
        hashes: Hashes { sha256: sha256_file(path).unwrap().to_string() },
    }
}

fn package(name: &str, version: &str, marker: Option<&str>, wheels: Vec<LockedWheel>) -> LockedPackage {
    LockedPackage {
        name: name.into(),
        version: version.into(),
        marker: marker.map(str::to_string),
        requires_python: None,
        dependencies: Vec::new(),
        index: None,
        wheels,
        tool: None,
    }
}

fn lock(packages: Vec<LockedPackage>) -> Pylock {
    Pylock::of_packages("test", packages)
}

/// A scratch directory with wheels, a cache and a site-packages path.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wheels")).unwrap();
        Scratch { dir }
    }

    fn wheels(&self) -> PathBuf {
        self.dir.path().join("wheels")
    }

    fn site_packages(&self) -> PathBuf {
        self.dir.path().join("build/site-packages")
    }

    /// Build the fixtures and lock them with `file://` URLs, one package each.
    fn lock(&self, fixtures: &[WheelFixture]) -> Pylock {
        lock(
            fixtures
                .iter()
                .map(|f| {
                    let path = f.build(&self.wheels());
                    let url = format!("file://{}", path.display());
                    package(&f.name, &f.version, None, vec![locked_wheel(&path, url)])
                })
                .collect(),
        )
    }

    fn install(&self, lock: &Pylock, spec: &LayerSpec, arch: Arch) -> anyhow::Result<Vec<InstalledDist>> {
        let cache = Cache::at(self.dir.path().join("cache"));
        install_lock(lock, arch, spec, &cache, &Http::new().unwrap(), &self.site_packages(), &Progress::new())
    }

    fn install_err(&self, fixtures: &[WheelFixture]) -> String {
        let lock = self.lock(fixtures);
        let err = self.install(&lock, &spec(""), Arch::X86_64).unwrap_err();
        let msg = format!("{err:#}");
        self.assert_nothing_left();
        msg
    }

    /// No site-packages and no staging directory after a refused install.
    fn assert_nothing_left(&self) {
        assert!(!self.site_packages().exists(), "site-packages was created");
        let build = self.dir.path().join("build");
        if build.exists() {
            let leftovers: Vec<_> = std::fs::read_dir(&build).unwrap().map(|e| e.unwrap().path()).collect();
            assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        }
    }
}

fn tree(root: &Path) -> Vec<String> {
    let mut files: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn installs_exactly_the_lock_over_http_with_data_dirs_spread() {
    let scratch = Scratch::new();
    let demo = WheelFixture::new("demo", "1.0")
        .file("demo-1.0.data/purelib/demo_extra/__init__.py", "X = 1\n")
        .file("demo-1.0.data/platlib/demo_native.py", "Y = 2\n")
        .file("demo-1.0.data/scripts/demo-cli", "#!python\n")
        .file("demo-1.0.data/headers/demo.h", "int x;\n")
        .file("demo-1.0.data/data/share/demo.txt", "doc\n")
        .file("demo-1.0.dist-info/entry_points.txt", "[console_scripts]\ndemo = demo:main\n");
    let other = WheelFixture::new("other_pkg", "2.0");
    let paths = [demo.build(&scratch.wheels()), other.build(&scratch.wheels())];
    let server = TestServer::serve_dir(&scratch.wheels());
    let lock = lock(vec![
        package("demo", "1.0", None, vec![locked_wheel(&paths[0], server.url("/demo-1.0-py3-none-any.whl"))]),
        package("other-pkg", "2.0", None, vec![locked_wheel(&paths[1], server.url("/other_pkg-2.0-py3-none-any.whl"))]),
    ]);
    let dists = scratch.install(&lock, &spec(""), Arch::X86_64).unwrap();

    let site = scratch.site_packages();
    assert_eq!(
        tree(&site),
        [
            "demo-1.0.dist-info/METADATA",
            "demo-1.0.dist-info/RECORD",
            "demo-1.0.dist-info/WHEEL",
            "demo-1.0.dist-info/entry_points.txt",
            "demo/__init__.py",
            "demo_extra/__init__.py",
            "demo_native.py",
            "other_pkg-2.0.dist-info/METADATA",
            "other_pkg-2.0.dist-info/RECORD",
            "other_pkg-2.0.dist-info/WHEEL",
            "other_pkg/__init__.py",
        ]
    );
    assert_eq!(dists.len(), 2);
    let demo = &dists[0];
    assert_eq!((demo.name.as_str(), demo.version.as_str()), ("demo", "1.0"));
    assert_eq!(demo.wheel_name, "demo-1.0-py3-none-any.whl");
    assert_eq!(demo.wheel_sha256, sha256_file(&paths[0]).unwrap().to_string());
    assert_eq!(demo.wheel_url, server.url("/demo-1.0-py3-none-any.whl"));
    assert_eq!(demo.dist_info, "demo-1.0.dist-info");
    assert_eq!(demo.files, tree(&site).into_iter().filter(|f| f.starts_with("demo")).collect::<Vec<_>>());
    assert_eq!(dists[1].name, "other-pkg");
    let requests = server.requests().len();
    assert_eq!(requests, 2);

    // A second install reuses the cache (no request) and replaces site-packages as a whole.
    std::fs::write(site.join("stale.py"), "").unwrap();
    scratch.install(&lock, &spec(""), Arch::X86_64).unwrap();
    assert_eq!(server.requests().len(), requests);
    assert!(!site.join("stale.py").exists());
}

#[test]
fn wheel_hash_differing_from_the_lock_is_refused() {
    let scratch = Scratch::new();
    let mut lock = scratch.lock(&[WheelFixture::new("demo", "1.0")]);
    let real = lock.packages[0].wheels[0].hashes.sha256.clone();
    lock.packages[0].wheels[0].hashes.sha256 = "ab".repeat(32);
    let msg = format!("{:#}", scratch.install(&lock, &spec(""), Arch::X86_64).unwrap_err());
    assert!(msg.contains("fetching demo 1.0 (demo-1.0-py3-none-any.whl)"), "{msg}");
    assert!(msg.contains(&format!("expected {}", "ab".repeat(32))), "{msg}");
    assert!(msg.contains(&format!("computed {real}")), "{msg}");
    scratch.assert_nothing_left();
}

#[test]
fn record_missing_a_file_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0").file("demo/extra.py", "");
    fixture.unrecorded.push("demo/extra.py".into());
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(msg.contains("demo-1.0-py3-none-any.whl: \"demo/extra.py\" is in the wheel but not in RECORD"), "{msg}");
}

#[test]
fn record_with_a_wrong_hash_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0").file("demo/extra.py", "real = 1\n");
    fixture.wrong_hash.push(("demo/extra.py".into(), b"fake = 1\n".to_vec()));
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(msg.contains("demo-1.0-py3-none-any.whl: \"demo/extra.py\" does not match RECORD"), "{msg}");
    assert!(msg.contains(&format!("expected {}", record_hash(b"fake = 1\n"))), "{msg}");
    assert!(msg.contains(&format!("computed {}", record_hash(b"real = 1\n"))), "{msg}");
}

#[test]
fn record_naming_a_path_outside_the_wheel_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0");
    fixture.extra_record_lines.push(format!("../x,{},0", record_hash(b"")));
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(
        msg.contains(
            "demo-1.0-py3-none-any.whl: RECORD entry \"../x\" is not a relative path inside the wheel ('..' component)"
        ),
        "{msg}"
    );
}

#[test]
fn record_listing_a_file_missing_from_the_wheel_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0");
    fixture.extra_record_lines.push(format!("demo/gone.py,{},0", record_hash(b"")));
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(msg.contains("RECORD lists \"demo/gone.py\", which is not in the wheel"), "{msg}");
}

#[test]
fn zip_entry_escaping_the_root_is_refused() {
    for (name, why) in
        [("../evil.py", "'..' component"), ("/tmp/evil.py", "absolute path"), ("demo\\evil.py", "backslash")]
    {
        let fixture = WheelFixture::new("demo", "1.0").file(name, "boom\n");
        let msg = Scratch::new().install_err(&[fixture]);
        assert!(
            msg.contains(&format!("demo-1.0-py3-none-any.whl: member {name:?} escapes the install root ({why}")),
            "{msg}"
        );
    }
}

#[test]
fn symlink_entry_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0");
    fixture.symlinks.push(("demo/link".into(), "/etc/passwd".into()));
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(
        msg.contains(
            "demo-1.0-py3-none-any.whl: member \"demo/link\" is a symbolic link; wheels may only contain regular files"
        ),
        "{msg}"
    );
}

#[test]
fn duplicate_zip_member_is_refused() {
    let scratch = Scratch::new();
    let fixture = WheelFixture::new("demo", "1.0").file("demo/aa.py", "a\n").file("demo/ab.py", "b\n");
    let path = fixture.build(&scratch.wheels());
    // Rename the second member onto the first, in both its local header and the central directory.
    let bytes = std::fs::read(&path).unwrap();
    let patched = replace_all(&bytes, b"demo/ab.py", b"demo/aa.py");
    std::fs::write(&path, patched).unwrap();
    let lock =
        lock(vec![package("demo", "1.0", None, vec![locked_wheel(&path, format!("file://{}", path.display()))])]);
    let msg = format!("{:#}", scratch.install(&lock, &spec(""), Arch::X86_64).unwrap_err());
    assert!(msg.contains("demo-1.0-py3-none-any.whl: the zip lists the same member name twice"), "{msg}");
    scratch.assert_nothing_left();
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn pth_file_is_refused_then_allowed_by_name_and_content_hash() {
    let scratch = Scratch::new();
    let fixture = WheelFixture::new("evil_pkg", "1.82.8").file("evil_pkg-1.82.8.data/purelib/evil.pth", "import os\n");
    let lock = scratch.lock(&[fixture]);
    let sha256 = hex::encode(Sha256::digest(b"import os\n"));
    let msg = format!("{:#}", scratch.install(&lock, &spec(""), Arch::X86_64).unwrap_err());
    assert_eq!(
        msg,
        format!(
            "evil_pkg-1.82.8-py3-none-any.whl: refusing to install evil.pth (sha256 {sha256}): a .pth file or \
             sitecustomize/usercustomize module runs code at every Python start (LiteLLM 1.82.8 shipped a \
             credential-stealing .pth this way). If you trust it, add {{ name = \"evil-pkg\", sha256 = \"{sha256}\" }} \
             to packages.allow-startup-hooks in layer.toml"
        )
    );
    scratch.assert_nothing_left();

    // A name alone no longer allows anything.
    let err = LayerSpec::parse(&format!("{SPEC}allow-startup-hooks = [\"Evil_Pkg\"]\n"), Path::new("layer.toml"))
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "layer.toml: invalid layer spec: packages.allow-startup-hooks: \"Evil_Pkg\" allows a startup hook by name alone; allow it by distribution \
         name and content instead: { name = \"Evil_Pkg\", sha256 = \"<hex>\" } (the refusal message of `cargo \
         xtask layer` prints the sha256)"
    );

    // The right name with another hook's hash is still refused.
    let other = hex::encode(Sha256::digest(b"import sys\n"));
    let wrong = spec(&format!("allow-startup-hooks = [{{ name = \"Evil_Pkg\", sha256 = \"{other}\" }}]\n"));
    let msg = format!("{:#}", scratch.install(&lock, &wrong, Arch::X86_64).unwrap_err());
    assert!(msg.starts_with("evil_pkg-1.82.8-py3-none-any.whl: refusing to install evil.pth"), "{msg}");
    scratch.assert_nothing_left();

    let allowed = spec(&format!("allow-startup-hooks = [{{ name = \"Evil_Pkg\", sha256 = \"{sha256}\" }}]\n"));
    let dists = scratch.install(&lock, &allowed, Arch::X86_64).unwrap();
    assert!(dists[0].files.contains(&"evil.pth".to_string()));
    assert!(scratch.site_packages().join("evil.pth").is_file());
}

#[test]
fn sitecustomize_and_usercustomize_are_refused() {
    for hook in ["sitecustomize.py", "usercustomize.py"] {
        let fixture = WheelFixture::new("demo", "1.0").file(hook, "import os\n");
        let msg = Scratch::new().install_err(&[fixture]);
        assert!(msg.contains(&format!("refusing to install {hook}")), "{msg}");
    }
}

#[test]
fn same_path_from_two_wheels_names_both() {
    let a = WheelFixture::new("alpha", "1.0").file("shared/x.py", "a\n");
    let b = WheelFixture::new("beta", "1.0").file("shared/x.py", "b\n");
    let msg = Scratch::new().install_err(&[a, b]);
    assert!(
        msg.contains("alpha-1.0-py3-none-any.whl and beta-1.0-py3-none-any.whl both install \"shared/x.py\""),
        "{msg}"
    );
}

#[test]
fn wheel_version_2_is_refused() {
    let mut fixture = WheelFixture::new("demo", "1.0");
    fixture.wheel_version = "2.0".into();
    let msg = Scratch::new().install_err(&[fixture]);
    assert!(msg.contains("demo-1.0-py3-none-any.whl: Wheel-Version 2.0 is not supported"), "{msg}");
}

#[test]
fn markers_and_tags_select_per_arch() {
    let scratch = Scratch::new();
    let mut arm_only = WheelFixture::new("armonly", "1.0");
    arm_only.tag = "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64".into();
    let mut native_x86 = WheelFixture::new("native", "1.0");
    native_x86.tag = "cp311-cp311-manylinux_2_17_x86_64".into();
    native_x86.files.push(("native/_x86.py".into(), b"".to_vec()));
    let mut native_arm = WheelFixture::new("native", "1.0");
    native_arm.tag = "cp311-cp311-manylinux_2_28_aarch64".into();
    native_arm.files.push(("native/_arm.py".into(), b"".to_vec()));
    let file = |fixture: &WheelFixture| {
        let path = fixture.build(&scratch.wheels());
        locked_wheel(&path, format!("file://{}", path.display()))
    };
    let lock = lock(vec![
        package(
            "armonly",
            "1.0",
            Some("platform_machine == 'aarch64' and sys_platform == 'linux'"),
            vec![file(&arm_only)],
        ),
        package("native", "1.0", None, vec![file(&native_x86), file(&native_arm)]),
        package("winonly", "1.0", Some("sys_platform == 'win32'"), vec![file(&WheelFixture::new("winonly", "1.0"))]),
    ]);
    let names = |dists: &[InstalledDist]| dists.iter().map(|d| d.wheel_name.clone()).collect::<Vec<_>>();
    let x86 = scratch.install(&lock, &spec(""), Arch::X86_64).unwrap();
    assert_eq!(names(&x86), ["native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"]);
    assert!(scratch.site_packages().join("native/_x86.py").exists());
    let arm = scratch.install(&lock, &spec(""), Arch::Arm64).unwrap();
    assert_eq!(
        names(&arm),
        [
            "armonly-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            "native-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"
        ]
    );
    assert!(scratch.site_packages().join("native/_arm.py").exists());
    assert!(!scratch.site_packages().join("native/_x86.py").exists());
}

#[test]
fn package_without_a_wheel_for_the_arch_is_named() {
    let scratch = Scratch::new();
    let mut fixture = WheelFixture::new("armonly", "1.0");
    fixture.tag = "cp311-cp311-manylinux_2_17_aarch64".into();
    let lock = scratch.lock(&[fixture]);
    let msg = format!("{:#}", scratch.install(&lock, &spec(""), Arch::X86_64).unwrap_err());
    assert!(msg.contains("no wheel of armonly 1.0 fits Lambda x86_64 (CPython 3.11, manylinux_2_34 x86_64)"), "{msg}");
    assert!(msg.contains("armonly-1.0-cp311-cp311-manylinux_2_17_aarch64.whl"), "{msg}");
}

#[test]
fn refused_wheel_leaves_previous_site_packages_untouched() {
    let scratch = Scratch::new();
    let good = scratch.lock(&[WheelFixture::new("demo", "1.0")]);
    scratch.install(&good, &spec(""), Arch::X86_64).unwrap();
    let before = tree(&scratch.site_packages());
    // The bad wheel sorts last, so the good ones are already unpacked into staging when it fails.
    let mut bad = WheelFixture::new("zzz", "1.0").file("zzz/x.py", "real\n");
    bad.wrong_hash.push(("zzz/x.py".into(), b"other\n".to_vec()));
    let lock = scratch.lock(&[WheelFixture::new("demo", "1.0"), WheelFixture::new("other", "1.0"), bad]);
    let msg = format!("{:#}", scratch.install(&lock, &spec(""), Arch::X86_64).unwrap_err());
    assert!(msg.contains("zzz-1.0-py3-none-any.whl: \"zzz/x.py\" does not match RECORD"), "{msg}");
    assert_eq!(tree(&scratch.site_packages()), before);
    let siblings: Vec<_> =
        std::fs::read_dir(scratch.dir.path().join("build")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(siblings, ["site-packages"]);
}

// ---------------------------------------------------------------------------------------------
// Prune.

/// A site-packages tree with one file per rule, and the dists describing it.
fn prune_fixture(root: &Path) -> Vec<InstalledDist> {
    let layout: &[(&str, &[&str])] = &[
        (
            "pkg",
            &[
                "pkg-1.0.dist-info/METADATA",
                "pkg-1.0.dist-info/RECORD",
                "pkg-1.0.dist-info/WHEEL",
                "pkg-1.0.dist-info/entry_points.txt",
                "pkg-1.0.dist-info/licenses/LICENSE.md",
                "pkg/__init__.py",
                "pkg/__init__.pyi",
                "pkg/py.typed",
                "pkg/testing.py",
                "pkg/test_utils.py",
                "pkg/tests/__init__.py",
                "pkg/tests/test_x.py",
                "pkg/sub/test/conftest.py",
                "pkg/docs/index.rst",
                "pkg/README.md",
                "pkg/examples/demo.py",
                "pkg/_speedups.c",
                "pkg/_speedups.pyx",
                "pkg/include/pkg.h",
                "pkg/_speedups.cpython-311-x86_64-linux-gnu.so",
                "pkg/data/schema.json",
                "bin/pkg-cli",
            ],
        ),
        ("pip", &["pip-24.0.dist-info/METADATA", "pip/__init__.py"]),
        (
            "setuptools",
            &[
                "setuptools-70.0.dist-info/METADATA",
                "setuptools/__init__.py",
                "_distutils_hack/__init__.py",
                "distutils-precedence.pth",
            ],
        ),
        ("boto3", &["boto3-1.0.dist-info/METADATA", "boto3/__init__.py"]),
    ];
    let mut dists = Vec::new();
    for (name, files) in layout {
        for file in *files {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("content of {file}\n")).unwrap();
        }
        let dist_info = files.iter().find(|f| f.contains(".dist-info/")).unwrap().split('/').next().unwrap();
        let mut files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        files.sort();
        dists.push(InstalledDist {
            name: name.to_string(),
            version: "1.0".into(),
            wheel_name: format!("{name}-1.0-py3-none-any.whl"),
            wheel_sha256: "0".repeat(64),
            wheel_url: format!("https://files.example/{name}.whl"),
            dist_info: dist_info.to_string(),
            files,
        });
    }
    dists
}

fn run_rule(rule_toml: &str) -> (tempfile::TempDir, Vec<InstalledDist>, Vec<PruneOutcome>) {
    let dir = tempfile::tempdir().unwrap();
    let mut dists = prune_fixture(dir.path());
    let spec = spec(rule_toml);
    let outcomes = prune(dir.path(), &mut dists, &spec.prune, &Progress::new()).unwrap();
    // Every dist's file list matches the tree, and METADATA / entry_points.txt survive.
    let mut listed: Vec<String> = dists.iter().flat_map(|d| d.files.clone()).collect();
    listed.sort();
    assert_eq!(listed, tree(dir.path()), "file lists out of date after {rule_toml}");
    for dist in &dists {
        assert!(dist.files.contains(&format!("{}/METADATA", dist.dist_info)), "{} lost METADATA", dist.name);
    }
    (dir, dists, outcomes)
}

fn removed(rule: &str) -> Vec<String> {
    let (dir, _, outcomes) = run_rule(&format!("\n[prune]\nsafe = [\"{rule}\"]\n"));
    let all: Vec<String> = {
        let other = tempfile::tempdir().unwrap();
        prune_fixture(other.path()).into_iter().flat_map(|d| d.files).collect()
    };
    let left = tree(dir.path());
    let mut gone: Vec<String> = all.into_iter().filter(|f| !left.contains(f)).collect();
    gone.sort();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].rule, rule);
    assert_eq!(outcomes[0].files as usize, gone.len(), "{rule}");
    let bytes: u64 = gone.iter().map(|f| format!("content of {f}\n").len() as u64).sum();
    assert_eq!(outcomes[0].bytes, bytes, "{rule}");
    gone
}

#[test]
fn prune_safe_rules_each_remove_only_their_files() {
    assert_eq!(removed("tests"), ["pkg/sub/test/conftest.py", "pkg/tests/__init__.py", "pkg/tests/test_x.py"]);
    assert_eq!(removed("docs"), ["pkg/README.md", "pkg/docs/index.rst"]);
    assert_eq!(removed("examples"), ["pkg/examples/demo.py"]);
    assert_eq!(removed("type-stubs"), ["pkg/__init__.pyi"]);
    assert_eq!(removed("c-sources"), ["pkg/_speedups.c", "pkg/_speedups.pyx", "pkg/include/pkg.h"]);
    assert_eq!(
        removed("build-tools"),
        [
            "_distutils_hack/__init__.py",
            "distutils-precedence.pth",
            "pip-24.0.dist-info/METADATA",
            "pip/__init__.py",
            "setuptools-70.0.dist-info/METADATA",
            "setuptools/__init__.py",
        ]
    );
    assert_eq!(removed("console-scripts"), ["bin/pkg-cli"]);
    assert_eq!(removed("record"), ["pkg-1.0.dist-info/RECORD"]);
}

#[test]
fn prune_keeps_metadata_entry_points_licenses_and_modules_named_like_tests() {
    let (dir, dists, outcomes) = run_rule("");
    let names: Vec<&str> = outcomes.iter().map(|o| o.rule.as_str()).collect();
    let safe: Vec<&str> = xtask::spec::SafeRule::ALL.iter().map(|rule| rule.name()).collect();
    assert_eq!(names, safe);
    let left = tree(dir.path());
    for kept in [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/WHEEL",
        "pkg-1.0.dist-info/entry_points.txt",
        "pkg-1.0.dist-info/licenses/LICENSE.md",
        "pkg/testing.py",
        "pkg/test_utils.py",
        "pkg/py.typed",
        "pkg/data/schema.json",
        "pkg/_speedups.cpython-311-x86_64-linux-gnu.so",
        "boto3/__init__.py",
    ] {
        assert!(left.contains(&kept.to_string()), "{kept} was pruned");
    }
    assert!(!dir.path().join("pkg/tests").exists(), "empty directories are removed");
    assert!(dists.iter().all(|d| d.name != "pip" && d.name != "setuptools"), "build tools are dropped from the list");
}

#[test]
fn prune_drop_packages_removes_whole_distributions() {
    let (dir, dists, outcomes) = run_rule("\n[prune]\nsafe = []\ndrop-packages = [\"Boto3\"]\n");
    assert_eq!(outcomes.len(), 1);
    assert_eq!((outcomes[0].rule.as_str(), outcomes[0].files), ("drop-packages", 2));
    assert!(!dir.path().join("boto3").exists());
    assert!(dists.iter().all(|d| d.name != "boto3"));

    let dir = tempfile::tempdir().unwrap();
    let mut dists = prune_fixture(dir.path());
    let spec = spec("\n[prune]\ndrop-packages = [\"botocore\"]\n");
    let err = prune(dir.path(), &mut dists, &spec.prune, &Progress::new()).unwrap_err();
    assert!(format!("{err:#}").contains("prune.drop-packages: \"botocore\" is not installed"), "{err:#}");
}

/// A litellm-shaped tree for the opt-in rules.
fn litellm_fixture(root: &Path) -> Vec<InstalledDist> {
    let files = [
        "litellm-1.78.7.dist-info/METADATA",
        "litellm-1.78.7.dist-info/entry_points.txt",
        "litellm/__init__.py",
        "litellm/llms/base.py",
        "litellm/llms/openai/openai.py",
        "litellm/llms/anthropic/chat/handler.py",
        "litellm/llms/tavily/search/transformation.py",
        "litellm/llms/recraft/image_generation/transformation.py",
        "litellm/proxy/__init__.py",
        "litellm/proxy/_types.py",
        "litellm/proxy/types_utils/utils.py",
        "litellm/proxy/_experimental/out/index.html",
        "litellm/proxy/swagger/swagger-ui.js",
    ];
    for file in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("content of {file}\n")).unwrap();
    }
    let mut files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    files.sort();
    vec![InstalledDist {
        name: "litellm".into(),
        version: "1.78.7".into(),
        wheel_name: "litellm-1.78.7-py3-none-any.whl".into(),
        wheel_sha256: "0".repeat(64),
        wheel_url: "https://files.example/litellm.whl".into(),
        dist_info: "litellm-1.78.7.dist-info".into(),
        files,
    }]
}

fn prune_litellm(rules: &str) -> anyhow::Result<(Vec<String>, Vec<PruneOutcome>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut dists = litellm_fixture(dir.path());
    let spec = spec(&format!("\n[prune]\nsafe = []\n{rules}"));
    let outcomes = prune(dir.path(), &mut dists, &spec.prune, &Progress::new())?;
    assert_eq!(dists[0].files, tree(dir.path()));
    Ok((tree(dir.path()), outcomes))
}

#[test]
fn prune_keep_litellm_providers_keeps_import_time_providers() {
    let (left, outcomes) = prune_litellm("keep-litellm-providers = [\"openai\"]\n").unwrap();
    assert_eq!(outcomes[0].rule, "keep-litellm-providers");
    assert_eq!(outcomes[0].files, 2);
    assert_eq!(outcomes[0].by_dist[0].name, "litellm");
    assert!(left.contains(&"litellm/llms/openai/openai.py".to_string()));
    assert!(left.contains(&"litellm/llms/anthropic/chat/handler.py".to_string()), "imported by `import litellm`");
    assert!(left.contains(&"litellm/llms/base.py".to_string()));
    assert!(!left.iter().any(|f| f.contains("tavily") || f.contains("recraft")));

    let err = prune_litellm("keep-litellm-providers = [\"opneai\"]\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("prune.keep-litellm-providers: \"opneai\" is not a directory of litellm/llms/"),
        "{err:#}"
    );
}

#[test]
fn prune_litellm_proxy_paths_refuses_import_time_modules() {
    let (left, outcomes) = prune_litellm("litellm-proxy-paths = [\"_experimental\", \"swagger\"]\n").unwrap();
    assert_eq!((outcomes[0].rule.as_str(), outcomes[0].files), ("litellm-proxy-paths", 2));
    assert!(left.contains(&"litellm/proxy/_types.py".to_string()));
    assert!(!left.iter().any(|f| f.contains("_experimental") || f.contains("swagger")));

    let err = prune_litellm("litellm-proxy-paths = [\"types_utils\"]\n").unwrap_err();
    assert!(
        format!("{err:#}").contains(
            "prune.litellm-proxy-paths: \"types_utils\" would delete litellm/proxy/types_utils/__init__.py, which `import litellm` loads"
        ),
        "{err:#}"
    );
    let err = prune_litellm("litellm-proxy-paths = [\"nope\"]\n").unwrap_err();
    assert!(format!("{err:#}").contains("\"nope\" matches nothing under litellm/proxy/"), "{err:#}");
}

// ---------------------------------------------------------------------------------------------
// Real wheels (ignored by default: they need a directory of downloaded wheels or the network).

/// Install and prune the real litellm closure from a directory of wheels, e.g.
/// `pip download --only-binary :all: --platform manylinux_2_34_x86_64 --platform manylinux2014_x86_64
/// --python-version 3.11 litellm==1.78.7 -d DIR`, then check `import litellm` with the host
/// python3 (when the arch is the host's). Or `XTASK_REAL_LOCK=pylock.toml` (`XTASK_REAL_ARCH=arm64`
/// for the other arch). `XTASK_REAL_WHEELS=DIR cargo test -p xtask --test install real_ -- --ignored --nocapture`.
#[test]
#[ignore]
fn real_litellm_closure_installs_prunes_and_imports() {
    let lock = match (std::env::var_os("XTASK_REAL_LOCK"), std::env::var_os("XTASK_REAL_WHEELS")) {
        (Some(lock), _) => Pylock::load(Path::new(&lock)).unwrap(),
        (None, Some(wheels)) => xtask::bench::install::pylock_from_wheel_dir(Path::new(&wheels)).unwrap(),
        (None, None) => panic!("set XTASK_REAL_LOCK to a pylock.toml or XTASK_REAL_WHEELS to a directory of wheels"),
    };
    let arch = match std::env::var("XTASK_REAL_ARCH").as_deref() {
        Ok("arm64") => Arch::Arm64,
        _ => Arch::X86_64,
    };
    let scratch = Scratch::new();
    let mut dists = scratch.install(&lock, &spec(""), arch).unwrap();
    let site = scratch.site_packages();
    let before: u64 = tree(&site).iter().map(|f| std::fs::metadata(site.join(f)).unwrap().len()).sum();
    let outcomes = prune(&site, &mut dists, &spec("").prune, &Progress::new()).unwrap();
    let after: u64 = tree(&site).iter().map(|f| std::fs::metadata(site.join(f)).unwrap().len()).sum();
    for outcome in &outcomes {
        eprintln!("{:>16} {:>6} files {:>10} bytes", outcome.rule, outcome.files, outcome.bytes);
    }
    eprintln!("site-packages: {before} bytes before prune, {after} after");
    let mut listed: Vec<String> = dists.iter().flat_map(|d| d.files.clone()).collect();
    listed.sort();
    assert_eq!(listed, tree(&site));
    assert_eq!(before - after, outcomes.iter().map(|o| o.bytes).sum::<u64>());
    if Arch::host() != Some(arch) {
        return;
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import litellm, openai, tiktoken, tokenizers, pydantic, httpx, aiohttp, jinja2, jsonschema; print(litellm.token_counter(model='gpt-3.5-turbo', text='hello world'))"])
        .env("PYTHONPATH", &site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .output()
        .unwrap();
    assert!(output.status.success(), "import failed: {}", String::from_utf8_lossy(&output.stderr));
    eprintln!("token_counter: {}", String::from_utf8_lossy(&output.stdout).trim());
    if let Some(keep) = std::env::var_os("XTASK_KEEP_TREE") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::rename(&site, &keep).unwrap();
    }
}

/// The install benchmark: `XTASK_BENCH_LOCK=pylock.toml` (or `XTASK_BENCH_PIP_REPORT=report.json`),
/// `XTASK_BENCH_RUNS=5`, `XTASK_BENCH_DIR=/tmp/bench-install`, `XTASK_BENCH_TOOLS=xtask,uv,uv-copy,pip`;
/// `cargo test -p xtask --release --test install bench_ -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_install_against_uv_and_pip() {
    let lock = match (std::env::var_os("XTASK_BENCH_LOCK"), std::env::var_os("XTASK_BENCH_PIP_REPORT")) {
        (Some(path), _) => Pylock::load(Path::new(&path)).unwrap(),
        (None, Some(report)) => xtask::bench::install::pylock_from_pip_report(Path::new(&report)).unwrap(),
        (None, None) => panic!("set XTASK_BENCH_LOCK or XTASK_BENCH_PIP_REPORT"),
    };
    let runs = std::env::var("XTASK_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let dir =
        std::env::var_os("XTASK_BENCH_DIR").map_or_else(|| std::env::temp_dir().join("bench-install"), PathBuf::from);
    let tools = std::env::var("XTASK_BENCH_TOOLS").unwrap_or_else(|_| "xtask,uv,uv-copy,pip".into());
    let tools: Vec<&str> = tools.split(',').collect();
    let table =
        xtask::bench::install::bench_install(&lock, &spec(""), Arch::X86_64, runs, &tools, &dir, &Progress::new())
            .unwrap();
    println!("{table}");
}

// ---- Strict inputs (issue 16): each refusal names the wheel and the entry, and leaves no
// site-packages, no staging directory and no temp file in the cache.

impl Scratch {
    /// Build `fixture`, rewrite its bytes with `mutate`, and lock the result (hash of the new bytes).
    fn lock_mutated(&self, fixture: &WheelFixture, mutate: impl Fn(Vec<u8>) -> Vec<u8>) -> Pylock {
        let path = fixture.build(&self.wheels());
        let bytes = mutate(std::fs::read(&path).unwrap());
        std::fs::write(&path, bytes).unwrap();
        let url = format!("file://{}", path.display());
        lock(vec![package(&fixture.name, &fixture.version, None, vec![locked_wheel(&path, url)])])
    }

    /// Install `lock` expecting a refusal; check nothing was left behind; return the message.
    fn refused(&self, lock: &Pylock, spec: &LayerSpec) -> String {
        let msg = format!("{:#}", self.install(lock, spec, Arch::X86_64).unwrap_err());
        self.assert_nothing_left();
        let tmp = self.dir.path().join("cache/tmp");
        if tmp.exists() {
            assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "temp files left in the cache");
        }
        msg
    }
}

const DEMO_WHEEL: &str = "demo-1.0-py3-none-any.whl";

/// A rewrite of a built wheel's bytes.
type Mutation = dyn Fn(Vec<u8>) -> Vec<u8>;

#[test]
fn ambiguous_zip_layouts_are_refused() {
    let fixture = WheelFixture::new("demo", "1.0");
    let cases: [(&str, Box<Mutation>); 3] = [
        (
            "data before the first entry",
            Box::new(|bytes| {
                let mut out = b"MZ-stub".to_vec();
                out.extend(bytes);
                out
            }),
        ),
        (
            "data after the end record",
            Box::new(|mut bytes| {
                bytes.extend_from_slice(b"PK\x03\x04 appended");
                bytes
            }),
        ),
        (
            "local name differs",
            Box::new(|mut bytes| {
                // The first member is demo/__init__.py; rename it in its local header only.
                bytes[30..34].copy_from_slice(b"evil");
                bytes
            }),
        ),
    ];
    let wants = [
        format!("{DEMO_WHEEL}: 7 bytes of data before the first entry; refusing an ambiguous zip archive"),
        format!(
            "{DEMO_WHEEL}: 13 bytes of data after the end of central directory record; refusing an ambiguous zip archive"
        ),
        format!(
            "{DEMO_WHEEL}: member \"demo/__init__.py\": the local header names it \"evil/__init__.py\", the central \
             directory \"demo/__init__.py\"; refusing an ambiguous zip archive"
        ),
    ];
    for ((what, mutate), want) in cases.into_iter().zip(wants) {
        let scratch = Scratch::new();
        let lock = scratch.lock_mutated(&fixture, mutate);
        let msg = scratch.refused(&lock, &spec(""));
        assert_eq!(msg, want, "{what}");
    }
}

#[test]
fn member_names_with_control_characters_are_refused() {
    let fixture = WheelFixture::new("demo", "1.0").file("demo/\u{1b}[2Jclear.py", "X = 1\n");
    let msg = Scratch::new().install_err(&[fixture]);
    assert_eq!(
        msg,
        format!(
            "{DEMO_WHEEL}: member \"demo/\\u{{1b}}[2Jclear.py\" has the control character '\\u{{1b}}' in its name; \
             refusing the wheel (such names hide what a terminal or a log shows)"
        )
    );
}

#[test]
fn record_must_list_itself_without_a_hash() {
    let mut missing = WheelFixture::new("demo", "1.0");
    missing.record_own_row = Some(String::new());
    assert_eq!(
        Scratch::new().install_err(&[missing]),
        format!(
            "{DEMO_WHEEL}: RECORD does not list itself (\"demo-1.0.dist-info/RECORD\" has no row); refusing the wheel \
             (rebuild it with a current build backend)"
        )
    );
    let mut hashed = WheelFixture::new("demo", "1.0");
    let fake = record_hash(b"anything");
    hashed.record_own_row = Some(format!("demo-1.0.dist-info/RECORD,{fake},10"));
    assert_eq!(
        Scratch::new().install_err(&[hashed]),
        format!(
            "{DEMO_WHEEL}: RECORD's own row gives it a hash or size (\"{fake}\", Some(10)), which RECORD cannot hold \
             for itself; refusing the wheel"
        )
    );
}

#[test]
fn record_signature_files_are_exempt_only_when_unhashed() {
    // An unhashed signature file installs (RECORD cannot hash what signs it).
    let scratch = Scratch::new();
    let mut signed = WheelFixture::new("demo", "1.0").file("demo-1.0.dist-info/RECORD.jws", "{\"signature\": 1}");
    signed.unrecorded.push("demo-1.0.dist-info/RECORD.jws".into());
    let lock = scratch.lock(&[signed]);
    scratch.install(&lock, &spec(""), Arch::X86_64).unwrap();
    assert!(scratch.site_packages().join("demo-1.0.dist-info/RECORD.jws").is_file());

    // A signature file that RECORD does hash must match it.
    let mut wrong = WheelFixture::new("demo", "1.0").file("demo-1.0.dist-info/RECORD.p7s", "signature");
    wrong.wrong_hash.push(("demo-1.0.dist-info/RECORD.p7s".into(), b"other bytes".to_vec()));
    let msg = Scratch::new().install_err(&[wrong]);
    assert!(
        msg.starts_with(&format!(
            "{DEMO_WHEEL}: \"demo-1.0.dist-info/RECORD.p7s\" does not match RECORD:\n  expected "
        )),
        "{msg}"
    );

    // A file named like a signature outside the wheel's own .dist-info is an ordinary file.
    let mut elsewhere = WheelFixture::new("demo", "1.0").file("demo/RECORD.jws", "x");
    elsewhere.unrecorded.push("demo/RECORD.jws".into());
    let msg = Scratch::new().install_err(&[elsewhere]);
    assert!(msg.contains("\"demo/RECORD.jws\" is in the wheel but not in RECORD"), "{msg}");
}

/// A lock of `fixtures` where `dependencies[i]` are the locked dependencies of `fixtures[i]`.
fn lock_with_dependencies(scratch: &Scratch, fixtures: &[WheelFixture], dependencies: &[&[&str]]) -> Pylock {
    let mut lock = scratch.lock(fixtures);
    for (package, names) in lock.packages.iter_mut().zip(dependencies) {
        package.dependencies =
            names.iter().map(|name| xtask::packaging::pylock::PackageRef { name: name.to_string() }).collect();
    }
    lock
}

#[test]
fn a_wheel_whose_metadata_differs_from_the_lock_is_refused() {
    // Name and version.
    let scratch = Scratch::new();
    let mut renamed = WheelFixture::new("demo", "1.0");
    renamed.metadata_identity = Some(("evil".into(), "1.0".into()));
    let lock = scratch.lock(&[renamed]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: its METADATA says Name evil Version 1.0, but the lock has demo 1.0; refusing a wheel that \
             is not the distribution the lock was made from"
        )
    );
    let scratch = Scratch::new();
    let mut other_version = WheelFixture::new("demo", "1.0");
    other_version.metadata_identity = Some(("Demo".into(), "1.0.post1".into()));
    let lock = scratch.lock(&[other_version]);
    assert!(scratch.refused(&lock, &spec("")).contains("its METADATA says Name demo Version 1.0.post1"));

    // A requirement the lock does not list as an edge (the wheel pulls in something unlocked).
    let scratch = Scratch::new();
    let fixtures = [WheelFixture::new("demo", "1.0").requires("idna>=3"), WheelFixture::new("idna", "3.10")];
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&[], &[]]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: its METADATA requires idna>=3, but the lock does not list idna as a dependency of demo \
             1.0; the wheel's Requires-Dist differs from the metadata the lock was made from: re-run `cargo xtask \
             lock`"
        )
    );

    // A requirement whose specifier the locked version does not meet.
    let scratch = Scratch::new();
    let fixtures = [WheelFixture::new("demo", "1.0").requires("idna<3"), WheelFixture::new("idna", "3.10")];
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&["idna"], &[]]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: its METADATA requires idna<3, but the lock installs idna 3.10; the wheel's Requires-Dist \
             differs from the metadata the lock was made from: re-run `cargo xtask lock`"
        )
    );

    // An edge of the lock that the wheel does not require.
    let scratch = Scratch::new();
    let fixtures = [WheelFixture::new("demo", "1.0"), WheelFixture::new("idna", "3.10")];
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&["idna"], &[]]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: the lock lists idna as a dependency of demo 1.0, but the wheel's METADATA does not require \
             it; the wheel differs from the metadata the lock was made from: re-run `cargo xtask lock`"
        )
    );

    // What matches installs: markers and extras are evaluated for the target, excluded
    // distributions are left out.
    let scratch = Scratch::new();
    let fixtures = [
        WheelFixture::new("demo", "1.0")
            .requires("idna>=3")
            .requires("pywin32; sys_platform == 'win32'")
            .requires("h2; extra == 'http2'")
            .requires("hf-xet"),
        WheelFixture::new("idna", "3.10"),
    ];
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&["idna"], &[]]);
    scratch.install(&lock, &spec("exclude = [\"hf-xet\"]\n"), Arch::X86_64).unwrap();
}

#[test]
fn a_lock_dependency_missing_from_the_lock_is_an_error() {
    let scratch = Scratch::new();
    let fixtures = [WheelFixture::new("demo", "1.0").requires("idna")];
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&["idna"]]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        "lock: demo 1.0 depends on idna, which is not in the lock; the lock is incomplete or was edited by hand: \
         re-run `cargo xtask lock`"
    );
}

#[test]
fn secret_shaped_files_are_refused_unless_allowed_by_path() {
    let scratch = Scratch::new();
    let fixture = WheelFixture::new("demo", "1.0")
        .file("demo/.env", "OPENAI_API_KEY=sk-leak\n")
        .file("demo/certs/server.pem", "-----BEGIN PRIVATE KEY-----\n");
    let lock = scratch.lock(&[fixture]);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: refusing to install demo/.env, demo/certs/server.pem: the name looks like a credential or \
             private key, which must not ship in a layer. If it is meant to be there (a CA bundle, a public key), \
             add \"demo/.env\", \"demo/certs/server.pem\" to packages.allow-secret-files in layer.toml"
        )
    );
    let msg = scratch.refused(&lock, &spec("allow-secret-files = [\"demo/certs/server.pem\"]\n"));
    assert!(msg.starts_with(&format!("{DEMO_WHEEL}: refusing to install demo/.env: ")), "{msg}");
    let both = spec("allow-secret-files = [\"demo/certs/server.pem\", \"demo/.env\"]\n");
    scratch.install(&lock, &both, Arch::X86_64).unwrap();
    assert!(scratch.site_packages().join("demo/.env").is_file());
}

#[test]
fn a_lock_size_that_differs_from_the_bytes_received_is_refused() {
    let scratch = Scratch::new();
    let mut lock = scratch.lock(&[WheelFixture::new("demo", "1.0")]);
    let real = lock.packages[0].wheels[0].size.unwrap();
    lock.packages[0].wheels[0].size = Some(real + 1);
    assert_eq!(
        scratch.refused(&lock, &spec("")),
        format!(
            "{DEMO_WHEEL}: the lock says {} bytes (the index's size), the file has {real}; re-run `cargo xtask lock`",
            real + 1
        )
    );
}

#[test]
fn excluded_packages_and_what_only_they_need_are_locked_but_not_installed() {
    // litellm → hub → {xet → xetcore, idna}: excluding xet leaves out xet and xetcore, which the
    // lock still pins (so pip and uv can install it) and marks.
    let scratch = Scratch::new();
    let fixtures = [
        WheelFixture::new("litellm", "1.78.7").requires("hub"),
        WheelFixture::new("hub", "2.0").requires("xet>=1").requires("idna"),
        WheelFixture::new("xet", "1.8.0").requires("xetcore"),
        WheelFixture::new("xetcore", "1.0"),
        WheelFixture::new("idna", "3.10"),
    ];
    let mut lock = lock_with_dependencies(&scratch, &fixtures, &[&["hub"], &["idna", "xet"], &["xetcore"], &[], &[]]);
    lock.packages[2].set_excluded(Some("in [packages] exclude of layer.toml".into()));
    lock.packages[3].set_excluded(Some("needed only by excluded xet".into()));
    let spec = spec("exclude = [\"XET\"]\n");
    let target = Target::new(Arch::X86_64, &spec, &lock).unwrap();
    let (shipped, notes) = leave_out_excluded(&lock, select_wheels(&lock, &target).unwrap(), &spec, &target).unwrap();
    assert_eq!(shipped.iter().map(|c| c.package.name.as_str()).collect::<Vec<_>>(), ["hub", "idna", "litellm"]);
    assert_eq!(
        notes,
        [
            "skipped xet 1.8.0 (in [packages] exclude of layer.toml)",
            "skipped xetcore 1.0 (needed only by excluded xet)",
        ]
    );
    let installed = scratch.install(&lock, &spec, Arch::X86_64).unwrap();
    assert_eq!(installed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["hub", "idna", "litellm"]);
    let top: Vec<String> = std::fs::read_dir(scratch.site_packages())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("xet"))
        .collect();
    assert!(top.is_empty(), "excluded files were installed: {top:?}");

    // Without the exclusion the whole lock installs.
    let scratch = Scratch::new();
    let lock = lock_with_dependencies(&scratch, &fixtures, &[&["hub"], &["idna", "xet"], &["xetcore"], &[], &[]]);
    assert_eq!(scratch.install(&lock, &self::spec(""), Arch::X86_64).unwrap().len(), 5);
}

#[test]
fn yanked_pins_install_with_one_warning_each() {
    let scratch = Scratch::new();
    let mut lock = scratch.lock(&[
        WheelFixture::new("broken", "1.2.3"),
        WheelFixture::new("flagged", "2.0"),
        WheelFixture::new("fine", "1.0"),
    ]);
    lock.packages[0].tool = Some(LockedPackage::yanked_tool(Some("memory leak")));
    lock.packages[1].tool = Some(LockedPackage::yanked_tool(None));
    // Through the lock file, as `lock` writes it and `layer` reads it.
    let path = scratch.dir.path().join("pylock.toml");
    write_lock(&path, &lock).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\n[packages.tool.litellm-layer]\nyanked = \"memory leak\"\n"), "{text}");
    assert!(text.contains("\n[packages.tool.litellm-layer]\nyanked = true\n"), "{text}");
    assert_eq!(text.matches("[packages.tool").count(), 2, "{text}");
    let lock = Pylock::load(&path).unwrap();
    let installed = scratch.install(&lock, &spec(""), Arch::X86_64).unwrap();
    assert_eq!(installed.len(), 3);
    let target = Target::new(Arch::X86_64, &spec(""), &lock).unwrap();
    let warnings = yanked_warnings(&select_wheels(&lock, &target).unwrap());
    assert_eq!(
        warnings,
        [
            "broken 1.2.3 is yanked on the index (reason: memory leak): it is installed because the lock pins it; run \
             `cargo xtask lock --upgrade-package broken` (`broken==VERSION` when layer.toml pins it) to move off it",
            "flagged 2.0 is yanked on the index: it is installed because the lock pins it; run `cargo xtask lock \
             --upgrade-package flagged` (`flagged==VERSION` when layer.toml pins it) to move off it",
        ]
    );
}
