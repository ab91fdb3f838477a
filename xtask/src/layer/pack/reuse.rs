//! Compressed entries of the previous build's zip, copied instead of deflated again
//! (docs/architecture.md §14).
//!
//! A previous zip is trusted only when the output record vouches for it: written by this very
//! xtask build with the same `[pack] compression` (the same deflate code at the same level) and
//! still hashing as recorded. Even then
//! an entry is copied only when the previous zip holds the same name, deflated, as a regular file
//! with the same mode, whose data inflates (CRC-32 checked at the end) to exactly the new file's
//! bytes; anything else is deflated again. So the new zip is byte for byte what a cold build
//! writes, and a damaged previous zip costs time, never correctness.

use std::io::{BufReader, Read};
use std::path::Path;

use fs_err as fs;
use zip::{CompressionMethod, ZipArchive};

use crate::layer::output_record;
use crate::spec::Compression;

/// A previous zip whose entries may be copied.
pub(crate) struct PreviousZip {
    archive: ZipArchive<BufReader<fs::File>>,
}

/// How many entries a zip copied from its previous version.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reused {
    pub entries: usize,
    /// Their uncompressed bytes.
    pub bytes: u64,
}

impl PreviousZip {
    /// `previous_out_dir/relative`, when the previous output's record vouches for it; `None`
    /// otherwise (no previous output, another xtask build or compression, a zip edited since).
    pub(crate) fn open(previous_out_dir: &Path, relative: &str, compression: Compression) -> Option<PreviousZip> {
        let recorded = output_record::recorded_sha256(previous_out_dir, relative, compression)?;
        let path = previous_out_dir.join(relative);
        if crate::cache::sha256_file(&path).ok()?.as_str() != recorded {
            return None;
        }
        let archive = ZipArchive::new(BufReader::new(fs::File::open(&path).ok()?)).ok()?;
        Some(PreviousZip { archive })
    }

    /// The index of the entry `name` when it is a deflated regular file with permission bits
    /// `mode` holding exactly `content`.
    pub(crate) fn matching_entry(&mut self, name: &str, content: &[u8], mode: u32) -> Option<usize> {
        let index = self.archive.index_for_name_raw(name.as_bytes())?;
        let mut file = self.archive.by_index(index).ok()?;
        let regular = file.unix_mode().is_some_and(|m| m & 0o170000 == 0o100000 && m & 0o7777 == mode);
        if !regular || file.compression() != CompressionMethod::Deflated || file.size() != content.len() as u64 {
            return None;
        }
        let mut inflated = Vec::with_capacity(content.len());
        // Reading to the end checks the entry's CRC-32; a damaged entry is an error here.
        file.read_to_end(&mut inflated).ok()?;
        (inflated == content).then_some(index)
    }

    /// The entry at `index`, still compressed, for `ZipWriter::raw_copy_file_touch`.
    pub(crate) fn raw_entry(
        &mut self,
        index: usize,
    ) -> zip::result::ZipResult<zip::read::ZipFile<'_, BufReader<fs::File>>> {
        self.archive.by_index_raw(index)
    }
}
