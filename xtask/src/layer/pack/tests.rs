//! Unit tests of `layer::pack`.

use super::*;

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
