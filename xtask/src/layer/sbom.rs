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
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences, Uri as ReferenceUri,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
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

mod licenses;
use licenses::{CoreMetadata, licenses_from_metadata};

pub mod subject;

/// Prefix of this tool's CycloneDX property names
/// (<https://cyclonedx.org/docs/1.5/json/#properties> recommends a namespace).
const PROPERTY_PREFIX: &str = "litellm-layer";

/// Timestamp when neither `SOURCE_DATE_EPOCH` nor the lock gives one (the zip epoch).
const FALLBACK_TIMESTAMP: i64 = 315_532_800; // 1980-01-01T00:00:00Z

/// The interpreter the layer ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpythonInfo {
    /// Full version, e.g. "3.11.14".
    pub(crate) version: String,
    /// Where the python-build-standalone archive was downloaded from (redacted before writing).
    pub(crate) url: String,
    /// The archive's sha256.
    pub(crate) sha256: String,
}

/// Where to read each shipped distribution's `METADATA` from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MetadataSource<'a> {
    /// site-packages directories holding `<dist-info>/METADATA`, searched in order.
    SitePackages(&'a [PathBuf]),
}

/// Everything the SBOM is made from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SbomInput<'a> {
    pub(crate) arch: Arch,
    pub(crate) cpython: &'a CpythonInfo,
    pub(crate) lock: &'a Pylock,
    /// What ships, after pruning.
    pub(crate) dists: &'a [InstalledDist],
    pub(crate) metadata: MetadataSource<'a>,
    /// Distributions installed and then deleted (`prune.drop-packages`), normalized names.
    pub(crate) dropped: &'a [String],
    pub(crate) source_date_epoch: SourceDateEpoch,
}

/// The SBOM's file name for an architecture.
pub(crate) fn sbom_file_name(arch: Arch) -> String {
    format!("python-litellm-{}.cdx.json", arch.lambda_name())
}

/// Build, validate and write the SBOM to `path` (temp file + rename).
pub(crate) fn write_sbom(input: &SbomInput, path: &Path) -> Result<()> {
    let json = sbom_json(input).with_context(|| format!("writing the SBOM {}", path.display()))?;
    crate::files::write_atomically(path, json.as_bytes())
}

/// The SBOM as CycloneDX 1.5 JSON text (pretty-printed, with a final line break).
pub(crate) fn sbom_json(input: &SbomInput) -> Result<String> {
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
pub(crate) fn build_bom(input: &SbomInput) -> Result<Bom> {
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

    // What does not ship, and why. Excluded packages are the names in `[packages] exclude` plus
    // what the lock marks as needed only by them: the lock pins both so that pip and uv can
    // install it, and the layer leaves both out (docs/architecture.md §2).
    let mut excluded: BTreeSet<String> =
        lock.inputs().into_iter().flat_map(|inputs| inputs.exclude.iter().map(|n| normalize_lossy(n))).collect();
    excluded.extend(lock.packages.iter().filter(|p| p.excluded().is_some()).map(|p| normalize_lossy(&p.name)));
    for name in &excluded {
        if shipped.contains_key(name) {
            bail!("distribution {name} is excluded in layer.toml but still ships");
        }
    }
    let mut properties = vec![property("arch", arch)];
    if let Some(inputs) = lock.inputs() {
        properties.push(property("index-url", &redact_url(&inputs.index_url)));
        for requirement in &inputs.requirements {
            properties.push(property("requirement", requirement));
        }
        for name in &excluded {
            properties.push(property("excluded-package", name));
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
        .filter(|name| !shipped.contains_key(name) && !dropped.contains(name) && !excluded.contains(name))
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

#[cfg(test)]
mod tests;
