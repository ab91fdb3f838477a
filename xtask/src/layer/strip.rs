//! Strip the symbol table and debug sections of the extension modules and shared libraries the
//! wheels installed, keeping everything the dynamic loader reads.
//!
//! An ELF shared object is loaded through its program headers and the sections they map
//! (`SHF_ALLOC`): `.dynsym`, `.dynstr`, `.dynamic`, `.gnu.hash`, code and data. The static symbol
//! table (`.symtab` + `.strtab`) and the DWARF sections (`.debug_*`) are not allocated; only
//! debuggers and `nm` read them. Removing them is what `strip --strip-unneeded` does to a shared
//! object (System V gABI, "Sections": <https://www.sco.com/developers/gabi/latest/ch4.sheader.html>).
//! The file is rewritten with the `object` crate's ELF builder for either endianness and class, so
//! an arm64 layer is stripped on an x86_64 host. Each file is rewritten through a temp file and a
//! rename, so a file shared with anything else (a hard link) is never changed in place.
//! `cargo xtask verify` loads every extension module of the layer afterwards.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use fs_err as fs;
use object::build::elf::Builder;
use object::elf;

use crate::layer::dist::InstalledDist;
use crate::layer::report::RuleSavings;
use crate::progress::Progress;

/// The bytes of `data` (an ELF file) without its symbol table and debug sections; `Ok(None)`
/// when there is nothing to remove.
pub(crate) fn strip_elf(data: &[u8]) -> Result<Option<Vec<u8>>, object::build::Error> {
    let mut builder = Builder::read(data)?;
    let mut removed_any = false;
    for section in builder.sections.iter_mut() {
        let allocated = section.sh_flags.0 & elf::SHF_ALLOC.0 != 0;
        let name = section.name.as_slice();
        let debug = [&b".debug"[..], b".zdebug", b".rela.debug", b".rel.debug"].iter().any(|p| name.starts_with(p));
        let static_symbols = section.sh_type == elf::SHT_SYMTAB
            || section.sh_type == elf::SHT_SYMTAB_SHNDX
            || (section.sh_type == elf::SHT_STRTAB && name == b".strtab");
        if !allocated && (debug || static_symbols) {
            section.delete = true;
            removed_any = true;
        }
    }
    if !removed_any {
        return Ok(None);
    }
    for symbol in builder.symbols.iter_mut() {
        symbol.delete = true;
    }
    let mut out = Vec::with_capacity(data.len());
    builder.write(&mut out)?;
    Ok((out.len() < data.len()).then_some(out))
}

/// Whether a file's first bytes are an ELF header.
fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = fs::File::open(path)?;
    Ok(file.read(&mut magic)? == 4 && magic == *b"\x7fELF")
}

/// Strip every ELF file the distributions installed under `site_packages` (extension modules and
/// bundled libraries such as `*.libs/*.so.*`). Returns the savings per distribution (rule
/// `strip: <name>`), sorted by name. A file the ELF builder cannot read or write is kept as it is,
/// with a warning naming it.
pub(crate) fn strip_distributions(
    site_packages: &Path,
    dists: &[InstalledDist],
    progress: &Progress,
) -> Result<Vec<RuleSavings>> {
    let mut savings: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for dist in dists {
        for file in &dist.files {
            let name = file.rsplit('/').next().unwrap_or(file);
            if !(name.ends_with(".so") || name.contains(".so.")) {
                continue;
            }
            let path = site_packages.join(file);
            let metadata = fs::symlink_metadata(&path)?;
            if !metadata.file_type().is_file() || !is_elf(&path)? {
                continue;
            }
            let data = fs::read(&path)?;
            let stripped = match strip_elf(&data) {
                Ok(Some(stripped)) => stripped,
                Ok(None) => continue,
                Err(error) => {
                    progress.warn(format!("kept {} of {} unstripped: {error}", file, dist.name));
                    continue;
                }
            };
            replace_file(&path, &stripped, metadata.permissions())
                .with_context(|| format!("stripping {file} of {}", dist.name))?;
            let entry = savings.entry(dist.name.as_str()).or_default();
            entry.0 += 1;
            entry.1 += (data.len() - stripped.len()) as u64;
        }
    }
    Ok(savings
        .into_iter()
        .map(|(name, (files, bytes))| RuleSavings { rule: format!("strip: {name}"), files, bytes })
        .collect())
}

/// Write `bytes` to a temp file beside `path` with `permissions`, then rename it over `path`.
fn replace_file(path: &Path, bytes: &[u8], permissions: std::fs::Permissions) -> Result<()> {
    use std::io::Write;
    let parent = path.parent().context("a file in site-packages has a parent directory")?;
    let mut temp = tempfile::Builder::new().prefix(".xtask-strip-").tempfile_in(parent)?;
    temp.write_all(bytes).with_context(|| format!("writing {}", temp.path().display()))?;
    fs::set_permissions(temp.path(), permissions)?;
    temp.persist(path).with_context(|| format!("renaming the stripped file to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::Object;

    /// An extension module of the host interpreter with a symbol table, if there is one.
    fn host_extension_module() -> Option<std::path::PathBuf> {
        let output = std::process::Command::new("python3")
            .args([
                "-c",
                "import _json, _struct, _ssl; print(_json.__file__); print(_struct.__file__); print(_ssl.__file__)",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        text.lines().map(std::path::PathBuf::from).find(|p| {
            fs::read(p)
                .ok()
                .is_some_and(|d| object::File::parse(&*d).ok().is_some_and(|f| f.section_by_name(".symtab").is_some()))
        })
    }

    #[test]
    fn a_stripped_extension_module_loses_its_symbol_table_and_still_imports() {
        let Some(original) = host_extension_module() else {
            eprintln!("skipping: no host extension module with a symbol table");
            return;
        };
        let data = fs::read(&original).unwrap();
        let stripped = strip_elf(&data).unwrap().expect("something to strip");
        assert!(stripped.len() < data.len());
        let parsed = object::File::parse(&*stripped).unwrap();
        assert!(parsed.section_by_name(".symtab").is_none() && parsed.section_by_name(".strtab").is_none());
        assert!(parsed.section_by_name(".dynsym").is_some() && parsed.section_by_name(".dynamic").is_some());
        assert_eq!(strip_elf(&stripped).unwrap(), None, "stripping twice changes nothing");

        // The stripped copy imports under its own name in a fresh interpreter.
        let dir = tempfile::tempdir().unwrap();
        let name = original.file_name().unwrap();
        fs::write(dir.path().join(name), &stripped).unwrap();
        let module = name.to_str().unwrap().split('.').next().unwrap();
        let code =
            format!("import sys; sys.path.insert(0, {:?}); import {module}; print({module}.__file__)", dir.path());
        let output = std::process::Command::new("python3").args(["-S", "-c", &code]).output().unwrap();
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(printed.trim().starts_with(dir.path().to_str().unwrap()), "{printed}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(strip_elf(b"\x7fELF\x02\x01\x01garbage").is_err());
    }
}
