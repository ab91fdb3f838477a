//! The interpreter step of `layer` (the runtime): fetch the pinned python-build-standalone
//! interpreter, extract it, prune the standard library.
//!
//! The archive comes from the pinned manifest (through a mirror when `[python] mirror` or
//! `XTASK_PBS_MIRROR` is set) or from `--python-dist PATH|URL` with `--python-sha256 HEX`; either
//! way its sha256 is checked while it streams into the cache, before anything is extracted.
//! The archive's `python/` tree becomes `<out>/layer/python/`, is checked for
//! `bin/python3.X` and `lib/python3.X/`, and is pruned by the rules of `[prune] stdlib`.
//! A stamp (`<out>/runtime-stamp.json`, outside the layer) records the archive hash, the prune
//! rules and the files left, so an unchanged runtime is copied from the previous build instead of
//! being extracted again.

pub(crate) mod stamp;
pub(crate) mod stdlib;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::archive::{self, Compression, Limits};
use crate::cache::{Cache, Fetched, Sha256Hex, Source};
use crate::flags::PythonDistArgs;
use crate::http::Http;
use crate::layer::bytecode::BuildPython;
use crate::manifest::Manifest;
use crate::progress::{Progress, human_bytes};
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

pub(crate) use stdlib::StdlibPruneReport;

/// Everything the runtime step needs.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeRequest<'a> {
    pub(crate) spec: &'a LayerSpec,
    pub(crate) arch: Arch,
    pub(crate) cache: &'a Cache,
    pub(crate) http: &'a Http,
    /// `--python-dist` and `--python-sha256`; both empty means the pinned manifest artifact.
    pub(crate) python: &'a PythonDistArgs,
    /// `--pbs-mirror` / `XTASK_PBS_MIRROR`, over `[python] mirror`.
    pub(crate) pbs_mirror: Option<&'a str>,
    /// The build directory being written (the staging directory during `layer`).
    pub(crate) out_dir: &'a Path,
    /// A previous build whose runtime is copied instead of extracted when its stamp matches.
    pub(crate) previous_out_dir: Option<&'a Path>,
    pub(crate) limits: Limits,
}

/// What the runtime step produced; later steps (install, bytecode, report, SBOM) read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RuntimeOutput {
    /// `<out>/layer/python`.
    pub(crate) python_root: PathBuf,
    /// `<out>/layer/python/bin/python3.X`.
    pub(crate) interpreter: PathBuf,
    /// Full CPython version, e.g. "3.11.14".
    pub(crate) version: String,
    /// The minor version, e.g. 3.11.
    pub(crate) minor: PythonVersion,
    /// Lambda architecture name (`arm64`, `x86_64`).
    pub(crate) arch: String,
    /// Where the archive came from: a URL (credentials redacted) or a local path.
    pub(crate) source: String,
    /// The archive's file name, e.g. `cpython-3.11.14+20260127-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz`.
    pub(crate) archive_name: String,
    pub(crate) sha256: String,
    pub(crate) compression: Compression,
    /// Compressed size of the archive in bytes.
    pub(crate) archive_bytes: u64,
    pub(crate) prune: StdlibPruneReport,
    /// True when the runtime was copied from the previous build rather than extracted.
    pub(crate) reused: bool,
}

impl RuntimeOutput {
    /// Point the paths at `new_out_dir` after the build directory was moved there (`layer` builds
    /// in a staging directory and renames it into place at the end).
    pub(crate) fn relocate(&mut self, old_out_dir: &Path, new_out_dir: &Path) {
        for path in [&mut self.python_root, &mut self.interpreter] {
            if let Ok(relative) = path.strip_prefix(old_out_dir) {
                *path = new_out_dir.join(relative);
            }
        }
    }
}

/// The archive to use, with its pin.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedArchive {
    pub(crate) source: Source,
    pub(crate) sha256: Sha256Hex,
    pub(crate) archive_name: String,
    /// Full version when the manifest or the file name says it.
    pub(crate) version: Option<String>,
}

