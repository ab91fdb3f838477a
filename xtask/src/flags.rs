//! The whole command-line surface of `cargo xtask`, in clap derive; doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::arch::Arch;
use crate::source_date::SourceDateEpoch;

/// Build, verify and deploy the LiteLLM Python layer for the Node.js Lambda in this repository.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
pub struct Xtask {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Download cache (wheels, interpreters, index responses), content-addressed by sha256.
    /// Default: `$XTASK_CACHE_DIR`, else `$XDG_CACHE_HOME/litellm-layer`, else `~/.cache/litellm-layer`.
    #[arg(long, global = true, value_name = "DIR", env = "XTASK_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Simple-API index (PEP 691 JSON) to lock against and to check the lock's inputs with, instead
    /// of the `[index] url` of layer.toml. Credentials in the URL are never logged or written.
    #[arg(long, global = true, value_name = "URL", env = "XTASK_INDEX_URL", hide_env_values = true)]
    pub(crate) index_url: Option<String>,
    /// A mirror holding the python-build-standalone release assets (`<mirror>/<release>/<file>`),
    /// instead of `[python] mirror` of layer.toml.
    #[arg(long, global = true, value_name = "URL", env = "XTASK_PBS_MIRROR", hide_env_values = true)]
    pub(crate) pbs_mirror: Option<String>,
    /// The layer spec to read.
    #[arg(long, global = true, value_name = "FILE", default_value = "litellm-layer/layer.toml")]
    pub(crate) spec: PathBuf,
    /// The repository to work on, instead of the one found from cargo or the current directory
    /// (tests point commands at a temporary copy). Empty means unset.
    #[arg(long, global = true, value_name = "DIR", env = "XTASK_PROJECT_ROOT", hide_env_values = true)]
    pub project_root: Option<PathBuf>,
    /// How long a run waits for a lock (cache, output directory) another run holds, in seconds.
    /// Default: 600.
    #[arg(long, global = true, value_name = "SECONDS", env = "XTASK_LOCK_TIMEOUT", hide_env_values = true)]
    pub(crate) lock_timeout: Option<u64>,
    /// The fixed time of every output (zip entries, the files `verify` unpacks, the SBOM), in
    /// seconds since 1970; empty means unset. Times before 1980 are taken as 1980-01-01.
    #[arg(
        long,
        global = true,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value = "",
        hide_default_value = true
    )]
    pub(crate) source_date_epoch: SourceDateEpoch,
}

impl GlobalArgs {
    /// `--index-url` / `XTASK_INDEX_URL` when set and not empty.
    pub(crate) fn index_override(&self) -> Option<&str> {
        self.index_url.as_deref().filter(|url| !url.trim().is_empty())
    }

    /// `--pbs-mirror` / `XTASK_PBS_MIRROR` when set and not empty.
    pub(crate) fn pbs_mirror_override(&self) -> Option<&str> {
        self.pbs_mirror.as_deref().filter(|url| !url.trim().is_empty())
    }

    /// `--lock-timeout` / `XTASK_LOCK_TIMEOUT`, else 10 minutes.
    pub(crate) fn lock_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_timeout.unwrap_or(600))
    }

    /// The spec path: `--spec` as given when absolute, else relative to the repository root (so
    /// commands work from any directory of the checkout).
    pub(crate) fn spec_path(&self) -> PathBuf {
        if self.spec.is_absolute() { self.spec.clone() } else { crate::project_root().join(&self.spec) }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build `layer-build-<arch>/`: interpreter, packages from the lock, prune, bytecode, zip, SBOM.
    Layer(LayerArgs),
    /// Resolve `litellm-layer/layer.toml` against the package index into `litellm-layer/pylock.toml`.
    Lock(LockArgs),
    /// Run the built layer the way Lambda would (read-only /opt, target arch) and smoke-test LiteLLM.
    Verify(VerifyArgs),
    /// Rebuild the layer if stale, check serverless.yml and the packaged template, run `serverless deploy`.
    Deploy(DeployArgs),
    /// Wire `amplify-lambda-js/serverless.yml` to the layer build (an explicit command: no build edits it).
    Patch(PatchArgs),
    /// Show what the workflow needs, what is missing, and the command that fixes each gap.
    Doctor(DoctorArgs),
    /// Run every test of the repository: Rust, Node and end-to-end.
    Test(TestArgs),
    /// Measure lock, install, rebuild and import times against uv and pip, in one run.
    Bench(BenchArgs),
}

