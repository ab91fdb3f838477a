//! Which locked packages the layer leaves out when layer.toml's `[packages] exclude` names some.
//!
//! The lock pins the whole dependency closure, excluded packages included, so that pip and uv can
//! install it: pip resolves the dependencies of every package it selects from the lock and, in
//! hash-checking mode, refuses one the lock does not pin (docs/architecture.md §2). The layer then
//! leaves out each excluded package and every package that only excluded packages need: those no
//! longer reachable from the top-level requirements once the excluded packages are cut from the
//! dependency graph.
//!
//! The graph is the lock's `dependencies`. PEP 751 calls them informational, so they are not
//! trusted blindly: `layer` checks every installed wheel's `Requires-Dist` against them
//! (`layer/resolved.rs`), so an edge missing from the lock cannot make a needed package vanish
//! unnoticed. Spec: <https://packaging.python.org/en/latest/specifications/pylock-toml/>.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use anyhow::{Result, anyhow};
use pep508_rs::{MarkerEnvironment, MarkerTree};

use crate::packaging::pylock::Pylock;
use crate::packaging::wheel_name::normalize_name;

/// The reason recorded for a package layer.toml excludes by name.
pub const EXCLUDED_BY_NAME: &str = "in [packages] exclude of layer.toml";

/// The packages of `lock` that apply in `environment` but that the layer does not ship, each with
/// the reason, by normalized name. `top_level` are the names of the top-level requirements,
/// `exclude` the names in `[packages] exclude`. A package nothing reaches even without the
/// exclusions (an orphan) is not this function's business and is left in.
pub fn left_out(
    lock: &Pylock,
    top_level: &[String],
    exclude: &[String],
    environment: &MarkerEnvironment,
) -> Result<BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in &lock.packages {
        if let Some(marker) = &package.marker {
            let tree = MarkerTree::from_str(marker)
                .map_err(|e| anyhow!("lock: package {} has an invalid marker {marker:?}: {e}", package.name))?;
            if !tree.evaluate(environment, &[]) {
                continue;
            }
        }
        graph
            .entry(normalize_name(&package.name))
            .or_default()
            .extend(package.dependencies.iter().map(|dependency| normalize_name(&dependency.name)));
    }
    let exclude: BTreeSet<String> = exclude.iter().map(|name| normalize_name(name)).collect();
    let top_level: Vec<String> = top_level.iter().map(|name| normalize_name(name)).collect();
    let everything = reachable(&graph, &top_level, &BTreeSet::new());
    let shipped = reachable(&graph, &top_level, &exclude);

    let mut left_out = BTreeMap::new();
    for name in exclude.iter().filter(|name| graph.contains_key(*name)) {
        left_out.insert(name.clone(), EXCLUDED_BY_NAME.to_string());
    }
    for name in everything.difference(&shipped).filter(|name| !exclude.contains(*name)) {
        let needed_by: Vec<&str> = exclude
            .iter()
            .filter(|excluded| reachable(&graph, std::slice::from_ref(*excluded), &BTreeSet::new()).contains(name))
            .map(String::as_str)
            .collect();
        left_out.insert(name.clone(), format!("needed only by excluded {}", needed_by.join(", ")));
    }
    Ok(left_out)
}

/// Every node reachable from `start` (itself included) without entering a node of `cut`.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, start: &[String], cut: &BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&String> = start.iter().filter(|name| !cut.contains(*name)).collect();
    while let Some(name) = stack.pop() {
        let Some(dependencies) = graph.get(name) else { continue };
        if !seen.insert(name.clone()) {
            continue;
        }
        stack.extend(dependencies.iter().filter(|dependency| !cut.contains(*dependency)));
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::packaging::pylock::{Hashes, LockedPackage, LockedWheel, PackageRef};

    fn package(name: &str, dependencies: &[&str], marker: Option<&str>) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: "1.0".into(),
            marker: marker.map(Into::into),
            requires_python: None,
            dependencies: dependencies.iter().map(|d| PackageRef { name: d.to_string() }).collect(),
            index: None,
            wheels: vec![LockedWheel {
                name: format!("{}-1.0-py3-none-any.whl", name.replace('-', "_")),
                url: format!("https://files.example/{name}-1.0-py3-none-any.whl"),
                size: None,
                upload_time: None,
                hashes: Hashes { sha256: "a".repeat(64) },
            }],
            tool: None,
        }
    }

    fn arm64() -> MarkerEnvironment {
        crate::lock::resolve::marker_environment(Arch::Arm64, "3.11.14").unwrap()
    }

    /// app → hub → {xet → xet-only, shared}; app → shared; orphan; arm-only (x86_64 marker).
    fn lock() -> Pylock {
        Pylock::of_packages(
            "test",
            vec![
                package("app", &["hub", "shared"], None),
                package("hub", &["xet", "shared"], None),
                package("xet", &["xet-only", "shared"], None),
                package("xet-only", &[], None),
                package("shared", &[], None),
                package("orphan", &[], None),
                package("x86-only", &[], Some("platform_machine == 'x86_64'")),
            ],
        )
    }

    #[test]
    fn an_excluded_package_and_what_only_it_needs_are_left_out() {
        let left = left_out(&lock(), &["app".into()], &["Xet".into()], &arm64()).unwrap();
        assert_eq!(
            left.into_iter().collect::<Vec<_>>(),
            [
                ("xet".to_string(), "in [packages] exclude of layer.toml".to_string()),
                ("xet-only".to_string(), "needed only by excluded xet".to_string()),
            ]
        );
    }

    #[test]
    fn nothing_is_left_out_without_exclusions_and_orphans_stay() {
        assert!(left_out(&lock(), &["app".into()], &[], &arm64()).unwrap().is_empty());
        // An excluded name the lock does not hold for this arch is not reported.
        assert!(left_out(&lock(), &["app".into()], &["x86-only".into(), "boto3".into()], &arm64()).unwrap().is_empty());
    }

    #[test]
    fn a_package_still_needed_elsewhere_ships() {
        // Excluding hub cuts xet and xet-only, but shared is also app's own dependency.
        let left = left_out(&lock(), &["app".into()], &["hub".into()], &arm64()).unwrap();
        assert_eq!(left.keys().collect::<Vec<_>>(), ["hub", "xet", "xet-only"]);
        assert_eq!(left["xet-only"], "needed only by excluded hub");
    }

    #[test]
    fn an_invalid_marker_names_the_package() {
        let mut lock = lock();
        lock.packages[5].marker = Some("platform_machine ==".into());
        let error = left_out(&lock, &["app".into()], &[], &arm64()).unwrap_err().to_string();
        assert!(error.starts_with("lock: package orphan has an invalid marker \"platform_machine ==\": "), "{error}");
    }
}