/// A CPython of the layer's minor version that runs on this machine, to byte-compile the layer
/// (docs/architecture.md §4): the layer's own interpreter when the arches match; otherwise the host-arch
/// python-build-standalone build of the same release (pinned too) or `--build-python-dist`,
/// extracted once into `<cache>/interpreters/<sha256>/` and never modified there (it runs with
/// `-B`, so it writes no bytecode into its own tree).
#[allow(clippy::too_many_arguments)] // Each is a separate input of the layer build.
pub(crate) fn build_python(
    spec: &LayerSpec,
    arch: Arch,
    runtime: &RuntimeOutput,
    python: &PythonDistArgs,
    pbs_mirror: Option<&str>,
    cache: &Cache,
    http: &Http,
    progress: &Progress,
) -> Result<BuildPython> {
    let host = Arch::host();
    if host == Some(arch) && python.build_python_dist.is_none() {
        return Ok(BuildPython { interpreter: runtime.interpreter.clone(), home: Some(runtime.python_root.clone()) });
    }
    let Some(host) = host else {
        bail!(
            "cannot byte-compile the {arch} layer on this {} machine: python-build-standalone has no pinned build for it; \
             build on an x86_64 or arm64 machine",
            std::env::consts::ARCH
        );
    };
    let minor = spec.python.version;
    let request = PythonDistArgs {
        python_dist: python.build_python_dist.clone(),
        python_sha256: python.build_python_sha256.clone(),
        ..Default::default()
    };
    let resolved = resolve_archive(spec, host, &request, pbs_mirror)?;
    let home = cache.subdir("interpreters")?.join(resolved.sha256.as_str());
    // The extracted interpreter is reused only while its tree still hashes to the digest taken
    // when it was extracted: it writes the layer's bytecode, so an edited copy would ship.
    let digest_file = cache.subdir("interpreters")?.join(format!("{}.tree-sha256", resolved.sha256));
    let proven = home.join("python").is_dir()
        && fs_err::read_to_string(&digest_file)
            .ok()
            .is_some_and(|recorded| stamp::tree_digest(&home.join("python")).is_ok_and(|now| now == recorded.trim()));
    if !proven && fs_err::symlink_metadata(&home).is_ok() {
        progress.note(format!(
            "not reusing {}: its content does not match the digest taken when it was extracted; extracting it again",
            home.display()
        ));
        fs_err::remove_dir_all(&home)?;
    }
    if !proven {
        let hint = format!(
            "a CPython {minor} that runs on this {host} machine is needed to byte-compile the {arch} layer; if {} \
             is unreachable, pass --build-python-dist PATH|URL --build-python-sha256 HEX (a python-build-standalone \
             {} install_only archive)",
            resolved.source.display(),
            host.pbs_triple()
        );
        let label = format!("cpython {minor} for this {host} host (byte-compiling only)");
        let (blob, _) = progress
            .step(format!("fetch {label}"), || {
                cache.fetch(http, &resolved.source, &resolved.sha256, &resolved.archive_name, progress)
            })
            .context(hint)?;
        if let Err(error) = archive::extract(&blob, &home, &Limits::default()) {
            // Another build may have extracted the same interpreter meanwhile.
            if !home.join("python").is_dir() {
                return Err(error).with_context(|| format!("extracting {}", resolved.archive_name));
            }
        }
        let digest = stamp::tree_digest(&home.join("python"))?;
        crate::files::write_atomically(&digest_file, digest.as_bytes())?;
    } else {
        progress
            .note(format!("cpython {minor} for this {host} host (byte-compiling only): reusing {}", home.display()));
    }
    let root = home.join("python");
    let interpreter = root.join("bin").join(minor.interpreter_name());
    if !interpreter.is_file() {
        bail!(
            "{} has no bin/python{minor}; is it a python-build-standalone install_only archive?",
            resolved.archive_name
        );
    }
    Ok(BuildPython { interpreter, home: Some(root) })
}

/// `python/layer` inside an output directory.
pub(crate) fn python_root_of(out_dir: &Path) -> PathBuf {
    out_dir.join("layer").join("python")
}

