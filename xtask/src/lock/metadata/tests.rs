//! Unit tests of `lock::metadata`.

use super::*;
use std::io::Write;

fn wheel_bytes(metadata: &str, deflate: bool) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    zip.start_file("demo/__init__.py", options).unwrap();
    zip.write_all(&vec![b'#'; 100_000]).unwrap();
    zip.start_file("demo-1.0.dist-info/METADATA", options).unwrap();
    zip.write_all(metadata.as_bytes()).unwrap();
    zip.start_file("demo-1.0.dist-info/RECORD", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn reads_metadata_through_range_requests_stored_and_deflated() {
    let metadata = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: idna\n";
    for deflate in [false, true] {
        let bytes = wheel_bytes(metadata, deflate);
        let server = crate::verify::loopback::TestServer::start(move |request| {
            crate::verify::loopback::Reply::file(request, "application/octet-stream", &bytes)
        });
        let http = Http::new().unwrap();
        let url = server.url("/demo-1.0-py3-none-any.whl");
        let mut zip = RangeZip { http: &http, url: &url, tail: Vec::new(), tail_start: 0, total: 0 };
        assert!(matches!(zip.fetch_tail().unwrap(), Tail::Ranged));
        assert_eq!(zip.metadata_member().unwrap(), metadata);
        assert!(server.requests().iter().all(|r| r.header("range").is_some()), "only range requests");
    }
}

#[test]
fn cached_metadata_is_used_only_when_its_hash_proves_it() {
    let metadata = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: idna\n";
    let bytes = wheel_bytes(metadata, true);
    let wheel_sha256 = sha256_bytes(&bytes);
    let server = crate::verify::loopback::TestServer::start(move |request| {
        crate::verify::loopback::Reply::file(request, "application/octet-stream", &bytes)
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::at(dir.path().join("cache"));
    let reader = MetadataReader::new(Http::new().unwrap(), &cache).unwrap();
    let mut file = ProjectFile {
        filename: "demo-1.0-py3-none-any.whl".into(),
        url: server.url("/demo-1.0-py3-none-any.whl"),
        sha256: Some(wheel_sha256.clone()),
        requires_python: None,
        yanked: false,
        yanked_reason: None,
        size: None,
        upload_time: None,
        core_metadata: None,
    };
    let (first, source) = reader.read(&file).unwrap();
    assert_eq!(source, MetadataSource::Ranges);
    assert_eq!(first.requires_dist, ["idna"]);
    assert_eq!(reader.read(&file).unwrap().1, MetadataSource::Cache);

    // An edited entry (another dependency, the stored hash left as it was) is not used: it is
    // removed and the metadata read again.
    let cache_file = dir.path().join(format!("cache/metadata/{wheel_sha256}.json"));
    let edited = fs_err::read_to_string(&cache_file).unwrap().replace("idna", "evil");
    fs_err::write(&cache_file, &edited).unwrap();
    let (again, source) = reader.read(&file).unwrap();
    assert_eq!((again.requires_dist.as_slice(), source), (["idna".to_string()].as_slice(), MetadataSource::Ranges));
    assert!(!fs_err::read_to_string(&cache_file).unwrap().contains("evil"), "the bad entry was replaced");

    // An edited entry whose hash was recomputed too is caught by the index's PEP 658 hash.
    let evil_text = metadata.replace("idna", "evil");
    let forged = CachedMetadata {
        format: CACHED_METADATA_FORMAT,
        sha256: sha256_bytes(evil_text.as_bytes()).to_string(),
        text: evil_text,
    };
    fs_err::write(&cache_file, serde_json::to_string(&forged).unwrap()).unwrap();
    file.core_metadata = Some(Some(sha256_bytes(metadata.as_bytes())));
    assert!(cached_metadata(&cache_file, &file).is_none());
    assert!(!cache_file.exists(), "the forged entry was removed");

    // An entry naming another distribution is not used either.
    let other = "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n".to_string();
    let misnamed = CachedMetadata {
        format: CACHED_METADATA_FORMAT,
        sha256: sha256_bytes(other.as_bytes()).to_string(),
        text: other,
    };
    fs_err::write(&cache_file, serde_json::to_string(&misnamed).unwrap()).unwrap();
    file.core_metadata = None;
    assert!(cached_metadata(&cache_file, &file).is_none());
}

#[test]
fn a_range_response_for_another_range_is_refused() {
    let bytes = wheel_bytes("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n", false);
    let total = bytes.len();
    // The server answers every range request with the first bytes of the file, labelled as such.
    let server = crate::verify::loopback::TestServer::start(move |_request| {
        let mut reply = crate::verify::loopback::Reply::new(206, "application/octet-stream", bytes[..1000].to_vec());
        reply.headers.push(("Content-Range".into(), format!("bytes 0-999/{total}")));
        reply
    });
    let http = Http::new().unwrap();
    let url = server.url("/demo-1.0-py3-none-any.whl");
    let mut zip = RangeZip { http: &http, url: &url, tail: Vec::new(), tail_start: 0, total: 0 };
    let err = zip.fetch_tail().err().unwrap();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "{url}: asked for the last {TAIL_BYTES} bytes, the server answered Content-Range \"bytes 0-999/{total}\"; \
                 refusing a response for another range"
        )
    );
}

#[test]
fn hostile_central_directories_are_refused() {
    let bytes = wheel_bytes("Name: demo\nVersion: 1\n", false);
    // Point the central directory offset past the end of the file.
    let mut broken = bytes.clone();
    let eocd = broken.len() - 22;
    broken[eocd + 16..eocd + 20].copy_from_slice(&u32::MAX.wrapping_sub(5).to_le_bytes());
    let zip = RangeZip {
        http: &Http::new().unwrap(),
        url: "http://127.0.0.1:9/x",
        tail: broken.clone(),
        tail_start: 0,
        total: broken.len() as u64,
    };
    let err = zip.metadata_member().unwrap_err().to_string();
    assert!(err.contains("out of bounds"), "{err}");
    let not_zip = RangeZip {
        http: &Http::new().unwrap(),
        url: "http://127.0.0.1:9/x",
        tail: vec![0; 100],
        tail_start: 0,
        total: 100,
    };
    assert!(not_zip.metadata_member().unwrap_err().to_string().contains("not a zip"));
    assert!(parse_content_range("bytes 5-2/10").is_none());
    assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, 10)));
}

