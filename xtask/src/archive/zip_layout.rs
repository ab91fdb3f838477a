//! The byte layout of a zip archive (a wheel), checked before any zip reader looks at it.
//!
//! Zip readers disagree about ambiguous archives: one reads the central directory, another walks
//! the local headers from the start, a third takes the first end record it finds. An archive that
//! reads differently in different tools can ship files that RECORD, the lock and the SBOM never
//! saw. So a wheel is accepted only when its layout has one reading: the local entries follow one
//! another from byte 0 with no gap, each local header agrees with its central directory record,
//! the central directory follows the last entry, and exactly one end record closes the file.
//!
//! Format: <https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT> (4.3.6 overall layout,
//! 4.3.7 local file header, 4.3.9 data descriptor, 4.3.12 central directory header, 4.3.14-4.3.16
//! zip64 end records and the end of central directory record).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};

pub(crate) const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
pub(crate) const END_RECORD: u32 = 0x0605_4b50;
pub(crate) const ZIP64_END_RECORD: u32 = 0x0606_4b50;
pub(crate) const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END_RECORD_LEN: u64 = 22;
const ZIP64_LOCATOR_LEN: u64 = 20;
/// The end record's comment is at most 65,535 bytes, so the record starts in the last 64 KiB + 22.
const TAIL_LEN: u64 = 65_535 + END_RECORD_LEN;
/// General purpose flag bit 0: the entry is encrypted.
const FLAG_ENCRYPTED: u16 = 1;
/// General purpose flag bit 3: sizes and CRC follow the data in a data descriptor.
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;

/// One central directory record, with what its local header must repeat (also read by
/// `lock::metadata`, which fetches a wheel's METADATA by range requests).
#[derive(Debug, Clone)]
pub(crate) struct CentralEntry {
    pub(crate) name: Vec<u8>,
    flags: u16,
    pub(crate) method: u16,
    pub(crate) crc32: u32,
    pub(crate) compressed_size: u64,
    pub(crate) uncompressed_size: u64,
    pub(crate) local_offset: u64,
}

/// Where one entry sits in the file.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    start: u64,
    end: u64,
}

/// Check the layout of the zip at `path`; `shown` names the archive in messages (a wheel file
/// name). Returns the number of entries.
pub(crate) fn check_zip_layout(path: &Path, shown: &str) -> Result<usize> {
    let mut file = fs_err::File::open(path)?;
    let len = file.metadata()?.len();
    check_layout(&mut file, len, shown)
}

