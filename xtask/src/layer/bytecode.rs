//! Byte-compile the stdlib and packages with unchecked-hash invalidation for a read-only /opt.
//!
//! Lambda mounts layers read-only under `/opt`, so a module without a valid `.pyc` is compiled
//! again on every cold start. The layer zip normalises mtimes, so timestamp-based `.pyc` files
//! would be stale too; unchecked-hash `.pyc` files are used without looking at the source
//! (PEP 552, <https://peps.python.org/pep-0552/>).
//!
//! The compiler is a CPython of the layer's minor version that runs on the build host (the
//! "build python"). A small driver script, passed with `-c`, calls `py_compile.compile` for every
//! job with the source path that Lambda will see baked into `co_filename`, never the build
//! directory. Jobs run in a few parallel processes; marshal output does not depend on which other
//! files a process compiled (checked by a test), so the split does not change the bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use fs_err as fs;
use serde::Deserialize;

use crate::python_version::PythonVersion;

/// A CPython that runs on the build host, of the same minor version as the layer's interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPython {
    /// The interpreter binary, e.g. `layer/python/bin/python3.X` or `python3` from `PATH`.
    pub(crate) interpreter: PathBuf,
    /// `PYTHONHOME` to run it with (a relocated python-build-standalone tree), if any.
    pub(crate) home: Option<PathBuf>,
}

impl BuildPython {
    /// `python3` from `PATH` when it is CPython `minor`; otherwise `None`, saying why on stderr
    /// (the tests that need a host interpreter of the layer's minor version use this).
    pub fn host_if_minor(minor: &str) -> Option<BuildPython> {
        let python = BuildPython::host();
        match python.minor_version() {
            Ok(version) if version == minor => Some(python),
            other => {
                eprintln!("skipping: host python3 is not {minor} ({other:?})");
                None
            }
        }
    }

    /// The host's `python3` from `PATH`, with its own home (used by tests and benchmarks).
    pub fn host() -> BuildPython {
        BuildPython { interpreter: PathBuf::from("python3"), home: None }
    }

    /// A command running this interpreter isolated from the tree it builds and from the caller:
    /// `-S` (no `site`: no `.pth` file, `sitecustomize` or `usercustomize` of the layer runs on the
    /// build machine), `-s`, `-B`, `PYTHONSAFEPATH=1` (`-P`: the working directory is not put on
    /// `sys.path`), `PYTHONHASHSEED=0`, and none of the caller's `PYTHON*` variables. This is `-I
    /// -S -B` except that `PYTHONHOME` may point at a relocated interpreter tree.
    /// <https://docs.python.org/3/using/cmdline.html#cmdoption-I>
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.interpreter);
        command.args(["-S", "-s", "-B"]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PYTHON") {
                command.env_remove(&name);
            }
        }
        command.env("PYTHONSAFEPATH", "1");
        command.env("PYTHONHASHSEED", "0");
        if let Some(home) = &self.home {
            command.env("PYTHONHOME", home);
        }
        command
    }

    /// The interpreter's `major.minor` version, e.g. `3.11`.
    pub(crate) fn minor_version(&self) -> Result<String> {
        let output = self
            .command()
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
            .with_context(|| format!("running the build python {}", self.interpreter.display()))?;
        if !output.status.success() {
            bail!(
                "the build python {} failed to start ({}): {}",
                self.interpreter.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Fail with a clear error unless this interpreter is CPython `minor` (e.g. `3.11`): bytecode
    /// is only valid for the minor version that wrote it.
    pub(crate) fn require_minor(&self, minor: PythonVersion) -> Result<()> {
        let found = self.minor_version()?;
        if found != minor.dotted() {
            bail!(
                "the build python {} is {found} but the layer's interpreter is {minor}: bytecode only loads in the \
                 minor version that wrote it; use a python {minor} that runs on this machine (the extracted \
                 interpreter when the arches match, else the host-arch python-build-standalone of the same release)",
                self.interpreter.display()
            );
        }
        Ok(())
    }
}

/// The PEP 3147 location of the `.pyc` for `source` (a POSIX path ending in `.py`):
/// `pkg/mod.py` → `pkg/__pycache__/mod.cpython-311.pyc`. <https://peps.python.org/pep-3147/>
pub(crate) fn pycache_path(source: &str, tag: &str) -> String {
    let stem = source.strip_suffix(".py").unwrap_or(source);
    match stem.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/__pycache__/{name}.{tag}.pyc"),
        None => format!("__pycache__/{stem}.{tag}.pyc"),
    }
}

/// The legacy location of the `.pyc` for `source`, beside it: `pkg/mod.py` → `pkg/mod.pyc`.
/// zipimport only uses this one; it ignores `__pycache__`.
pub(crate) fn legacy_pyc_path(source: &str) -> String {
    format!("{}.pyc", source.strip_suffix(".py").unwrap_or(source))
}

/// One file to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileJob {
    /// The `.py` file on the build machine.
    pub(crate) source: PathBuf,
    /// Where the `.pyc` goes on the build machine.
    pub(crate) pyc: PathBuf,
    /// The path baked into the code objects (`co_filename`): where the source is on Lambda.
    pub(crate) co_filename: String,
}

