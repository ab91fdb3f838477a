//! Check that every native file of the layer (the interpreter and each `.so`) is an ELF for the
//! target machine, reading the ELF header ourselves.
//!
//! Header layout: <https://refspecs.linuxfoundation.org/elf/gabi4+/ch4.eheader.html>.
//! `e_ident[0..4]` is `\x7fELF`, `e_ident[EI_CLASS=4]` is 1 (32-bit) or 2 (64-bit),
//! `e_ident[EI_DATA=5]` is 1 (little-endian) or 2 (big-endian), and `e_machine` is the 16-bit
//! field at offset 18, in the file's byte order.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::arch::Arch;
use crate::python_version::PythonVersion;

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElfHeader {
    pub(crate) class: u8,
    pub(crate) data: u8,
    pub(crate) machine: u16,
}

const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;

/// A file that is not what the target needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfProblem {
    /// Relative to the layer root.
    pub(crate) path: PathBuf,
    pub(crate) message: String,
}

/// The name of an `e_machine` value, for messages.
pub(crate) fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86 (i386)".into(),
        8 => "mips".into(),
        20 => "powerpc".into(),
        21 => "powerpc64".into(),
        22 => "s390".into(),
        40 => "arm (32-bit)".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("e_machine {other}"),
    }
}

/// Read the ELF header of `bytes` (at least the first 20 bytes of a file); `None` if not ELF.
pub(crate) fn parse_header(bytes: &[u8]) -> Option<ElfHeader> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let class = bytes[4];
    let data = bytes[5];
    let raw = [bytes[18], bytes[19]];
    let machine = if data == 2 { u16::from_be_bytes(raw) } else { u16::from_le_bytes(raw) };
    Some(ElfHeader { class, data, machine })
}

/// Why `header` does not fit `arch`, if it does not. Both Lambda architectures are 64-bit
/// little-endian.
pub(crate) fn mismatch(header: Option<ElfHeader>, arch: Arch) -> Option<String> {
    let Some(header) = header else {
        return Some("not an ELF file (no \\x7fELF magic)".into());
    };
    let want = machine_name(arch.elf_machine());
    if header.machine != arch.elf_machine() {
        return Some(format!("ELF for {}, expected {want} for {arch}", machine_name(header.machine)));
    }
    if header.class != ELFCLASS64 {
        return Some(format!("32-bit ELF (class {}), expected 64-bit {want}", header.class));
    }
    if header.data != ELFDATA2LSB {
        return Some(format!("big-endian ELF, expected little-endian {want}"));
    }
    None
}

/// Whether a file name is a shared object: `x.so`, `libfoo.so.1.2`.
fn is_shared_object(name: &str) -> bool {
    name.ends_with(".so") || name.contains(".so.")
}

/// The native files to check under `layer_root` (the directory holding `python/`): the
/// interpreter and every shared object, sorted. Symbolic links are followed to what they name.
pub(crate) fn native_files(layer_root: &Path, python: PythonVersion) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let interpreter = layer_root.join("python/bin").join(python.interpreter_name());
    if interpreter.exists() {
        files.push(interpreter);
    }
    for entry in walkdir::WalkDir::new(layer_root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("listing {}", layer_root.display()))?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_dir() && is_shared_object(&name) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Check every native file; the problems, each naming its file relative to `layer_root`.
pub(crate) fn check_tree(layer_root: &Path, arch: Arch, python: PythonVersion) -> Result<(usize, Vec<ElfProblem>)> {
    let files = native_files(layer_root, python)?;
    let mut problems = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(layer_root).unwrap_or(path).to_path_buf();
        if !path.exists() {
            problems.push(ElfProblem { path: relative, message: "a symbolic link to nothing".into() });
            continue;
        }
        let mut head = Vec::with_capacity(20);
        fs_err::File::open(path)?.take(20).read_to_end(&mut head)?;
        if let Some(message) = mismatch(parse_header(&head), arch) {
            problems.push(ElfProblem { path: relative, message });
        }
    }
    Ok((files.len(), problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = class;
        bytes[5] = data;
        let m = if data == 2 { machine.to_be_bytes() } else { machine.to_le_bytes() };
        bytes[18..20].copy_from_slice(&m);
        bytes
    }

    #[test]
    fn reads_the_machine_in_the_files_byte_order() {
        assert_eq!(parse_header(&header(2, 1, 183)), Some(ElfHeader { class: 2, data: 1, machine: 183 }));
        assert_eq!(parse_header(&header(2, 2, 21)).unwrap().machine, 21);
        assert_eq!(parse_header(b"#!/bin/sh\n echo not elf at all"), None);
        assert_eq!(parse_header(b"\x7fELF"), None);
    }

    #[test]
    fn mismatches_are_explained() {
        assert_eq!(mismatch(parse_header(&header(2, 1, 62)), Arch::X86_64), None);
        assert_eq!(mismatch(parse_header(&header(2, 1, 183)), Arch::Arm64), None);
        assert_eq!(
            mismatch(parse_header(&header(2, 1, 62)), Arch::Arm64).unwrap(),
            "ELF for x86_64, expected aarch64 for arm64"
        );
        assert!(mismatch(parse_header(&header(1, 1, 62)), Arch::X86_64).unwrap().contains("32-bit"));
        assert!(mismatch(parse_header(&header(2, 2, 62)), Arch::X86_64).unwrap().contains("big-endian"));
        assert!(mismatch(None, Arch::X86_64).unwrap().contains("not an ELF file"));
    }

    #[test]
    fn tree_check_names_each_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("python/bin")).unwrap();
        fs_err::create_dir_all(root.join("python/lib/pkg")).unwrap();
        fs_err::write(root.join("python/bin/python3.11"), header(2, 1, 183)).unwrap();
        fs_err::write(root.join("python/lib/pkg/good.cpython-311-aarch64-linux-gnu.so"), header(2, 1, 183)).unwrap();
        fs_err::write(root.join("python/lib/pkg/bad.so"), header(2, 1, 62)).unwrap();
        fs_err::write(root.join("python/lib/libz.so.1"), b"not elf").unwrap();
        fs_err::write(root.join("python/lib/pkg/notes.txt"), b"ignored").unwrap();
        let (count, problems) = check_tree(root, Arch::Arm64, "3.11".parse().unwrap()).unwrap();
        assert_eq!(count, 4);
        let named: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path.display(), p.message)).collect();
        assert_eq!(
            named,
            [
                "python/lib/libz.so.1: not an ELF file (no \\x7fELF magic)",
                "python/lib/pkg/bad.so: ELF for x86_64, expected aarch64 for arm64",
            ]
        );
    }
}