/// Pick the archive: `--python-dist` with its hash, else the pinned manifest artifact (through the
/// mirror if one is set).
pub(crate) fn resolve_archive(
    spec: &LayerSpec,
    arch: Arch,
    python: &PythonDistArgs,
    pbs_mirror: Option<&str>,
) -> Result<ResolvedArchive> {
    match (&python.python_dist, &python.python_sha256) {
        (Some(location), Some(sha256)) => {
            let sha256 =
                Sha256Hex::parse(sha256).context("--python-sha256 must be the archive's sha256 (64 hex digits)")?;
            let source = Source::parse(location);
            let archive_name = match &source {
                Source::Url(url) => url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(percent_decode)))
                    .filter(|name| !name.is_empty())
                    .unwrap_or_else(|| "python-dist".to_string()),
                Source::Path(path) => {
                    path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "python-dist".into())
                }
            };
            let version = version_from_archive_name(&archive_name);
            Ok(ResolvedArchive { source, sha256, archive_name, version })
        }
        (None, None) => {
            let manifest = Manifest::pinned();
            let artifact = manifest.find(spec.python.version, &spec.python.release, arch, spec.python.variant)?;
            let mirror = spec.pbs_mirror(pbs_mirror);
            let url = artifact.url_via(mirror.as_deref());
            Ok(ResolvedArchive {
                source: Source::parse(&url),
                sha256: Sha256Hex::parse(&artifact.sha256).context("the pinned manifest holds a bad sha256")?,
                archive_name: artifact.file_name(),
                version: Some(artifact.version.clone()),
            })
        }
        _ => bail!("--python-dist and --python-sha256 go together: a hash is always required"),
    }
}

/// A download that cannot reach its host names the file and says how to build without that host:
/// a mirror, or the archive brought from elsewhere with its pinned hash.
fn with_offline_remedies(error: anyhow::Error, resolved: &ResolvedArchive, from_python_dist: bool) -> anyhow::Error {
    let Some(host) = crate::http::unreachable_host(&error) else { return error };
    let file = &resolved.archive_name;
    let remedy = if from_python_dist {
        format!("{host} is unreachable: download {file} elsewhere and pass its local path to --python-dist")
    } else {
        format!(
            "cannot download {file}: {host} is unreachable from here. Either point at a mirror holding \
             <release>/{file} (`[python] mirror` in layer.toml, or XTASK_PBS_MIRROR), or download the file \
             elsewhere and pass `--python-dist PATH --python-sha256 {sha256}` (the pinned sha256, from \
             xtask/data/pbs-manifest.json); see \"Building without GitHub\" in README.md",
            sha256 = resolved.sha256
        )
    };
    error.context(remedy)
}

