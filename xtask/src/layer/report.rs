//! The size report (JSON and Markdown) and the budget check.
//!
//! Sizes come from the zips themselves: the layer zip's central directory gives each entry's
//! unzipped and zipped bytes; the distributions inside `site-packages.zip` get a share of that
//! entry in proportion to their compressed bytes in it. MB are 10^6 bytes, as Lambda counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::layer::dist::InstalledDist;
use crate::layer::pack::{PackOutcome, Placement};
use crate::layer::profile::BytecodePlan;
use crate::progress::human_bytes;

/// Lambda's limit on a function plus its layers, unzipped.
pub(crate) const LAMBDA_UNZIPPED_LIMIT_MB: f64 = crate::lambda::UNZIPPED_LIMIT_MB;
/// Lambda's limit on a zip uploaded directly.
pub(crate) const LAMBDA_ZIPPED_LIMIT_MB: f64 = crate::lambda::DIRECT_UPLOAD_LIMIT_MB;

/// What one prune rule (or the stdlib prune of the runtime step) removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSavings {
    pub rule: String,
    pub files: u64,
    pub bytes: u64,
}

/// Unzipped and zipped bytes of one part of the layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes on disk once Lambda has unpacked the layer.
    pub unzipped: u64,
    /// Bytes it takes in `python-litellm-<arch>.zip`.
    pub zipped: u64,
}

impl Sizes {
    fn add(&mut self, unzipped: u64, zipped: u64) {
        self.unzipped += unzipped;
        self.zipped += zipped;
    }
}

/// One distribution's share of the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistSize {
    pub name: String,
    pub(crate) version: String,
    pub placement: Placement,
    pub files: u64,
    /// Sum of its files' sizes (sources, bytecode, data) before any zip.
    pub(crate) source_bytes: u64,
    #[serde(flatten)]
    pub sizes: Sizes,
}

/// The size report of one built layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeReport {
    pub(crate) layer_zip: String,
    pub distributions: Vec<DistSize>,
    pub(crate) prune_rules: Vec<RuleSavings>,
    /// `lib/python3.X` outside site-packages (plus `sitecustomize.py`).
    pub stdlib: Sizes,
    /// `bin/` and `lib/libpython*`.
    pub interpreter: Sizes,
    /// Everything else (`include/`, `share/`, files in site-packages no distribution owns).
    pub other: Sizes,
    pub total: Sizes,
}

/// A row of the "top contributors" list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contributor {
    pub(crate) name: String,
    pub(crate) sizes: Sizes,
}

/// Deflate ratios (zipped / unzipped bytes) by kind of file and the size of a `.pyc` per byte of
/// its source, measured on the x86_64 fixture layer (litellm 1.78.7, deflate level 9: `.py` 0.23,
/// `.pyc` 0.41, native 0.39, other 0.39; `.pyc` 1.25× its source) and rounded down, so the
/// estimate before byte-compiling errs low: a layer it calls over budget is over budget.
const RATIO_SOURCE: f64 = 0.21;
const RATIO_BYTECODE: f64 = 0.38;
const RATIO_NATIVE: f64 = 0.37;
const RATIO_OTHER: f64 = 0.35;
const BYTECODE_PER_SOURCE_BYTE: f64 = 1.15;

/// The estimated (zipped, unzipped) bytes of the file at `path` (`relative` to `lib/python3.X`
/// for files under it) once the pack step has run with `plan`.
fn estimated_file(path: &Path, relative: Option<&str>, plan: &BytecodePlan) -> Result<(f64, f64)> {
    let bytes = fs::symlink_metadata(path)?.len() as f64;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(relative) = relative.filter(|_| name.ends_with(".py")) {
        let (mut zipped, mut unzipped) = (0.0, 0.0);
        if !plan.drops_source(relative) {
            zipped += bytes * RATIO_SOURCE;
            unzipped += bytes;
        }
        if plan.compiles(relative) {
            zipped += bytes * BYTECODE_PER_SOURCE_BYTE * RATIO_BYTECODE;
            unzipped += bytes * BYTECODE_PER_SOURCE_BYTE;
        }
        return Ok((zipped, unzipped));
    }
    let ratio = if name.ends_with(".pyc") {
        RATIO_BYTECODE
    } else if name.ends_with(".so") || name.contains(".so.") || path.parent().is_some_and(|p| p.ends_with("bin")) {
        RATIO_NATIVE
    } else {
        RATIO_OTHER
    };
    Ok((bytes * ratio, bytes))
}

