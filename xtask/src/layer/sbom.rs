//! The CycloneDX 1.5 SBOM of what the layer ships: `layer-build-<arch>/python-litellm-<arch>.cdx.json`.
//!
//! It describes the layer after pruning: the CPython interpreter (python-build-standalone archive
//! and its sha256), one component per shipped distribution (PyPI purl, the locked wheel's sha256,
//! licenses from its METADATA, the wheel URL), the dependency graph from the lock restricted to
//! what ships, and which packages were excluded or dropped. The output is deterministic: the
//! serial number is a UUID v5 of the inputs, the timestamp comes from `SOURCE_DATE_EPOCH` or the
//! lock, and everything is sorted.
//!
//! CycloneDX 1.5 JSON: <https://cyclonedx.org/docs/1.5/json/>.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use cyclonedx_bom::external_models::date_time::DateTime;
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::spdx::{SpdxExpression, SpdxIdentifier};
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences, Uri as ReferenceUri,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License, LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;
use cyclonedx_bom::validation::Validate;

use crate::arch::Arch;
use crate::cache::Sha256Hex;
use crate::http::redact_url;
use crate::layer::dist::InstalledDist;
use crate::packaging::pylock::{LockedPackage, Pylock};
use crate::source_date::{SourceDateEpoch, rfc3339, toml_datetime_seconds};

/// Prefix of this tool's CycloneDX property names
/// (<https://cyclonedx.org/docs/1.5/json/#properties> recommends a namespace).
const PROPERTY_PREFIX: &str = "litellm-layer";

/// Timestamp when neither `SOURCE_DATE_EPOCH` nor the lock gives one (the zip epoch).
const FALLBACK_TIMESTAMP: i64 = 315_532_800; // 1980-01-01T00:00:00Z

/// The interpreter the layer ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpythonInfo {
    /// Full version, e.g. "3.11.14".
    pub version: String,
    /// Where the python-build-standalone archive was downloaded from (redacted before writing).
    pub url: String,
    /// The archive's sha256.
    pub sha256: String,
}

/// Where to read each shipped distribution's `METADATA` from.
#[derive(Debug, Clone, Copy)]
pub enum MetadataSource<'a> {
    /// site-packages directories holding `<dist-info>/METADATA`, searched in order.
    SitePackages(&'a [PathBuf]),
}

/// Everything the SBOM is made from.
#[derive(Debug, Clone, Copy)]
pub struct SbomInput<'a> {
    pub arch: Arch,
    pub cpython: &'a CpythonInfo,
    pub lock: &'a Pylock,
    /// What ships, after pruning.
    pub dists: &'a [InstalledDist],
    pub metadata: MetadataSource<'a>,
    /// Distributions installed and then deleted (`prune.drop-packages`), normalized names.
    pub dropped: &'a [String],
    pub source_date_epoch: SourceDateEpoch,
}

/// The SBOM's file name for an architecture.
pub fn sbom_file_name(arch: Arch) -> String {
    format!("python-litellm-{}.cdx.json", arch.lambda_name())
}

/// Build, validate and write the SBOM to `path` (temp file + rename).
pub fn write_sbom(input: &SbomInput, path: &Path) -> Result<()> {
    let json = sbom_json(input).with_context(|| format!("writing the SBOM {}", path.display()))?;
    crate::files::write_atomically(path, json.as_bytes())
}

/// The SBOM as CycloneDX 1.5 JSON text (pretty-printed, with a final line break).
pub fn sbom_json(input: &SbomInput) -> Result<String> {
    let bom = build_bom(input)?;
    let result = bom.validate();
    if result.has_errors() {
        bail!("the SBOM does not validate as CycloneDX 1.5: {:?}", result.errors().collect::<Vec<_>>());
    }
    let mut bytes = Vec::new();
    bom.output_as_json_v1_5(&mut bytes).context("serialising the SBOM")?;
    bytes.push(b'\n');
    String::from_utf8(bytes).context("the SBOM is not UTF-8")
}