/// Where the Python interpreter comes from when not from the pinned manifest.
#[derive(Debug, Clone, Default, Args)]
pub struct PythonDistArgs {
    /// A python-build-standalone-shaped archive (`.tar.gz` or `.tar.zst`) to use instead of the
    /// pinned download: a local path or an http(s) URL. Requires `--python-sha256`.
    #[arg(long, value_name = "PATH|URL", requires = "python_sha256")]
    pub(crate) python_dist: Option<String>,
    /// The sha256 of `--python-dist`, as 64 hex digits. A hash is always required.
    #[arg(long, value_name = "HEX", requires = "python_dist")]
    pub(crate) python_sha256: Option<String>,
    /// For a cross-arch build (arm64 on an x86_64 host): a python-build-standalone-shaped archive
    /// for this host, used only to byte-compile. Default: the pinned host-arch build of the same
    /// release. Requires `--build-python-sha256`.
    #[arg(long, value_name = "PATH|URL", requires = "build_python_sha256")]
    pub(crate) build_python_dist: Option<String>,
    /// The sha256 of `--build-python-dist`.
    #[arg(long, value_name = "HEX", requires = "build_python_dist")]
    pub(crate) build_python_sha256: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LayerArgs {
    /// Target Lambda architecture.
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub(crate) arch: Arch,
    #[command(flatten)]
    pub(crate) python: PythonDistArgs,
    /// Accepted for older scripts and ignored: `layer` never edits serverless.yml (it writes
    /// `serverless-layer.json` into the build directory instead).
    #[arg(long, hide = true)]
    pub(crate) no_patch: bool,
    /// Build only the interpreter step (download, extract, prune the stdlib).
    #[arg(long)]
    pub(crate) runtime_only: bool,
    /// Output directory. Default: `layer-build-<arch>` at the repository root.
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,
    /// Rebuild even when the output is up to date (same inputs, every output file as recorded).
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Fail if `pylock.toml` does not match `layer.toml`; write nothing.
    #[arg(long, conflicts_with_all = ["upgrade", "upgrade_package"])]
    pub(crate) check: bool,
    /// Ignore the versions in the existing lock and pick the newest allowed ones.
    #[arg(long)]
    pub(crate) upgrade: bool,
    /// Let only this package move to its newest allowed version (repeatable). `NAME==VERSION`
    /// rewrites an exact pin of a top-level requirement in layer.toml (comments kept); an unknown
    /// name is an error.
    #[arg(long, value_name = "NAME")]
    pub(crate) upgrade_package: Vec<String>,
    /// Where to write the lock. Default: `pylock.toml` beside the spec.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print each index request's start and duration on stderr (to see where a slow lock waits).
    #[arg(long, env = "XTASK_LOCK_TRACE", hide_env_values = true, value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) trace: bool,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Target Lambda architecture.
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub(crate) arch: Arch,
    /// Fail (instead of skipping) when the target architecture cannot be run here.
    #[arg(long)]
    pub(crate) require_arch_run: bool,
    /// How many times `import litellm` is timed (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: u32,
    /// Write the modules the workload loaded as the import profile beside the lock
    /// (`import-profile.toml`), which `layer` uses to choose what to byte-compile.
    #[arg(long)]
    pub(crate) record_profile: bool,
    /// Make the sandbox read-only with permission bits only, without trying `unshare -m`.
    #[arg(long, env = "XTASK_VERIFY_NO_UNSHARE", hide_env_values = true, value_parser = clap::builder::FalseyValueParser::new())]
    pub(crate) no_unshare: bool,
    /// An arm64 sysroot (a directory holding `lib/ld-linux-aarch64.so.1`) for running arm64 under
    /// qemu, instead of the one built once into the cache. Empty means unset.
    #[arg(long, value_name = "DIR", env = "XTASK_ARM64_SYSROOT", hide_env_values = true)]
    pub(crate) arm64_sysroot: Option<PathBuf>,
    /// The Debian mirror the cached arm64 sysroot is built from. Default: deb.debian.org.
    #[arg(long, value_name = "URL", env = crate::verify::sysroot::DEBIAN_MIRROR_ENV, hide_env_values = true)]
    pub(crate) debian_mirror: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Serverless stage.
    #[arg(long, default_value = "dev")]
    pub(crate) stage: String,
    /// Target Lambda architecture.
    #[arg(long, value_enum, default_value_t = Arch::Arm64)]
    pub(crate) arch: Arch,
    /// Package and check without deploying: offline (AWS calls made while packaging are answered by
    /// a stub on 127.0.0.1), builds nothing, installs nothing, edits nothing; prints the plan.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Never build the layer: deploy the one in `layer-build-<arch>/` (for example CI's verified
    /// artifact) and fail if it does not match the current inputs.
    #[arg(long)]
    pub(crate) no_build: bool,
    /// Print the plan as JSON (with `--dry-run`).
    #[arg(long, requires = "dry_run")]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) python: PythonDistArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PatchArgs {
    /// Fail if serverless.yml is out of date; write nothing.
    #[arg(long)]
    pub(crate) check: bool,
    /// Allow `allowedAccounts: ['*']` (a public layer).
    #[arg(long)]
    pub(crate) allow_public_layer: bool,
    /// The file to patch.
    #[arg(long, value_name = "FILE", default_value = "amplify-lambda-js/serverless.yml")]
    pub(crate) file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Judge readiness for this command (exit non-zero if something it needs is missing).
    #[arg(long, value_enum, value_name = "COMMAND", default_value_t = DoctorFor::Layer)]
    pub(crate) r#for: DoctorFor,
    /// Skip the network reachability checks.
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Run only these suites (repeatable).
    #[arg(long, value_enum, value_name = "SUITE")]
    pub(crate) only: Vec<Suite>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Repetitions per measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: u32,
    /// Where to write the Markdown tables of this run (relative to the repository root). The
    /// default is untracked; `bench/RESULTS.md` is the curated record, copied from such runs.
    #[arg(long, value_name = "FILE", default_value = "target/bench/results.md")]
    pub(crate) output: PathBuf,
    /// Run only these benchmarks (repeatable). `providers` (five locks and layer builds) runs only
    /// when named here.
    #[arg(long, value_enum, value_name = "NAME")]
    pub(crate) only: Vec<Benchmark>,
    /// Scratch directory for venvs, caches and layouts (kept between runs).
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub(crate) work_dir: PathBuf,
    /// The interpreter for the `layer` benchmark (default: the pinned download).
    #[command(flatten)]
    pub(crate) python: PythonDistArgs,
}

/// The command `doctor --for` judges readiness for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DoctorFor {
    Layer,
    Lock,
    Verify,
    Deploy,
    Test,
}

