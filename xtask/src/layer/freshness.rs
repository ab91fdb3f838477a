//! Is the built layer stale? A digest of the layer's inputs, written as a stamp by a successful build.
//!
//! The inputs are `layer.toml`, the lock beside it (`pylock.toml`), the pinned python-build-standalone
//! manifest, the target architecture and this tool's version. The layer build calls [`write_stamp`]
//! with [`layer_inputs_digest`] when it finishes; `deploy` compares the two with [`layer_freshness`]
//! and rebuilds when they differ, when the stamp is missing or unreadable, or when the zip is gone.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::sha256::Sha256;

/// The stamp's file name inside `layer-build-<arch>/`.
pub(crate) const STAMP_FILE: &str = "build-inputs.json";

/// The lock's file name; it sits beside the spec.
const LOCK_FILE: &str = "pylock.toml";

/// What the stamp holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    /// The stamp format; bumped when the digest's recipe changes.
    schema: u32,
    /// [`layer_inputs_digest`] at build time.
    digest: String,
    /// The xtask version that built the layer (informational; it is part of the digest too).
    xtask_version: String,
}

const STAMP_SCHEMA: u32 = 1;

/// The sha256 (hex) of everything a built layer depends on.
///
/// `spec_path` is taken relative to `root` unless it is absolute; the lock is `pylock.toml` beside it.
/// Each part is fed to the hash as its name, its length and its bytes, so no two different sets of
/// inputs can run together into the same byte stream.
pub fn layer_inputs_digest(root: &Path, spec_path: &Path, arch: Arch) -> Result<String> {
    let spec_path = root.join(spec_path);
    let lock_path = spec_path.with_file_name(LOCK_FILE);
    let spec = fs_err::read(&spec_path).context("reading the layer spec to decide whether the layer is stale")?;
    let lock = fs_err::read(&lock_path).map_err(|e| {
        anyhow::anyhow!(
            "{e}; the layer is built from the lock: run `cargo xtask lock` to create {}",
            lock_path.display()
        )
    })?;
    // The import profile decides which modules get bytecode (layer/profile.rs); absent is empty.
    let profile = fs_err::read(crate::layer::profile::profile_path(&lock_path)).unwrap_or_default();
    Ok(digest_of_parts(&[
        ("layer.toml", &spec),
        ("pylock.toml", &lock),
        ("import-profile.toml", &profile),
        ("pbs-manifest.json", crate::manifest::MANIFEST_JSON.as_bytes()),
        ("arch", arch.lambda_name().as_bytes()),
        ("xtask-version", env!("CARGO_PKG_VERSION").as_bytes()),
    ]))
}

fn digest_of_parts(parts: &[(&str, &[u8])]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"litellm-layer build inputs v1\n");
    for (name, bytes) in parts {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex::encode(hasher.finalize())
}

/// Record that `out_dir` was built from inputs with this digest (temp file + rename).
pub fn write_stamp(out_dir: &Path, digest: &str) -> Result<()> {
    let stamp = Stamp {
        schema: STAMP_SCHEMA,
        digest: digest.to_string(),
        xtask_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let mut text = serde_json::to_string_pretty(&stamp).context("serialising the build stamp")?;
    text.push('\n');
    crate::files::write_atomically(&out_dir.join(STAMP_FILE), text.as_bytes())
}

/// Whether a built layer matches its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The stamp matches and the zip is there.
    Fresh,
    /// The layer must be rebuilt, for this reason.
    Stale(StaleReason),
}

/// Why a layer is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// No `build-inputs.json`: never built, or the build did not finish.
    NoStamp(PathBuf),
    /// The stamp is there but the layer zip is not.
    NoZip(PathBuf),
    /// The stamp cannot be read or parsed.
    BadStamp { path: PathBuf, problem: String },
    /// An input changed since the build.
    InputsChanged,
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaleReason::NoStamp(path) => {
                write!(f, "no build stamp at {} (never built, or the build failed)", path.display())
            }
            StaleReason::NoZip(path) => write!(f, "the layer zip {} is missing", path.display()),
            StaleReason::BadStamp { path, problem } => {
                write!(f, "the build stamp {} is unreadable: {problem}", path.display())
            }
            StaleReason::InputsChanged => f.write_str(
                "its inputs changed since the last build (layer.toml, pylock.toml, the python-build-standalone pins, \
                 the architecture or the xtask version)",
            ),
        }
    }
}

