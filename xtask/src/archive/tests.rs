//! Unit tests of `archive`.

use super::*;

fn components(path: &str) -> Vec<String> {
    enclosed_components(path.as_bytes()).unwrap()
}

#[test]
fn paths_are_normalised_or_refused() {
    assert_eq!(components("./python/bin//python3"), ["python", "bin", "python3"]);
    assert_eq!(enclosed_components(b"/etc/passwd"), Err(Refusal::AbsolutePath));
    assert_eq!(enclosed_components(b"python/../../x"), Err(Refusal::ParentDir));
    assert_eq!(enclosed_components(b"python/a\0b"), Err(Refusal::NulByte));
    assert_eq!(enclosed_components(b"python/\xff"), Err(Refusal::NotUtf8));
    assert_eq!(enclosed_components(b"./"), Err(Refusal::Empty));
    assert_eq!(enclosed_components(b"."), Err(Refusal::Empty));
    assert_eq!(enclosed_components(b"/"), Err(Refusal::AbsolutePath));
    assert_eq!(enclosed_components(b"python/a\x1bb"), Err(Refusal::ControlCharacter('\u{1b}')));
    assert_eq!(enclosed_components(b"python\\..\\x"), Err(Refusal::UnsafeName(crate::files::UnsafePath::Backslash)));
    assert_eq!(enclosed_components(b"C:/python"), Err(Refusal::UnsafeName(crate::files::UnsafePath::DriveLetter)));
    assert_eq!(Refusal::UnsafeName(crate::files::UnsafePath::Backslash).to_string(), "unsafe name: backslash");
}

#[test]
fn symlink_targets_must_stay_inside() {
    let link = components("python/bin/python3");
    assert_eq!(check_symlink_target(&link, b"python3.11"), Ok(()));
    assert_eq!(check_symlink_target(&link, b"../lib/libpython3.11.so"), Ok(()));
    assert_eq!(check_symlink_target(&link, b"../../python"), Ok(()));
    assert!(matches!(check_symlink_target(&link, b"../../.."), Err(Refusal::SymlinkEscape { .. })));
    assert!(matches!(check_symlink_target(&link, b"/usr/bin/python3"), Err(Refusal::SymlinkEscape { .. })));
    assert!(matches!(check_symlink_target(&link, b"sub/../../x"), Err(Refusal::SymlinkIndirect { .. })));
    assert_eq!(check_symlink_target(&link, b"a\0b"), Err(Refusal::NulByte));
}

use super::tar_bytes::{RawEntry, gzip, gzip_bomb, raw_tar, tiny_python_entries, zstd};

/// Write `bytes` as an archive file and extract it to `<dir>/out`, with `limits`.
fn extract_bytes(bytes: &[u8], limits: &Limits) -> (tempfile::TempDir, Result<Extracted>) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("python.tar.gz");
    fs_err::write(&archive, bytes).unwrap();
    let result = extract(&archive, &dir.path().join("out"), limits);
    (dir, result)
}

/// Extract the tiny tree plus `extra`; expect a refusal naming `entry` and containing `reason`.
fn assert_refused(extra: Vec<RawEntry>, entry: &str, reason: &str) {
    let mut entries = tiny_python_entries();
    entries.extend(extra);
    let (dir, result) = extract_bytes(&gzip(&raw_tar(&entries)), &Limits::default());
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains(&format!("refusing entry {entry:?}")), "want entry {entry:?} in: {msg}");
    assert!(msg.contains(reason), "want {reason:?} in: {msg}");
    assert!(msg.contains("python.tar.gz"), "{msg}");
    // Nothing half-written: no destination, no staging directory, nothing outside.
    let left: Vec<String> =
        fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(left, ["python.tar.gz"], "{msg}");
}