impl DoctorFor {
    /// The command's name, as `cargo xtask <name>` takes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DoctorFor::Layer => "layer",
            DoctorFor::Lock => "lock",
            DoctorFor::Verify => "verify",
            DoctorFor::Deploy => "deploy",
            DoctorFor::Test => "test",
        }
    }
}

/// A suite of `cargo xtask test`, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Suite {
    /// rustfmt, clippy and the workflow lint.
    Lint,
    /// `cargo test --workspace`.
    Rust,
    /// The service's `npm test`.
    Node,
}

impl Suite {
    pub(crate) const ALL: [Suite; 3] = [Suite::Lint, Suite::Rust, Suite::Node];
}

/// A benchmark of `cargo xtask bench`, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Benchmark {
    /// `cargo xtask lock` against `uv pip compile`.
    Lock,
    /// The install step against uv and pip.
    Install,
    /// The layer build, cold and warm, against uv + zip.
    Layer,
    /// `import litellm` in each layout.
    Import,
    /// The chat service's cold start (Node, `bench/cold-start.mjs`).
    ColdStart,
    /// `import litellm` with and without the garbage collector (`bench/import-gc.mjs`).
    ImportGc,
    /// The service's warm request overhead (`bench/warm-overhead.mjs`).
    WarmOverhead,
    /// The layer per provider set: OpenAI alone, with each other provider, and with all four.
    Providers,
}