/// A central directory record (APPNOTE 4.3.12) for `name`, with 32-bit fields as given and an
/// optional zip64 extra field.
fn central_record(name: &str, sizes: (u32, u32, u32), zip64: &[u64]) -> Vec<u8> {
    let extra: Vec<u8> = if zip64.is_empty() {
        Vec::new()
    } else {
        let mut extra = vec![1, 0];
        extra.extend((zip64.len() as u16 * 8).to_le_bytes());
        zip64.iter().for_each(|v| extra.extend(v.to_le_bytes()));
        extra
    };
    let mut record = 0x0201_4b50u32.to_le_bytes().to_vec();
    record.extend([20, 0, 20, 0, 0, 0, 8, 0, 0, 0, 0, 0]); // made by, needed, flags, method 8, time, date
    record.extend(0xdead_beefu32.to_le_bytes()); // crc-32
    record.extend(sizes.1.to_le_bytes()); // compressed
    record.extend(sizes.0.to_le_bytes()); // uncompressed
    record.extend((name.len() as u16).to_le_bytes());
    record.extend((extra.len() as u16).to_le_bytes());
    record.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // comment length, disk, internal, external attributes
    record.extend(sizes.2.to_le_bytes()); // local header offset
    record.extend(name.as_bytes());
    record.extend(extra);
    record
}

#[test]
fn the_metadata_entry_is_found_with_zip64_sizes_and_bad_directories_are_named() {
    let mut directory = central_record("demo/__init__.py", (10, 8, 0), &[]);
    directory.extend(central_record(
        "demo-1.dist-info/METADATA",
        (u32::MAX, 7, u32::MAX),
        &[5_000_000_000, 6_000_000_000],
    ));
    let entry = find_metadata_entry(&directory).unwrap();
    assert_eq!(entry.name, "demo-1.dist-info/METADATA");
    assert_eq!(
        (entry.uncompressed_size, entry.compressed_size, entry.local_header_offset),
        (5_000_000_000, 7, 6_000_000_000)
    );
    assert_eq!((entry.method, entry.crc32), (8, 0xdead_beef));

    let error = find_metadata_entry(&directory[..directory.len() - 3]).unwrap_err().to_string();
    let second = central_record("demo/__init__.py", (10, 8, 0), &[]).len();
    assert_eq!(error, format!("bad central directory entry at offset {second}"));

    let mut twice = directory.clone();
    twice.extend(central_record("other-1.dist-info/METADATA", (1, 1, 0), &[]));
    let error = find_metadata_entry(&twice).unwrap_err().to_string();
    assert!(error.contains("several METADATA files"), "{error}");
    assert!(
        find_metadata_entry(&central_record("x.py", (1, 1, 0), &[]))
            .unwrap_err()
            .to_string()
            .contains("no *.dist-info/METADATA")
    );
}
