//! A local PEP 691 index for lock tests: real wheel zips (METADATA, WHEEL, RECORD) generated in
//! memory and served from 127.0.0.1 by `testing::TestServer`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{Reply, Request, TestServer};
use sha2::{Digest, Sha256};

/// One file on the fixture index.
#[derive(Debug, Clone)]
pub struct File {
    pub filename: String,
    pub bytes: Vec<u8>,
    pub yanked: bool,
    pub requires_python: Option<String>,
    pub without_sha256: bool,
}

/// How the fixture server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// Ignore `Range` headers (always answer 200 with the whole file).
    NoRanges,
    /// Answer every index request with an HTML page.
    Html,
}

/// The projects of the fixture index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub projects: BTreeMap<String, Vec<File>>,
    /// Projects whose page is broken JSON.
    pub malformed: Vec<String>,
}

/// A wheel to build.
pub struct Wheel<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub tags: &'a str,
    pub requires: &'a [&'a str],
    pub extras: &'a [&'a str],
}

impl<'a> Wheel<'a> {
    pub fn new(name: &'a str, version: &'a str) -> Wheel<'a> {
        Wheel { name, version, tags: "py3-none-any", requires: &[], extras: &[] }
    }
    pub fn tags(mut self, tags: &'a str) -> Self {
        self.tags = tags;
        self
    }
    pub fn requires(mut self, requires: &'a [&'a str]) -> Self {
        self.requires = requires;
        self
    }
    pub fn extras(mut self, extras: &'a [&'a str]) -> Self {
        self.extras = extras;
        self
    }
}