/// The SBOM as a `Bom`, before validation.
pub fn build_bom(input: &SbomInput) -> Result<Bom> {
    let arch = input.arch.lambda_name();
    let lock = input.lock;

    // One component per shipped distribution, checked against the lock.
    let mut shipped: BTreeMap<String, ShippedDist> = BTreeMap::new();
    for dist in input.dists {
        let name = normalize(&dist.name)?;
        let package = lock.packages.iter().find(|p| normalize_lossy(&p.name) == name && p.version == dist.version);
        let Some(package) = package else {
            bail!(
                "installed distribution {} {} is not in the lock; rebuild the layer from the lock",
                dist.name,
                dist.version
            );
        };
        let Some(wheel) = package.wheels.iter().find(|w| w.name == dist.wheel_name) else {
            bail!(
                "installed distribution {} {}: wheel {} is not in the lock",
                dist.name,
                dist.version,
                dist.wheel_name
            );
        };
        let locked_sha256 = Sha256Hex::parse(&wheel.hashes.sha256)
            .with_context(|| format!("lock: package {} wheel {}", package.name, wheel.name))?;
        let installed_sha256 = Sha256Hex::parse(&dist.wheel_sha256)
            .with_context(|| format!("installed distribution {} {}", dist.name, dist.version))?;
        if locked_sha256 != installed_sha256 {
            bail!(
                "installed distribution {} {} came from a wheel with sha256 {} but the lock says {}; rebuild the layer",
                dist.name,
                dist.version,
                installed_sha256.as_str(),
                locked_sha256.as_str()
            );
        }
        let metadata_text = read_metadata(input.metadata, dist)?;
        let metadata = CoreMetadata::parse(&metadata_text);
        let display_name = metadata.first("Name").unwrap_or(&dist.name).to_string();
        if normalize_lossy(&display_name) != name {
            bail!("{}/METADATA names the distribution {display_name:?}, expected {}", dist.dist_info, dist.name);
        }
        if shipped.contains_key(&name) {
            bail!("distribution {name} is installed twice");
        }
        shipped.insert(
            name.clone(),
            ShippedDist {
                display_name,
                version: dist.version.clone(),
                wheel_name: wheel.name.clone(),
                sha256: locked_sha256,
                url: redact_url(&wheel.url),
                licenses: licenses_from_metadata(&metadata),
                package,
            },
        );
    }

    let cpython_sha256 = Sha256Hex::parse(&input.cpython.sha256).context("the CPython archive's sha256")?;
    let cpython_ref = format!("cpython@{}", input.cpython.version);
    let layer_ref = format!("python-litellm-{arch}");

    let mut components: Vec<Component> = Vec::new();
    let mut cpython =
        Component::new(Classification::Framework, "cpython", &input.cpython.version, Some(cpython_ref.clone()));
    cpython.description =
        Some(NormalizedString::new(&format!("CPython from python-build-standalone ({})", input.cpython.version)));
    cpython.purl = Some(purl("generic", "cpython", &input.cpython.version)?);
    cpython.hashes = Some(sha256_hashes(&cpython_sha256));
    cpython.external_references = Some(distribution_reference(&redact_url(&input.cpython.url)));
    components.push(cpython);

    for (name, dist) in &shipped {
        let purl = purl("pypi", name, &dist.version)?;
        let bom_ref = purl.to_string();
        let mut component = Component::new(Classification::Library, &dist.display_name, &dist.version, Some(bom_ref));
        component.purl = Some(purl);
        component.hashes = Some(sha256_hashes(&dist.sha256));
        if !dist.licenses.is_empty() {
            component.licenses = Some(Licenses(dist.licenses.clone()));
        }
        component.external_references = Some(distribution_reference(&dist.url));
        component.properties = Some(Properties(vec![property("wheel", &dist.wheel_name)]));
        components.push(component);
    }
    components.sort_by(|a, b| a.bom_ref.cmp(&b.bom_ref));

    // The dependency graph from the lock, restricted to what ships: an edge to a package that was
    // excluded, dropped or is for another platform is left out, so no reference dangles.
    let ref_of = |name: &str| shipped.get(name).map(|d| purl_string(name, &d.version));
    let mut dependencies: Vec<Dependency> = Vec::new();
    for (name, dist) in &shipped {
        let mut depends_on: BTreeSet<String> = BTreeSet::new();
        for dependency in &dist.package.dependencies {
            if let Some(target) = ref_of(&normalize_lossy(&dependency.name)) {
                depends_on.insert(target);
            }
        }
        dependencies.push(Dependency {
            dependency_ref: purl_string(name, &dist.version),
            dependencies: depends_on.into_iter().collect(),
        });
    }
    dependencies.push(Dependency { dependency_ref: cpython_ref.clone(), dependencies: Vec::new() });
    let mut layer_depends_on: BTreeSet<String> =
        top_level_names(lock, &shipped).iter().filter_map(|name| ref_of(name)).collect();
    layer_depends_on.insert(cpython_ref.clone());
    dependencies
        .push(Dependency { dependency_ref: layer_ref.clone(), dependencies: layer_depends_on.into_iter().collect() });
    dependencies.sort_by(|a, b| a.dependency_ref.cmp(&b.dependency_ref));

    // What does not ship, and why.
    let mut properties = vec![property("arch", arch)];
    if let Some(inputs) = lock.inputs() {
        properties.push(property("index-url", &redact_url(&inputs.index_url)));
        for requirement in &inputs.requirements {
            properties.push(property("requirement", requirement));
        }
        let mut excluded: Vec<String> = inputs.exclude.iter().map(|n| normalize_lossy(n)).collect();
        excluded.sort();
        excluded.dedup();
        for name in excluded {
            properties.push(property("excluded-package", &name));
        }
    }
    let mut dropped: Vec<String> = input.dropped.iter().map(|n| normalize_lossy(n)).collect();
    dropped.sort();
    dropped.dedup();
    for name in &dropped {
        if shipped.contains_key(name) {
            bail!("distribution {name} is listed as dropped but still ships");
        }
        properties.push(property("dropped-package", name));
    }
    let mut pruned: Vec<String> = lock
        .packages
        .iter()
        .filter(|p| p.wheels.iter().any(|w| wheel_fits(&w.name, input.arch)))
        .map(|p| normalize_lossy(&p.name))
        .filter(|name| !shipped.contains_key(name) && !dropped.contains(name))
        .collect();
    pruned.sort();
    pruned.dedup();
    for name in pruned {
        properties.push(property("locked-not-shipped", &name));
    }

    let timestamp = timestamp(input)?;
    let mut layer = Component::new(Classification::Application, &layer_ref, "", Some(layer_ref.clone()));
    layer.version = None;
    layer.description =
        Some(NormalizedString::new(&format!("AWS Lambda layer with CPython and LiteLLM for nodejs22.x on {arch}")));
    let mut tool = Component::new(Classification::Application, "xtask", env!("CARGO_PKG_VERSION"), None);
    tool.description = Some(NormalizedString::new("cargo xtask layer (litellm-layer workflow)"));

    let serial = serial_number(input, &components, &dependencies, &properties, &timestamp);
    Ok(Bom {
        version: 1,
        serial_number: Some(UrnUuid::from(serial)),
        metadata: Some(Metadata {
            timestamp: Some(DateTime::try_from(timestamp).context("SBOM timestamp")?),
            tools: Some(Tools::Object { services: None, components: Some(Components(vec![tool])) }),
            authors: None,
            component: Some(layer),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: Some(Properties(properties)),
            lifecycles: None,
        }),
        components: Some(Components(components)),
        dependencies: Some(Dependencies(dependencies)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    })
}

/// A shipped distribution with what the SBOM says about it.
struct ShippedDist<'l> {
    display_name: String,
    version: String,
    wheel_name: String,
    sha256: Sha256Hex,
    url: String,
    licenses: Vec<LicenseChoice>,
    package: &'l LockedPackage,
}