impl SizeReport {
    /// Estimate the layer before byte-compiling and packing, from the files in `layer_dir`
    /// (holding `python/`), the `.pyc` files `plan` will add and the sources it drops, so an
    /// over-budget layer fails before the expensive steps. Per distribution and in total.
    pub(crate) fn estimate(
        layer_dir: &Path,
        python: crate::python_version::PythonVersion,
        dists: &[InstalledDist],
        plan: &BytecodePlan,
    ) -> Result<SizeReport> {
        let lib_dir = layer_dir.join("python").join(python.stdlib_dir());
        let mut total = (0.0, 0.0);
        for entry in walkdir::WalkDir::new(layer_dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("listing {}", layer_dir.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = entry.path().strip_prefix(&lib_dir).ok().and_then(|r| r.to_str()).map(str::to_string);
            let (zipped, unzipped) = estimated_file(entry.path(), relative.as_deref(), plan)?;
            total.0 += zipped;
            total.1 += unzipped;
        }
        let site_packages = lib_dir.join("site-packages");
        let mut distributions = Vec::with_capacity(dists.len());
        for dist in dists {
            let (mut zipped, mut unzipped, mut source_bytes) = (0.0, 0.0, 0u64);
            for file in &dist.files {
                let path = site_packages.join(file);
                let Ok(metadata) = fs::symlink_metadata(&path) else { continue };
                source_bytes += metadata.len();
                let (z, u) = estimated_file(&path, Some(&format!("site-packages/{file}")), plan)?;
                zipped += z;
                unzipped += u;
            }
            distributions.push(DistSize {
                name: dist.name.clone(),
                version: dist.version.clone(),
                placement: Placement::Dir,
                files: dist.files.len() as u64,
                source_bytes,
                sizes: Sizes { unzipped: unzipped as u64, zipped: zipped as u64 },
            });
        }
        let total = Sizes { zipped: total.0 as u64, unzipped: total.1 as u64 };
        let in_dists = distributions.iter().fold(Sizes::default(), |mut sum, d| {
            sum.add(d.sizes.unzipped, d.sizes.zipped);
            sum
        });
        Ok(SizeReport {
            layer_zip: "(estimate before byte-compiling)".into(),
            distributions,
            prune_rules: Vec::new(),
            stdlib: Sizes::default(),
            interpreter: Sizes::default(),
            other: Sizes {
                unzipped: total.unzipped.saturating_sub(in_dists.unzipped),
                zipped: total.zipped.saturating_sub(in_dists.zipped),
            },
            total,
        })
    }

    /// Measure the built layer. `dists` are the distributions after [`crate::layer::pack::build`]
    /// (their `files` include the `.pyc` files); `prune_rules` come from the prune and runtime steps.
    pub fn compute(
        outcome: &PackOutcome,
        dists: &[InstalledDist],
        prune_rules: Vec<RuleSavings>,
    ) -> Result<SizeReport> {
        let lib = format!("python/{}", outcome.python_minor.stdlib_dir());
        let site_packages_prefix = format!("{lib}/site-packages/");
        let site_packages_zip_name = format!("{lib}/site-packages.zip");
        let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, dist) in dists.iter().enumerate() {
            for file in &dist.files {
                owner.insert(file.as_str(), index);
            }
        }
        let placement_of =
            |name: &str| outcome.placements.iter().find(|p| p.name == name).map_or(Placement::Dir, |p| p.placement);
        let mut dist_sizes: Vec<Sizes> = vec![Sizes::default(); dists.len()];
        let (mut stdlib, mut interpreter, mut other, mut total) =
            (Sizes::default(), Sizes::default(), Sizes::default(), Sizes::default());
        let mut site_packages_zip_entry = Sizes::default();

        for (name, sizes) in zip_entry_sizes(&outcome.layer_zip)? {
            total.add(sizes.unzipped, sizes.zipped);
            if name == site_packages_zip_name {
                site_packages_zip_entry.add(sizes.unzipped, sizes.zipped);
            } else if let Some(rel) = name.strip_prefix(&site_packages_prefix) {
                match owner.get(rel) {
                    Some(&index) => dist_sizes[index].add(sizes.unzipped, sizes.zipped),
                    None => other.add(sizes.unzipped, sizes.zipped),
                }
            } else if name.starts_with("python/bin/") || name.starts_with("python/lib/libpython") {
                interpreter.add(sizes.unzipped, sizes.zipped);
            } else if name.starts_with(&format!("{lib}/")) {
                stdlib.add(sizes.unzipped, sizes.zipped);
            } else {
                other.add(sizes.unzipped, sizes.zipped);
            }
        }
        total.zipped = fs::metadata(&outcome.layer_zip)?.len();

        // Distributions inside site-packages.zip share that entry pro rata to their bytes in it.
        if let Some(site_packages_zip) = &outcome.site_packages_zip {
            let mut inner = vec![0u64; dists.len()];
            let mut inner_total = 0u64;
            for (name, sizes) in zip_entry_sizes(site_packages_zip)? {
                inner_total += sizes.zipped;
                if let Some(&index) = owner.get(name.as_str()) {
                    inner[index] += sizes.zipped;
                }
            }
            let mut assigned = Sizes::default();
            for (index, bytes) in inner.iter().enumerate().filter(|(_, b)| **b > 0) {
                let share =
                    |whole: u64| (u128::from(whole) * u128::from(*bytes) / u128::from(inner_total.max(1))) as u64;
                let part = Sizes {
                    unzipped: share(site_packages_zip_entry.unzipped),
                    zipped: share(site_packages_zip_entry.zipped),
                };
                dist_sizes[index].add(part.unzipped, part.zipped);
                assigned.add(part.unzipped, part.zipped);
            }
            // Directory entries and headers belong to no one distribution.
            other.add(
                site_packages_zip_entry.unzipped - assigned.unzipped,
                site_packages_zip_entry.zipped - assigned.zipped,
            );
        }

        let site_packages = outcome.layer_dir.join(&lib).join("site-packages");
        let mut distributions = Vec::with_capacity(dists.len());
        for (index, dist) in dists.iter().enumerate() {
            let placement = placement_of(&dist.name);
            let mut source_bytes = 0;
            if placement == Placement::Dir {
                for file in &dist.files {
                    source_bytes += fs::symlink_metadata(site_packages.join(file)).map_or(0, |m| m.len());
                }
            }
            distributions.push(DistSize {
                name: dist.name.clone(),
                version: dist.version.clone(),
                placement,
                files: dist.files.len() as u64,
                source_bytes,
                sizes: dist_sizes[index],
            });
        }
        if let Some(site_packages_zip) = &outcome.site_packages_zip {
            for (name, sizes) in zip_entry_sizes(site_packages_zip)? {
                if let Some(&index) = owner.get(name.as_str()) {
                    distributions[index].source_bytes += sizes.unzipped;
                }
            }
        }
        distributions.sort_by(|a, b| b.sizes.zipped.cmp(&a.sizes.zipped).then_with(|| a.name.cmp(&b.name)));
        Ok(SizeReport {
            // The file name only: the build runs in a staging directory that is renamed at the end.
            layer_zip: outcome
                .layer_zip
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| outcome.layer_zip.display().to_string()),
            distributions,
            prune_rules,
            stdlib,
            interpreter,
            other,
            total,
        })
    }

    /// The biggest parts of the layer (distributions, stdlib, interpreter, other), by zipped
    /// bytes when `zipped`, else by unzipped bytes.
    pub(crate) fn top_contributors(&self, count: usize, zipped: bool) -> Vec<Contributor> {
        let mut all: Vec<Contributor> = self
            .distributions
            .iter()
            .map(|d| Contributor { name: format!("{} {}", d.name, d.version), sizes: d.sizes })
            .chain([
                Contributor { name: "(stdlib)".into(), sizes: self.stdlib },
                Contributor { name: "(interpreter)".into(), sizes: self.interpreter },
                Contributor { name: "(other)".into(), sizes: self.other },
            ])
            .collect();
        let key = |c: &Contributor| if zipped { c.sizes.zipped } else { c.sizes.unzipped };
        all.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        all.truncate(count);
        all
    }

    /// The report as a Markdown document.
    pub(crate) fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Layer size report\n");
        let _ = writeln!(
            out,
            "`{}`: **{} zipped, {} unzipped** (MB = 10^6 bytes).\n",
            self.layer_zip,
            human_bytes(self.total.zipped),
            human_bytes(self.total.unzipped)
        );
        let _ = writeln!(out, "| part | version | placement | files | unzipped | zipped |");
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
        for dist in &self.distributions {
            let placement = match dist.placement {
                Placement::Zip => "site-packages.zip",
                Placement::Dir => "site-packages/",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {placement} | {} | {} | {} |",
                dist.name,
                dist.version,
                dist.files,
                human_bytes(dist.sizes.unzipped),
                human_bytes(dist.sizes.zipped)
            );
        }
        for (name, sizes) in [("stdlib", self.stdlib), ("interpreter", self.interpreter), ("other", self.other)] {
            let _ =
                writeln!(out, "| ({name}) | | | | {} | {} |", human_bytes(sizes.unzipped), human_bytes(sizes.zipped));
        }
        let _ = writeln!(
            out,
            "| **total** | | | | **{}** | **{}** |\n",
            human_bytes(self.total.unzipped),
            human_bytes(self.total.zipped)
        );
        let _ = writeln!(out, "## Prune rules\n");
        if self.prune_rules.is_empty() {
            let _ = writeln!(out, "No prune rule removed anything.");
        } else {
            let _ = writeln!(out, "| rule | files removed | bytes saved |");
            let _ = writeln!(out, "|---|---:|---:|");
            for rule in &self.prune_rules {
                let _ = writeln!(out, "| {} | {} | {} |", rule.rule, rule.files, human_bytes(rule.bytes));
            }
        }
        out
    }

    /// Write `size-report.json` and `size-report.md` into `dir` (temp file + rename each).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).context("serialising the size report")?;
        write_atomically(&dir.join("size-report.json"), format!("{json}\n").as_bytes())?;
        write_atomically(&dir.join("size-report.md"), self.to_markdown().as_bytes())
    }
}

