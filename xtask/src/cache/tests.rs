//! Unit tests of `cache`.

use super::*;

fn quiet() -> Progress {
    Progress::new()
}

#[test]
fn sha256_hex_is_validated() {
    assert!(Sha256Hex::parse("abc").is_err());
    let upper = "A".repeat(64);
    assert_eq!(Sha256Hex::parse(&upper).unwrap().as_str(), "a".repeat(64));
    assert_eq!(Sha256Hex::parse(&format!("sha256:{}", "0".repeat(64))).unwrap().as_str(), "0".repeat(64));
}

#[test]
fn local_file_is_verified_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    let file = dir.path().join("thing.bin");
    fs_err::write(&file, b"hello").unwrap();
    let sha = sha256_bytes(b"hello");
    let http = Http::new().unwrap();
    let (path, how) = cache.fetch(&http, &Source::Path(file.clone()), &sha, "thing", &quiet()).unwrap();
    assert_eq!(how, Fetched::Downloaded);
    assert_eq!(fs_err::read(&path).unwrap(), b"hello");
    let (_, how) = cache.fetch(&http, &Source::Path(file), &sha, "thing", &quiet()).unwrap();
    assert_eq!(how, Fetched::Cached);
}

#[test]
fn mismatch_prints_both_hashes_and_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    let file = dir.path().join("thing.bin");
    fs_err::write(&file, b"hello").unwrap();
    let wrong = Sha256Hex::parse(&"1".repeat(64)).unwrap();
    let err = cache.fetch(&Http::new().unwrap(), &Source::Path(file), &wrong, "thing", &quiet()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&format!("expected {}", "1".repeat(64))), "{msg}");
    assert!(msg.contains(&format!("computed {}", sha256_bytes(b"hello"))), "{msg}");
    let leftovers: Vec<_> = walkdir::WalkDir::new(cache.root())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(leftovers.is_empty(), "cache holds {leftovers:?}");
}

#[test]
fn a_held_lock_makes_the_next_run_wait_then_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".out.lock");
    let held = RunLock::acquire(&path, LockKind::Exclusive, "building out", Duration::from_secs(1), &quiet()).unwrap();
    let started = std::time::Instant::now();
    let err = RunLock::acquire(&path, LockKind::Exclusive, "second", Duration::from_secs(1), &quiet()).unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    assert_eq!(
        format!("{err:#}"),
        format!(
            "timed out after 1s waiting for {} (held by pid {} (building out)); wait for that run to finish, or \
                 stop it if it hung (XTASK_LOCK_TIMEOUT sets the wait in seconds)",
            path.display(),
            std::process::id()
        )
    );
    drop(held);
    RunLock::acquire(&path, LockKind::Exclusive, "third", Duration::from_secs(1), &quiet()).unwrap();
    // Only the lock file is there.
    let names: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [".out.lock"]);
}

#[test]
fn leftovers_of_killed_runs_are_removed_when_no_other_run_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    let tmp = cache.subdir("tmp").unwrap();
    let interpreters = cache.subdir("interpreters").unwrap();
    // Another run is active: nothing is touched.
    let other = cache.lock_for_run("other", Duration::from_secs(1), &quiet()).unwrap();
    fs_err::write(tmp.join(".tmpKILLED"), b"half a wheel").unwrap();
    fs_err::create_dir_all(interpreters.join(".extract-KILLED/python")).unwrap();
    fs_err::create_dir_all(interpreters.join("0123/python")).unwrap();
    let mine = cache.lock_for_run("mine", Duration::from_secs(1), &quiet()).unwrap();
    assert!(tmp.join(".tmpKILLED").exists());
    drop((other, mine));

    // Alone: the leftovers go, finished interpreters stay.
    let _lock = cache.lock_for_run("mine", Duration::from_secs(1), &quiet()).unwrap();
    assert_eq!(fs_err::read_dir(&tmp).unwrap().count(), 0);
    let names: Vec<_> = fs_err::read_dir(&interpreters).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["0123"]);
}

