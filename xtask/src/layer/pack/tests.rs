//! Unit tests of `layer::pack`.

use super::zip_writer::symlink_stays_inside;
use super::*;
use std::io::Write;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

fn dist(name: &str, files: &[&str]) -> InstalledDist {
    let dist_info = format!("{name}-1.0.dist-info");
    let mut all: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    all.push(format!("{dist_info}/METADATA"));
    all.sort();
    InstalledDist {
        name: name.into(),
        version: "1.0".into(),
        wheel_name: format!("{name}-1.0-py3-none-any.whl"),
        wheel_sha256: "0".repeat(64),
        wheel_url: format!("https://files.example/{name}.whl"),
        dist_info,
        files: all,
    }
}

fn materialise(site_packages: &Path, dists: &[InstalledDist]) {
    for dist in dists {
        for file in &dist.files {
            let path = site_packages.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
    }
}

#[test]
fn layout_rules() {
    let dir = tempfile::tempdir().unwrap();
    let dists = vec![
        dist("pure", &["pure/__init__.py", "pure/py.typed"]),
        dist("native", &["native/__init__.py", "native/_speed.cpython-311-x86_64-linux-gnu.so"]),
        dist("data", &["data/__init__.py", "data/table.json"]),
        dist("ns-native", &["google/native/__init__.py", "google/native/_x.abi3.so"]),
        dist("ns-pure", &["google/pure/__init__.py"]),
        dist("ns-other", &["google/other/__init__.py"]),
    ];
    materialise(dir.path(), &dists);
    let placements = plan_layout(dir.path(), &dists).unwrap();
    let summary: Vec<(&str, Placement, &str)> =
        placements.iter().map(|p| (p.name.as_str(), p.placement, p.reason.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("pure", Placement::Zip, ""),
            ("native", Placement::Dir, "extension module native/_speed.cpython-311-x86_64-linux-gnu.so"),
            ("data", Placement::Dir, "data file data/table.json"),
            ("ns-native", Placement::Dir, "extension module google/native/_x.abi3.so"),
            ("ns-pure", Placement::Dir, "shares top-level google with ns-native, which stays on disk"),
            ("ns-other", Placement::Dir, "shares top-level google with ns-native, which stays on disk"),
        ]
    );
}

#[test]
fn a_listed_file_missing_from_disk_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let dists = vec![dist("ghost", &["ghost.py"])];
    fs::create_dir_all(dir.path().join("ghost-1.0.dist-info")).unwrap();
    fs::write(dir.path().join("ghost-1.0.dist-info/METADATA"), "").unwrap();
    let err = format!("{:#}", plan_layout(dir.path(), &dists).unwrap_err());
    assert!(err.contains("ghost lists ghost.py but it is not in site-packages"), "{err}");
}

#[test]
fn mtime_from_source_date_epoch() {
    let default = zip_mtime(None).unwrap();
    assert_eq!((default.year(), default.month(), default.day(), default.hour()), (1980, 1, 1, 0));
    // 2024-02-29 13:45:31 UTC; DOS seconds round down to even.
    let t = zip_mtime(Some(1_709_214_331)).unwrap();
    assert_eq!((t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second()), (2024, 2, 29, 13, 45, 30));
    let early = zip_mtime(Some(0)).unwrap();
    assert_eq!((early.year(), early.month(), early.day()), (1980, 1, 1));
}

#[test]
fn symlink_targets_must_stay_inside() {
    assert!(symlink_stays_inside("python/bin/python3", Path::new("python3.11")));
    assert!(symlink_stays_inside("python/lib/libpython.so", Path::new("../lib/libpython.so.1.0")));
    assert!(!symlink_stays_inside("python/bin/python3", Path::new("/usr/bin/python3")));
    assert!(!symlink_stays_inside("python/bin/python3", Path::new("../../../etc/passwd")));
}

#[test]
fn sitecustomize_variants() {
    assert!(sitecustomize_source(ZipPosition::AfterSitePackages).contains("sys.path.index(directory) + 1\n"));
    assert!(sitecustomize_source(ZipPosition::BeforeSitePackages).contains("sys.path.index(directory)\n"));
    assert!(sitecustomize_source(ZipPosition::default()).starts_with(SITECUSTOMIZE_MARKER));
}