/// PEP 503 normalization, refusing what is not a distribution name.
fn normalize(name: &str) -> Result<String> {
    Ok(pep508_rs::PackageName::from_str(name)
        .map_err(|e| anyhow::anyhow!("{name:?} is not a distribution name: {e}"))?
        .to_string())
}

/// PEP 503 normalization for names already checked elsewhere (lowercase, runs of `-_.` → `-`).
fn normalize_lossy(name: &str) -> String {
    normalize(name).unwrap_or_else(|_| name.to_ascii_lowercase())
}

fn purl(kind: &str, name: &str, version: &str) -> Result<Purl> {
    Purl::new(kind, name, version).map_err(|e| anyhow::anyhow!("purl for {name} {version}: {e:?}"))
}

fn purl_string(name: &str, version: &str) -> String {
    purl("pypi", name, version).map(|p| p.to_string()).unwrap_or_else(|_| format!("pkg:pypi/{name}@{version}"))
}

fn sha256_hashes(sha256: &Sha256Hex) -> Hashes {
    Hashes(vec![Hash { alg: HashAlgorithm::SHA_256, content: HashValue(sha256.as_str().to_string()) }])
}

fn distribution_reference(url: &str) -> ExternalReferences {
    ExternalReferences(vec![ExternalReference {
        external_reference_type: ExternalReferenceType::Distribution,
        url: ReferenceUri::Url(Uri::new(url)),
        comment: None,
        hashes: None,
    }])
}

fn property(name: &str, value: &str) -> Property {
    Property::new(format!("{PROPERTY_PREFIX}:{name}"), value)
}

/// Whether a wheel file name's platform tag can run on `arch` (pure wheels run everywhere).
fn wheel_fits(wheel_name: &str, arch: Arch) -> bool {
    let stem = wheel_name.strip_suffix(".whl").unwrap_or(wheel_name);
    let platform = stem.rsplit('-').next().unwrap_or("");
    platform.split('.').any(|tag| tag == "any" || tag.ends_with(arch.manylinux_name()))
}

/// The names the layer asks for: the lock's top-level requirements, or when the lock does not
/// record them, every shipped distribution nothing else ships depends on.
fn top_level_names(lock: &Pylock, shipped: &BTreeMap<String, ShippedDist>) -> Vec<String> {
    if let Some(inputs) = lock.inputs() {
        let names: Vec<String> = inputs
            .requirements
            .iter()
            .filter_map(|r| pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(r).ok())
            .map(|r| r.name.to_string())
            .collect();
        if !names.is_empty() {
            return names;
        }
    }
    let depended_on: BTreeSet<String> =
        shipped.values().flat_map(|d| d.package.dependencies.iter().map(|r| normalize_lossy(&r.name))).collect();
    shipped.keys().filter(|name| !depended_on.contains(*name)).cloned().collect()
}