#[test]
fn symlinked_cache_directories_are_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    fs_err::create_dir_all(cache.root().join("sha256")).unwrap();
    let sha = sha256_bytes(b"payload");
    let link = cache.root().join("sha256").join(&sha.as_str()[..2]);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let err = cache.insert_bytes(b"payload").unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "{} is a symlink; the cache never writes through symlinks (one could send writes anywhere): remove it \
                 and run again",
            link.display()
        )
    );
    std::os::unix::fs::symlink(&outside, cache.root().join("metadata")).unwrap();
    assert!(format!("{:#}", cache.subdir("metadata").unwrap_err()).contains("is a symlink"));
    assert_eq!(fs_err::read_dir(&outside).unwrap().count(), 0, "nothing was written outside");
    assert_eq!(fs_err::read_dir(cache.root().join("tmp")).unwrap().count(), 0, "no temp file left");
}

#[test]
fn a_truncated_download_is_retried_from_the_start_a_bounded_number_of_times() {
    use crate::verify::loopback::{Reply, TestServer};
    let body = vec![7u8; 100_000];
    let sha = sha256_bytes(&body);
    // The first answer is cut short, the second is whole.
    let served = std::sync::atomic::AtomicUsize::new(0);
    let whole = body.clone();
    let server = TestServer::start(move |_request| {
        let mut reply = Reply::new(200, "application/octet-stream", whole.clone());
        if served.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            reply.truncate_to = Some(10_000);
        }
        reply
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    let http = Http::new().unwrap();
    let url = server.url("/blob");
    let (path, how) = cache.fetch(&http, &Source::Url(url.clone()), &sha, "blob", &quiet()).unwrap();
    assert_eq!((fs_err::read(&path).unwrap(), how), (body.clone(), Fetched::Downloaded));
    assert_eq!(server.requests().len(), 2);

    // Always cut short: three attempts, then a clear error and nothing in the cache.
    let always = body.clone();
    let server = TestServer::start(move |_request| {
        let mut reply = Reply::new(200, "application/octet-stream", always.clone());
        reply.truncate_to = Some(10_000);
        reply
    });
    let cache = Cache::at(dir.path().join("cache2"));
    let url = server.url("/blob");
    let err = cache.fetch(&http, &Source::Url(url.clone()), &sha, "blob", &quiet()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with(&format!("truncated download from {url}: ")), "{msg}");
    assert!(msg.ends_with(", 3 times; nothing was cached. Check the network or proxy and run again"), "{msg}");
    assert_eq!(server.requests().len(), 3);
    let files: Vec<_> = walkdir::WalkDir::new(cache.root())
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(files.is_empty(), "cache holds {files:?}");
}

#[test]
fn corrupt_blob_is_dropped_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path());
    let (sha, path) = cache.insert_bytes(b"payload").unwrap();
    assert_eq!(cache.get(&sha).unwrap(), Some(path.clone()));
    fs_err::write(&path, b"tampered").unwrap();
    assert_eq!(cache.get(&sha).unwrap(), None);
    assert!(!path.exists());
}

#[test]
fn many_files_are_hashed_in_order_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..37)
        .map(|i| {
            let path = dir.path().join(format!("f{i}"));
            fs_err::write(&path, vec![i as u8; i * 1000]).unwrap();
            path
        })
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let digests = sha256_files(&refs).unwrap();
    assert_eq!(digests.len(), 37);
    for (path, digest) in paths.iter().zip(&digests) {
        assert_eq!(*digest, sha256_bytes(&fs_err::read(path).unwrap()));
    }
    assert_eq!(digests[0].as_str(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    let missing = dir.path().join("not-there");
    let mut with_missing = refs.clone();
    with_missing.insert(20, &missing);
    let error = format!("{:#}", sha256_files(&with_missing).unwrap_err());
    assert!(error.contains("not-there"), "{error}");
}