/// A file that could not be compiled (as pip does for Python 2 files, it is skipped with a warning:
/// importing it would fail with the same error on Lambda).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub source: PathBuf,
    pub(crate) error: String,
}

/// What [`compile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompileOutcome {
    /// Number of `.pyc` files written (compiled now or taken from the bytecode cache).
    pub(crate) compiled: usize,
    /// How many of those came from the bytecode cache.
    pub(crate) from_cache: usize,
    /// Files with syntax (or encoding) errors, sorted by path.
    pub(crate) skipped: Vec<SkippedFile>,
}

/// The driver run by the build python: reads `source\tpyc\tco_filename` lines from the file named
/// by `argv[1]`, compiles each with unchecked-hash invalidation at optimisation level 0 (what a
/// plain `python3.X` loads), and prints one JSON line per file it could not compile. I/O errors
/// are not caught: they stop the driver and fail the build.
const DRIVER: &str = r#"
import json, py_compile, sys
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
with open(sys.argv[1], encoding="utf-8") as jobs:
    for line in jobs:
        source, pyc, co_filename = line.rstrip("\n").split("\t")
        try:
            py_compile.compile(source, cfile=pyc, dfile=co_filename, doraise=True, optimize=0, invalidation_mode=mode)
        except py_compile.PyCompileError as error:
            message = (error.msg or "").strip().splitlines()
            where = message[0].strip() + ": " if len(message) > 1 else ""
            print(json.dumps({"source": source, "error": where + (message[-1] if message else "cannot compile")}), flush=True)
"#;

#[derive(Deserialize)]
struct DriverFailure {
    source: PathBuf,
    error: String,
}

/// Compile `jobs` with `python`, in up to four parallel processes. Every written `.pyc` gets mode
/// 0644. Files Python cannot compile are returned in [`CompileOutcome::skipped`]; the caller warns.
pub(crate) fn compile(python: &BuildPython, jobs: &[CompileJob]) -> Result<CompileOutcome> {
    if jobs.is_empty() {
        return Ok(CompileOutcome::default());
    }
    let mut lines = Vec::with_capacity(jobs.len());
    for job in jobs {
        let fields = [path_str(&job.source)?, path_str(&job.pyc)?, job.co_filename.as_str()];
        if let Some(bad) = fields.iter().find(|f| f.contains(['\t', '\n', '\r'])) {
            bail!("cannot byte-compile {bad:?}: its path holds a tab or newline; rename the file or prune it");
        }
        if let Some(parent) = job.pyc.parent() {
            fs::create_dir_all(parent)?;
        }
        lines.push(fields.join("\t"));
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(jobs.len());
    let chunk_size = jobs.len().div_ceil(workers);
    let chunks: Vec<&[String]> = lines.chunks(chunk_size).collect();
    let results: Vec<Result<Vec<SkippedFile>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks.iter().map(|chunk| scope.spawn(|| run_driver(python, chunk))).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a byte-compile worker panicked"))))
            .collect()
    });
    let mut skipped = Vec::new();
    for result in results {
        skipped.extend(result?);
    }
    skipped.sort_by(|a, b| a.source.cmp(&b.source));
    let mut compiled = 0;
    for job in jobs {
        if skipped.iter().any(|s| s.source == job.source) {
            continue;
        }
        set_mode(&job.pyc, 0o644)?;
        compiled += 1;
    }
    Ok(CompileOutcome { compiled, from_cache: 0, skipped })
}