/// Run the runtime step: fetch (hash-checked), extract, check the layout, prune the stdlib.
pub(crate) fn build(request: &RuntimeRequest<'_>, progress: &Progress) -> Result<RuntimeOutput> {
    let spec = request.spec;
    let minor = spec.python.version;
    let resolved = resolve_archive(spec, request.arch, request.python, request.pbs_mirror)?;
    let python_root = python_root_of(request.out_dir);

    if let Some(previous) = request.previous_out_dir
        && let Some(output) = stamp::reuse(
            previous,
            request.out_dir,
            &resolved.sha256,
            &spec.prune.stdlib,
            minor,
            request.arch,
            progress,
        )?
    {
        return Ok(output);
    }

    let label = format!("cpython {} ({})", resolved.version.clone().unwrap_or_else(|| minor.to_string()), request.arch);
    let (blob, fetched) = progress
        .step(format!("fetch {label}"), || {
            progress.note(format!("from {}", resolved.source.display()));
            request.cache.fetch(request.http, &resolved.source, &resolved.sha256, &resolved.archive_name, progress)
        })
        .map_err(|error| with_offline_remedies(error, &resolved, request.python.python_dist.is_some()))?;
    let archive_bytes = fs_err::metadata(&blob)?.len();
    progress.note(format!(
        "sha256 {} verified ({}, {})",
        resolved.sha256,
        human_bytes(archive_bytes),
        if fetched == Fetched::Cached { "from the cache" } else { "downloaded" }
    ));

    let compression = progress.step(format!("extract {label}"), || {
        extract_python_tree(&blob, &resolved.archive_name, &python_root, &request.limits, progress)
    })?;
    let interpreter = check_layout(&python_root, minor, request.arch, &resolved.archive_name)?;
    let version = match &resolved.version {
        Some(version) => Some(version.clone()),
        None => version_from_patchlevel(&python_root, minor)?,
    };

    let prune = progress.step(format!("prune stdlib ({} rules)", spec.prune.stdlib.len()), || {
        let report = stdlib::prune_stdlib(&python_root, minor, &spec.prune.stdlib)?;
        print_prune_report(&report, progress);
        anyhow::Ok(report)
    })?;
    // site-packages belongs to the install step, which fills it from the lock alone: whatever the
    // archive put there (PBS ships a README.txt and pip) does not ship.
    let site_packages = python_root.join(minor.site_packages_dir());
    if site_packages.is_dir() {
        fs_err::remove_dir_all(&site_packages)?;
    }
    fs_err::create_dir_all(&site_packages)?;

    let version = match Arch::host() == Some(request.arch) {
        true => {
            let reported = smoke_test(&interpreter, &python_root)?;
            if let Some(expected) = &version
                && *expected != reported
            {
                bail!(
                    "{}: the interpreter reports CPython {reported}, but the archive is named for {expected}; \
                     check --python-dist",
                    resolved.archive_name
                );
            }
            progress.note(format!("python{minor} runs here and imports ssl, json, sqlite3, zlib (CPython {reported})"));
            reported
        }
        false => {
            progress.note(format!(
                "cannot run a {} interpreter on this host; `cargo xtask verify --arch {}` runs it under emulation",
                request.arch, request.arch
            ));
            version.with_context(|| {
                format!(
                    "{}: cannot tell the CPython version: the file name does not say it, the headers are missing \
                     and the interpreter cannot run here; name the archive like python-build-standalone does \
                     (cpython-3.11.14+...)",
                    resolved.archive_name
                )
            })?
        }
    };
    if PythonVersion::from_full_version(&version).ok() != Some(minor) {
        bail!("{}: holds CPython {version}, but layer.toml asks for python {minor}", resolved.archive_name);
    }

    let output = RuntimeOutput {
        python_root,
        interpreter,
        version,
        minor,
        arch: request.arch.lambda_name().to_string(),
        source: resolved.source.display(),
        archive_name: resolved.archive_name,
        sha256: resolved.sha256.to_string(),
        compression,
        archive_bytes,
        prune,
        reused: false,
    };
    stamp::write(request.out_dir, &output, &spec.prune.stdlib)?;
    Ok(output)
}

/// Extract the archive's `python/` tree to `python_root` (which must not exist yet), through a
/// staging directory beside it.
fn extract_python_tree(
    blob: &Path,
    archive_name: &str,
    python_root: &Path,
    limits: &Limits,
    progress: &Progress,
) -> Result<Compression> {
    let layer_dir = python_root.parent().context("python root has a parent")?;
    fs_err::create_dir_all(layer_dir)?;
    if fs_err::symlink_metadata(python_root).is_ok() {
        bail!("{} already exists; the runtime step writes into a fresh build directory", python_root.display());
    }
    let holder = tempfile::Builder::new()
        .prefix(".runtime-extract-")
        .tempdir_in(layer_dir)
        .with_context(|| format!("creating a staging directory in {}", layer_dir.display()))?;
    let tree = holder.path().join("tree");
    let extracted = archive::extract(blob, &tree, limits).with_context(|| format!("extracting {archive_name}"))?;
    progress.note(format!(
        "{} entries, {} files, {} unpacked from {} ({})",
        extracted.entries,
        extracted.files,
        human_bytes(extracted.file_bytes),
        human_bytes(extracted.compressed_bytes),
        extracted.compression
    ));
    let extracted_python = tree.join("python");
    if !fs_err::symlink_metadata(&extracted_python).is_ok_and(|m| m.is_dir()) {
        let top: Vec<String> = fs_err::read_dir(&tree)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        bail!(
            "{archive_name}: no python/ directory at the top of the archive (found: {}); use a python-build-standalone \
             install_only archive",
            if top.is_empty() { "nothing".to_string() } else { top.join(", ") }
        );
    }
    for other in fs_err::read_dir(&tree)? {
        let name = other?.file_name();
        if name != "python" {
            progress
                .note(format!("ignoring {} at the top of the archive (only python/ is used)", name.to_string_lossy()));
        }
    }
    fs_err::rename(&extracted_python, python_root)?;
    Ok(extracted.compression)
}

