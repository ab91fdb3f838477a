//! Unpacking one wheel into site-packages, per the binary distribution format, treating every zip
//! member as hostile.
//!
//! Spec: <https://packaging.python.org/en/latest/specifications/binary-distribution-format/>.
//! Installation happens in two passes: [`plan`] reads only the central directory, `WHEEL` and
//! `RECORD` and decides where every member goes (so the caller can check conflicts between wheels
//! and the supply-chain guard before anything is written); [`extract`] then copies the members out
//! of the cached zip, hashing each one against RECORD. The cached zip is only ever read.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use base64::Engine as _;

use crate::packaging::record::{Record, is_record_or_signature, record_hash};
use crate::packaging::wheel_name::{WheelFilename, normalize_name};
use crate::sha256::Sha256;

/// The `Wheel-Version` this installer implements.
const SUPPORTED_WHEEL_VERSION: (u64, u64) = (1, 0);

/// Upper bound on the unpacked size of one wheel (Lambda allows 250 MB for everything).
pub(crate) const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// Upper bound on the number of members of one wheel.
pub(crate) const MAX_MEMBERS: usize = 200_000;

/// Upper bound on the size of `WHEEL` and `RECORD`, which are read into memory.
const MAX_METADATA_FILE_BYTES: u64 = 64 << 20;

/// One file of the wheel and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedFile {
    /// Index in the zip's central directory.
    pub(crate) index: usize,
    /// The member name in the wheel, e.g. `demo-1.0.data/purelib/demo/x.py`.
    pub(crate) archive_path: String,
    /// Where it goes, relative to site-packages, e.g. `demo/x.py`.
    pub(crate) destination: String,
    /// Uncompressed size (checked against RECORD and against the bytes actually read).
    pub(crate) size: u64,
    /// Whether any executable bit is set in the member's unix mode.
    pub(crate) executable: bool,
}