/// Bump when the cache entry format changes, so old entries are not read.
const BYTECODE_CACHE_FORMAT: &str = "1";

/// The bytecode cache, `<cache>/bytecode/`: one entry per compiled file, named by the sha256 of
/// everything the `.pyc` bytes depend on (the source's sha256, the interpreter's magic number, the
/// optimisation level, the invalidation mode and `co_filename`). An entry holds the `.pyc` bytes
/// followed by their sha256, so a damaged entry is noticed, recompiled and replaced. Entries are
/// written to a temp file and renamed into place.
#[derive(Debug, Clone)]
pub(crate) struct BytecodeCache {
    dir: PathBuf,
    /// `importlib.util.MAGIC_NUMBER` of the build python, as hex.
    magic: String,
}

impl BytecodeCache {
    /// The cache in `dir` for bytecode written by `python`.
    pub(crate) fn open(dir: &Path, python: &BuildPython) -> Result<BytecodeCache> {
        let output = python
            .command()
            .args(["-c", "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"])
            .output()
            .with_context(|| format!("running the build python {}", python.interpreter.display()))?;
        let magic = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || magic.len() != 8 || !magic.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "cannot read the bytecode magic number of {} ({}): {}",
                python.interpreter.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(BytecodeCache { dir: dir.to_path_buf(), magic })
    }

    /// The entry for `job` whose source bytes are `source`.
    fn entry_path(&self, job: &CompileJob, source: &[u8]) -> PathBuf {
        use crate::sha256::Sha256;
        let source_sha256 = Sha256::digest(source);
        let mut key = Sha256::new();
        for part in [
            BYTECODE_CACHE_FORMAT.as_bytes(),
            &source_sha256[..],
            self.magic.as_bytes(),
            b"optimize=0",
            b"unchecked-hash",
            job.co_filename.as_bytes(),
        ] {
            key.update((part.len() as u64).to_le_bytes());
            key.update(part);
        }
        let key: String = key.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(&key[..2]).join(format!("{key}.pyc"))
    }

    /// The cached `.pyc` bytes at `entry`, when present, intact and of this magic number.
    fn read(&self, entry: &Path) -> Option<Vec<u8>> {
        use crate::sha256::Sha256;
        let mut bytes = fs::read(entry).ok()?;
        if bytes.len() < 16 + 32 {
            return None;
        }
        let pyc_len = bytes.len() - 32;
        let intact = Sha256::digest(&bytes[..pyc_len])[..] == bytes[pyc_len..];
        let magic: String = bytes[..4].iter().map(|b| format!("{b:02x}")).collect();
        // PEP 552 flags: 0b01 is hash-based with check_source off (unchecked-hash).
        let unchecked = bytes[4..8] == [1, 0, 0, 0];
        if !intact || magic != self.magic || !unchecked {
            return None;
        }
        bytes.truncate(pyc_len);
        Some(bytes)
    }

