//! `cargo xtask doctor`: what the workflow needs, whether it is there, and the command that fixes
//! each gap. Exits non-zero when something the chosen command (`--for`) needs is missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::arch::Arch;
use crate::cache::Cache;
use crate::flags::{DoctorArgs, GlobalArgs};
use crate::http::{Http, redact_url};
use crate::manifest::Manifest;
use crate::spec::LayerSpec;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) ok: bool,
    /// What was found (a version, a path) or what is wrong.
    pub(crate) detail: String,
    /// The command or action that fixes a gap.
    pub(crate) fix: &'static str,
    /// The commands that cannot work without this.
    pub(crate) needed_by: &'static [&'static str],
}

pub fn run(global: &GlobalArgs, args: &DoctorArgs) -> Result<()> {
    let command = args.r#for.name();
    let checks = gather(global, args.offline);
    print!("{}", render(&checks, command));
    let blocking: Vec<&Check> = checks.iter().filter(|c| !c.ok && c.needed_by.contains(&command)).collect();
    if blocking.is_empty() {
        println!("ready for `cargo xtask {command}`");
        Ok(())
    } else {
        let names: Vec<&str> = blocking.iter().map(|c| c.name).collect();
        bail!("`cargo xtask {command}` needs: {} (fixes above)", names.join(", "))
    }
}

/// Run every check.
pub(crate) fn gather(global: &GlobalArgs, offline: bool) -> Vec<Check> {
    let root = crate::project_root();
    let mut checks = vec![
        tool_check(
            "cargo",
            &[std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()).as_str(), "--version"],
            None,
            "install Rust with rustup: https://rustup.rs",
            &["layer", "lock", "verify", "deploy", "test"],
        ),
        tool_check(
            "node >= 20",
            &["node", "--version"],
            Some(20),
            "install Node.js 20 or newer (Lambda runs 22): e.g. `apt-get install nodejs npm` or nvm",
            &["deploy", "test"],
        ),
        tool_check("npm", &["npm", "--version"], None, "install npm (it ships with Node.js)", &["deploy", "test"]),
    ];
    let node_modules = root.join("amplify-lambda-js/node_modules");
    checks.push(Check {
        name: "service npm dependencies",
        ok: node_modules.join(".bin").exists(),
        detail: if node_modules.exists() { node_modules.display().to_string() } else { "not installed".into() },
        fix: "cd amplify-lambda-js && npm ci",
        needed_by: &["deploy"],
    });
    let host = Arch::host();
    let qemu_needed = host != Some(Arch::Arm64);
    let qemu = tool_check(
        "qemu-aarch64-static",
        &["qemu-aarch64-static", "--version"],
        None,
        "apt-get install qemu-user-static (runs the arm64 layer on this x86_64 host)",
        &[],
    );
    checks.push(Check {
        detail: if qemu_needed { qemu.detail.clone() } else { "not needed on an arm64 host".into() },
        ok: qemu.ok || !qemu_needed,
        needed_by: if qemu_needed { &["verify"] } else { &[] },
        ..qemu
    });
    checks.push(cache_check(global.cache_dir.as_deref()));
    let spec = LayerSpec::load(&global.spec_path());
    checks.push(Check {
        name: "layer spec",
        ok: spec.is_ok(),
        detail: match &spec {
            Ok(spec) => format!(
                "{} (python {}, {})",
                spec.path.display(),
                spec.python.version,
                spec.packages.requirements.join(" ")
            ),
            Err(e) => format!("{e:#}"),
        },
        fix: "fix the key named in the message in litellm-layer/layer.toml",
        needed_by: &["layer", "lock", "verify", "deploy"],
    });
    let lock = root.join("litellm-layer/pylock.toml");
    checks.push(Check {
        name: "lock file",
        ok: lock.exists(),
        detail: if lock.exists() { lock.display().to_string() } else { "missing".into() },
        fix: "cargo xtask lock",
        needed_by: &["layer", "deploy"],
    });
    if !offline && let Ok(spec) = &spec {
        let index = format!("{}/pip/", spec.index.url.trim_end_matches('/'));
        checks.push(reachable(
            "package index",
            &index,
            "check the network/proxy, or set [index] url / --index-url",
            &["lock"],
        ));
        checks.push(pbs_check(global, spec));
    }
    checks.push(aws_credentials_check());
    checks
}

/// Whether `layer` can get the pinned interpreter: already in the download cache, or its host
/// (the pinned URL's, or the mirror's) answers. Without either, `layer` is blocked.
fn pbs_check(global: &GlobalArgs, spec: &LayerSpec) -> Check {
    const NAME: &str = "python-build-standalone";
    const FIX: &str = "set `[python] mirror` in layer.toml or XTASK_PBS_MIRROR, or download the archive elsewhere \
                       and pass --python-dist PATH --python-sha256 HEX to `layer` (README: Building without GitHub)";
    let needed_by: &'static [&'static str] = &["layer", "deploy"];
    // `layer` builds arm64 by default.
    let manifest = Manifest::pinned();
    let artifact = match manifest.find(spec.python.version, &spec.python.release, Arch::Arm64, spec.python.variant) {
        Ok(artifact) => artifact,
        Err(e) => return Check { name: NAME, ok: false, detail: format!("{e:#}"), fix: FIX, needed_by },
    };
    let cached = crate::cache::Sha256Hex::parse(&artifact.sha256)
        .ok()
        .and_then(|sha256| Cache::locate(global.cache_dir.as_deref()).ok()?.get(&sha256).ok().flatten());
    if let Some(path) = cached {
        return Check { name: NAME, ok: true, detail: format!("{} (cached)", path.display()), fix: FIX, needed_by };
    }
    reachable(NAME, &artifact.url_via(spec.pbs_mirror(global.pbs_mirror_override()).as_deref()), FIX, needed_by)
}