fn check_layout<R: Read + Seek>(file: &mut R, len: u64, shown: &str) -> Result<usize> {
    let refuse = |what: String| anyhow::anyhow!("{shown}: {what}; refusing an ambiguous zip archive");
    let tail_start = len.saturating_sub(TAIL_LEN);
    let tail = read_at(file, tail_start, (len - tail_start) as usize).with_context(|| format!("{shown}: reading"))?;

    // Every place that reads as an end record: the signature, a comment that fits in the file and
    // a central directory that lies before it (zip64 placeholders pass). Exactly one may exist,
    // and its comment must end exactly at the end of the file.
    let plausible: Vec<usize> = (0..tail.len().saturating_sub(END_RECORD_LEN as usize - 1))
        .filter(|&at| u32_at(&tail, at) == Some(END_RECORD))
        .filter(|&at| {
            let comment = u16_at(&tail, at + 20).unwrap_or(u16::MAX) as usize;
            let cd_size = u32_at(&tail, at + 12).unwrap_or(u32::MAX) as u64;
            let cd_offset = u32_at(&tail, at + 16).unwrap_or(u32::MAX) as u64;
            at + END_RECORD_LEN as usize + comment <= tail.len()
                && (cd_offset == 0xFFFF_FFFF
                    || cd_size == 0xFFFF_FFFF
                    || cd_offset.saturating_add(cd_size) <= tail_start + at as u64)
        })
        .collect();
    if plausible.len() > 1 {
        let offsets: Vec<String> = plausible.iter().map(|at| (tail_start + *at as u64).to_string()).collect();
        return Err(refuse(format!(
            "{} end of central directory records (at offsets {})",
            plausible.len(),
            offsets.join(", ")
        )));
    }
    let Some(&end_at) = plausible.first() else {
        bail!("{shown}: no end of central directory record; not a zip archive (truncated download?)");
    };
    let comment = u16_at(&tail, end_at + 20).unwrap_or(0) as usize;
    let record_end = end_at + END_RECORD_LEN as usize + comment;
    if record_end < tail.len() {
        return Err(refuse(format!(
            "{} bytes of data after the end of central directory record",
            tail.len() - record_end
        )));
    }
    let end_record = &tail[end_at..];
    let end_offset = tail_start + end_at as u64;
    let disk = u16_at(end_record, 4).unwrap_or(0);
    let cd_disk = u16_at(end_record, 6).unwrap_or(0);
    let mut count = u16_at(end_record, 10).unwrap_or(0) as u64;
    let mut cd_size = u32_at(end_record, 12).unwrap_or(0) as u64;
    let mut cd_offset = u32_at(end_record, 16).unwrap_or(0) as u64;
    if disk != 0 || cd_disk != 0 || u16_at(end_record, 8) != u16_at(end_record, 10) {
        return Err(refuse("it spans several disks".to_string()));
    }

    // A zip64 end record and its locator sit right before the end record when present.
    let mut directory_end = end_offset;
    if end_offset >= ZIP64_LOCATOR_LEN {
        let locator = read_at(file, end_offset - ZIP64_LOCATOR_LEN, ZIP64_LOCATOR_LEN as usize)?;
        if u32_at(&locator, 0) == Some(ZIP64_LOCATOR) {
            let zip64_at = u64_at(&locator, 8).unwrap_or(u64::MAX);
            let head = read_at(file, zip64_at.min(len), 56.min(len.saturating_sub(zip64_at.min(len)) as usize))?;
            let record_len = u64_at(&head, 4).map(|n| n.saturating_add(12));
            if u32_at(&head, 0) != Some(ZIP64_END_RECORD)
                || record_len.map(|n| zip64_at.saturating_add(n)) != Some(end_offset - ZIP64_LOCATOR_LEN)
            {
                return Err(refuse(
                    "its zip64 end record is missing or not directly before the zip64 locator".to_string(),
                ));
            }
            count = u64_at(&head, 32).unwrap_or(0);
            cd_size = u64_at(&head, 40).unwrap_or(0);
            cd_offset = u64_at(&head, 48).unwrap_or(0);
            directory_end = zip64_at;
        }
    }
    let declared_end = cd_offset.saturating_add(cd_size);
    if declared_end < directory_end {
        let shift = directory_end - declared_end;
        if read_at(file, shift, 4).ok().and_then(|b| u32_at(&b, 0)) == Some(LOCAL_HEADER) {
            // The offsets were written before something was prepended (a self-extractor stub).
            return Err(refuse(format!("{shift} bytes of data before the first entry")));
        }
    }
    if declared_end != directory_end {
        return Err(refuse(format!(
            "the central directory ({cd_size} bytes at offset {cd_offset}) does not end where the end record \
             begins (offset {directory_end}): there is data between them or the sizes lie"
        )));
    }

    // Parse every central directory record; together they must fill the directory exactly.
    let directory = read_at(file, cd_offset, cd_size as usize)?;
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < directory.len() {
        let entry = parse_central(&directory, at).ok_or_else(|| {
            refuse(format!(
                "central directory record {} at offset {} is malformed",
                entries.len(),
                cd_offset + at as u64
            ))
        })?;
        at = entry.1;
        entries.push(entry.0);
    }
    if entries.len() as u64 != count {
        return Err(refuse(format!(
            "the end record counts {count} entries but the central directory holds {}",
            entries.len()
        )));
    }

    // Every entry's local header must agree with its central record.
    let mut spans = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = String::from_utf8_lossy(&entry.name).to_string();
        if entry.flags & FLAG_ENCRYPTED != 0 {
            return Err(refuse(format!("member {name:?} is encrypted")));
        }
        spans.push(check_local(file, len, entry, &name).map_err(|what| refuse(format!("member {name:?}: {what}")))?);
    }

    // The entries must tile the file from byte 0 to the central directory: no prefix, no gap that
    // could hold an entry the central directory does not list, no overlap.
    spans.sort_by_key(|span| span.start);
    let mut expected = 0u64;
    for span in &spans {
        if span.start > expected {
            let hidden = read_at(file, expected, 4).ok().and_then(|b| u32_at(&b, 0)) == Some(LOCAL_HEADER);
            return Err(refuse(if expected == 0 {
                format!("{} bytes of data before the first entry", span.start)
            } else if hidden {
                let name = hidden_name(file, expected).unwrap_or_default();
                format!(
                    "a member {name:?} at offset {expected} is hidden from the central directory (it lies before {:?})",
                    span.name
                )
            } else {
                format!(
                    "{} bytes at offset {expected} belong to no entry (before {:?})",
                    span.start - expected,
                    span.name
                )
            }));
        }
        if span.start < expected {
            return Err(refuse(format!("member {:?} overlaps the entry before it", span.name)));
        }
        expected = span.end;
    }
    if expected < cd_offset {
        let hidden = read_at(file, expected, 4).ok().and_then(|b| u32_at(&b, 0)) == Some(LOCAL_HEADER);
        return Err(refuse(if hidden {
            let name = hidden_name(file, expected).unwrap_or_default();
            format!("a member {name:?} at offset {expected} is hidden from the central directory")
        } else if spans.is_empty() {
            format!("{expected} bytes of data before the central directory of an empty archive")
        } else {
            format!(
                "{} bytes between the last entry and the central directory belong to no entry",
                cd_offset - expected
            )
        }));
    }
    if expected > cd_offset {
        return Err(refuse("the last entry runs into the central directory".to_string()));
    }
    Ok(entries.len())
}