    /// Store `pyc` at `entry` (temp file in the same directory, then rename).
    fn store(&self, entry: &Path, pyc: &[u8]) -> Result<()> {
        use crate::sha256::Sha256;
        let parent = entry.parent().context("a cache entry has a parent directory")?;
        fs::create_dir_all(parent)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".xtask-pyc-")
            .tempfile_in(parent)
            .with_context(|| format!("creating a temp file in {}", parent.display()))?;
        temp.write_all(pyc)
            .and_then(|()| temp.write_all(&Sha256::digest(pyc)))
            .with_context(|| format!("writing {}", temp.path().display()))?;
        temp.persist(entry).with_context(|| format!("renaming a bytecode cache entry to {}", entry.display()))?;
        Ok(())
    }
}

/// [`compile`], taking each `.pyc` from `cache` when it holds one for the same inputs and storing
/// what it compiled. Without a cache it is [`compile`].
pub(crate) fn compile_cached(
    python: &BuildPython,
    jobs: &[CompileJob],
    cache: Option<&BytecodeCache>,
) -> Result<CompileOutcome> {
    let Some(cache) = cache else {
        return compile(python, jobs);
    };
    let mut misses = Vec::new();
    let mut miss_entries = Vec::new();
    let mut from_cache = 0;
    for job in jobs {
        let source = fs::read(&job.source)?;
        let entry = cache.entry_path(job, &source);
        match cache.read(&entry) {
            Some(pyc) => {
                if let Some(parent) = job.pyc.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(&job.pyc, &pyc)?;
                set_mode(&job.pyc, 0o644)?;
                from_cache += 1;
            }
            None => {
                misses.push(job.clone());
                miss_entries.push(entry);
            }
        }
    }
    let mut outcome = compile(python, &misses)?;
    for (job, entry) in misses.iter().zip(&miss_entries) {
        if outcome.skipped.iter().any(|s| s.source == job.source) {
            continue;
        }
        cache.store(entry, &fs::read(&job.pyc)?)?;
    }
    outcome.compiled += from_cache;
    outcome.from_cache = from_cache;
    Ok(outcome)
}

fn run_driver(python: &BuildPython, lines: &[String]) -> Result<Vec<SkippedFile>> {
    let mut job_file = tempfile::Builder::new().prefix("xtask-compile-").suffix(".txt").tempfile()?;
    for line in lines {
        writeln!(job_file, "{line}")?;
    }
    job_file.flush()?;
    let output = python
        .command()
        .arg("-c")
        .arg(DRIVER)
        .arg(job_file.path())
        .output()
        .with_context(|| format!("running the build python {}", python.interpreter.display()))?;
    if !output.status.success() {
        bail!(
            "byte-compiling with {} failed ({}): {}",
            python.interpreter.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut skipped = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.trim().is_empty()) {
        let failure: DriverFailure = serde_json::from_str(line)
            .with_context(|| format!("reading the byte-compile driver's output line {line:?}"))?;
        skipped.push(SkippedFile { source: failure.source, error: failure.error });
    }
    Ok(skipped)
}

/// Remove bytecode that must not ship, under `root`: every `__pycache__` directory (python-build-
/// standalone and some wheels ship timestamp-based ones, and `opt-1`/`opt-2` files) and every
/// legacy-location `.pyc` that sits beside its `.py` (ours replaces it). A `.pyc` without a `.py`
/// is a sourceless module and stays. Returns the removed paths relative to `root`, sorted.
pub(crate) fn remove_stale_bytecode(root: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut pycache_dirs = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let path = entry.path();
        if entry.file_type().is_dir() && entry.file_name() == "__pycache__" {
            pycache_dirs.push(path.to_path_buf());
        } else if entry.file_type().is_file()
            && path.extension().is_some_and(|e| e == "pyc")
            && !path.components().any(|c| c.as_os_str() == "__pycache__")
            && path.with_extension("py").is_file()
        {
            fs::remove_file(path)?;
            removed.push(relative_posix(root, path)?);
        }
    }
    for dir in pycache_dirs {
        for entry in walkdir::WalkDir::new(&dir) {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if !entry.file_type().is_dir() {
                removed.push(relative_posix(root, entry.path())?);
            }
        }
        fs::remove_dir_all(&dir)?;
    }
    removed.sort();
    Ok(removed)
}