impl Benchmark {
    /// The name `--only` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Benchmark::Lock => "lock",
            Benchmark::Install => "install",
            Benchmark::Layer => "layer",
            Benchmark::Import => "import",
            Benchmark::Providers => "providers",
            Benchmark::ColdStart => "cold-start",
            Benchmark::ImportGc => "import-gc",
            Benchmark::WarmOverhead => "warm-overhead",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn arch_aliases_are_accepted() {
        for (given, want) in
            [("arm64", Arch::Arm64), ("aarch64", Arch::Arm64), ("x86_64", Arch::X86_64), ("amd64", Arch::X86_64)]
        {
            let parsed = Xtask::try_parse_from(["xtask", "layer", "--arch", given]).unwrap();
            let Command::Layer(args) = parsed.command else { panic!("not layer") };
            assert_eq!(args.arch, want, "{given}");
        }
    }

    #[test]
    fn unknown_arch_is_refused_with_the_choices() {
        let err = Xtask::try_parse_from(["xtask", "layer", "--arch", "riscv64"]).unwrap_err().to_string();
        assert!(err.contains("invalid value 'riscv64' for '--arch <ARCH>'"), "{err}");
        assert!(err.contains("arm64") && err.contains("x86_64"), "{err}");
    }

    #[test]
    fn python_dist_requires_a_hash() {
        let err = Xtask::try_parse_from(["xtask", "layer", "--python-dist", "/tmp/x.tar.gz"]).unwrap_err().to_string();
        assert!(err.contains("--python-sha256"), "{err}");
    }

    #[test]
    fn only_and_for_take_known_names() {
        let test = Xtask::try_parse_from(["xtask", "test", "--only", "rust", "--only", "lint"]).unwrap();
        let Command::Test(args) = test.command else { panic!("not test") };
        assert_eq!(args.only, [Suite::Rust, Suite::Lint]);
        let err = Xtask::try_parse_from(["xtask", "test", "--only", "e2e"]).unwrap_err().to_string();
        assert!(err.contains("invalid value 'e2e' for '--only <SUITE>'"), "{err}");
        assert!(err.contains("[possible values: lint, rust, node]"), "{err}");
        let doctor = Xtask::try_parse_from(["xtask", "doctor", "--for", "deploy"]).unwrap();
        let Command::Doctor(args) = doctor.command else { panic!("not doctor") };
        assert_eq!(args.r#for.name(), "deploy");
        let err = Xtask::try_parse_from(["xtask", "bench", "--only", "size"]).unwrap_err().to_string();
        assert!(
            err.contains(
                "[possible values: lock, install, layer, import, cold-start, import-gc, warm-overhead, providers]"
            ),
            "{err}"
        );
    }

    #[test]
    fn source_date_epoch_is_parsed_once_here() {
        let parse = |value: &str| Xtask::try_parse_from(["xtask", "--source-date-epoch", value, "patch"]);
        assert_eq!(parse("1700000000").unwrap().global.source_date_epoch.seconds(), Some(1_700_000_000));
        assert_eq!(parse("").unwrap().global.source_date_epoch.seconds(), None);
        let err = parse("yesterday").unwrap_err().to_string();
        assert!(
            err.contains(
                "invalid value 'yesterday' for '--source-date-epoch <SECONDS>': SOURCE_DATE_EPOCH=\"yesterday\" is \
                 not a number of seconds since 1970; unset it or fix it"
            ),
            "{err}"
        );
    }
}