/// Write `files` (name, content, mode) under `root`.
fn write_tree(root: &Path, files: &[(&str, &[u8], u32)]) {
    use std::os::unix::fs::PermissionsExt;
    for (name, content, mode) in files {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// About 60 kB of text that deflates well but not trivially.
fn module_text(seed: u32) -> Vec<u8> {
    (0..4000u32).map(|i| format!("value_{i} = {}\n", (i * 7919 + seed) % 9973)).collect::<String>().into_bytes()
}

/// A previous build's output (`prev/layer` zipped into `prev/layer.zip` at another time, with its
/// output record) and a new tree: one file unchanged, one longer, one of the same size but other
/// bytes, one whose mode changed, one new.
fn previous_and_new(dir: &Path) -> (PathBuf, Vec<ZipEntry>) {
    let unchanged = module_text(1);
    let previous = dir.join("prev");
    write_tree(
        &previous.join("layer"),
        &[
            ("python/lib/same.py", &unchanged, 0o644),
            ("python/lib/longer.py", b"x = 1\n", 0o644),
            ("python/lib/same_size.py", b"aaaa", 0o644),
            ("python/bin/tool", b"#!/bin/sh\n", 0o755),
        ],
    );
    write_zip(
        tree_entries(&previous.join("layer"), "").unwrap(),
        &previous.join("layer.zip"),
        zip_mtime(None).unwrap(),
    )
    .unwrap();
    crate::layer::output_record::write(&previous, "inputs", Compression::Deflate).unwrap();
    let new = dir.join("new");
    write_tree(
        &new,
        &[
            ("python/lib/same.py", &unchanged, 0o644),
            ("python/lib/longer.py", b"x = 1\ny = 2\n", 0o644),
            ("python/lib/same_size.py", b"bbbb", 0o644),
            ("python/bin/tool", b"#!/bin/sh\n", 0o644),
            ("python/lib/new.py", &module_text(2), 0o644),
        ],
    );
    (previous, tree_entries(&new, "").unwrap())
}

#[test]
fn a_zip_reusing_the_previous_one_is_byte_identical_to_a_cold_one() {
    let dir = tempfile::tempdir().unwrap();
    let (previous, entries) = previous_and_new(dir.path());
    let mtime = zip_mtime(Some(1_700_000_000)).unwrap();
    let cold = dir.path().join("cold.zip");
    write_zip(entries.clone(), &cold, mtime).unwrap();

    let warm = dir.path().join("warm.zip");
    let vouched = PreviousZip::open(&previous, "layer.zip", Compression::Deflate)
        .expect("the record vouches for the previous zip");
    let reused = write_zip_reusing(entries, &warm, mtime, DEFLATE_LEVEL, Some(vouched)).unwrap();
    assert_eq!(reused, Reused { entries: 1, bytes: module_text(1).len() as u64 });
    assert_eq!(fs::read(&warm).unwrap(), fs::read(&cold).unwrap(), "the warm zip differs from the cold one");
}

#[test]
fn a_damaged_or_foreign_previous_zip_is_never_copied_from() {
    let dir = tempfile::tempdir().unwrap();
    let (previous, entries) = previous_and_new(dir.path());
    let mtime = zip_mtime(None).unwrap();
    let cold = dir.path().join("cold.zip");
    write_zip(entries.clone(), &cold, mtime).unwrap();
    let zip = previous.join("layer.zip");

    // Flip one byte in the middle of same.py's compressed data.
    let mut bytes = fs::read(&zip).unwrap();
    let at = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
        let entry = archive.by_name("python/lib/same.py").unwrap();
        (entry.data_start().unwrap() + entry.compressed_size() / 2) as usize
    };
    bytes[at] ^= 0x55;
    fs::write(&zip, &bytes).unwrap();
    // Edited after the record: not vouched for, not even opened.
    assert!(PreviousZip::open(&previous, "layer.zip", Compression::Deflate).is_none());

    // Recorded again (as if the damage happened before the record was written): the entry's data
    // no longer inflates to the new bytes (or fails its CRC), so it is deflated again.
    crate::layer::output_record::write(&previous, "inputs", Compression::Deflate).unwrap();
    let vouched = PreviousZip::open(&previous, "layer.zip", Compression::Deflate).expect("vouched for again");
    let warm = dir.path().join("warm.zip");
    let reused = write_zip_reusing(entries.clone(), &warm, mtime, DEFLATE_LEVEL, Some(vouched)).unwrap();
    assert_eq!(reused, Reused::default());
    assert_eq!(fs::read(&warm).unwrap(), fs::read(&cold).unwrap(), "a damaged previous zip changed the output");

    // A zip another tool wrote in its place (here: stored instead of deflated) is not copied from.
    let mut foreign = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
    foreign
        .start_file("python/lib/same.py", SimpleFileOptions::default().compression_method(CompressionMethod::Stored))
        .unwrap();
    foreign.write_all(&module_text(1)).unwrap();
    foreign.finish().unwrap();
    crate::layer::output_record::write(&previous, "inputs", Compression::Deflate).unwrap();
    let vouched = PreviousZip::open(&previous, "layer.zip", Compression::Deflate).expect("vouched for again");
    let reused = write_zip_reusing(entries, &warm, mtime, DEFLATE_LEVEL, Some(vouched)).unwrap();
    assert_eq!(reused, Reused::default());
    assert_eq!(fs::read(&warm).unwrap(), fs::read(&cold).unwrap());
}

#[test]
fn zopfli_writes_smaller_plain_deflate_and_is_never_mixed_with_level_9() {
    let dir = tempfile::tempdir().unwrap();
    let (previous, entries) = previous_and_new(dir.path());
    let mtime = zip_mtime(None).unwrap();
    let (level9, zopfli) = (dir.path().join("level9.zip"), dir.path().join("zopfli.zip"));
    write_zip(entries.clone(), &level9, mtime).unwrap();
    write_zip_reusing(entries, &zopfli, mtime, Compression::Zopfli.zip_level(), None).unwrap();
    let size = |path: &Path| fs::metadata(path).unwrap().len();
    assert!(size(&zopfli) < size(&level9), "zopfli {} >= level 9 {}", size(&zopfli), size(&level9));
    let mut archive = zip::ZipArchive::new(fs::File::open(&zopfli).unwrap()).unwrap();
    let mut entry = archive.by_name("python/lib/new.py").unwrap();
    assert_eq!(entry.compression(), CompressionMethod::Deflated);
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
    assert_eq!(content, module_text(2));
    // The previous zip was deflated at level 9: a zopfli build does not copy from it.
    assert!(PreviousZip::open(&previous, "layer.zip", Compression::Zopfli).is_none());
    assert!(PreviousZip::open(&previous, "layer.zip", Compression::Deflate).is_some());
}