/// Check the extracted tree is a CPython `minor` for `arch`: `bin/python3.X` (an ELF for the
/// target machine) and `lib/python3.X/`. Returns the interpreter path.
fn check_layout(python_root: &Path, minor: PythonVersion, arch: Arch, archive_name: &str) -> Result<PathBuf> {
    let interpreter = python_root.join("bin").join(minor.interpreter_name());
    let stdlib = python_root.join(minor.stdlib_dir());
    if !interpreter.is_file() {
        let found: Vec<String> = fs_err::read_dir(python_root.join("bin"))
            .map(|entries| {
                entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect()
            })
            .unwrap_or_default();
        bail!(
            "{archive_name}: python/bin/python{minor} is missing (bin/ holds: {}); layer.toml asks for python {minor}, \
             so pass a python-build-standalone {minor} archive",
            if found.is_empty() { "nothing".to_string() } else { found.join(", ") }
        );
    }
    if !stdlib.is_dir() {
        bail!(
            "{archive_name}: python/lib/python{minor}/ is missing; this is not a python-build-standalone install_only archive"
        );
    }
    let mut head = [0u8; 20];
    use std::io::Read;
    fs_err::File::open(&interpreter)?
        .read_exact(&mut head)
        .with_context(|| format!("{archive_name}: python/bin/python{minor} is not an ELF executable"))?;
    if !head.starts_with(b"\x7fELF") {
        bail!("{archive_name}: python/bin/python{minor} is not an ELF executable");
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if machine != arch.elf_machine() {
        let built_for = Arch::ALL.iter().find(|a| a.elf_machine() == machine).map(|a| a.to_string());
        bail!(
            "{archive_name}: python/bin/python{minor} is built for {} but the target is {arch}; pass the archive for {}",
            built_for.unwrap_or_else(|| format!("ELF machine {machine}")),
            arch.pbs_triple()
        );
    }
    Ok(interpreter)
}

/// Run the extracted interpreter (host arch only) the way the layer will: `PYTHONHOME` at the
/// tree, importing the modules LiteLLM needs from the stdlib. Returns the full version.
fn smoke_test(interpreter: &Path, python_root: &Path) -> Result<String> {
    let script = "import ssl, json, sqlite3, zlib, sys; print('.'.join(map(str, sys.version_info[:3])))";
    // Isolated like every interpreter the build runs: nothing from the tree's site-packages runs.
    let build_python = BuildPython { interpreter: interpreter.to_path_buf(), home: Some(python_root.to_path_buf()) };
    let output = build_python
        .command()
        .args(["-c", script])
        .output()
        .with_context(|| format!("running {}", interpreter.display()))?;
    if !output.status.success() {
        bail!(
            "{} does not run with PYTHONHOME={}: {}",
            interpreter.display(),
            python_root.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn print_prune_report(report: &StdlibPruneReport, progress: &Progress) {
    for rule in &report.rules {
        progress.note(format!("{:<16} {:>6} files {:>10}", rule.rule, rule.files, human_bytes(rule.bytes)));
    }
    progress.note(format!(
        "python tree: {} ({} files) -> {} ({} files)",
        human_bytes(report.bytes_before),
        report.files_before,
        human_bytes(report.bytes_after),
        report.files_after
    ));
}

/// The version in a python-build-standalone file name: `cpython-3.11.14+20260127-...` → `3.11.14`.
pub(crate) fn version_from_archive_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("cpython-")?;
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then_some(version)
}

/// `PY_VERSION` from `include/python3.X/patchlevel.h`, when the headers are there.
fn version_from_patchlevel(python_root: &Path, minor: PythonVersion) -> Result<Option<String>> {
    let header = python_root.join(minor.include_dir()).join("patchlevel.h");
    if !header.is_file() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(&header)?;
    Ok(text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define")?.trim().strip_prefix("PY_VERSION")?;
        let quoted = rest.trim().strip_prefix('"')?.split('"').next()?;
        version_from_archive_name(&format!("cpython-{quoted}"))
    }))
}

/// Decode `%XX` escapes in a URL path segment (`%2B` → `+`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests;
