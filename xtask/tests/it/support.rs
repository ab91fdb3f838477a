//! Test support, never part of the product: fixture interpreters and archives, the arm64 sysroot,
//! a moto server, a fixture package index.
//!
//! The loopback HTTP server itself is product code (`verify` runs its OpenAI-compatible server on
//! it) and is re-exported here for the tests.

pub mod arm64_sysroot;
pub mod lock_fixture;
pub mod moto;
pub mod pbs_fixture;
// Some writers (zstd, bombs, device entries) are used only by the unit tests of `src/archive.rs`.
#[allow(dead_code)]
pub mod tar_bytes;

pub use xtask::verify::loopback::{Reply, Request, TestServer};
