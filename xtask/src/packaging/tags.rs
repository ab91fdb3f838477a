//! Which wheels the Lambda `nodejs22.x` platform can install, and in what order of preference.
//!
//! Target: CPython 3.<minor> from python-build-standalone on Amazon Linux 2023 (glibc 2.34), on
//! `aarch64` or `x86_64`. The order mirrors `packaging.tags.sys_tags()`:
//! <https://packaging.python.org/en/latest/specifications/platform-compatibility-tags/>.
//! manylinux tags follow PEP 600 (`manylinux_2_X_<arch>`) with the PEP 513/571/599 legacy aliases
//! (`manylinux1` = 2_5, `manylinux2010` = 2_12, `manylinux2014` = 2_17). musllinux and plain
//! `linux_*` tags are never compatible.

use std::collections::HashMap;

use crate::arch::Arch;
use crate::packaging::wheel_name::WheelFilename;
use crate::python_version::PythonVersion;

/// The newest glibc the target has (Amazon Linux 2023).
pub(crate) const TARGET_GLIBC_MINOR: u32 = 34;

/// A wheel's rank for the target: lower is better. `None` from [`TargetTags::rank`] means the
/// wheel cannot be installed there.
pub(crate) type TagRank = usize;

/// The ordered tag list of one target (arch + CPython minor).
#[derive(Debug, Clone)]
pub(crate) struct TargetTags {
    pub(crate) arch: Arch,
    ranks: HashMap<(String, String, String), TagRank>,
}

impl TargetTags {
    /// Tags for CPython `python` on Lambda (glibc 2.34) for `arch`.
    pub(crate) fn lambda(arch: Arch, python: PythonVersion) -> TargetTags {
        let mut ordered: Vec<(String, String, String)> = Vec::new();
        let platforms = platform_tags(arch);
        let cp = python.cp_tag();
        let python_minor = python.minor();
        // 1. Interpreter-specific: cp311-cp311-<plat>, cp311-abi3-<plat>, cp311-none-<plat>,
        //    then cp310-abi3 ... cp32-abi3 (the stable ABI is forward compatible).
        for abi in [cp.as_str(), "abi3", "none"] {
            for platform in &platforms {
                ordered.push((cp.clone(), abi.to_string(), platform.clone()));
            }
        }
        for older in (2..python_minor).rev() {
            for platform in &platforms {
                ordered.push((format!("cp3{older}"), "abi3".into(), platform.clone()));
            }
        }
        // 2. Generic Python on this platform: py311-none-<plat>, py3-none-<plat>, py310 ... py30.
        for python in generic_pythons(python_minor) {
            for platform in &platforms {
                ordered.push((python.clone(), "none".into(), platform.clone()));
            }
        }
        // 3. Pure Python: cp311-none-any, then py311-none-any, py3-none-any, py310 ... py30.
        ordered.push((cp.clone(), "none".into(), "any".into()));
        for python in generic_pythons(python_minor) {
            ordered.push((python, "none".into(), "any".into()));
        }
        let mut ranks = HashMap::with_capacity(ordered.len());
        for (rank, tag) in ordered.into_iter().enumerate() {
            ranks.entry(tag).or_insert(rank);
        }
        TargetTags { arch, ranks }
    }

    /// The best rank over the wheel's compressed tag set, or `None` if no tag fits the target.
    pub(crate) fn rank(&self, wheel: &WheelFilename) -> Option<TagRank> {
        let mut best: Option<TagRank> = None;
        for python in &wheel.python_tags {
            for abi in &wheel.abi_tags {
                for platform in &wheel.platform_tags {
                    if let Some(&rank) = self.ranks.get(&(python.clone(), abi.clone(), platform.clone())) {
                        best = Some(best.map_or(rank, |b: TagRank| b.min(rank)));
                    }
                }
            }
        }
        best
    }

    /// Whether the wheel can be installed on the target.
    pub(crate) fn is_compatible(&self, wheel: &WheelFilename) -> bool {
        self.rank(wheel).is_some()
    }

    /// The best wheel among `wheels` for this target: lowest rank, then highest build tag.
    pub(crate) fn best<'a, T>(
        &self,
        wheels: impl IntoIterator<Item = (&'a WheelFilename, T)>,
    ) -> Option<(&'a WheelFilename, T)> {
        wheels
            .into_iter()
            .filter_map(|(wheel, item)| self.rank(wheel).map(|rank| (rank, wheel, item)))
            .min_by(|(rank_a, a, _), (rank_b, b, _)| rank_a.cmp(rank_b).then_with(|| b.build_key().cmp(&a.build_key())))
            .map(|(_, wheel, item)| (wheel, item))
    }
}