/// The SBOM timestamp: `SOURCE_DATE_EPOCH`, else the newest upload time of a shipped wheel in
/// the lock, else 1980-01-01. Never the wall clock, so two builds agree.
fn timestamp(input: &SbomInput) -> Result<String> {
    if let Some(seconds) = input.source_date_epoch.seconds() {
        return Ok(rfc3339(seconds));
    }
    let newest = input
        .lock
        .packages
        .iter()
        .flat_map(|p| &p.wheels)
        .filter(|w| input.dists.iter().any(|d| d.wheel_name == w.name))
        .filter_map(|w| w.upload_time.as_ref().and_then(toml_datetime_seconds))
        .max();
    Ok(rfc3339(newest.unwrap_or(FALLBACK_TIMESTAMP)))
}

/// A UUID v5 of everything the SBOM says, so the same inputs give the same serial number.
fn serial_number(
    input: &SbomInput,
    components: &[Component],
    dependencies: &[Dependency],
    properties: &[Property],
    timestamp: &str,
) -> uuid::Uuid {
    let mut canonical = format!("{}\n{timestamp}\n", input.arch.lambda_name());
    for component in components {
        let hash = component.hashes.as_ref().and_then(|h| h.0.first()).map(|h| h.content.0.as_str()).unwrap_or("");
        canonical.push_str(&format!("component {} {hash}\n", component.bom_ref.as_deref().unwrap_or("")));
    }
    for dependency in dependencies {
        canonical.push_str(&format!("depends {} {}\n", dependency.dependency_ref, dependency.dependencies.join(" ")));
    }
    for property in properties {
        canonical.push_str(&format!("property {} {}\n", property.name, property.value));
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, canonical.as_bytes())
}

