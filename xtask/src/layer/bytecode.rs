//! Byte-compile the stdlib and packages with unchecked-hash invalidation for a read-only /opt.
