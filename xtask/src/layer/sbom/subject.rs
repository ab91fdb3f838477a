//! The SBOM's subject: the layer zip it describes, named by its sha256 in
//! `metadata.component.hashes` (CycloneDX 1.5, <https://cyclonedx.org/docs/1.5/json/#metadata_component_hashes>).
//!
//! The SBOM is written while the installed files are still on disk, before the zip exists; once
//! the zip is packed, [`record`] adds its hash. `deploy` and the deploy workflow compare the zip
//! they upload with [`read`].

use std::path::Path;

use anyhow::{Context, Result, bail};
use cyclonedx_bom::models::bom::Bom;
use cyclonedx_bom::models::hash::HashAlgorithm;

use crate::cache::Sha256Hex;

/// Add the sha256 of `zip` to the SBOM at `sbom_path` as its subject's hash (temp file + rename).
pub fn record(sbom_path: &Path, zip: &Path) -> Result<()> {
    let sha256 = crate::cache::sha256_file(zip)?;
    let mut bom = parse(sbom_path)?;
    let metadata =
        bom.metadata.as_mut().with_context(|| format!("{}: the SBOM has no metadata", sbom_path.display()))?;
    let component = metadata
        .component
        .as_mut()
        .with_context(|| format!("{}: the SBOM has no metadata.component (the layer)", sbom_path.display()))?;
    component.hashes = Some(super::sha256_hashes(&sha256));
    let mut bytes = Vec::new();
    bom.output_as_json_v1_5(&mut bytes).context("serialising the SBOM")?;
    bytes.push(b'\n');
    crate::files::write_atomically(sbom_path, &bytes)
}

/// The sha256 the SBOM at `sbom_path` names as its subject's hash.
pub fn read(sbom_path: &Path) -> Result<Sha256Hex> {
    let bom = parse(sbom_path)?;
    let hashes = bom.metadata.and_then(|metadata| metadata.component).and_then(|component| component.hashes);
    let sha256: Vec<String> = hashes
        .map(|hashes| {
            hashes.0.into_iter().filter(|hash| hash.alg == HashAlgorithm::SHA_256).map(|h| h.content.0).collect()
        })
        .unwrap_or_default();
    match sha256.as_slice() {
        [one] => Sha256Hex::parse(one)
            .with_context(|| format!("{}: metadata.component.hashes holds {one:?}, not a sha256", sbom_path.display())),
        [] => bail!(
            "{}: the SBOM names no SHA-256 for its subject (metadata.component.hashes); it was made by an older \
             build: run `cargo xtask layer` again",
            sbom_path.display()
        ),
        _ => bail!(
            "{}: metadata.component.hashes holds {} SHA-256 values, expected one",
            sbom_path.display(),
            sha256.len()
        ),
    }
}

fn parse(sbom_path: &Path) -> Result<Bom> {
    let file = fs_err::File::open(sbom_path).context("reading the SBOM")?;
    Bom::parse_from_json_v1_5(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}: not a CycloneDX 1.5 SBOM: {e}", sbom_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "metadata": {"component": {"type": "application", "bom-ref": "layer", "name": "python-litellm-arm64"}}}"#;

    #[test]
    fn the_subject_hash_is_the_zips_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (sbom, zip) = (dir.path().join("layer.cdx.json"), dir.path().join("layer.zip"));
        fs_err::write(&sbom, MINIMAL).unwrap();
        fs_err::write(&zip, b"PK not really a zip").unwrap();
        let err = format!("{:#}", read(&sbom).unwrap_err());
        assert_eq!(
            err,
            format!(
                "{}: the SBOM names no SHA-256 for its subject (metadata.component.hashes); it was made by an older \
                 build: run `cargo xtask layer` again",
                sbom.display()
            )
        );
        record(&sbom, &zip).unwrap();
        assert_eq!(read(&sbom).unwrap(), crate::cache::sha256_bytes(b"PK not really a zip"));
        let names: Vec<_> = fs_err::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "a temporary file was left behind: {names:?}");
    }

    #[test]
    fn a_file_that_is_not_an_sbom_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sbom = dir.path().join("layer.cdx.json");
        fs_err::write(&sbom, "{}").unwrap();
        let err = format!("{:#}", read(&sbom).unwrap_err());
        assert!(err.starts_with(&format!("{}: not a CycloneDX 1.5 SBOM: ", sbom.display())), "{err}");
    }
}