/// Everything decided about a wheel before writing: where each member goes and what is dropped.
#[derive(Debug, Clone)]
pub(crate) struct WheelPlan {
    /// The wheel's file name, for messages.
    pub(crate) wheel: String,
    /// `demo-1.0.dist-info`.
    pub(crate) dist_info: String,
    /// Files to write, in central-directory order.
    pub(crate) files: Vec<PlannedFile>,
    /// Members not installed, with the reason (`.data/scripts`, `.data/headers`, `.data/data`).
    pub(crate) dropped: Vec<(String, &'static str)>,
    /// `Wheel-Version` warnings (a newer minor version).
    pub(crate) warnings: Vec<String>,
    /// The wheel's own `<dist-info>/METADATA`, compared with the lock before installing.
    pub(crate) metadata: String,
    record: Record,
}

impl WheelPlan {
    /// Total bytes the files will take.
    pub(crate) fn unpacked_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The sha256 RECORD gives a member, in hex (RECORD stores urlsafe base64); `extract` checks
    /// the member's bytes against it.
    pub(crate) fn recorded_sha256_hex(&self, archive_path: &str) -> Option<String> {
        let hash = self.record.get(archive_path)?.hash.as_deref()?.strip_prefix("sha256=")?;
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(hash).ok()?;
        Some(hex::encode(digest))
    }
}

/// Read the wheel's central directory, `WHEEL` and `RECORD`, and decide where every member goes.
/// Refuses hostile member names, symlinks and special files, duplicate names, an oversized
/// wheel, a wrong `Wheel-Version`, and any file missing from RECORD or RECORD entry missing
/// from the wheel.
pub(crate) fn plan(wheel_path: &Path, filename: &WheelFilename) -> Result<WheelPlan> {
    let wheel = filename.to_string();
    // One reading only: no prefix, no trailing data, one end record, local headers that agree
    // with the central directory and no member the central directory hides.
    crate::archive::zip_layout::check_zip_layout(wheel_path, &wheel)?;
    let file = fs_err::File::open(wheel_path)?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{wheel}: not a readable zip archive ({})", wheel_path.display()))?;
    if archive.len() > MAX_MEMBERS {
        bail!("{wheel}: {} members is more than the {MAX_MEMBERS} this installer accepts", archive.len());
    }
    if archive.has_duplicate_names() {
        bail!("{wheel}: the zip lists the same member name twice; refusing an ambiguous archive");
    }

    // Every member is hostile: check its name and type before anything else looks at it.
    let mut members = Vec::with_capacity(archive.len());
    let mut seen = BTreeSet::new();
    let mut total_size = 0u64;
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).with_context(|| format!("{wheel}: reading member {index}"))?;
        let raw = entry.name_raw();
        if raw.contains(&0) {
            bail!("{wheel}: member {:?} contains a NUL byte; refusing the wheel", String::from_utf8_lossy(raw));
        }
        let name = std::str::from_utf8(raw)
            .map_err(|_| anyhow::anyhow!("{wheel}: member {:?} is not UTF-8", String::from_utf8_lossy(raw)))?
            .to_string();
        if let Some(control) = name.chars().find(|c| c.is_control()) {
            bail!(
                "{wheel}: member {name:?} has the control character {control:?} in its name; refusing the wheel \
                 (such names hide what a terminal or a log shows)"
            );
        }
        // A directory member's name ends with `/`.
        let is_dir = name.ends_with('/');
        let path = crate::files::enclosed_relative_path(name.strip_suffix('/').unwrap_or(&name))
            .map_err(|why| {
                anyhow::anyhow!("{wheel}: member {name:?} escapes the install root ({why}); refusing the wheel")
            })?
            .to_string();
        let mode = entry.external_attributes() >> 16;
        match mode & 0o170000 {
            0o120000 => bail!("{wheel}: member {name:?} is a symbolic link; wheels may only contain regular files"),
            0 | 0o100000 | 0o040000 => {}
            other => bail!("{wheel}: member {name:?} is a special file (mode {other:o}); refusing the wheel"),
        }
        if !seen.insert(path.clone()) {
            bail!("{wheel}: member {path:?} appears twice; refusing an ambiguous archive");
        }
        if is_dir || mode & 0o170000 == 0o040000 {
            continue;
        }
        total_size = total_size.saturating_add(entry.size());
        if total_size > MAX_UNPACKED_BYTES {
            bail!("{wheel}: unpacks to more than {} bytes; refusing the wheel", MAX_UNPACKED_BYTES);
        }
        members.push((index, path, entry.size(), mode & 0o111 != 0));
    }

    // "The .dist-info directory: wheel .dist-info directories include at a minimum METADATA,
    // WHEEL, and RECORD." There must be exactly one, named after the wheel's distribution.
    let dist_info = find_dist_info(&wheel, filename, members.iter().map(|(_, path, _, _)| path.as_str()))?;
    let data_dir = format!("{}.data", dist_info.trim_end_matches(".dist-info"));

    // "1.a Parse distribution-1.0.dist-info/WHEEL.
    //  1.b Check that installer is compatible with Wheel-Version. Warn if minor version is
    //      greater, abort if major version is greater."
    let wheel_text = read_member_text(&mut archive, &wheel, &format!("{dist_info}/WHEEL"))?;
    let metadata = parse_wheel_metadata(&wheel, &wheel_text)?;
    let mut warnings = Vec::new();
    let (major, minor) = metadata.version;
    if major != SUPPORTED_WHEEL_VERSION.0 {
        bail!(
            "{wheel}: Wheel-Version {major}.{minor} is not supported (this installer reads major version {}); \
             lock a wheel built with a current build backend",
            SUPPORTED_WHEEL_VERSION.0
        );
    }
    if minor > SUPPORTED_WHEEL_VERSION.1 {
        warnings.push(format!(
            "{wheel}: Wheel-Version {major}.{minor} is newer than {}.{}; installing it as {}.{}",
            SUPPORTED_WHEEL_VERSION.0, SUPPORTED_WHEEL_VERSION.1, SUPPORTED_WHEEL_VERSION.0, SUPPORTED_WHEEL_VERSION.1
        ));
    }
    // "1.c If Root-Is-Purelib == 'true', unpack archive into purelib (site-packages).
    //  1.d Else unpack archive into platlib (site-packages)."
    // The layer has one site-packages directory for both, so `metadata.root_is_purelib` only has
    // to be well-formed (checked by `parse_wheel_metadata`).

    // "During extraction, wheel installers verify all the hashes in RECORD against the file
    // contents. Apart from RECORD and its signatures, installation will fail if any file in the
    // archive is not both mentioned and correctly hashed in RECORD."
    let metadata_text = read_member_text(&mut archive, &wheel, &format!("{dist_info}/METADATA"))?;
    let record_text = read_member_bytes(&mut archive, &wheel, &format!("{dist_info}/RECORD"))?;
    let record = Record::parse(&wheel, &dist_info, &record_text)?;
    // "RECORD is a list of (almost) all the files in the wheel [...] every file except RECORD,
    // which cannot contain a hash of itself, must include its hash": RECORD lists itself, without
    // a hash (pypa/installer refuses a RECORD that does not mention itself).
    let record_row = format!("{dist_info}/RECORD");
    match record.get(&record_row) {
        None => bail!(
            "{wheel}: RECORD does not list itself ({record_row:?} has no row); refusing the wheel (rebuild it \
             with a current build backend)"
        ),
        Some(own) if own.hash.as_deref().is_some_and(|h| !h.is_empty()) || own.size.is_some() => bail!(
            "{wheel}: RECORD's own row gives it a hash or size ({:?}, {:?}), which RECORD cannot hold for \
             itself; refusing the wheel",
            own.hash.as_deref().unwrap_or(""),
            own.size
        ),
        Some(_) => {}
    }

    // "2.a Unpacked archive includes distribution-1.0.dist-info/ and (if there is data)
    //      distribution-1.0.data/.
    //  2.b Move each subtree of distribution-1.0.data/ onto its destination path. Each
    //      subdirectory of distribution-1.0.data/ is a key into a dict of destination directories,
    //      such as distribution-1.0.data/(purelib|platlib|headers|scripts|data)."
    // purelib and platlib both go to site-packages. `scripts` is dropped: the layer has no
    // console scripts (Node runs `python3.X -c` / a bridge script, never an entry point).
    // `headers` (C headers for building extensions) and `data` (files meant for sys.prefix, e.g.
    // `share/man`) are dropped with a note: nothing imports them, and the layer's prefix holds
    // only the interpreter. Refusing them instead would reject ordinary wheels for no safety gain.
    // "2.c update scripts starting with #!python" does not apply (no scripts); "2.d Update RECORD
    // with the installed paths" is not done: RECORD is kept as shipped (the prune step's `record`
    // rule removes it); "2.f Compile any installed .py to .pyc" is the bytecode step.
    let mut files = Vec::with_capacity(members.len());
    let mut dropped = Vec::new();
    let mut destinations = BTreeSet::new();
    let mut in_wheel = BTreeSet::new();
    for (index, path, size, executable) in members {
        in_wheel.insert(path.clone());
        if !is_record_or_signature(&path, &dist_info) {
            let Some(entry) = record.get(&path) else {
                bail!(
                    "{wheel}: {path:?} is in the wheel but not in RECORD; refusing a wheel whose contents \
                     are not all hashed"
                );
            };
            if let Some(recorded) = entry.size
                && recorded != size
            {
                bail!("{wheel}: {path:?} is {size} bytes but RECORD says {recorded}; refusing the wheel");
            }
        }
        let destination = match path.strip_prefix(&data_dir).and_then(|rest| rest.strip_prefix('/')) {
            None => path.clone(),
            Some(rest) => {
                let (scheme, inner) = rest.split_once('/').unwrap_or((rest, ""));
                match scheme {
                    "purelib" | "platlib" if !inner.is_empty() => inner.to_string(),
                    "scripts" => {
                        dropped.push((path, "console scripts are not installed"));
                        continue;
                    }
                    "headers" => {
                        dropped.push((path, "C headers are not needed at run time"));
                        continue;
                    }
                    "data" => {
                        dropped.push((path, "data files for sys.prefix are not installed"));
                        continue;
                    }
                    _ => bail!(
                        "{wheel}: {path:?} is under {data_dir}/{scheme}/, which is not a wheel install scheme \
                         (purelib, platlib, scripts, headers, data)"
                    ),
                }
            }
        };
        if !destinations.insert(destination.clone()) {
            bail!("{wheel}: two members install to {destination:?} (one of them via {data_dir}/); refusing the wheel");
        }
        files.push(PlannedFile { index, archive_path: path, destination, size, executable });
    }
    for recorded in record.paths() {
        if !in_wheel.contains(recorded) {
            bail!("{wheel}: RECORD lists {recorded:?}, which is not in the wheel; refusing the wheel");
        }
    }
    Ok(WheelPlan { wheel, dist_info, files, dropped, warnings, metadata: metadata_text, record })
}