fn read_metadata(source: MetadataSource, dist: &InstalledDist) -> Result<String> {
    match source {
        MetadataSource::SitePackages(roots) => {
            for root in roots {
                let path = root.join(&dist.dist_info).join("METADATA");
                if path.is_file() {
                    let bytes = fs_err::read(&path)?;
                    return Ok(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            bail!(
                "{}/METADATA of {} {} is in none of: {}",
                dist.dist_info,
                dist.name,
                dist.version,
                roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// The header fields of a core metadata file
/// (<https://packaging.python.org/en/latest/specifications/core-metadata/>): RFC 822 style
/// `Name: value` lines, continuation lines start with whitespace, the body follows a blank line.
struct CoreMetadata {
    fields: Vec<(String, String)>,
}

impl CoreMetadata {
    fn parse(text: &str) -> CoreMetadata {
        CoreMetadata { fields: crate::packaging::core_metadata::header_fields(text) }
    }

    fn all<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }
}

/// Licenses as CycloneDX license choices: `License-Expression` (PEP 639) when present, else the
/// `License` field and `License ::` classifiers. Valid SPDX ids and expressions are written as
/// such; anything else as a license name.
fn licenses_from_metadata(metadata: &CoreMetadata) -> Vec<LicenseChoice> {
    if let Some(expression) = metadata.first("License-Expression").filter(|e| !e.is_empty()) {
        return vec![license_choice(expression)];
    }
    let mut choices: Vec<LicenseChoice> = Vec::new();
    let mut push = |choice: LicenseChoice| {
        if !choices.contains(&choice) {
            choices.push(choice);
        }
    };
    if let Some(license) = metadata.first("License") {
        // The field often holds the whole license text; its first line names it.
        let first_line = license.lines().next().unwrap_or("").trim();
        if !first_line.is_empty() && !first_line.eq_ignore_ascii_case("UNKNOWN") {
            let short: String = first_line.chars().take(120).collect();
            push(license_choice(&short));
        }
    }
    for classifier in metadata.all("Classifier") {
        let Some(rest) = classifier.strip_prefix("License ::") else { continue };
        let last = rest.rsplit("::").next().unwrap_or(rest).trim();
        if last == "OSI Approved" || last.is_empty() {
            continue;
        }
        match classifier_spdx_id(last) {
            Some(id) => push(LicenseChoice::License(License::license_id(id))),
            None => push(LicenseChoice::License(License::named_license(last))),
        }
    }
    // CycloneDX allows either licenses or one expression, never both: an expression in the
    // `License` field (e.g. "MIT OR Apache-2.0") says it all.
    if let Some(expression) = choices.iter().find(|c| matches!(c, LicenseChoice::Expression(_))) {
        return vec![expression.clone()];
    }
    choices
}

/// One license string: an SPDX id, else an SPDX expression, else a name.
fn license_choice(text: &str) -> LicenseChoice {
    if SpdxIdentifier::try_from(text.to_string()).is_ok() {
        return LicenseChoice::License(License::license_id(text));
    }
    if text.contains(' ') && SpdxExpression::try_from(text.to_string()).is_ok() {
        return LicenseChoice::Expression(SpdxExpression::new(text));
    }
    LicenseChoice::License(License::named_license(text))
}

/// Trove license classifiers that name exactly one SPDX license
/// (<https://pypi.org/classifiers/>). Ambiguous ones (`BSD License`, `Apache Software License`)
/// stay names.
fn classifier_spdx_id(classifier: &str) -> Option<&'static str> {
    Some(match classifier {
        "MIT License" => "MIT",
        "MIT No Attribution License (MIT-0)" => "MIT-0",
        "ISC License (ISCL)" => "ISC",
        "Python Software Foundation License" => "PSF-2.0",
        "Mozilla Public License 2.0 (MPL 2.0)" => "MPL-2.0",
        "The Unlicense (Unlicense)" => "Unlicense",
        "Zero-Clause BSD (0BSD)" => "0BSD",
        "Boost Software License 1.0 (BSL-1.0)" => "BSL-1.0",
        "zlib/libpng License" => "Zlib",
        "GNU Lesser General Public License v2 or later (LGPLv2+)" => "LGPL-2.0-or-later",
        "GNU Lesser General Public License v3 (LGPLv3)" => "LGPL-3.0-only",
        "GNU Lesser General Public License v3 or later (LGPLv3+)" => "LGPL-3.0-or-later",
        "GNU General Public License v2 (GPLv2)" => "GPL-2.0-only",
        "GNU General Public License v3 (GPLv3)" => "GPL-3.0-only",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const LOCK: &str = r#"
lock-version = "1.0"
requires-python = "==3.11.*"
created-by = "litellm-layer"

[[packages]]
name = "litellm"
version = "1.78.7"
dependencies = [{ name = "openai" }, { name = "tiktoken" }, { name = "boto3" }, { name = "ghost" }, { name = "tokenizers" }]
wheels = [{ name = "litellm-1.78.7-py3-none-any.whl", url = "https://files.example/litellm-1.78.7-py3-none-any.whl", upload-time = 2025-10-02T08:00:00Z, hashes = { sha256 = "1111111111111111111111111111111111111111111111111111111111111111" } }]

[[packages]]
name = "openai"
version = "1.54.0"
dependencies = [{ name = "httpx" }, { name = "typing-extensions" }]
wheels = [{ name = "openai-1.54.0-py3-none-any.whl", url = "https://deploy-user:s3cret-token@pypi.example/openai-1.54.0-py3-none-any.whl", upload-time = 2025-11-20T10:30:00+02:00, hashes = { sha256 = "2222222222222222222222222222222222222222222222222222222222222222" } }]

[[packages]]
name = "httpx"
version = "0.27.0"
wheels = [{ name = "httpx-0.27.0-py3-none-any.whl", url = "https://files.example/httpx-0.27.0-py3-none-any.whl", hashes = { sha256 = "3333333333333333333333333333333333333333333333333333333333333333" } }]

[[packages]]
name = "typing-extensions"
version = "4.12.2"
wheels = [{ name = "typing_extensions-4.12.2-py3-none-any.whl", url = "https://files.example/typing_extensions-4.12.2-py3-none-any.whl", hashes = { sha256 = "4444444444444444444444444444444444444444444444444444444444444444" } }]

[[packages]]
name = "tiktoken"
version = "0.8.0"
dependencies = [{ name = "regex" }]
wheels = [
  { name = "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", url = "https://files.example/tiktoken-aarch64.whl", hashes = { sha256 = "5555555555555555555555555555555555555555555555555555555555555555" } },
  { name = "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", url = "https://files.example/tiktoken-x86_64.whl", hashes = { sha256 = "5656565656565656565656565656565656565656565656565656565656565656" } },
]

[[packages]]
name = "regex"
version = "2024.9.11"
wheels = [{ name = "regex-2024.9.11-cp311-cp311-manylinux_2_17_aarch64.whl", url = "https://files.example/regex-aarch64.whl", hashes = { sha256 = "6666666666666666666666666666666666666666666666666666666666666666" } }]

[[packages]]
name = "tokenizers"
version = "0.20.3"
wheels = [{ name = "tokenizers-0.20.3-cp39-abi3-manylinux_2_17_aarch64.whl", url = "https://files.example/tokenizers-aarch64.whl", hashes = { sha256 = "7777777777777777777777777777777777777777777777777777777777777777" } }]

[[packages]]
name = "setuptools"
version = "75.0.0"
wheels = [{ name = "setuptools-75.0.0-py3-none-any.whl", url = "https://files.example/setuptools.whl", hashes = { sha256 = "8888888888888888888888888888888888888888888888888888888888888888" } }]

[[packages]]
name = "cffi"
version = "1.17.1"
marker = "platform_machine == 'x86_64'"
wheels = [{ name = "cffi-1.17.1-cp311-cp311-manylinux_2_17_x86_64.whl", url = "https://files.example/cffi.whl", hashes = { sha256 = "9999999999999999999999999999999999999999999999999999999999999999" } }]

[tool.litellm-layer]
requirements = ["litellm==1.78.7"]
exclude = ["boto3"]
index-url = "https://deploy-user:s3cret-token@pypi.example/simple"
python-full-version = "3.11.14"
architectures = ["arm64", "x86_64"]
"#;

    /// (name, version, wheel, METADATA)
    const DISTS: &[(&str, &str, &str, &str)] = &[
        (
            "litellm",
            "1.78.7",
            "litellm-1.78.7-py3-none-any.whl",
            "Metadata-Version: 2.1\nName: litellm\nVersion: 1.78.7\nLicense: MIT\n\
             Classifier: License :: OSI Approved :: MIT License\n\nLiteLLM\n\nLicense: not a header\n",
        ),
        (
            "openai",
            "1.54.0",
            "openai-1.54.0-py3-none-any.whl",
            "Metadata-Version: 2.4\nName: openai\nVersion: 1.54.0\nLicense-Expression: Apache-2.0\nLicense: ignored\n",
        ),
        (
            "httpx",
            "0.27.0",
            "httpx-0.27.0-py3-none-any.whl",
            "Metadata-Version: 2.3\nName: httpx\nVersion: 0.27.0\nLicense: BSD-3-Clause\n\
             Classifier: License :: OSI Approved :: BSD License\n",
        ),
        (
            "typing-extensions",
            "4.12.2",
            "typing_extensions-4.12.2-py3-none-any.whl",
            "Metadata-Version: 2.1\nName: typing_extensions\nVersion: 4.12.2\n\
             Classifier: License :: OSI Approved :: Python Software Foundation License\n",
        ),
        (
            "tiktoken",
            "0.8.0",
            "tiktoken-0.8.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            "Metadata-Version: 2.1\nName: tiktoken\nVersion: 0.8.0\nLicense: MIT License\n        \n        \
             Copyright (c) 2022 OpenAI\nRequires-Dist: regex\n",
        ),
        (
            "regex",
            "2024.9.11",
            "regex-2024.9.11-cp311-cp311-manylinux_2_17_aarch64.whl",
            "Metadata-Version: 2.4\nName: regex\nVersion: 2024.9.11\nLicense-Expression: Apache-2.0 AND CNRI-Python\n",
        ),
    ];

    struct Fixture {
        _dir: tempfile::TempDir,
        roots: Vec<PathBuf>,
        lock: Pylock,
        dists: Vec<InstalledDist>,
        cpython: CpythonInfo,
        dropped: Vec<String>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let site_packages = dir.path().join("site-packages");
            let lock = Pylock::parse(LOCK, Path::new("pylock.toml")).unwrap();
            let mut dists = Vec::new();
            for (name, version, wheel, metadata) in DISTS {
                let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
                fs_err::create_dir_all(site_packages.join(&dist_info)).unwrap();
                fs_err::write(site_packages.join(&dist_info).join("METADATA"), metadata).unwrap();
                let locked = lock.packages.iter().find(|p| p.name == *name).unwrap();
                let locked_wheel = locked.wheels.iter().find(|w| w.name == *wheel).unwrap();
                dists.push(InstalledDist {
                    name: name.to_string(),
                    version: version.to_string(),
                    wheel_name: wheel.to_string(),
                    wheel_sha256: locked_wheel.hashes.sha256.clone(),
                    wheel_url: locked_wheel.url.clone(),
                    files: vec![format!("{dist_info}/METADATA")],
                    dist_info,
                });
            }
            Fixture {
                _dir: dir,
                roots: vec![site_packages],
                lock,
                dists,
                cpython: CpythonInfo {
                    version: "3.11.14".to_string(),
                    url: "https://mirror-user:mirror-pass@mirror.example/cpython-3.11.14+20260127-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz".to_string(),
                    sha256: "abababababababababababababababababababababababababababababababab".to_string(),
                },
                dropped: vec!["tokenizers".to_string()],
            }
        }

        fn input(&self) -> SbomInput<'_> {
            SbomInput {
                arch: Arch::Arm64,
                cpython: &self.cpython,
                lock: &self.lock,
                dists: &self.dists,
                metadata: MetadataSource::SitePackages(&self.roots),
                dropped: &self.dropped,
                source_date_epoch: SourceDateEpoch::default(),
            }
        }

        fn json(&self) -> Value {
            serde_json::from_str(&sbom_json(&self.input()).unwrap()).unwrap()
        }
    }

    fn component<'v>(sbom: &'v Value, name: &str) -> &'v Value {
        sbom["components"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}"))
    }

    fn properties(sbom: &Value, name: &str) -> Vec<String> {
        sbom["metadata"]["properties"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == format!("litellm-layer:{name}"))
            .map(|p| p["value"].as_str().unwrap().to_string())
            .collect()
    }

    /// The vendored CycloneDX schemas, resolved offline.
    struct VendoredSchemas(BTreeMap<String, Value>);

    impl jsonschema::Retrieve for VendoredSchemas {
        fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            self.0.get(uri.as_str()).cloned().ok_or_else(|| format!("schema {uri} is not vendored").into())
        }
    }

    #[test]
    fn sbom_validates_against_the_cyclonedx_1_5_schema() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/cyclonedx");
        let load =
            |name: &str| -> Value { serde_json::from_str(&fs_err::read_to_string(dir.join(name)).unwrap()).unwrap() };
        let mut vendored = BTreeMap::new();
        vendored.insert("http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json".to_string(), load("spdx.schema.json"));
        vendored.insert(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json".to_string(),
            load("jsf-0.82.schema.json"),
        );
        let validator = jsonschema::options()
            .with_retriever(VendoredSchemas(vendored))
            .should_validate_formats(true)
            .build(&load("bom-1.5.schema.json"))
            .unwrap();

        let sbom = Fixture::new().json();
        let errors: Vec<String> =
            validator.iter_errors(&sbom).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(sbom["specVersion"], "1.5");
        assert_eq!(sbom["bomFormat"], "CycloneDX");

        // The check can fail: a broken document is rejected.
        let mut broken = sbom.clone();
        broken["components"][0]["hashes"][0]["content"] = Value::from("not-hex");
        assert!(!validator.is_valid(&broken));
        // The SPDX schema is resolved too: an unknown license id is rejected.
        let mut unknown_license = sbom.clone();
        let litellm =
            unknown_license["components"].as_array_mut().unwrap().iter_mut().find(|c| c["name"] == "litellm").unwrap();
        litellm["licenses"][0]["license"]["id"] = Value::from("Not-A-License-1.0");
        assert!(!validator.is_valid(&unknown_license));
    }

    #[test]
    fn every_hash_equals_the_lock() {
        let fixture = Fixture::new();
        let sbom = fixture.json();
        let components = sbom["components"].as_array().unwrap();
        assert_eq!(components.len(), 1 + DISTS.len());
        for (name, version, wheel, _) in DISTS {
            let locked = fixture.lock.packages.iter().find(|p| p.name == *name).unwrap();
            let locked_sha256 = &locked.wheels.iter().find(|w| w.name == *wheel).unwrap().hashes.sha256;
            let purl = format!("pkg:pypi/{name}@{version}");
            let component = components.iter().find(|c| c["purl"] == purl.as_str()).unwrap_or_else(|| panic!("{purl}"));
            assert_eq!(component["bom-ref"], purl.as_str());
            assert_eq!(component["hashes"], serde_json::json!([{"alg": "SHA-256", "content": locked_sha256}]));
            assert_eq!(component["type"], "library");
        }
        let cpython = component(&sbom, "cpython");
        assert_eq!(cpython["version"], "3.11.14");
        assert_eq!(cpython["hashes"][0]["content"], fixture.cpython.sha256.as_str());
        assert_eq!(cpython["externalReferences"][0]["type"], "distribution");
    }

    #[test]
    fn two_runs_give_identical_bytes() {
        let fixture = Fixture::new();
        let first = sbom_json(&fixture.input()).unwrap();
        let second = sbom_json(&Fixture::new().input()).unwrap();
        assert_eq!(first, second);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(sbom_file_name(Arch::Arm64));
        write_sbom(&fixture.input(), &path).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), first);
        assert_eq!(path.file_name().unwrap(), "python-litellm-arm64.cdx.json");

        // The serial number is a UUID v5 of the inputs: another input, another serial.
        let sbom: Value = serde_json::from_str(&first).unwrap();
        let serial = sbom["serialNumber"].as_str().unwrap();
        let uuid = uuid::Uuid::parse_str(serial.strip_prefix("urn:uuid:").unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 5);
        let mut other = Fixture::new();
        other.cpython.sha256 = "cd".repeat(32);
        assert_ne!(other.json()["serialNumber"], sbom["serialNumber"]);
    }

    #[test]
    fn timestamp_comes_from_source_date_epoch_or_the_lock() {
        let fixture = Fixture::new();
        let input = fixture.input();
        let fixed = SbomInput { source_date_epoch: SourceDateEpoch::at(1_700_000_000), ..input };
        assert_eq!(timestamp(&fixed).unwrap(), "2023-11-14T22:13:20Z");
        // Before 1980 (a zip cannot say) the SBOM says 1980, as the layer zip does.
        let zero = SbomInput { source_date_epoch: "0".parse().unwrap(), ..input };
        assert_eq!(timestamp(&zero).unwrap(), "1980-01-01T00:00:00Z");
        // Newest shipped wheel: openai's 2025-11-20T10:30:00+02:00.
        assert_eq!(timestamp(&input).unwrap(), "2025-11-20T08:30:00Z");
        assert_eq!(fixture.json()["metadata"]["timestamp"], "2025-11-20T08:30:00Z");
        let no_upload_times = Fixture { dists: fixture.dists[2..3].to_vec(), ..Fixture::new() };
        assert_eq!(timestamp(&no_upload_times.input()).unwrap(), "1980-01-01T00:00:00Z");
    }

    #[test]
    fn credentials_never_appear() {
        let text = sbom_json(&Fixture::new().input()).unwrap();
        for secret in ["s3cret-token", "deploy-user", "mirror-pass", "mirror-user"] {
            assert!(!text.contains(secret), "{secret} leaked into the SBOM");
        }
        let sbom: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            component(&sbom, "openai")["externalReferences"][0]["url"],
            "https://***@pypi.example/openai-1.54.0-py3-none-any.whl"
        );
        assert_eq!(properties(&sbom, "index-url"), ["https://***@pypi.example/simple"]);
    }

    #[test]
    fn dependency_graph_is_the_lock_restricted_to_what_ships() {
        let sbom = Fixture::new().json();
        let refs: BTreeSet<&str> =
            sbom["components"].as_array().unwrap().iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
        let layer_ref = sbom["metadata"]["component"]["bom-ref"].as_str().unwrap();
        assert_eq!(layer_ref, "python-litellm-arm64");
        let graph: BTreeMap<&str, Vec<&str>> = sbom["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let on = d["dependsOn"]
                    .as_array()
                    .map(|a| a.iter().map(|r| r.as_str().unwrap()).collect())
                    .unwrap_or_default();
                (d["ref"].as_str().unwrap(), on)
            })
            .collect();
        for (from, to) in &graph {
            assert!(refs.contains(from) || *from == layer_ref, "dangling ref {from}");
            for target in to {
                assert!(refs.contains(target), "dangling dependsOn {target} of {from}");
            }
        }
        // boto3 (excluded), ghost (not in the lock) and tokenizers (dropped) are left out.
        assert_eq!(graph["pkg:pypi/litellm@1.78.7"], ["pkg:pypi/openai@1.54.0", "pkg:pypi/tiktoken@0.8.0"]);
        assert_eq!(graph["pkg:pypi/openai@1.54.0"], ["pkg:pypi/httpx@0.27.0", "pkg:pypi/typing-extensions@4.12.2"]);
        assert_eq!(graph["python-litellm-arm64"], ["cpython@3.11.14", "pkg:pypi/litellm@1.78.7"]);
        assert!(graph["pkg:pypi/regex@2024.9.11"].is_empty());
        let keys: Vec<&&str> = graph.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);

        assert_eq!(properties(&sbom, "excluded-package"), ["boto3"]);
        assert_eq!(properties(&sbom, "dropped-package"), ["tokenizers"]);
        // setuptools was locked and installed but pruned; cffi is for x86_64 only.
        assert_eq!(properties(&sbom, "locked-not-shipped"), ["setuptools"]);
        assert_eq!(properties(&sbom, "arch"), ["arm64"]);
    }

    #[test]
    fn an_expression_in_the_license_field_is_never_mixed_with_classifiers() {
        let metadata = CoreMetadata::parse(
            "Metadata-Version: 2.1\nName: x\nVersion: 1\nLicense: MIT OR Apache-2.0\n\
             Classifier: License :: OSI Approved :: MIT License\n",
        );
        let choices = licenses_from_metadata(&metadata);
        assert_eq!(choices.len(), 1, "{choices:?}");
        assert!(
            matches!(&choices[0], LicenseChoice::Expression(e) if e.to_string() == "MIT OR Apache-2.0"),
            "{choices:?}"
        );
    }

    #[test]
    fn licenses_come_from_metadata() {
        let sbom = Fixture::new().json();
        let licenses = |name: &str| component(&sbom, name)["licenses"].clone();
        assert_eq!(licenses("litellm"), serde_json::json!([{"license": {"id": "MIT"}}]));
        assert_eq!(licenses("openai"), serde_json::json!([{"license": {"id": "Apache-2.0"}}]));
        assert_eq!(
            licenses("httpx"),
            serde_json::json!([{"license": {"id": "BSD-3-Clause"}}, {"license": {"name": "BSD License"}}])
        );
        assert_eq!(licenses("typing_extensions"), serde_json::json!([{"license": {"id": "PSF-2.0"}}]));
        assert_eq!(licenses("tiktoken"), serde_json::json!([{"license": {"name": "MIT License"}}]));
        assert_eq!(licenses("regex"), serde_json::json!([{"expression": "Apache-2.0 AND CNRI-Python"}]));
    }

    #[test]
    fn inconsistent_inputs_are_refused() {
        let mut fixture = Fixture::new();
        fixture.dists[1].wheel_sha256 = "ef".repeat(32);
        let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
        assert_eq!(
            err,
            format!(
                "installed distribution openai 1.54.0 came from a wheel with sha256 {} but the lock says {}; rebuild the layer",
                "ef".repeat(32),
                "2".repeat(64)
            )
        );

        let mut fixture = Fixture::new();
        fixture.dists[0].version = "1.78.8".to_string();
        let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
        assert_eq!(err, "installed distribution litellm 1.78.8 is not in the lock; rebuild the layer from the lock");

        let fixture = Fixture::new();
        fs_err::remove_file(fixture.roots[0].join("httpx-0.27.0.dist-info/METADATA")).unwrap();
        let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
        assert!(err.starts_with("httpx-0.27.0.dist-info/METADATA of httpx 0.27.0 is in none of: "), "{err}");

        let mut fixture = Fixture::new();
        fixture.dropped.push("openai".to_string());
        let err = format!("{:#}", sbom_json(&fixture.input()).unwrap_err());
        assert_eq!(err, "distribution openai is listed as dropped but still ships");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.cdx.json");
        assert!(write_sbom(&fixture.input(), &path).is_err());
        assert!(!path.exists(), "a refused SBOM was written");
    }
}