#[test]
fn a_valid_archive_is_extracted_with_normalised_modes() {
    let (dir, result) = extract_bytes(&gzip(&raw_tar(&tiny_python_entries())), &Limits::default());
    let extracted = result.unwrap();
    assert_eq!(extracted.compression, Compression::Gzip);
    assert_eq!(extracted.entries, 7);
    let out = dir.path().join("out/python");
    let mode = fs_err::metadata(out.join("bin/python3.11")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "setuid must be dropped, the executable bit kept");
    assert_eq!(fs_err::read_link(out.join("bin/python3")).unwrap(), Path::new("python3.11"));
    assert_eq!(fs_err::read(out.join("lib/python3.11/os2.py")).unwrap(), b"# os\n");
    let mode = fs_err::metadata(out.join("lib/python3.11/os.py")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
}

#[test]
fn zstd_is_chosen_by_magic_not_name() {
    // The file is called .tar.gz but holds zstd.
    let (dir, result) = extract_bytes(&zstd(&raw_tar(&tiny_python_entries())), &Limits::default());
    assert_eq!(result.unwrap().compression, Compression::Zstd);
    assert!(dir.path().join("out/python/bin/python3.11").is_file());
}

#[test]
fn absolute_paths_are_refused() {
    assert_refused(vec![RawEntry::file("/tmp/evil", "x")], "/tmp/evil", "absolute path");
}

#[test]
fn parent_dir_components_are_refused() {
    assert_refused(vec![RawEntry::file("python/../../evil", "x")], "python/../../evil", "path contains '..'");
}

#[test]
fn nul_bytes_in_names_are_refused() {
    assert_refused(vec![RawEntry::file(b"python/evil\0.py", "x")], "python/evil\\0.py", "NUL byte");
}

#[test]
fn symlinks_escaping_the_root_are_refused() {
    assert_refused(vec![RawEntry::symlink("python/etc", "/etc")], "python/etc", "resolves outside the archive root");
    assert_refused(
        vec![RawEntry::symlink("python/up", "../../..")],
        "python/up",
        "symlink to \"../../..\" resolves outside",
    );
    assert_refused(
        vec![RawEntry::symlink("python/bin/sneaky", "python3/../../..")],
        "python/bin/sneaky",
        "has '..' after a directory name",
    );
}

#[test]
fn writing_through_a_symlink_is_refused() {
    // The link stays inside, but an entry below it would be written through it.
    assert_refused(
        vec![RawEntry::symlink("python/libdir", "lib"), RawEntry::file("python/libdir/x.py", "x")],
        "python/libdir/x.py",
        "written through \"python/libdir\"",
    );
}

#[test]
fn hardlinks_escaping_the_root_are_refused() {
    assert_refused(
        vec![RawEntry::hardlink("python/passwd", "/etc/passwd")],
        "python/passwd",
        "hard link to \"/etc/passwd\" resolves outside the archive root",
    );
    assert_refused(
        vec![RawEntry::hardlink("python/passwd", "../etc/passwd")],
        "python/passwd",
        "resolves outside the archive root",
    );
    assert_refused(
        vec![RawEntry::hardlink("python/link", "python/bin/python3")],
        "python/link",
        "not a regular file earlier in the archive",
    );
}

#[test]
fn devices_and_fifos_are_refused() {
    assert_refused(vec![RawEntry::fifo("python/pipe")], "python/pipe", "FIFO entries are not allowed");
    assert_refused(vec![RawEntry::char_device("python/tty")], "python/tty", "character device entries");
    assert_refused(vec![RawEntry::block_device("python/sda")], "python/sda", "block device entries");
}

#[test]
fn duplicate_paths_are_refused() {
    assert_refused(
        vec![RawEntry::file("python/lib/python3.11/os.py", "evil")],
        "python/lib/python3.11/os.py",
        "duplicate path",
    );
    assert_refused(vec![RawEntry::file("./python/bin/python3", "x")], "./python/bin/python3", "duplicate path");
}

#[test]
fn control_characters_in_names_are_refused() {
    assert_refused(
        vec![RawEntry::file("python/lib/python3.11/\x1b[2Jclear.py", "x")],
        "python/lib/python3.11/\u{1b}[2Jclear.py",
        "name contains the control character '\\u{1b}'",
    );
    assert_refused(
        vec![RawEntry::file("python/lib/python3.11/a\nb.py", "x")],
        "python/lib/python3.11/a\nb.py",
        "name contains the control character '\\n'",
    );
}

#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    let mut pax = RawEntry::file("python/PaxHeaders/evil.py", "12 size=512\n");
    pax.typeflag = b'x';
    assert_refused(
        vec![pax, RawEntry::file("python/lib/python3.11/evil.py", "x = 1")],
        "python/lib/python3.11/evil.py",
        "its PAX header gives size \"512\" but its tar header 5; readers would disagree on where it ends",
    );
    // A matching PAX size is fine.
    let mut pax = RawEntry::file("python/PaxHeaders/fine.py", "10 size=5\n");
    pax.typeflag = b'x';
    let mut entries = tiny_python_entries();
    entries.extend([pax, RawEntry::file("python/lib/python3.11/fine.py", "x = 1")]);
    let (dir, result) = extract_bytes(&gzip(&raw_tar(&entries)), &Limits::default());
    result.unwrap();
    assert_eq!(fs_err::read(dir.path().join("out/python/lib/python3.11/fine.py")).unwrap(), b"x = 1");
}