/// Platform tags for the arch, newest glibc first: `manylinux_2_34_<arch>` … `manylinux_2_17_<arch>`
/// (and older for x86_64), each followed by its legacy alias where one exists.
fn platform_tags(arch: Arch) -> Vec<String> {
    let machine = arch.manylinux_name();
    // aarch64 manylinux starts at glibc 2.17 (manylinux2014); x86_64 goes back to manylinux1 (2.5).
    let oldest = match arch {
        Arch::Arm64 => 17,
        Arch::X86_64 => 5,
    };
    let mut tags = Vec::new();
    for glibc_minor in (oldest..=TARGET_GLIBC_MINOR).rev() {
        tags.push(format!("manylinux_2_{glibc_minor}_{machine}"));
        let legacy = match glibc_minor {
            17 => Some("manylinux2014"),
            12 => Some("manylinux2010"),
            5 => Some("manylinux1"),
            _ => None,
        };
        if let Some(legacy) = legacy {
            tags.push(format!("{legacy}_{machine}"));
        }
    }
    tags
}

/// `py311`, `py3`, `py310`, … `py30`.
fn generic_pythons(python_minor: u32) -> Vec<String> {
    let mut pythons = vec![format!("py3{python_minor}"), "py3".to_string()];
    pythons.extend((0..python_minor).rev().map(|minor| format!("py3{minor}")));
    pythons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(name: &str) -> WheelFilename {
        name.parse().unwrap()
    }

    #[test]
    fn compatible_and_incompatible_tags() {
        let arm = TargetTags::lambda(Arch::Arm64, "3.11".parse().unwrap());
        let x86 = TargetTags::lambda(Arch::X86_64, "3.11".parse().unwrap());
        let yes_arm = [
            "a-1-py3-none-any.whl",
            "a-1-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
            "a-1-cp39-abi3-manylinux_2_28_aarch64.whl",
            "a-1-cp311-cp311-manylinux_2_34_aarch64.whl",
            "a-1-py2.py3-none-any.whl",
        ];
        for name in yes_arm {
            assert!(arm.is_compatible(&wheel(name)), "{name} should fit arm64");
        }
        let no_arm = [
            "a-1-cp311-cp311-manylinux_2_35_aarch64.whl", // glibc too new for AL2023
            "a-1-cp311-cp311-musllinux_1_2_aarch64.whl",  // musl never
            "a-1-cp311-cp311-linux_aarch64.whl",          // not portable
            "a-1-cp311-cp311-manylinux_2_17_x86_64.whl",  // wrong arch
            "a-1-cp312-cp312-manylinux_2_17_aarch64.whl", // wrong interpreter
            "a-1-cp311-cp311-macosx_11_0_arm64.whl",
            "a-1-py2-none-any.whl",
            "a-1-cp312-abi3-manylinux_2_17_aarch64.whl", // abi3 built for a newer CPython
        ];
        for name in no_arm {
            assert!(!arm.is_compatible(&wheel(name)), "{name} should not fit arm64");
        }
        assert!(x86.is_compatible(&wheel("a-1-cp311-cp311-manylinux1_x86_64.whl")));
        assert!(x86.is_compatible(&wheel("a-1-cp311-cp311-manylinux2010_x86_64.whl")));
        assert!(!arm.is_compatible(&wheel("a-1-cp311-cp311-manylinux1_aarch64.whl")));
    }

    #[test]
    fn priority_prefers_specific_newer_builds() {
        let x86 = TargetTags::lambda(Arch::X86_64, "3.11".parse().unwrap());
        let order = [
            "a-1-cp311-cp311-manylinux_2_34_x86_64.whl",
            "a-1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "a-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "a-1-cp311-abi3-manylinux_2_17_x86_64.whl",
            "a-1-cp39-abi3-manylinux_2_17_x86_64.whl",
            "a-1-py3-none-manylinux_2_17_x86_64.whl",
            "a-1-py3-none-any.whl",
        ];
        let ranks: Vec<TagRank> = order.iter().map(|n| x86.rank(&wheel(n)).unwrap()).collect();
        let mut sorted = ranks.clone();
        sorted.sort();
        assert_eq!(ranks, sorted, "ranks {ranks:?} for {order:?}");
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    }

    #[test]
    fn best_picks_lowest_rank_then_highest_build() {
        let x86 = TargetTags::lambda(Arch::X86_64, "3.11".parse().unwrap());
        let wheels = [
            wheel("a-1-py3-none-any.whl"),
            wheel("a-1-cp311-cp311-manylinux_2_17_x86_64.whl"),
            wheel("a-1-cp311-cp311-musllinux_1_1_x86_64.whl"),
        ];
        let (best, index) = x86.best(wheels.iter().enumerate().map(|(i, w)| (w, i))).unwrap();
        assert_eq!(index, 1, "{best}");
        let builds = [wheel("a-1-1-py3-none-any.whl"), wheel("a-1-2-py3-none-any.whl")];
        let (best, _) = x86.best(builds.iter().map(|w| (w, ()))).unwrap();
        assert_eq!(best.build.as_deref(), Some("2"));
        assert!(x86.best([(&wheel("a-1-cp311-cp311-win_amd64.whl"), ())]).is_none());
    }
}
