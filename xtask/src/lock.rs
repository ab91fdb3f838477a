//! `cargo xtask lock`: resolve layer.toml against the index into a PEP 751 pylock.toml.
//!
//! Steps: read the spec and the existing lock (its versions are preferred, so re-locking against
//! the same index reproduces it); resolve for arm64, then for x86_64 preferring arm64's versions
//! (one version per package across both arches whenever the constraints allow, and two marked
//! entries when they do not); write the lock atomically. `--check` compares the lock's recorded
//! inputs with layer.toml and the pinned interpreter, without touching the network.
//!
//! Resolving the arches one after the other (instead of jointly) keeps each resolution a plain
//! PubGrub problem with one marker environment, and the preference carries arm64's choices over,
//! so the arches agree on every package whose wheels exist for both.

pub(crate) mod candidates;
pub(crate) mod fetch;
pub(crate) mod index;
pub(crate) mod metadata;
pub(crate) mod render;
pub(crate) mod resolve;
pub(crate) mod upgrade;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pep440_rs::Version;
use pep508_rs::Requirement;

use crate::arch::Arch;
use crate::cache::Cache;
use crate::flags::{GlobalArgs, LockArgs};
use crate::http::{Http, redact_url};
use crate::lock::candidates::{Selector, compromised};
use crate::lock::fetch::Sources;
use crate::lock::index::{IndexClient, strip_credentials};
use crate::lock::metadata::MetadataReader;
use crate::lock::resolve::{ArchRequest, ResolvedDist, exact_pins, resolve_arch};
use crate::manifest::Manifest;
use crate::packaging::pylock::{Hashes, LockInputs, LockTool, LockedPackage, LockedWheel, PackageRef, Pylock};
use crate::packaging::wheel_name::normalize_name;
use crate::progress::Progress;
use crate::python_version::PythonVersion;
use crate::spec::LayerSpec;

/// `created-by` of locks this tool writes.
pub(crate) const CREATED_BY: &str = "litellm-layer-xtask";

pub fn run(global: &GlobalArgs, args: &LockArgs) -> Result<()> {
    let started = Instant::now();
    let progress = Progress::new();
    let spec = LayerSpec::load(&global.spec_path())?;
    let output = args.output.clone().unwrap_or_else(|| default_lock_path(&spec.path));
    let index_url = global.index_override().unwrap_or(&spec.index.url).to_string();
    let inputs = expected_inputs(&spec, &index_url)?;
    if args.check {
        check(&output, &inputs)?;
        eprintln!("{} is up to date with {}", output.display(), spec.path.display());
        return Ok(());
    }
    let existing = if output.exists() {
        match Pylock::load(&output) {
            Ok(lock) => Some(lock),
            Err(error) => {
                progress.warn(format!("ignoring the existing lock: {error:#}"));
                None
            }
        }
    } else {
        None
    };
    // `--upgrade-package NAME==VERSION` rewrites an exact pin in layer.toml first (an unknown name
    // is an error); the spec is then read again, so the lock records the new inputs.
    let upgrade_requests: Vec<upgrade::UpgradeRequest> =
        args.upgrade_package.iter().map(|text| text.parse()).collect::<Result<_>>()?;
    let original_spec = fs_err::read_to_string(&spec.path)?;
    let (spec, inputs, upgrade_packages) = if upgrade_requests.is_empty() {
        (spec, inputs, BTreeSet::new())
    } else {
        let locked: BTreeSet<String> =
            existing.iter().flat_map(|lock| lock.packages.iter().map(|p| normalize_name(&p.name))).collect();
        let names = upgrade::apply(&upgrade_requests, &spec.path, &spec.packages.requirements, &locked)?;
        let spec = LayerSpec::load(&global.spec_path())?;
        let inputs = expected_inputs(&spec, &index_url)?;
        (spec, inputs, names)
    };
    let cache = Cache::locate(global.cache_dir.as_deref())?;
    let _cache_lock = cache.lock_for_run("`cargo xtask lock`", global.lock_timeout(), &progress)?;
    let request = LockRequest {
        requirements: inputs.requirements.clone(),
        inputs: inputs.clone(),
        index_url,
        existing,
        upgrade: args.upgrade,
        upgrade_packages,
        trace: args.trace,
    };
    let (lock, stats) = match lock(&request, &cache, &progress) {
        Ok(locked) => locked,
        Err(error) if !upgrade_requests.is_empty() => {
            // The rewritten pin did not resolve: the spec goes back to what it was.
            fs_err::write(&spec.path, &original_spec)?;
            return Err(error.context(format!("{} was restored; nothing was changed", spec.path.display())));
        }
        Err(error) => return Err(error),
    };
    progress.step(format!("writing {}", output.display()), || write_lock(&output, &lock))?;
    let wheels: usize = lock.packages.iter().map(|p| p.wheels.len()).sum();
    eprintln!(
        "locked {} packages ({wheels} wheels) for {} in {:.1}s (index pages: {} fetched, {} cached; metadata: {})",
        lock.packages.len(),
        inputs.architectures.join(" and "),
        started.elapsed().as_secs_f64(),
        stats.pages_from_network,
        stats.pages_from_cache,
        if stats.metadata.is_empty() {
            "none read".to_string()
        } else {
            stats.metadata.iter().map(|(k, v)| format!("{v} from {k}")).collect::<Vec<_>>().join(", ")
        }
    );
    Ok(())
}

