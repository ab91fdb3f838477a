//! Tar archives written byte by byte, hostile ones included: the `tar` crate's safe API refuses
//! `..`, absolute names and the other entries the extractor must be shown to refuse.
//!
//! Used by the integration tests (as `support::tar_bytes`) and by the unit tests of
//! `src/archive.rs` (through `#[path]`), so it depends on nothing of the crate.

use std::io::Write;

/// The fixed mtime of every entry (reproducible archives).
const FIXTURE_MTIME: u64 = 1_700_000_000;

/// One tar entry of a hand-written (possibly hostile) archive.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The name bytes exactly as they go into the archive (no checks at all).
    pub name: Vec<u8>,
    /// The tar type flag: `b'0'` file, `b'5'` directory, `b'2'` symlink, `b'1'` hard link,
    /// `b'3'` character device, `b'4'` block device, `b'6'` FIFO.
    pub typeflag: u8,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl RawEntry {
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'0', b"", data.as_ref(), 0o644)
    }
    pub fn executable(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>, mode: u32) -> RawEntry {
        RawEntry::new(name, b'0', b"", data.as_ref(), mode)
    }
    pub fn dir(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'5', b"", b"", 0o755)
    }
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'2', target.as_ref(), b"", 0o777)
    }
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'1', target.as_ref(), b"", 0o644)
    }
    pub fn fifo(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'6', b"", b"", 0o644)
    }
    pub fn char_device(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'3', b"", b"", 0o644)
    }
    pub fn block_device(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, b'4', b"", b"", 0o644)
    }
    fn new(name: impl AsRef<[u8]>, typeflag: u8, link: &[u8], data: &[u8], mode: u32) -> RawEntry {
        RawEntry { name: name.as_ref().to_vec(), typeflag, link: link.to_vec(), data: data.to_vec(), mode }
    }
}

/// A GNU tar header with the given fields, written byte by byte (the `tar` crate's safe API
/// refuses `..` and other hostile names). Names over 100 bytes must go through [`raw_tar`].
/// <https://www.gnu.org/software/tar/manual/html_node/Standard.html>
fn raw_header(name: &[u8], typeflag: u8, link: &[u8], size: u64, mode: u32) -> [u8; 512] {
    let mut header = [0u8; 512];
    let put = |header: &mut [u8; 512], at: usize, bytes: &[u8], width: usize| {
        let n = bytes.len().min(width);
        header[at..at + n].copy_from_slice(&bytes[..n]);
    };
    put(&mut header, 0, name, 100);
    put(&mut header, 100, format!("{mode:07o}\0").as_bytes(), 8);
    put(&mut header, 108, b"0000000\0", 8);
    put(&mut header, 116, b"0000000\0", 8);
    put(&mut header, 124, format!("{size:011o}\0").as_bytes(), 12);
    put(&mut header, 136, format!("{FIXTURE_MTIME:011o}\0").as_bytes(), 12);
    header[156] = typeflag;
    put(&mut header, 157, link, 100);
    put(&mut header, 257, b"ustar  \0", 8);
    put(&mut header, 329, b"0000000\0", 8);
    put(&mut header, 337, b"0000000\0", 8);
    header[148..156].fill(b' ');
    let checksum: u32 = header.iter().map(|b| *b as u32).sum();
    put(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes(), 8);
    header
}

fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(bytes.len().div_ceil(512) * 512, 0);
    out
}

/// An uncompressed tar stream of `entries`, exactly as given. Names or link targets that are too
/// long or contain a NUL byte go through GNU long-name records (`././@LongLink`), which keep the
/// bytes intact.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        for (bytes, flag) in [(&entry.link, b'K'), (&entry.name, b'L')] {
            if bytes.len() >= 100 || bytes.contains(&0) {
                let mut long = bytes.clone();
                long.push(0);
                out.extend_from_slice(&raw_header(b"././@LongLink", flag, b"", long.len() as u64, 0o644));
                out.extend_from_slice(&padded(&long));
            }
        }
        out.extend_from_slice(&raw_header(
            &entry.name,
            entry.typeflag,
            &entry.link,
            entry.data.len() as u64,
            entry.mode,
        ));
        out.extend_from_slice(&padded(&entry.data));
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Gzip `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Zstd-compress `bytes`.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).expect("compressing in memory")
}

/// A `.tar.gz` bomb: one file `python/zeros` of `unpacked` zero bytes, streamed (never held in memory).
pub fn gzip_bomb(unpacked: u64) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&raw_header(b"python/zeros", b'0', b"", unpacked, 0o644)).expect("memory");
    let chunk = vec![0u8; 1 << 20];
    let mut left = unpacked.div_ceil(512) * 512;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        encoder.write_all(&chunk[..n]).expect("memory");
        left -= n as u64;
    }
    encoder.write_all(&[0u8; 1024]).expect("memory");
    encoder.finish().expect("memory")
}

/// A small, valid PBS-shaped archive body (for hostile variants to start from): a `python/` tree
/// with `bin/python3.11`, a relative `python3` symlink and a stdlib file.
pub fn tiny_python_entries() -> Vec<RawEntry> {
    vec![
        RawEntry::dir("python/"),
        RawEntry::dir("python/bin/"),
        RawEntry::executable("python/bin/python3.11", b"#!/bin/sh\necho fake\n", 0o4755),
        RawEntry::symlink("python/bin/python3", "python3.11"),
        RawEntry::dir("python/lib/python3.11/"),
        RawEntry::file("python/lib/python3.11/os.py", b"# os\n"),
        RawEntry::hardlink("python/lib/python3.11/os2.py", "python/lib/python3.11/os.py"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tar_round_trips_through_the_tar_crate() {
        let mut entries = tiny_python_entries();
        entries.push(RawEntry::file(format!("python/{}", "x".repeat(150)), b"long"));
        let bytes = raw_tar(&entries);
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names.len(), entries.len());
        assert_eq!(names[2], "python/bin/python3.11");
        assert_eq!(names.last().unwrap().len(), "python/".len() + 150);
    }
}