/// Compare the stamp in `out_dir` with `digest`, and check the layer zip is there.
pub fn layer_freshness(out_dir: &Path, arch: Arch, digest: &str) -> Freshness {
    let stamp_path = out_dir.join(STAMP_FILE);
    let text = match fs_err::read_to_string(&stamp_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Freshness::Stale(StaleReason::NoStamp(stamp_path));
        }
        Err(e) => return Freshness::Stale(StaleReason::BadStamp { path: stamp_path, problem: e.to_string() }),
    };
    let stamp: Stamp = match serde_json::from_str(&text) {
        Ok(stamp) => stamp,
        Err(e) => return Freshness::Stale(StaleReason::BadStamp { path: stamp_path, problem: e.to_string() }),
    };
    let zip = out_dir.join(arch.layer_zip_name());
    if !zip.is_file() {
        return Freshness::Stale(StaleReason::NoZip(zip));
    }
    if stamp.schema != STAMP_SCHEMA || stamp.digest != digest {
        return Freshness::Stale(StaleReason::InputsChanged);
    }
    Freshness::Fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "[python]\nversion = \"3.11\"\n";

    /// A repository with a spec and a lock, and a built layer dir with a zip.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("litellm-layer")).unwrap();
        fs_err::write(dir.path().join("litellm-layer/layer.toml"), SPEC).unwrap();
        fs_err::write(dir.path().join("litellm-layer/pylock.toml"), "lock-version = \"1.0\"\n").unwrap();
        fs_err::create_dir_all(dir.path().join("layer-build-arm64")).unwrap();
        fs_err::write(dir.path().join("layer-build-arm64/python-litellm-arm64.zip"), b"PK").unwrap();
        dir
    }

    fn digest(root: &Path, arch: Arch) -> String {
        layer_inputs_digest(root, Path::new("litellm-layer/layer.toml"), arch).unwrap()
    }

    #[test]
    fn fresh_stamp_means_no_rebuild() {
        let repo = repo();
        let out = repo.path().join("layer-build-arm64");
        write_stamp(&out, &digest(repo.path(), Arch::Arm64)).unwrap();
        assert_eq!(layer_freshness(&out, Arch::Arm64, &digest(repo.path(), Arch::Arm64)), Freshness::Fresh);
        let text = fs_err::read_to_string(out.join(STAMP_FILE)).unwrap();
        assert!(text.contains("\"schema\": 1"), "{text}");
    }

    #[test]
    fn a_changed_spec_or_lock_or_arch_makes_it_stale() {
        let repo = repo();
        let out = repo.path().join("layer-build-arm64");
        let before = digest(repo.path(), Arch::Arm64);
        write_stamp(&out, &before).unwrap();

        fs_err::write(repo.path().join("litellm-layer/layer.toml"), format!("{SPEC}# a comment\n")).unwrap();
        let after_spec = digest(repo.path(), Arch::Arm64);
        assert_ne!(before, after_spec);
        assert_eq!(layer_freshness(&out, Arch::Arm64, &after_spec), Freshness::Stale(StaleReason::InputsChanged));

        fs_err::write(repo.path().join("litellm-layer/pylock.toml"), "lock-version = \"1.0\"\n# edited\n").unwrap();
        assert_ne!(after_spec, digest(repo.path(), Arch::Arm64));

        assert_ne!(digest(repo.path(), Arch::Arm64), digest(repo.path(), Arch::X86_64));
    }

    #[test]
    fn parts_cannot_run_together() {
        assert_ne!(digest_of_parts(&[("a", b"bc"), ("d", b"")]), digest_of_parts(&[("a", b"b"), ("d", b"c")]));
    }

    #[test]
    fn missing_stamp_zip_or_garbage_stamp_is_stale() {
        let repo = repo();
        let out = repo.path().join("layer-build-arm64");
        let digest = digest(repo.path(), Arch::Arm64);
        assert!(matches!(layer_freshness(&out, Arch::Arm64, &digest), Freshness::Stale(StaleReason::NoStamp(_))));

        fs_err::write(out.join(STAMP_FILE), "{not json").unwrap();
        let Freshness::Stale(reason) = layer_freshness(&out, Arch::Arm64, &digest) else { panic!("fresh") };
        assert!(
            reason.to_string().starts_with("the build stamp ") && reason.to_string().contains("unreadable"),
            "{reason}"
        );

        write_stamp(&out, &digest).unwrap();
        fs_err::remove_file(out.join("python-litellm-arm64.zip")).unwrap();
        let Freshness::Stale(reason) = layer_freshness(&out, Arch::Arm64, &digest) else { panic!("fresh") };
        assert!(reason.to_string().contains("python-litellm-arm64.zip is missing"), "{reason}");
    }

    #[test]
    fn missing_lock_says_how_to_create_it() {
        let repo = repo();
        fs_err::remove_file(repo.path().join("litellm-layer/pylock.toml")).unwrap();
        let err = layer_inputs_digest(repo.path(), Path::new("litellm-layer/layer.toml"), Arch::Arm64).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("pylock.toml") && message.contains("run `cargo xtask lock`"), "{message}");
    }
}