/// Render the checks as aligned lines, marking the ones the command needs.
pub(crate) fn render(checks: &[Check], command: &str) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let mark = if check.ok {
            "ok     "
        } else if check.needed_by.contains(&command) {
            "MISSING"
        } else {
            "absent "
        };
        out.push_str(&format!("{mark} {:width$}  {}\n", check.name, check.detail));
        if !check.ok {
            out.push_str(&format!("        {:width$}  fix: {}\n", "", check.fix));
        }
    }
    out
}

fn tool_check(
    name: &'static str,
    argv: &[&str],
    min_major: Option<u32>,
    fix: &'static str,
    needed_by: &'static [&'static str],
) -> Check {
    let output = Command::new(argv[0]).args(&argv[1..]).output();
    let (ok, detail) = match output {
        Ok(output) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            let first = text.lines().next().unwrap_or("").trim().to_string();
            match min_major {
                Some(min) => match major_version(&first) {
                    Some(major) if major >= min => (true, first),
                    Some(_) => (false, format!("{first} is too old (need {min} or newer)")),
                    None => (false, format!("cannot read the version from {first:?}")),
                },
                None => (true, first),
            }
        }
        Ok(output) => (false, format!("`{}` exited with {}", argv.join(" "), output.status)),
        Err(_) => (false, "not found on PATH".into()),
    };
    Check { name, ok, detail, fix, needed_by }
}

/// The major version of a `--version` line, `v` prefix optional: `v20.20.2` → 20, `11.19.1` → 11.
pub(crate) fn major_version(text: &str) -> Option<u32> {
    text.trim_start_matches('v').split('.').next()?.trim().parse().ok()
}

fn cache_check(explicit: Option<&Path>) -> Check {
    let fix = "pass --cache-dir DIR or set XTASK_CACHE_DIR to a writable directory";
    let needed_by: &'static [&'static str] = &["layer", "lock", "deploy"];
    match Cache::locate(explicit).and_then(|cache| {
        let file = cache.temp_file()?;
        drop(file);
        Ok(cache)
    }) {
        Ok(cache) => {
            Check { name: "writable cache", ok: true, detail: cache.root().display().to_string(), fix, needed_by }
        }
        Err(e) => Check { name: "writable cache", ok: false, detail: format!("{e:#}"), fix, needed_by },
    }
}

fn reachable(name: &'static str, url: &str, fix: &'static str, needed_by: &'static [&'static str]) -> Check {
    let shown = redact_url(url);
    let result = Http::with_timeout(Duration::from_secs(5)).and_then(|http| {
        let response = http.client().head(url).send()?;
        Ok(response.status())
    });
    match result {
        Ok(status) if status.is_success() || status.is_redirection() => {
            Check { name, ok: true, detail: format!("{shown} ({status})"), fix, needed_by }
        }
        Ok(status) => Check { name, ok: false, detail: format!("{shown} answered {status}"), fix, needed_by },
        Err(e) => Check { name, ok: false, detail: format!("{shown} unreachable: {}", root_cause(&e)), fix, needed_by },
    }
}

fn root_cause(error: &anyhow::Error) -> String {
    error.chain().last().map(|e| e.to_string()).unwrap_or_default()
}

/// Whether AWS credentials are configured; never prints them.
fn aws_credentials_check() -> Check {
    let env_keys =
        std::env::var_os("AWS_ACCESS_KEY_ID").is_some() && std::env::var_os("AWS_SECRET_ACCESS_KEY").is_some();
    let web_identity = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
    let profile = std::env::var("AWS_PROFILE").ok();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let files = home.map(|h| h.join(".aws/credentials").exists() || h.join(".aws/config").exists()).unwrap_or(false);
    let (ok, detail) = if env_keys {
        (true, "from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (not shown)".to_string())
    } else if web_identity {
        (true, "from AWS_WEB_IDENTITY_TOKEN_FILE (OIDC)".to_string())
    } else if files {
        (true, format!("from ~/.aws (profile {})", profile.as_deref().unwrap_or("default")))
    } else {
        (false, "none found".to_string())
    };
    Check {
        name: "AWS credentials",
        ok,
        detail,
        fix: "aws configure, or export AWS_PROFILE / AWS_ACCESS_KEY_ID",
        needed_by: &["deploy"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_node_style_versions() {
        assert_eq!(major_version("v20.20.2"), Some(20));
        assert_eq!(major_version("v22.20.0\n"), Some(22));
        assert_eq!(major_version("11.19.1"), Some(11));
        assert_eq!(major_version("node"), None);
    }

    #[test]
    fn missing_tool_is_reported_with_its_fix() {
        let check =
            tool_check("frobnicate", &["/nonexistent/frobnicate", "--version"], None, "install frobnicate", &["layer"]);
        assert!(!check.ok);
        assert_eq!(check.detail, "not found on PATH");
        let text = render(&[check], "layer");
        assert!(text.contains("MISSING frobnicate"), "{text}");
        assert!(text.contains("fix: install frobnicate"), "{text}");
    }

    #[test]
    fn a_gap_only_blocks_the_commands_that_need_it() {
        let check = Check {
            name: "AWS credentials",
            ok: false,
            detail: "none found".into(),
            fix: "aws configure",
            needed_by: &["deploy"],
        };
        assert!(render(std::slice::from_ref(&check), "layer").starts_with("absent "));
        assert!(render(&[check], "deploy").starts_with("MISSING"));
    }

    #[test]
    fn unwritable_cache_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs_err::write(&file, "x").unwrap();
        let check = cache_check(Some(&file.join("cache")));
        assert!(!check.ok, "{check:?}");
        assert!(check.detail.contains("a-file"), "{}", check.detail);
    }
}
