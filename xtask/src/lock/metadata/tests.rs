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