/// Fail, naming the biggest contributors, when the layer is over the budget of layer.toml or
/// over Lambda's limits (the smaller of the two applies). Lambda's 50 MB zipped limit holds only
/// for a direct upload (`direct_upload`); through S3, as Serverless deploys layers, only the
/// 250 MB unzipped limit applies.
pub fn check_budget(
    report: &SizeReport,
    budget_zipped_mb: f64,
    budget_unzipped_mb: f64,
    direct_upload: bool,
) -> Result<()> {
    let lambda_zipped_mb = if direct_upload { LAMBDA_ZIPPED_LIMIT_MB } else { f64::INFINITY };
    let checks = [
        ("zipped", report.total.zipped, budget_zipped_mb, lambda_zipped_mb, "zipped-mb", "50 MB direct-upload"),
        (
            "unzipped",
            report.total.unzipped,
            budget_unzipped_mb,
            LAMBDA_UNZIPPED_LIMIT_MB,
            "unzipped-mb",
            "250 MB unzipped (function plus layers)",
        ),
    ];
    let mut problems = Vec::new();
    for (what, actual, budget, lambda, key, lambda_text) in checks {
        let limit_mb = budget.min(lambda);
        let limit_bytes = (limit_mb * 1e6) as u64;
        if actual > limit_bytes {
            let source = if budget <= lambda {
                format!("layer.toml [budget] {key} = {budget}")
            } else {
                format!("Lambda's {lambda_text} limit")
            };
            problems.push((what, format!("{what} {} is over {limit_mb} MB ({source})", human_bytes(actual))));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let zipped = problems.iter().any(|(what, _)| *what == "zipped");
    let mut message =
        format!("the layer is too big: {}", problems.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join("; "));
    let _ = write!(message, "\ntop contributors ({}):", if zipped { "zipped" } else { "unzipped" });
    for contributor in report.top_contributors(10, zipped) {
        let _ = write!(
            message,
            "\n  {:<40} {:>10} zipped {:>10} unzipped",
            contributor.name,
            human_bytes(contributor.sizes.zipped),
            human_bytes(contributor.sizes.unzipped)
        );
    }
    message.push_str(
        "\nprune more (layer.toml [prune]: opt-in rules such as keep-litellm-providers or drop-packages) or, \
         within Lambda's limits, raise layer.toml [budget]",
    );
    bail!(message)
}

/// Every non-directory entry of a zip with its unzipped and compressed bytes (headers excluded).
fn zip_entry_sizes(zip_path: &Path) -> Result<Vec<(String, Sizes)>> {
    let file = fs::File::open(zip_path)?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("reading {} as a zip", zip_path.display()))?;
    let mut sizes = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry =
            archive.by_index_raw(index).with_context(|| format!("reading entry {index} of {}", zip_path.display()))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().with_context(|| format!("entry {index} of {} has a bad name", zip_path.display()))?;
        sizes.push((name.to_string(), Sizes { unzipped: entry.size(), zipped: entry.compressed_size() }));
    }
    Ok(sizes)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let mut temp = tempfile::Builder::new().prefix(".xtask-").tempfile_in(parent)?;
    temp.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    crate::layer::bytecode::set_mode(temp.path(), 0o644)?;
    temp.persist(path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(zipped: u64, unzipped: u64) -> SizeReport {
        let dist = |name: &str, zipped: u64, unzipped: u64| DistSize {
            name: name.into(),
            version: "1.0".into(),
            placement: Placement::Dir,
            files: 3,
            source_bytes: unzipped,
            sizes: Sizes { unzipped, zipped },
        };
        SizeReport {
            layer_zip: "python-litellm-arm64.zip".into(),
            distributions: vec![
                dist("litellm", zipped / 2, unzipped / 2),
                dist("tokenizers", zipped / 4, unzipped / 4),
            ],
            prune_rules: vec![RuleSavings { rule: "tests".into(), files: 120, bytes: 1_100_000 }],
            stdlib: Sizes { unzipped: unzipped / 8, zipped: zipped / 8 },
            interpreter: Sizes { unzipped: unzipped / 8, zipped: zipped / 8 },
            other: Sizes::default(),
            total: Sizes { unzipped, zipped },
        }
    }

    #[test]
    fn within_budget_passes() {
        check_budget(&report(30_000_000, 120_000_000), 35.0, 250.0, true).unwrap();
        check_budget(&report(50_000_000, 250_000_000), 50.0, 250.0, true).unwrap();
    }

    #[test]
    fn over_budget_names_the_limit_and_top_contributors() {
        let err = check_budget(&report(40_000_000, 120_000_000), 35.0, 250.0, true).unwrap_err().to_string();
        assert!(
            err.starts_with("the layer is too big: zipped 40.0 MB is over 35 MB (layer.toml [budget] zipped-mb = 35)"),
            "{err}"
        );
        assert!(err.contains("top contributors (zipped):"), "{err}");
        let litellm = err.find("litellm 1.0").expect(&err);
        let tokenizers = err.find("tokenizers 1.0").expect(&err);
        assert!(litellm < tokenizers, "not sorted by size: {err}");
        assert!(err.contains("20.0 MB zipped"), "{err}");
        assert!(err.contains("prune more (layer.toml [prune]"), "{err}");
    }

    #[test]
    fn lambda_limits_apply_above_a_generous_budget() {
        let err = check_budget(&report(20_000_000, 260_000_000), 100.0, 400.0, false).unwrap_err().to_string();
        assert!(
            err.contains("unzipped 260.0 MB is over 250 MB (Lambda's 250 MB unzipped (function plus layers) limit)"),
            "{err}"
        );
        assert!(err.contains("top contributors (unzipped):"), "{err}");
        let err = check_budget(&report(51_000_000, 100_000_000), 80.0, 250.0, true).unwrap_err().to_string();
        assert!(err.contains("zipped 51.0 MB is over 50 MB (Lambda's 50 MB direct-upload limit)"), "{err}");
        // Uploaded through S3 (as Serverless does), only the budget and the unzipped limit apply.
        check_budget(&report(51_000_000, 100_000_000), 80.0, 250.0, false).unwrap();
        let err = check_budget(&report(81_000_000, 100_000_000), 80.0, 250.0, false).unwrap_err().to_string();
        assert!(err.contains("zipped 81.0 MB is over 80 MB (layer.toml [budget] zipped-mb = 80)"), "{err}");
    }

    #[test]
    fn markdown_has_a_row_per_part() {
        let markdown = report(30_000_000, 120_000_000).to_markdown();
        assert!(markdown.contains("| litellm | 1.0 | site-packages/ | 3 | 60.0 MB | 15.0 MB |"), "{markdown}");
        assert!(markdown.contains("| (stdlib) | | | | 15.0 MB | 3.8 MB |"), "{markdown}");
        assert!(markdown.contains("| **total** | | | | **120.0 MB** | **30.0 MB** |"), "{markdown}");
        assert!(markdown.contains("| tests | 120 | 1.1 MB |"), "{markdown}");
    }
}