/// Parse the central record at `at`; returns it and the offset of the next record.
pub(crate) fn parse_central(directory: &[u8], at: usize) -> Option<(CentralEntry, usize)> {
    if u32_at(directory, at)? != CENTRAL_HEADER {
        return None;
    }
    let flags = u16_at(directory, at + 8)?;
    let method = u16_at(directory, at + 10)?;
    let crc32 = u32_at(directory, at + 16)?;
    let mut compressed_size = u32_at(directory, at + 20)? as u64;
    let mut uncompressed_size = u32_at(directory, at + 24)? as u64;
    let name_len = u16_at(directory, at + 28)? as usize;
    let extra_len = u16_at(directory, at + 30)? as usize;
    let comment_len = u16_at(directory, at + 32)? as usize;
    let mut local_offset = u32_at(directory, at + 42)? as u64;
    let name = directory.get(at + 46..at + 46 + name_len)?.to_vec();
    let extra = directory.get(at + 46 + name_len..at + 46 + name_len + extra_len)?;
    let next = at + 46 + name_len + extra_len + comment_len;
    if next > directory.len() {
        return None;
    }
    // Zip64 extended information (header id 1): the 64-bit values, in this order, of the fields
    // that hold 0xFFFFFFFF (4.5.3).
    if let Some(zip64) = extra_field(extra, 1) {
        let mut fields = zip64.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        if uncompressed_size == 0xFFFF_FFFF {
            uncompressed_size = fields.next()?;
        }
        if compressed_size == 0xFFFF_FFFF {
            compressed_size = fields.next()?;
        }
        if local_offset == 0xFFFF_FFFF {
            local_offset = fields.next()?;
        }
    }
    Some((CentralEntry { name, flags, method, crc32, compressed_size, uncompressed_size, local_offset }, next))
}

