//! The named prune rules of `[prune]` in `layer.toml`: `safe` (site-packages, on by default) and
//! `stdlib` (the interpreter's standard library). Each rule is a variant here, with what it removes;
//! `layer::prune` and `layer::interpreter::stdlib` apply them (docs/architecture.md §6, §7).

use serde::{Deserialize, Serialize};

/// A prune rule that is safe for every distribution and on by default (`[prune] safe`); what each
/// removes is below; `layer::prune` applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafeRule {
    /// Directories named `tests`, `test` or `_tests`, and `conftest.py` files. Modules whose names
    /// merely contain "test" stay: `jinja2/tests.py`, `click/testing.py`, `anyio/_core/_testing.py`
    /// and `aiohttp/test_utils.py` are imported by their packages.
    Tests,
    /// `.rst` files, `.md` files outside `templates/` directories (huggingface_hub reads its
    /// model-card templates, `templates/*.md`, at run time), and `docs/` directories. `.txt` files
    /// stay: litellm reads `huggingface_llms_metadata/*.txt` and `proxy/llamaguard_prompt.txt`.
    Docs,
    /// Directories named `examples`.
    Examples,
    /// `.pyi` stubs (`py.typed` markers stay).
    TypeStubs,
    /// C, C++ and Cython sources and headers.
    CSources,
    /// The pip, setuptools and wheel distributions, and `_distutils_hack` wherever it comes from.
    BuildTools,
    /// A top-level `bin/` directory.
    ConsoleScripts,
    /// `RECORD` (and its signatures, `INSTALLER`, `REQUESTED`, `direct_url.json`) in `.dist-info`.
    Record,
}

impl SafeRule {
    /// Every safe rule, in the order they run by default.
    pub const ALL: [SafeRule; 8] = [
        SafeRule::Tests,
        SafeRule::Docs,
        SafeRule::Examples,
        SafeRule::TypeStubs,
        SafeRule::CSources,
        SafeRule::BuildTools,
        SafeRule::ConsoleScripts,
        SafeRule::Record,
    ];

    /// The rule's name in layer.toml and the size report.
    pub fn name(self) -> &'static str {
        match self {
            SafeRule::Tests => "tests",
            SafeRule::Docs => "docs",
            SafeRule::Examples => "examples",
            SafeRule::TypeStubs => "type-stubs",
            SafeRule::CSources => "c-sources",
            SafeRule::BuildTools => "build-tools",
            SafeRule::ConsoleScripts => "console-scripts",
            SafeRule::Record => "record",
        }
    }
}

/// A part of the standard library removable with LiteLLM still importing and answering
/// (`[prune] stdlib`; all of them by default). Paths are relative to the Python home, with
/// `lib/python3.X` the standard library of the layer's minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdlibRule {
    /// `lib/python3.X/test`, and the `test`, `tests` and `idle_test` directories of every stdlib package.
    Test,
    /// `lib/python3.X/idlelib` and the `bin/idle*` scripts.
    Idlelib,
    /// `lib/python3.X/tkinter`, the `_tkinter` extension and the Tcl/Tk libraries under `lib/`.
    Tkinter,
    /// `lib/python3.X/turtledemo`.
    Turtledemo,
    /// `lib/python3.X/ensurepip`, the pip and setuptools python-build-standalone preinstalls in
    /// site-packages, and the `bin/pip*` scripts.
    Ensurepip,
    /// `lib/python3.X/lib2to3` and the `bin/2to3*` scripts.
    Lib2to3,
    /// `lib/python3.X/pydoc_data` (the `help()` topics).
    #[serde(rename = "pydoc_data")]
    PydocData,
    /// `lib/python3.X/distutils` (gone from 3.12 on).
    Distutils,
    /// `lib/python3.X/config-3.X-*` (the static library and makefiles for building extensions).
    Config,
    /// `lib/python3.X/__phello__` and `__hello__.py` (frozen-module test data).
    #[serde(rename = "__phello__")]
    Phello,
    /// Every `*.a` static library under the Python home.
    StaticLibs,
    /// `include/` (the C headers).
    Headers,
    /// The test extension modules in `lib-dynload` (`_test*`, `_xxtest*`, `_ctypes_test*`,
    /// `xxlimited*`, `xxsubtype*`).
    TestExtensions,
}

impl StdlibRule {
    /// Every stdlib rule, in the order they run by default.
    pub const ALL: [StdlibRule; 13] = [
        StdlibRule::Test,
        StdlibRule::Idlelib,
        StdlibRule::Tkinter,
        StdlibRule::Turtledemo,
        StdlibRule::Ensurepip,
        StdlibRule::Lib2to3,
        StdlibRule::PydocData,
        StdlibRule::Distutils,
        StdlibRule::Config,
        StdlibRule::Phello,
        StdlibRule::StaticLibs,
        StdlibRule::Headers,
        StdlibRule::TestExtensions,
    ];

    /// The rule's name in layer.toml and the size report.
    pub fn name(self) -> &'static str {
        match self {
            StdlibRule::Test => "test",
            StdlibRule::Idlelib => "idlelib",
            StdlibRule::Tkinter => "tkinter",
            StdlibRule::Turtledemo => "turtledemo",
            StdlibRule::Ensurepip => "ensurepip",
            StdlibRule::Lib2to3 => "lib2to3",
            StdlibRule::PydocData => "pydoc_data",
            StdlibRule::Distutils => "distutils",
            StdlibRule::Config => "config",
            StdlibRule::Phello => "__phello__",
            StdlibRule::StaticLibs => "static-libs",
            StdlibRule::Headers => "headers",
            StdlibRule::TestExtensions => "test-extensions",
        }
    }
}

impl std::fmt::Display for StdlibRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name each rule prints is the name `layer.toml` takes, so a size report line can be
    /// pasted back into the spec.
    #[test]
    fn names_round_trip_through_serde() {
        for rule in StdlibRule::ALL {
            let json = serde_json::to_string(&rule).unwrap();
            assert_eq!(json, format!("\"{}\"", rule.name()));
            assert_eq!(serde_json::from_str::<StdlibRule>(&json).unwrap(), rule);
        }
        for rule in SafeRule::ALL {
            assert_eq!(serde_json::from_str::<SafeRule>(&format!("\"{}\"", rule.name())).unwrap(), rule);
        }
    }
}