/// `path` relative to `root`, with `/` separators; an error for a non-UTF-8 name.
pub(crate) fn relative_posix(root: &Path, path: &Path) -> Result<String> {
    let relative =
        path.strip_prefix(root).with_context(|| format!("{} is not inside {}", path.display(), root.display()))?;
    let mut parts = Vec::new();
    for component in relative.components() {
        let part = component
            .as_os_str()
            .to_str()
            .with_context(|| format!("file name {} is not UTF-8; rename or prune it", path.display()))?;
        parts.push(part);
    }
    Ok(parts.join("/"))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().with_context(|| format!("path {} is not UTF-8; rename or prune it", path.display()))
}

/// Set a file's permission bits (unix), so the tree does not depend on the builder's umask.
pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(root: &Path, rel: &str, co_filename: &str) -> CompileJob {
        CompileJob {
            source: root.join(rel),
            pyc: root.join(pycache_path(rel, "cpython-311")),
            co_filename: co_filename.to_string(),
        }
    }

    #[test]
    fn pyc_locations() {
        assert_eq!(pycache_path("pkg/sub/mod.py", "cpython-311"), "pkg/sub/__pycache__/mod.cpython-311.pyc");
        assert_eq!(pycache_path("six.py", "cpython-311"), "__pycache__/six.cpython-311.pyc");
        assert_eq!(legacy_pyc_path("pkg/__init__.py"), "pkg/__init__.pyc");
    }

    #[test]
    fn wrong_minor_version_is_a_clear_error() {
        let Some(python) = BuildPython::host_if_minor("3.11") else { return };
        let err = python.require_minor("3.12".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("is 3.11 but the layer's interpreter is 3.12"), "{err}");
        assert!(err.contains("use a python 3.12 that runs on this machine"), "{err}");
        python.require_minor("3.11".parse().unwrap()).unwrap();
        let missing = BuildPython { interpreter: "/nonexistent/python3.11".into(), home: None };
        let err = format!("{:#}", missing.require_minor("3.11".parse().unwrap()).unwrap_err());
        assert!(err.contains("running the build python /nonexistent/python3.11"), "{err}");
    }

    #[test]
    fn unchecked_hash_pyc_with_lambda_path_and_identical_bytes() {
        let Some(python) = BuildPython::host_if_minor("3.11") else { return };
        let mut outputs = Vec::new();
        for _ in 0..2 {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("pkg")).unwrap();
            // A set literal makes a frozenset constant, whose order depends on the hash seed.
            fs::write(dir.path().join("pkg/mod.py"), "def f(x):\n    return x in {'a', 'b', 'c', 'd'}\n").unwrap();
            let jobs = [job(dir.path(), "pkg/mod.py", "/opt/python/lib/python3.11/site-packages/pkg/mod.py")];
            let outcome = compile(&python, &jobs).unwrap();
            assert_eq!(outcome, CompileOutcome { compiled: 1, from_cache: 0, skipped: vec![] });
            outputs.push(fs::read(&jobs[0].pyc).unwrap());
        }
        assert_eq!(outputs[0], outputs[1], "two compilations differ");
        let pyc = &outputs[0];
        // PEP 552 header: magic (4 bytes), flags = 0b01 (hash-based, check_source off), source hash.
        assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 0b01, "not unchecked-hash");
        let text = String::from_utf8_lossy(pyc);
        assert!(
            text.contains("/opt/python/lib/python3.11/site-packages/pkg/mod.py"),
            "co_filename not the lambda path"
        );
        assert!(!text.contains("/tmp"), "the build directory leaked into the pyc");
    }

    #[test]
    fn the_bytecode_cache_serves_identical_bytes_and_survives_damage() {
        let Some(python) = BuildPython::host_if_minor("3.11") else { return };
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = BytecodeCache::open(cache_dir.path(), &python).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("mod.py"), "X = {'a', 'b'}\n").unwrap();
        fs::write(dir.path().join("py2.py"), "print 'x'\n").unwrap();
        let jobs = [job(dir.path(), "mod.py", "/opt/mod.py"), job(dir.path(), "py2.py", "/opt/py2.py")];
        let cold = compile_cached(&python, &jobs, Some(&cache)).unwrap();
        assert_eq!((cold.compiled, cold.from_cache, cold.skipped.len()), (1, 0, 1));
        let fresh = fs::read(&jobs[0].pyc).unwrap();
        fs::remove_file(&jobs[0].pyc).unwrap();
        let warm = compile_cached(&python, &jobs, Some(&cache)).unwrap();
        assert_eq!((warm.compiled, warm.from_cache, warm.skipped.len()), (1, 1, 1));
        assert_eq!(fs::read(&jobs[0].pyc).unwrap(), fresh, "the cached .pyc differs from a fresh one");

        // Another co_filename is another entry: the path is baked into the code objects.
        let moved = [job(dir.path(), "mod.py", "/opt/elsewhere/mod.py")];
        assert_eq!(compile_cached(&python, &moved, Some(&cache)).unwrap().from_cache, 0);

        // A damaged entry is recompiled and replaced, never served.
        let entry = cache.entry_path(&jobs[0], &fs::read(&jobs[0].source).unwrap());
        let mut damaged = fs::read(&entry).unwrap();
        damaged[20] ^= 0xff;
        fs::write(&entry, &damaged).unwrap();
        let again = compile_cached(&python, &jobs[..1], Some(&cache)).unwrap();
        assert_eq!((again.compiled, again.from_cache), (1, 0));
        assert_eq!(fs::read(&jobs[0].pyc).unwrap(), fresh);
        assert_eq!(compile_cached(&python, &jobs[..1], Some(&cache)).unwrap().from_cache, 1);

        // A changed source is a miss.
        fs::write(dir.path().join("mod.py"), "X = 2\n").unwrap();
        assert_eq!(compile_cached(&python, &jobs[..1], Some(&cache)).unwrap().from_cache, 0);
    }

    #[test]
    fn syntax_errors_are_skipped_and_named() {
        let Some(python) = BuildPython::host_if_minor("3.11") else { return };
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("good.py"), "X = 1\n").unwrap();
        fs::write(dir.path().join("py2.py"), "print 'hello'\n").unwrap();
        let jobs = [job(dir.path(), "good.py", "/opt/good.py"), job(dir.path(), "py2.py", "/opt/py2.py")];
        let outcome = compile(&python, &jobs).unwrap();
        assert_eq!(outcome.compiled, 1);
        assert_eq!(outcome.skipped.len(), 1);
        assert_eq!(outcome.skipped[0].source, dir.path().join("py2.py"));
        assert!(outcome.skipped[0].error.contains("SyntaxError"), "{:?}", outcome.skipped[0]);
        assert!(jobs[0].pyc.is_file());
        assert!(!jobs[1].pyc.exists());
    }

    #[test]
    fn stale_bytecode_is_removed_but_sourceless_modules_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("pkg/__pycache__")).unwrap();
        for (rel, text) in [
            ("pkg/mod.py", "X = 1\n"),
            ("pkg/mod.pyc", "stale legacy"),
            ("pkg/__pycache__/mod.cpython-311.pyc", "timestamp"),
            ("pkg/__pycache__/mod.cpython-311.opt-1.pyc", "opt1"),
            ("pkg/sourceless.pyc", "a module without source"),
        ] {
            fs::write(root.join(rel), text).unwrap();
        }
        let removed = remove_stale_bytecode(root).unwrap();
        assert_eq!(
            removed,
            ["pkg/__pycache__/mod.cpython-311.opt-1.pyc", "pkg/__pycache__/mod.cpython-311.pyc", "pkg/mod.pyc"]
        );
        assert!(!root.join("pkg/__pycache__").exists());
        assert!(root.join("pkg/sourceless.pyc").is_file());
        assert!(root.join("pkg/mod.py").is_file());
    }
}