/// Read the local header of `entry` and compare it with the central record. Returns the bytes the
/// entry covers (header, data and data descriptor).
fn check_local<R: Read + Seek>(file: &mut R, len: u64, entry: &CentralEntry, name: &str) -> Result<Span, String> {
    let start = entry.local_offset;
    let header = read_at(file, start, 30).map_err(|_| format!("its local header at offset {start} is past the end"))?;
    if u32_at(&header, 0) != Some(LOCAL_HEADER) {
        return Err(format!("no local header at offset {start}, where the central directory points"));
    }
    let field = |at| u16_at(&header, at).unwrap_or(0);
    let flags = field(6);
    let method = field(8);
    let name_len = field(26) as u64;
    let extra_len = field(28) as u64;
    let local_name = read_at(file, start + 30, name_len as usize).map_err(|e| e.to_string())?;
    if local_name != entry.name {
        return Err(format!(
            "the local header names it {:?}, the central directory {name:?}",
            String::from_utf8_lossy(&local_name)
        ));
    }
    if method != entry.method {
        return Err(format!(
            "the local header says compression method {method}, the central directory {}",
            entry.method
        ));
    }
    if flags & FLAG_DATA_DESCRIPTOR != entry.flags & FLAG_DATA_DESCRIPTOR {
        return Err("the local header and the central directory disagree on the data descriptor flag".to_string());
    }
    let data_start = start + 30 + name_len + extra_len;
    let data_end = data_start.checked_add(entry.compressed_size).filter(|&end| end <= len).ok_or_else(|| {
        format!("its {} compressed bytes at offset {data_start} run past the end of the file", entry.compressed_size)
    })?;
    let central = (entry.crc32, entry.compressed_size, entry.uncompressed_size);
    let end = if flags & FLAG_DATA_DESCRIPTOR == 0 {
        let mut local = (
            u32_at(&header, 14).unwrap_or(0),
            u32_at(&header, 18).unwrap_or(0) as u64,
            u32_at(&header, 22).unwrap_or(0) as u64,
        );
        if local.1 == 0xFFFF_FFFF || local.2 == 0xFFFF_FFFF {
            let extra = read_at(file, start + 30 + name_len, extra_len as usize).map_err(|e| e.to_string())?;
            let zip64 = extra_field(&extra, 1).unwrap_or_default();
            local.2 = zip64.get(0..8).map_or(local.2, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            local.1 = zip64.get(8..16).map_or(local.1, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        }
        if local != central {
            return Err(format!(
                "the local header says crc32 {:08x}, {} compressed and {} uncompressed bytes; the central \
                 directory says crc32 {:08x}, {} and {}",
                local.0, local.1, local.2, central.0, central.1, central.2
            ));
        }
        data_end
    } else {
        // 4.3.9: crc-32, compressed and uncompressed size, after an optional signature; 8-byte sizes
        // in zip64 archives.
        let descriptor = read_at(file, data_end, 24.min((len - data_end) as usize)).map_err(|e| e.to_string())?;
        let skip = if u32_at(&descriptor, 0) == Some(DATA_DESCRIPTOR) { 4 } else { 0 };
        let crc = u32_at(&descriptor, skip);
        let short = (u32_at(&descriptor, skip + 4), u32_at(&descriptor, skip + 8));
        let long = (u64_at(&descriptor, skip + 4), u64_at(&descriptor, skip + 12));
        if crc == Some(central.0) && short == (Some(central.1 as u32), Some(central.2 as u32)) && central.1 < 1 << 32 {
            data_end + skip as u64 + 12
        } else if crc == Some(central.0) && long == (Some(central.1), Some(central.2)) {
            data_end + skip as u64 + 20
        } else {
            return Err(format!(
                "its data descriptor does not repeat the central directory's crc32 {:08x}, {} compressed and {} \
                 uncompressed bytes",
                central.0, central.1, central.2
            ));
        }
    };
    Ok(Span { name: name.to_string(), start, end })
}

/// The name in a local header at `offset` that no central record points to, for the message.
fn hidden_name<R: Read + Seek>(file: &mut R, offset: u64) -> Option<String> {
    let header = read_at(file, offset, 30).ok()?;
    let name = read_at(file, offset + 30, u16_at(&header, 26)? as usize).ok()?;
    Some(String::from_utf8_lossy(&name).to_string())
}

/// The data of the extra field with header id `id`.
fn extra_field(extra: &[u8], id: u16) -> Option<&[u8]> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let header = u16_at(extra, at)?;
        let size = u16_at(extra, at + 2)? as usize;
        let data = extra.get(at + 4..at + 4 + size)?;
        if header == id {
            return Some(data);
        }
        at += 4 + size;
    }
    None
}