/// Copy `files` (planned files of the wheel) out of the wheel into `root` (a staging
/// site-packages), hashing each one against RECORD. Files are created new: an existing file is an
/// error, never overwritten. A slice, so one large wheel can be unpacked by several threads.
pub(crate) fn extract_files(wheel_path: &Path, plan: &WheelPlan, files: &[PlannedFile], root: &Path) -> Result<()> {
    let wheel = &plan.wheel;
    let file = fs_err::File::open(wheel_path)?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .with_context(|| format!("{wheel}: not a readable zip archive ({})", wheel_path.display()))?;
    let mut buffer = vec![0u8; 128 * 1024];
    let mut made_dirs = BTreeSet::new();
    for planned in files {
        let destination = root.join(&planned.destination);
        if let Some(parent) = destination.parent()
            && made_dirs.insert(parent.to_path_buf())
        {
            fs_err::create_dir_all(parent)?;
        }
        let mut member = archive
            .by_index(planned.index)
            .with_context(|| format!("{wheel}: reading member {:?}", planned.archive_path))?;
        let mut output = create_new(&destination, planned.executable)?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        // Read at most one byte more than declared, so a lying header cannot fill the disk.
        let mut limited = (&mut member).take(planned.size + 1);
        loop {
            let n = limited
                .read(&mut buffer)
                .with_context(|| format!("{wheel}: decompressing {:?}", planned.archive_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            output.write_all(&buffer[..n])?;
            written += n as u64;
        }
        if written != planned.size {
            bail!(
                "{wheel}: {:?} holds {written} bytes but its header says {}; refusing the wheel",
                planned.archive_path,
                planned.size
            );
        }
        // RECORD and its signatures (RECORD.jws, RECORD.p7s) may go unhashed; a signature that
        // RECORD does hash is checked like any other file.
        let Some(entry) =
            plan.record.get(&planned.archive_path).filter(|e| e.hash.as_deref().is_some_and(|h| !h.is_empty()))
        else {
            if is_record_or_signature(&planned.archive_path, &plan.dist_info) {
                continue;
            }
            bail!("{wheel}: {:?} has no hash in RECORD; refusing the wheel", planned.archive_path);
        };
        let computed = record_hash(&hasher.finalize());
        if entry.hash.as_deref() != Some(computed.as_str()) {
            bail!(
                "{wheel}: {:?} does not match RECORD:\n  expected {}\n  computed {computed}\nrefusing the wheel \
                 (it was altered after it was built)",
                planned.archive_path,
                entry.hash.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn create_new(path: &Path, executable: bool) -> Result<fs_err::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(if executable { 0o755 } else { 0o644 });
    let file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(fs_err::File::from_parts(file, path))
}

/// The single top-level `*.dist-info` directory, which must be named after the wheel.
fn find_dist_info<'a>(wheel: &str, filename: &WheelFilename, paths: impl Iterator<Item = &'a str>) -> Result<String> {
    let mut found = BTreeSet::new();
    for path in paths {
        if let Some((first, _)) = path.split_once('/')
            && first.ends_with(".dist-info")
        {
            found.insert(first.to_string());
        }
    }
    let dist_info = match found.len() {
        1 => found.into_iter().next().expect("one element"),
        0 => bail!("{wheel}: no .dist-info directory; not a wheel"),
        _ => bail!(
            "{wheel}: {} .dist-info directories ({}); a wheel has exactly one",
            found.len(),
            found.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    let stem = dist_info.trim_end_matches(".dist-info");
    let matches = stem.rsplit_once('-').is_some_and(|(name, version)| {
        normalize_name(name) == filename.normalized_name()
            && pep440_rs::Version::from_str(version).is_ok_and(|v| v == filename.version)
    });
    if !matches {
        bail!(
            "{wheel}: its metadata directory {dist_info:?} does not match the file name ({} {}); refusing the wheel",
            filename.name,
            filename.version
        );
    }
    Ok(dist_info)
}

/// What `WHEEL` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WheelMetadata {
    /// `Wheel-Version`, (major, minor).
    pub(crate) version: (u64, u64),
    /// `Root-Is-Purelib`.
    pub(crate) root_is_purelib: bool,
}

/// Parse `WHEEL`: RFC 822-style `Key: value` lines. `Wheel-Version` and `Root-Is-Purelib` are
/// required.
pub(crate) fn parse_wheel_metadata(wheel: &str, text: &str) -> Result<WheelMetadata> {
    let mut version = None;
    let mut root_is_purelib = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "wheel-version" => {
                let parsed = value
                    .split_once('.')
                    .and_then(|(major, minor)| Some((major.parse::<u64>().ok()?, minor.parse::<u64>().ok()?)));
                match parsed {
                    Some(parsed) => version = Some(parsed),
                    None => bail!("{wheel}: WHEEL has Wheel-Version {value:?}; expected MAJOR.MINOR such as 1.0"),
                }
            }
            "root-is-purelib" => {
                root_is_purelib = Some(match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => bail!("{wheel}: WHEEL has Root-Is-Purelib {value:?}; expected true or false"),
                })
            }
            _ => {}
        }
    }
    let Some(version) = version else { bail!("{wheel}: WHEEL has no Wheel-Version") };
    let Some(root_is_purelib) = root_is_purelib else { bail!("{wheel}: WHEEL has no Root-Is-Purelib") };
    Ok(WheelMetadata { version, root_is_purelib })
}

fn read_member_bytes<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    wheel: &str,
    name: &str,
) -> Result<Vec<u8>> {
    let member = match archive.by_name(name) {
        Ok(member) => member,
        Err(zip::result::ZipError::FileNotFound) => bail!("{wheel}: {name} is missing; not a valid wheel"),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{wheel}: reading {name}"))),
    };
    if member.size() > MAX_METADATA_FILE_BYTES {
        bail!("{wheel}: {name} is {} bytes; refusing an oversized metadata file", member.size());
    }
    let mut bytes = Vec::with_capacity(member.size() as usize);
    member.take(MAX_METADATA_FILE_BYTES).read_to_end(&mut bytes).with_context(|| format!("{wheel}: reading {name}"))?;
    Ok(bytes)
}

fn read_member_text<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    wheel: &str,
    name: &str,
) -> Result<String> {
    String::from_utf8(read_member_bytes(archive, wheel, name)?)
        .map_err(|_| anyhow::anyhow!("{wheel}: {name} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_metadata_is_parsed() {
        let text = "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.45.1)\nRoot-Is-Purelib: false\nTag: py3-none-any\n";
        let parsed = parse_wheel_metadata("w.whl", text).unwrap();
        assert_eq!(parsed, WheelMetadata { version: (1, 0), root_is_purelib: false });
        let err = parse_wheel_metadata("w.whl", "Wheel-Version: one\nRoot-Is-Purelib: true\n").unwrap_err();
        assert!(err.to_string().contains("w.whl: WHEEL has Wheel-Version \"one\""), "{err}");
        let err = parse_wheel_metadata("w.whl", "Wheel-Version: 1.0\n").unwrap_err();
        assert_eq!(err.to_string(), "w.whl: WHEEL has no Root-Is-Purelib");
    }
}
