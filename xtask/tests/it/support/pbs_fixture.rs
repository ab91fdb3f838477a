//! Test fixture for the interpreter step: a python-build-standalone-shaped `install_only` archive
//! built from the host CPython (hostile archives are written by `tar_bytes`).
//!
//! The PBS-shaped archive holds `python/bin/python3.11` (+ `python3`, `python` symlinks),
//! `python/lib/libpython3.11.so*` when the host build is shared, `python/lib/python3.11/` (the
//! stdlib with `lib-dynload/`, without `__pycache__` and without the host's site-packages except
//! pip, which PBS ships too) and `python/include/python3.11/`. The host build (pyenv) finds
//! libpython through an absolute `RUNPATH` into its own prefix; the fixture rewrites that to the
//! relative `$ORIGIN/../lib` that python-build-standalone uses, so the extracted copy is
//! self-contained and runs with `PYTHONHOME` pointing at it.
//!
//! It is built once and cached under `target/test-fixtures/` (keyed by the host interpreter and
//! this builder's version), written to a temp file and renamed into place under a file lock, so
//! concurrent tests neither race nor see a partial file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

use xtask::arch::Arch;
use xtask::archive::Compression;
use xtask::cache::{Sha256Hex, sha256_bytes, sha256_file};
use xtask::verify::loopback::{Reply, TestServer};

/// Bump when the fixture's layout changes, so cached fixtures are rebuilt.
const FIXTURE_FORMAT: u32 = 1;

/// The fixed mtime of every fixture entry (reproducible fixtures).
const FIXTURE_MTIME: u64 = 1_700_000_000;

/// A built fixture archive.
#[derive(Debug, Clone)]
pub struct PbsFixture {
    pub path: PathBuf,
    pub sha256: Sha256Hex,
    /// Full CPython version of the host interpreter it was built from, e.g. "3.11.7".
    pub version: String,
    /// The archive's file name, PBS-style: `cpython-3.11.7+fixture…-x86_64-unknown-linux-gnu-install_only.tar.gz`.
    pub file_name: String,
}

/// What the host interpreter says about itself.
#[derive(Debug, Clone)]
struct HostPython {
    prefix: PathBuf,
    version: String,
    minor: String,
    libdir: PathBuf,
}

fn host_python() -> Result<HostPython> {
    let script = "import sys, sysconfig\n\
                  print(sys.base_prefix)\n\
                  print('.'.join(map(str, sys.version_info[:3])))\n\
                  print(sysconfig.get_config_var('LIBDIR') or '')";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .context("running the host `python3` to build the PBS-shaped test fixture (install CPython 3.11)")?;
    if !output.status.success() {
        bail!("host python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout).context("host python3 printed non-UTF-8")?;
    let mut lines = text.lines();
    let prefix = PathBuf::from(lines.next().unwrap_or_default());
    let version = lines.next().unwrap_or_default().to_string();
    let libdir = PathBuf::from(lines.next().unwrap_or_default());
    let minor = version.rsplit_once('.').map(|(minor, _)| minor.to_string()).unwrap_or_default();
    if minor != "3.11" {
        bail!("the PBS-shaped fixture needs a host CPython 3.11 as `python3`; found {version}");
    }
    Ok(HostPython { prefix, version, minor, libdir })
}

/// `target/test-fixtures/` (honouring `CARGO_TARGET_DIR`).
pub fn fixtures_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| xtask::project_root().join("target"));
    target.join("test-fixtures")
}

/// The PBS-shaped `install_only` archive of the host CPython, built on first use and cached.
pub fn pbs_install_only(compression: Compression) -> Result<PbsFixture> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _in_process = BUILDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let host = host_python()?;
    let arch = Arch::host().context("the PBS-shaped fixture needs an x86_64 or aarch64 host")?;
    let key_text = format!("{FIXTURE_FORMAT}|{}|{}|{compression}", host.version, host.prefix.display());
    let key = sha256_bytes(key_text.as_bytes()).as_str()[..10].to_string();
    let file_name = format!("cpython-{}+fixture{key}-{}-install_only.{compression}", host.version, arch.pbs_triple());
    let dir = fixtures_dir();
    fs_err::create_dir_all(&dir)?;
    let path = dir.join(&file_name);
    // Other test processes may build the same fixture: a file lock makes them take turns.
    let lock = fs_err::File::create(dir.join(".lock"))?;
    lock.lock().context("locking target/test-fixtures/.lock")?;
    if !path.exists() {
        let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
        write_pbs_archive(&host, compression, temp.as_file_mut())
            .with_context(|| format!("building the test fixture {}", path.display()))?;
        temp.as_file_mut().flush()?;
        fs_err::set_permissions(temp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        temp.persist(&path).with_context(|| format!("moving the fixture into {}", path.display()))?;
    }
    drop(lock);
    Ok(PbsFixture { sha256: memoized_sha256(&path)?, path, version: host.version, file_name })
}