fn read_at<R: Read + Seek>(file: &mut R, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    /// A zip of `members`, deflated, as the zip crate writes it.
    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn check(bytes: &[u8]) -> Result<usize> {
        check_layout(&mut Cursor::new(bytes), bytes.len() as u64, "demo-1.0-py3-none-any.whl")
    }

    fn refused(bytes: &[u8]) -> String {
        format!("{:#}", check(bytes).unwrap_err())
    }

    const MEMBERS: &[(&str, &[u8])] = &[("demo/__init__.py", b"X = 1\n"), ("demo/b.py", b"Y = 2\n")];

    /// Offset of the end record of a zip written by `zip_of`.
    fn end_offset(bytes: &[u8]) -> usize {
        bytes.windows(4).rposition(|w| w == END_RECORD.to_le_bytes()).unwrap()
    }

    #[test]
    fn a_plain_zip_and_an_empty_zip_pass() {
        assert_eq!(check(&zip_of(MEMBERS)).unwrap(), 2);
        assert_eq!(check(&zip_of(&[])).unwrap(), 0);
    }

    #[test]
    fn data_before_the_first_entry_is_refused() {
        let want = "demo-1.0-py3-none-any.whl: 22 bytes of data before the first entry; refusing an ambiguous zip \
                    archive";
        let prefix = b"#!/bin/sh\necho hidden\n";
        // Prepended after the zip was written: the zip crate's reader accepts this (it takes the
        // prefix for a self-extractor stub and shifts every offset).
        let mut shifted = prefix.to_vec();
        shifted.extend_from_slice(&zip_of(MEMBERS));
        assert!(zip::ZipArchive::new(Cursor::new(shifted.clone())).is_ok(), "the zip crate reads it");
        assert_eq!(refused(&shifted), want);
        // Written with the prefix in place, so every offset is right.
        let mut cursor = Cursor::new(prefix.to_vec());
        cursor.set_position(prefix.len() as u64);
        let mut zip = zip::ZipWriter::new(cursor);
        zip.start_file("demo/__init__.py", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(b"X = 1\n").unwrap();
        let consistent = zip.finish().unwrap().into_inner();
        assert_eq!(refused(&consistent), want);
    }

    #[test]
    fn data_after_the_end_record_is_refused() {
        let mut bytes = zip_of(MEMBERS);
        bytes.extend_from_slice(b"trailing bytes");
        assert_eq!(
            refused(&bytes),
            "demo-1.0-py3-none-any.whl: 14 bytes of data after the end of central directory record; refusing an \
             ambiguous zip archive"
        );
    }

    #[test]
    fn a_second_end_record_is_refused() {
        // The real end record gets a 22-byte comment that is itself an end record: readers that
        // take the last signature and readers that check the comment length disagree.
        let mut bytes = zip_of(MEMBERS);
        let end = end_offset(&bytes);
        let fake = bytes[end..end + 22].to_vec();
        bytes[end + 20..end + 22].copy_from_slice(&22u16.to_le_bytes());
        bytes.extend_from_slice(&fake);
        assert_eq!(
            refused(&bytes),
            format!(
                "demo-1.0-py3-none-any.whl: 2 end of central directory records (at offsets {end}, {}); refusing an \
                 ambiguous zip archive",
                end + 22
            )
        );
    }

    #[test]
    fn local_and_central_headers_that_disagree_are_refused() {
        // Rename the first member in its local header only: a streaming reader sees another name.
        let bytes = zip_of(MEMBERS);
        let mut renamed = bytes.clone();
        renamed[30..30 + 4].copy_from_slice(b"evil");
        assert_eq!(
            refused(&renamed),
            "demo-1.0-py3-none-any.whl: member \"demo/__init__.py\": the local header names it \
             \"evil/__init__.py\", the central directory \"demo/__init__.py\"; refusing an ambiguous zip archive"
        );
        // Change the method in the local header only.
        let mut method = bytes.clone();
        method[8] = 0;
        assert_eq!(
            refused(&method),
            "demo-1.0-py3-none-any.whl: member \"demo/__init__.py\": the local header says compression method 0, \
             the central directory 8; refusing an ambiguous zip archive"
        );
        // Change the uncompressed size in the local header only.
        let mut size = bytes;
        size[22] ^= 0x40;
        let msg = refused(&size);
        assert!(msg.contains("member \"demo/__init__.py\": the local header says crc32"), "{msg}");
        assert!(msg.ends_with("; refusing an ambiguous zip archive"), "{msg}");
    }

    #[test]
    fn an_entry_hidden_from_the_central_directory_is_refused() {
        // Build a zip of three members, then drop the middle one's central record.
        let bytes = zip_of(&[("demo/__init__.py", b"X = 1\n"), ("demo/evil.pth", b"import os\n"), ("demo/b.py", b"Y")]);
        let end = end_offset(&bytes);
        let cd_offset = u32_at(&bytes, end + 16).unwrap() as usize;
        let first_len = 46 + u16_at(&bytes, cd_offset + 28).unwrap() as usize;
        let second_len = 46 + u16_at(&bytes, cd_offset + first_len + 28).unwrap() as usize;
        let mut hidden = bytes[..cd_offset + first_len].to_vec();
        hidden.extend_from_slice(&bytes[cd_offset + first_len + second_len..]);
        let end = end_offset(&hidden);
        hidden[end + 8..end + 10].copy_from_slice(&2u16.to_le_bytes());
        hidden[end + 10..end + 12].copy_from_slice(&2u16.to_le_bytes());
        let cd_size = u32_at(&hidden, end + 12).unwrap() - second_len as u32;
        hidden[end + 12..end + 16].copy_from_slice(&cd_size.to_le_bytes());
        let msg = refused(&hidden);
        assert!(msg.starts_with("demo-1.0-py3-none-any.whl: a member \"demo/evil.pth\" at offset "), "{msg}");
        assert!(msg.ends_with(" is hidden from the central directory (it lies before \"demo/b.py\"); refusing an ambiguous zip archive"), "{msg}");
    }

    #[test]
    fn a_truncated_zip_is_not_a_zip() {
        let bytes = zip_of(MEMBERS);
        assert_eq!(
            refused(&bytes[..bytes.len() - 10]),
            "demo-1.0-py3-none-any.whl: no end of central directory record; not a zip archive (truncated download?)"
        );
    }
}