/// `pylock.toml` beside the spec.
pub(crate) fn default_lock_path(spec_path: &Path) -> PathBuf {
    spec_path.parent().map(|p| p.join("pylock.toml")).unwrap_or_else(|| PathBuf::from("pylock.toml"))
}

/// The inputs a lock made now from `spec` would record.
pub(crate) fn expected_inputs(spec: &LayerSpec, index_url: &str) -> Result<LockInputs> {
    let manifest = Manifest::pinned();
    let mut full_versions = BTreeSet::new();
    for arch in Arch::ALL {
        let artifact = manifest.find(spec.python.version, &spec.python.release, arch, spec.python.variant)?;
        full_versions.insert(artifact.version.clone());
    }
    if full_versions.len() != 1 {
        bail!(
            "the pinned interpreters of release {} differ between arches ({}); pin one CPython version",
            spec.python.release,
            full_versions.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let mut exclude: Vec<String> = spec.packages.exclude.iter().map(|n| normalize_name(n)).collect();
    exclude.sort();
    exclude.dedup();
    Ok(LockInputs {
        // The enabled providers' requirements (`[providers]`) are resolved like the spec's own.
        requirements: spec.all_requirements()?,
        exclude,
        index_url: strip_credentials(index_url.trim()).trim_end_matches('/').to_string(),
        python_full_version: full_versions.into_iter().next().expect("one version"),
        architectures: Arch::ALL.iter().map(|a| a.lambda_name().to_string()).collect(),
        format: crate::packaging::pylock::LOCK_FORMAT,
    })
}

/// `--check`: the lock exists, parses, and was made from these inputs.
pub(crate) fn check(output: &Path, inputs: &LockInputs) -> Result<()> {
    let lock = Pylock::load(output).with_context(|| format!("checking {}", output.display()))?;
    let Some(recorded) = lock.inputs() else {
        bail!("{} has no [tool.litellm-layer] inputs; run `cargo xtask lock` to regenerate it", output.display());
    };
    let mut differences = Vec::new();
    let compare = |differences: &mut Vec<String>, what: &str, locked: String, wanted: String| {
        if locked != wanted {
            differences.push(format!("  {what}: the lock has {locked}, now {wanted}"));
        }
    };
    compare(
        &mut differences,
        "packages.requirements",
        format!("{:?}", recorded.requirements),
        format!("{:?}", inputs.requirements),
    );
    compare(&mut differences, "packages.exclude", format!("{:?}", recorded.exclude), format!("{:?}", inputs.exclude));
    compare(&mut differences, "index url", recorded.index_url.clone(), inputs.index_url.clone());
    compare(
        &mut differences,
        "python full version (pinned interpreter)",
        recorded.python_full_version.clone(),
        inputs.python_full_version.clone(),
    );
    compare(
        &mut differences,
        "architectures",
        format!("{:?}", recorded.architectures),
        format!("{:?}", inputs.architectures),
    );
    compare(
        &mut differences,
        "lock format (2 pins excluded packages, so that pip and uv can install the lock)",
        recorded.format.to_string(),
        inputs.format.to_string(),
    );
    if differences.is_empty() {
        // The exclusion marks follow from the inputs and the locked graph; a lock whose marks
        // disagree was edited by hand or made by an older version of this tool.
        let mut expected = lock.clone();
        mark_left_out(&mut expected, inputs)?;
        let marked = |lock: &Pylock| -> Vec<String> {
            lock.packages.iter().filter_map(|p| Some(format!("{} ({})", p.name, p.excluded()?))).collect()
        };
        compare(
            &mut differences,
            "packages marked excluded",
            format!("{:?}", marked(&lock)),
            format!("{:?}", marked(&expected)),
        );
    }
    if !differences.is_empty() {
        bail!("{} is out of date:\n{}\nrun `cargo xtask lock` to update it", output.display(), differences.join("\n"));
    }
    Ok(())
}

/// Everything a lock is made from.
#[derive(Debug, Clone)]
pub(crate) struct LockRequest {
    pub(crate) requirements: Vec<String>,
    pub(crate) inputs: LockInputs,
    /// The index URL, credentials included (never written out).
    pub(crate) index_url: String,
    pub(crate) existing: Option<Pylock>,
    pub(crate) upgrade: bool,
    pub(crate) upgrade_packages: BTreeSet<String>,
    /// Print each index request's start and duration (`--trace` / `XTASK_LOCK_TRACE`).
    pub(crate) trace: bool,
}

/// Resolve both arches and build the lock.
pub(crate) fn lock(request: &LockRequest, cache: &Cache, progress: &Progress) -> Result<(Pylock, fetch::FetchStats)> {
    let roots: Vec<Requirement> = request
        .requirements
        .iter()
        .map(|text| {
            Requirement::from_str(text).map_err(|e| anyhow::anyhow!("{text:?} is not a PEP 508 requirement: {e}"))
        })
        .collect::<Result<_>>()?;
    let exclude: BTreeSet<String> = request.inputs.exclude.iter().cloned().collect();
    // Exact pins and the existing lock's versions may be yanked (PEP 592) or pre-releases.
    let mut allowed: BTreeMap<String, BTreeSet<Version>> = BTreeMap::new();
    for root in &roots {
        let name = normalize_name(root.name.as_ref());
        if exclude.contains(&name) {
            bail!("{name} is both a requirement and in packages.exclude of layer.toml; remove it from one of them");
        }
        for version in exact_pins(root) {
            if let Some(why) = compromised(&name, &version) {
                bail!(
                    "refusing {root}: {name} {version} is a known-compromised release ({why}). Pin another version in \
                     litellm-layer/layer.toml, e.g. litellm==1.78.7"
                );
            }
            allowed.entry(name.clone()).or_default().insert(version);
        }
    }
    let mut locked: BTreeMap<String, Version> = BTreeMap::new();
    // Markers of the old lock are evaluated for arm64, never matched as text.
    let arm64 = resolve::marker_environment(Arch::Arm64, &request.inputs.python_full_version)?;
    let holds_on_arm64 =
        |marker: &str| pep508_rs::MarkerTree::from_str(marker).is_ok_and(|tree| tree.evaluate(&arm64, &[]));
    if let Some(existing) = &request.existing
        && !request.upgrade
    {
        for package in &existing.packages {
            if request.upgrade_packages.contains(&package.name) {
                continue;
            }
            let Ok(version) = Version::from_str(&package.version) else { continue };
            if compromised(&package.name, &version).is_some() {
                continue;
            }
            allowed.entry(package.name.clone()).or_default().insert(version.clone());
            // Prefer the arm64 entry when the lock splits a package by arch.
            if package.marker.as_deref().is_none_or(holds_on_arm64) || !locked.contains_key(&package.name) {
                locked.insert(package.name.clone(), version);
            }
        }
    }
    // An exact pin wins over the old lock, and tells the prefetcher which metadata to read.
    for root in &roots {
        if let [version] = exact_pins(root).as_slice() {
            locked.insert(normalize_name(root.name.as_ref()), version.clone());
        }
    }
    let python_full = Version::from_str(&request.inputs.python_full_version)
        .with_context(|| format!("python full version {:?}", request.inputs.python_full_version))?;
    let python = PythonVersion::from_full_version(&request.inputs.python_full_version)
        .with_context(|| format!("python full version {:?}", request.inputs.python_full_version))?;
    let selector = Selector::new(python_full, python, allowed);
    let http = Http::new()?;
    let index = IndexClient::new(http.clone(), &request.index_url, cache)?;
    let reader = MetadataReader::new(http, cache)?;
    progress.note(format!("index: {}", redact_url(&request.index_url)));
    let sources = Sources::start(index, reader, selector, locked.clone(), request.trace);
    let mut preferred = locked.clone();
    let mut per_arch: Vec<(Arch, BTreeMap<String, ResolvedDist>)> = Vec::new();
    for arch in Arch::ALL {
        let resolved = progress.step(format!("resolving for {arch}"), || {
            resolve_arch(
                &sources,
                &ArchRequest {
                    arch,
                    python_full: &request.inputs.python_full_version,
                    roots: &roots,
                    exclude: &exclude,
                    preferred: &preferred,
                },
            )
        })?;
        progress.note(format!("{} packages for {arch}", resolved.len()));
        for (name, dist) in &resolved {
            preferred.insert(name.clone(), dist.version.clone());
        }
        per_arch.push((arch, resolved));
    }
    for warning in sources.page_warnings() {
        progress.warn(warning);
    }
    // PEP 592: a yanked release is only used when pinned exactly (or kept from the existing
    // lock); say so, so it is a decision and not an accident.
    let mut yanked = BTreeSet::new();
    for (_, resolved) in &per_arch {
        for (name, dist) in resolved {
            if dist.wheel.yanked && yanked.insert((name.clone(), dist.version.clone())) {
                progress.warn(format!(
                    "{name} {} is yanked on the index; it is used because it is pinned or already locked. Pin \
                     another version, or run `cargo xtask lock --upgrade-package {name}`",
                    dist.version
                ));
            }
        }
    }
    let stats = sources.stats();
    drop(sources);
    let mut lock = assemble(&request.inputs, &per_arch);
    mark_left_out(&mut lock, &request.inputs)?;
    for package in lock.packages.iter().filter(|package| package.excluded().is_some()) {
        progress.note(format!(
            "{} {} is locked (so pip and uv can install the lock) but the layer leaves it out: {}",
            package.name,
            package.version,
            package.excluded().unwrap_or_default()
        ));
    }
    Ok((lock, stats))
}

/// Mark every package the layer leaves out on each arch it is locked for (`[packages] exclude`
/// and what only excluded packages need) with `[packages.tool.litellm-layer] excluded`, and clear
/// the mark everywhere else. The lock keeps these packages, pinned and hashed like the others, so
/// that pip (which installs every dependency of what it installs from a lock) and uv can install
/// it (docs/architecture.md §2).
/// A package left out on one arch only is not marked: the mark is a note for readers, and `layer`
/// works the set out for its own arch the same way.
pub(crate) fn mark_left_out(lock: &mut Pylock, inputs: &LockInputs) -> Result<()> {
    let top_level = inputs.top_level_names();
    let mut per_arch = Vec::new();
    for arch in Arch::ALL {
        let environment = resolve::marker_environment(arch, &inputs.python_full_version)?;
        let left_out = crate::packaging::exclusion::left_out(lock, &top_level, &inputs.exclude, &environment)?;
        per_arch.push((environment, left_out));
    }
    for package in &mut lock.packages {
        let name = normalize_name(&package.name);
        let mut reasons = Vec::new();
        for (environment, left_out) in &per_arch {
            let applies = match &package.marker {
                Some(marker) => pep508_rs::MarkerTree::from_str(marker)
                    .map_err(|e| {
                        anyhow::anyhow!("lock: package {} has an invalid marker {marker:?}: {e}", package.name)
                    })?
                    .evaluate(environment, &[]),
                None => true,
            };
            if applies {
                reasons.push(left_out.get(&name));
            }
        }
        let reason = match reasons.first() {
            Some(Some(first)) if reasons.iter().all(Option::is_some) => Some(first.to_string()),
            _ => None,
        };
        package.set_excluded(reason);
    }
    Ok(())
}

/// Merge the per-arch resolutions into one lock: one entry per package and version, with the
/// wheels of every arch that installs it and a marker when only some arches do.
fn assemble(inputs: &LockInputs, per_arch: &[(Arch, BTreeMap<String, ResolvedDist>)]) -> Pylock {
    // (name, version) → (arches, wheels by file name, dependencies, requires-python, yanked with
    // its reason)
    type Entry =
        (BTreeSet<Arch>, BTreeMap<String, LockedWheel>, BTreeSet<String>, Option<String>, Option<Option<String>>);
    let mut entries: BTreeMap<(String, Version), Entry> = BTreeMap::new();
    for (arch, resolved) in per_arch {
        for (name, dist) in resolved {
            let entry = entries.entry((name.clone(), dist.version.clone())).or_default();
            entry.0.insert(*arch);
            entry.1.insert(dist.wheel.filename.clone(), locked_wheel(&dist.wheel));
            entry.2.extend(dist.dependencies.iter().cloned());
            entry.3 = dist.requires_python.clone();
            // PEP 592 marks files; any yanked file of the version marks the locked version.
            if dist.wheel.yanked && entry.4.as_ref().is_none_or(Option::is_none) {
                entry.4 = Some(dist.wheel.yanked_reason.clone());
            }
        }
    }
    let all_arches: BTreeSet<Arch> = per_arch.iter().map(|(a, _)| *a).collect();
    let packages = entries
        .into_iter()
        .map(|((name, version), (arches, wheels, dependencies, requires_python, yanked))| LockedPackage {
            name,
            version: version.to_string(),
            marker: (arches != all_arches).then(|| {
                arches
                    .iter()
                    .map(|a| format!("platform_machine == '{}'", a.manylinux_name()))
                    .collect::<Vec<_>>()
                    .join(" or ")
            }),
            requires_python,
            dependencies: dependencies.into_iter().map(|name| PackageRef { name }).collect(),
            index: Some(inputs.index_url.clone()),
            wheels: wheels.into_values().collect(),
            tool: yanked.map(|reason| LockedPackage::yanked_tool(reason.as_deref())),
        })
        .collect();
    Pylock {
        lock_version: "1.0".into(),
        environments: per_arch
            .iter()
            .map(|(arch, _)| {
                format!(
                    "sys_platform == 'linux' and platform_machine == '{}' and implementation_name == 'cpython'",
                    arch.manylinux_name()
                )
            })
            .collect(),
        requires_python: Some(format!(
            "=={}.*",
            inputs.python_full_version.split('.').take(2).collect::<Vec<_>>().join(".")
        )),
        extras: vec![],
        dependency_groups: vec![],
        default_groups: vec![],
        created_by: CREATED_BY.into(),
        packages,
        tool: Some(LockTool { litellm_layer: inputs.clone() }),
        warnings: Vec::new(),
    }
}

fn locked_wheel(file: &index::ProjectFile) -> LockedWheel {
    LockedWheel {
        name: file.filename.clone(),
        url: strip_credentials(&file.url),
        size: file.size,
        upload_time: file.upload_time.as_deref().and_then(|t| t.parse().ok()),
        hashes: Hashes { sha256: file.sha256.as_ref().map(|s| s.to_string()).unwrap_or_default() },
    }
}

/// Write the lock atomically (temp file in the same directory, then rename).
pub fn write_lock(path: &Path, lock: &Pylock) -> Result<()> {
    let text = render::render(lock);
    // Never write what the install step could not read back.
    Pylock::parse(&text, path).context("internal error: the rendered lock does not parse")?;
    crate::files::write_atomically(path, text.as_bytes())
}