#[test]
fn dangling_and_looping_symlinks_are_refused() {
    assert_refused(
        vec![RawEntry::symlink("python/bin/python", "python3.12")],
        "python/bin/python",
        "symlink to \"python3.12\" points at nothing in the archive",
    );
    assert_refused(
        vec![RawEntry::symlink("python/bin/a", "b"), RawEntry::symlink("python/bin/b", "a")],
        "python/bin/a",
        "symlink to \"b\" is part of a loop",
    );
}

#[test]
fn a_second_top_level_directory_is_refused() {
    assert_refused(
        vec![RawEntry::file("python2/lib/os.py", "# shadow\n")],
        "python2/lib/os.py",
        "it is a second top-level directory (the first was \"python\"); an interpreter archive has one",
    );
}

#[test]
fn bombs_are_stopped_by_size_ratio_and_count() {
    let small = Limits { max_unpacked_bytes: 1_000_000, ..Limits::default() };
    let (_dir, result) = extract_bytes(&gzip_bomb(5_000_000), &small);
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("refusing to unpack"), "{msg}");
    assert!(msg.contains("decompression bomb"), "{msg}");

    let ratio = Limits { max_ratio: 20, ratio_grace_bytes: 1_000_000, ..Limits::default() };
    let (_dir, result) = extract_bytes(&gzip_bomb(20_000_000), &ratio);
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("compression ratio above 20:1"), "{msg}");

    let few = Limits { max_entries: 3, ..Limits::default() };
    let (_dir, result) = extract_bytes(&gzip(&raw_tar(&tiny_python_entries())), &few);
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("it holds more than 3 entries"), "{msg}");
}

#[test]
fn neither_gzip_nor_zstd_is_refused_with_what_was_found() {
    let (_dir, result) = extract_bytes(b"<html><body>403 Forbidden</body></html>", &Limits::default());
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("python.tar.gz: not a .tar.gz or .tar.zst archive"), "{msg}");
    assert!(msg.contains("probably an HTML page (bytes 3c 68 74 6d"), "{msg}");
}

#[test]
fn truncated_gzip_is_reported_as_corrupt() {
    let mut entries = tiny_python_entries();
    entries.push(RawEntry::file("python/lib/python3.11/big.py", "# filler\n".repeat(20_000)));
    let whole = gzip(&raw_tar(&entries));
    let (dir, result) = extract_bytes(&whole[..whole.len() / 2], &Limits::default());
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("the archive is truncated or corrupt"), "{msg}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn an_existing_destination_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.gz");
    fs_err::write(&archive, gzip(&raw_tar(&tiny_python_entries()))).unwrap();
    fs_err::create_dir(dir.path().join("out")).unwrap();
    let msg = format!("{:#}", extract(&archive, &dir.path().join("out"), &Limits::default()).unwrap_err());
    assert!(msg.contains("already exists"), "{msg}");
}

#[test]
fn magic_bytes_are_described() {
    assert_eq!(describe_magic(b""), "an empty file");
    assert!(describe_magic(b"PK\x03\x04rest").starts_with("a zip archive (bytes 50 4b 03 04"));
    assert!(describe_magic(b"  <!DOCTYPE html>").contains("HTML page"));
    assert_eq!(describe_magic(b"\x00\x01"), "bytes 00 01");
}