/// A real wheel zip: a module, METADATA, WHEEL and RECORD.
pub fn build_wheel(wheel: &Wheel) -> File {
    let escaped = wheel.name.replace('-', "_");
    let dist_info = format!("{escaped}-{}.dist-info", wheel.version);
    let mut metadata = format!("Metadata-Version: 2.1\nName: {}\nVersion: {}\n", wheel.name, wheel.version);
    for extra in wheel.extras {
        metadata.push_str(&format!("Provides-Extra: {extra}\n"));
    }
    for requirement in wheel.requires {
        metadata.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    metadata.push_str("\nA fixture package.\n");
    let wheel_file =
        format!("Wheel-Version: 1.0\nGenerator: lock-fixture\nRoot-Is-Purelib: true\nTag: {}\n", wheel.tags);
    let module = format!("{escaped}/__init__.py");
    let members: Vec<(String, Vec<u8>)> = vec![
        (module, format!("VERSION = {:?}\n{}", wheel.version, "# padding\n".repeat(2000)).into_bytes()),
        (format!("{dist_info}/METADATA"), metadata.into_bytes()),
        (format!("{dist_info}/WHEEL"), wheel_file.into_bytes()),
    ];
    let mut record = String::new();
    for (name, bytes) in &members {
        let digest = base64_urlsafe(&Sha256::digest(bytes));
        record.push_str(&format!("{name},sha256={digest},{}\n", bytes.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members.iter().chain([(format!("{dist_info}/RECORD"), record.into_bytes())].iter()) {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    File {
        filename: format!("{escaped}-{}-{}.whl", wheel.version, wheel.tags),
        bytes,
        yanked: false,
        requires_python: None,
        without_sha256: false,
    }
}

fn base64_urlsafe(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Index {
    pub fn add(&mut self, file: File) -> &mut File {
        let project = normalize(file.filename.split('-').next().unwrap());
        let files = self.projects.entry(project).or_default();
        files.push(file);
        files.last_mut().unwrap()
    }

    pub fn wheel(&mut self, wheel: Wheel) -> &mut File {
        self.add(build_wheel(&wheel))
    }

    pub fn sdist(&mut self, name: &str, version: &str) -> &mut File {
        let project = normalize(name);
        let files = self.projects.entry(project).or_default();
        files.push(File {
            filename: format!("{name}-{version}.tar.gz"),
            bytes: b"not really a tarball".to_vec(),
            yanked: false,
            requires_python: None,
            without_sha256: false,
        });
        files.last_mut().unwrap()
    }

    fn page(&self, name: &str) -> Option<String> {
        let files = self.projects.get(name)?;
        let entries: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut hashes = serde_json::Map::new();
                if !f.without_sha256 {
                    hashes.insert("sha256".into(), hex::encode(Sha256::digest(&f.bytes)).into());
                }
                serde_json::json!({
                    "filename": f.filename,
                    "url": format!("../../files/{}", f.filename),
                    "hashes": hashes,
                    "requires-python": f.requires_python,
                    "yanked": f.yanked,
                    "size": f.bytes.len(),
                    "upload-time": "2025-01-02T03:04:05.000000Z",
                })
            })
            .collect();
        Some(serde_json::json!({"meta": {"api-version": "1.1"}, "name": name, "files": entries}).to_string())
    }
}

pub fn normalize(name: &str) -> String {
    xtask::packaging::wheel_name::normalize_name(name)
}

/// Serve `index` on 127.0.0.1. The index lives behind a mutex so tests can change it between runs.
pub fn serve(index: Arc<Mutex<Index>>, mode: Mode) -> TestServer {
    TestServer::start(move |request: &Request| {
        let index = index.lock().unwrap();
        let path = request.path.split('?').next().unwrap_or("");
        if let Some(name) = path.strip_prefix("/simple/").map(|p| p.trim_end_matches('/')) {
            if mode == Mode::Html {
                return Reply::new(200, "text/html", format!("<html><body><a href=\"x\">{name}</a></body></html>"));
            }
            if index.malformed.iter().any(|m| m == name) {
                return Reply::new(200, "application/vnd.pypi.simple.v1+json", "{\"files\": [{\"filename\": ");
            }
            return match index.page(name) {
                Some(page) => Reply::new(200, "application/vnd.pypi.simple.v1+json", page),
                None => Reply::not_found(),
            };
        }
        if let Some(filename) = path.strip_prefix("/files/") {
            let file = index.projects.values().flatten().find(|f| f.filename == filename);
            return match file {
                Some(file) if mode == Mode::NoRanges => Reply::new(200, "application/octet-stream", file.bytes.clone()),
                Some(file) => Reply::file(request, "application/octet-stream", &file.bytes),
                None => Reply::not_found(),
            };
        }
        Reply::not_found()
    })
}

/// A project directory with a layer.toml, a cache and the lock path.
pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub success: bool,
    pub stderr: String,
    pub stdout: String,
}

impl Project {
    pub fn new(requirements: &[&str], exclude: &[&str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let project = Project { dir };
        project.write_spec(requirements, exclude);
        project
    }

    pub fn write_spec(&self, requirements: &[&str], exclude: &[&str]) {
        let text = format!(
            "[python]\nversion = \"3.11\"\nrelease = \"20260127\"\n\n[packages]\nrequirements = {:?}\nexclude = {:?}\n",
            requirements, exclude
        );
        fs_err::write(self.spec(), text).unwrap();
    }

    pub fn spec(&self) -> PathBuf {
        self.dir.path().join("layer.toml")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.path().join("pylock.toml")
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn lock_text(&self) -> String {
        fs_err::read_to_string(self.lock_path()).unwrap()
    }

    /// Run `xtask lock` with `args` against `index_url`.
    pub fn lock(&self, index_url: &str, args: &[&str]) -> Run {
        run_xtask(&self.spec(), &self.cache(), index_url, args)
    }
}

pub fn run_xtask(spec: &Path, cache: &Path, index_url: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--spec")
        .arg(spec)
        .arg("--cache-dir")
        .arg(cache)
        .arg("lock")
        .args(args)
        .env("XTASK_INDEX_URL", index_url)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    Run {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

/// `(name, version, marker)` of each package in a lock text.
pub fn packages(lock: &str) -> Vec<(String, String, Option<String>)> {
    let parsed = xtask::packaging::pylock::Pylock::parse(lock, Path::new("pylock.toml")).unwrap();
    parsed.packages.into_iter().map(|p| (p.name, p.version, p.marker)).collect()
}

pub fn version_of(lock: &str, name: &str) -> Option<String> {
    packages(lock).into_iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v)
}
