//! The CycloneDX 1.5 SBOM of what the layer ships (issue 5).
