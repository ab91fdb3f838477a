//! SHA-256 for everything the workflow hashes in bulk: cache blobs, installed files (RECORD),
//! bytecode cache keys, the runtime stamp and the output record.
//!
//! Hashing is the largest CPU cost of a rebuild (about half of a `layer --force`'s user time, in
//! `perf`), and the development machines have no SHA extensions. `ring`'s assembly, already linked
//! for TLS, hashes 1.4–1.7× faster there than `sha2`'s portable code (docs/architecture.md §14).
//! `sha2` stays where a `Digest` implementation is needed (HMAC in `verify/sigv4.rs`).

/// An incremental SHA-256.
pub(crate) struct Sha256(ring::digest::Context);

impl Sha256 {
    pub(crate) fn new() -> Sha256 {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    pub(crate) fn update(&mut self, bytes: impl AsRef<[u8]>) {
        self.0.update(bytes.as_ref());
    }

    pub(crate) fn finalize(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }

    /// The digest of `bytes` in one call.
    pub(crate) fn digest(bytes: impl AsRef<[u8]>) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::Sha256;

    /// FIPS 180-4 examples, and agreement with `sha2` across update boundaries.
    #[test]
    fn known_digests_and_incremental_updates() {
        assert_eq!(
            hex::encode(Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut split = Sha256::new();
        for chunk in data.chunks(4093) {
            split.update(chunk);
        }
        use sha2::Digest;
        assert_eq!(split.finalize()[..], sha2::Sha256::digest(&data)[..]);
    }
}