fn memoized_sha256(path: &Path) -> Result<Sha256Hex> {
    static HASHES: OnceLock<Mutex<BTreeMap<PathBuf, Sha256Hex>>> = OnceLock::new();
    let hashes = HASHES.get_or_init(Default::default);
    if let Some(hash) = hashes.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
        return Ok(hash.clone());
    }
    let hash = sha256_file(path)?;
    hashes.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf(), hash.clone());
    Ok(hash)
}

/// Serve `bytes` at `path` (everything else is 404) from a loopback [`TestServer`], whose requests
/// can be inspected later. `truncate_to` cuts the body short after announcing its full length.
pub fn serve_bytes(path: &str, bytes: Vec<u8>, truncate_to: Option<usize>) -> TestServer {
    let path = path.to_string();
    TestServer::start(move |request| {
        if request.path.split('?').next() == Some(path.as_str()) {
            let mut reply = Reply::file(request, "application/octet-stream", &bytes);
            reply.truncate_to = truncate_to;
            reply
        } else {
            Reply::not_found()
        }
    })
}

fn write_pbs_archive(host: &HostPython, compression: Compression, out: &mut std::fs::File) -> Result<()> {
    match compression {
        Compression::Gzip => {
            let encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            let mut builder = tar::Builder::new(encoder);
            append_python_tree(host, &mut builder)?;
            builder.into_inner()?.finish()?;
        }
        Compression::Zstd => {
            let encoder = zstd::stream::write::Encoder::new(out, 3)?;
            let mut builder = tar::Builder::new(encoder);
            append_python_tree(host, &mut builder)?;
            builder.into_inner()?.finish()?;
        }
    }
    Ok(())
}

fn base_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(FIXTURE_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_python_tree<W: Write>(host: &HostPython, builder: &mut tar::Builder<W>) -> Result<()> {
    let minor = &host.minor;
    let prefix = &host.prefix;
    let libdir = host.libdir.to_string_lossy().to_string();
    builder.append_data(&mut base_header(tar::EntryType::Directory, 0o755, 0), "python/", std::io::empty())?;
    builder.append_data(&mut base_header(tar::EntryType::Directory, 0o755, 0), "python/bin/", std::io::empty())?;
    let interpreter = prefix.join(format!("bin/python{minor}"));
    append_file(builder, &interpreter, &format!("python/bin/python{minor}"), &libdir, "$ORIGIN/../lib")?;
    for alias in ["python3", "python"] {
        let mut header = base_header(tar::EntryType::Symlink, 0o777, 0);
        builder.append_link(&mut header, format!("python/bin/{alias}"), format!("python{minor}"))?;
    }
    // The walk is sorted, so the archive is the same on every build from the same host.
    for top in ["include", "lib"] {
        let root = prefix.join(top);
        if !root.exists() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| keep_in_fixture(e.path(), prefix, minor))
        {
            let entry = entry?;
            let relative = entry.path().strip_prefix(prefix).context("walk left the prefix")?;
            let name = format!("python/{}", relative.to_string_lossy());
            let file_type = entry.file_type();
            if file_type.is_dir() {
                builder.append_data(
                    &mut base_header(tar::EntryType::Directory, 0o755, 0),
                    format!("{name}/"),
                    std::io::empty(),
                )?;
            } else if file_type.is_symlink() {
                let target = fs_err::read_link(entry.path())?;
                if target.is_absolute() {
                    continue;
                }
                let mut header = base_header(tar::EntryType::Symlink, 0o777, 0);
                builder.append_link(&mut header, &name, &target)?;
            } else if file_type.is_file() {
                // `$ORIGIN` relative to the file's own directory, back to `python/lib`.
                let depth = relative.components().count() - 2;
                let origin =
                    if depth == 0 { "$ORIGIN".to_string() } else { format!("$ORIGIN/{}", vec![".."; depth].join("/")) };
                append_file(builder, entry.path(), &name, &libdir, &origin)?;
            }
        }
    }
    Ok(())
}

/// Whether a host path goes into the fixture: no `__pycache__`, and from site-packages only pip
/// (which python-build-standalone ships) and the README.
fn keep_in_fixture(path: &Path, prefix: &Path, minor: &str) -> bool {
    if path.file_name().is_some_and(|n| n == "__pycache__") {
        return false;
    }
    let site_packages = prefix.join(format!("lib/python{minor}/site-packages"));
    match path.strip_prefix(&site_packages) {
        Ok(inside) => match inside.components().next() {
            None => true,
            Some(first) => {
                let first = first.as_os_str().to_string_lossy();
                first == "README.txt" || first == "pip" || (first.starts_with("pip-") && first.ends_with(".dist-info"))
            }
        },
        Err(_) => true,
    }
}

fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    source: &Path,
    name: &str,
    old_runpath: &str,
    new_runpath: &str,
) -> Result<()> {
    let mut bytes = fs_err::read(source)?;
    patch_runpath(&mut bytes, old_runpath, new_runpath)
        .with_context(|| format!("patching the RUNPATH of {}", source.display()))?;
    let mode = fs_err::metadata(source)?.permissions();
    let mode = if std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0 { 0o755 } else { 0o644 };
    let mut header = base_header(tar::EntryType::Regular, mode, bytes.len() as u64);
    builder.append_data(&mut header, name, &bytes[..])?;
    Ok(())
}

/// Rewrite an ELF64 little-endian file's `DT_RUNPATH`/`DT_RPATH` from `old` to the shorter `new`, in
/// place (the string table entry is overwritten and padded with NULs). Returns whether anything
/// changed; files that are not ELF64 LE, or whose runpath is something else, are left alone.
/// <https://refspecs.linuxfoundation.org/elf/gabi4+/ch5.dynamic.html>
pub fn patch_runpath(bytes: &mut [u8], old: &str, new: &str) -> Result<bool> {
    if !bytes.starts_with(b"\x7fELF") || bytes.len() < 64 || bytes[4] != 2 || bytes[5] != 1 {
        return Ok(false);
    }
    if new.len() > old.len() {
        bail!("the new runpath {new:?} is longer than {old:?}");
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as usize;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes")) as usize;
    let section_offset = u64_at(bytes, 0x28);
    let section_size = u16_at(bytes, 0x3a);
    let section_count = u16_at(bytes, 0x3c);
    if section_offset == 0 || section_offset + section_size * section_count > bytes.len() {
        return Ok(false);
    }
    let section = |index: usize| section_offset + index * section_size;
    let mut changed = false;
    for index in 0..section_count {
        let header = section(index);
        if u32_at(bytes, header + 4) != 6 {
            continue; // Not SHT_DYNAMIC.
        }
        let dynamic_offset = u64_at(bytes, header + 0x18);
        let dynamic_size = u64_at(bytes, header + 0x20);
        let strtab_index = u32_at(bytes, header + 0x28);
        if strtab_index >= section_count || dynamic_offset + dynamic_size > bytes.len() {
            bail!("malformed dynamic section");
        }
        let strtab_offset = u64_at(bytes, section(strtab_index) + 0x18);
        for entry in (dynamic_offset..dynamic_offset + dynamic_size).step_by(16) {
            let tag = u64_at(bytes, entry);
            if tag == 0 {
                break;
            }
            if tag != 29 && tag != 15 {
                continue; // Neither DT_RUNPATH nor DT_RPATH.
            }
            let start = strtab_offset + u64_at(bytes, entry + 8);
            let end = start + bytes[start..].iter().position(|b| *b == 0).context("unterminated runpath")?;
            if &bytes[start..end] != old.as_bytes() {
                continue;
            }
            bytes[start..start + new.len()].copy_from_slice(new.as_bytes());
            bytes[start + new.len()..end].fill(0);
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runpath_is_patched_in_place() {
        // A minimal ELF64 LE image: header, one SHT_STRTAB and one SHT_DYNAMIC section.
        let mut elf = vec![0u8; 0x400];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab = b"\0/old/prefix/lib\0";
        elf[0x100..0x100 + strtab.len()].copy_from_slice(strtab);
        // Dynamic entries: DT_RUNPATH -> offset 1, DT_NULL.
        elf[0x200..0x208].copy_from_slice(&29u64.to_le_bytes());
        elf[0x208..0x210].copy_from_slice(&1u64.to_le_bytes());
        // Section headers at 0x300: [0] strtab, [1] dynamic (sh_link = 0).
        elf[0x28..0x30].copy_from_slice(&0x300u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&2u16.to_le_bytes());
        let strtab_header = 0x300;
        elf[strtab_header + 4..strtab_header + 8].copy_from_slice(&3u32.to_le_bytes());
        elf[strtab_header + 0x18..strtab_header + 0x20].copy_from_slice(&0x100u64.to_le_bytes());
        let dynamic_header = 0x340;
        elf[dynamic_header + 4..dynamic_header + 8].copy_from_slice(&6u32.to_le_bytes());
        elf[dynamic_header + 0x18..dynamic_header + 0x20].copy_from_slice(&0x200u64.to_le_bytes());
        elf[dynamic_header + 0x20..dynamic_header + 0x28].copy_from_slice(&32u64.to_le_bytes());
        assert!(!patch_runpath(&mut elf.clone(), "/other/prefix/lib", "$ORIGIN").unwrap());
        assert!(patch_runpath(&mut elf, "/old/prefix/lib", "$ORIGIN/../lib").unwrap());
        assert_eq!(&elf[0x101..0x101 + 16], b"$ORIGIN/../lib\0\0");
    }
}
