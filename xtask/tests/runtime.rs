//! End-to-end tests of the runtime step of `cargo xtask layer`: the real binary, a PBS-shaped
//! archive built from the host CPython, served from 127.0.0.1 where a download is involved.

use xtask::archive::Compression;
use xtask::testing::pbs_fixture;

#[test]
fn fixture_builds() {
    let started = std::time::Instant::now();
    let fixture = pbs_fixture::pbs_install_only(Compression::Gzip).unwrap();
    eprintln!("{fixture:?} in {:?}", started.elapsed());
}
