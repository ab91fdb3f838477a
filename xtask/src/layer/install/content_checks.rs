//! What a locked wheel may put into the layer (docs/architecture.md §10): startup hooks only when
//! allowed by name and hash, secret-shaped files only when listed, and no two distributions
//! writing the same path.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::SelectedWheel;
use crate::layer::wheel::WheelPlan;
use crate::packaging::wheel_name::normalize_name;
use crate::progress::Progress;
use crate::spec::AllowedStartupHook;

/// The supply-chain guard (docs/architecture.md §10): a `*.pth` file at the top of site-packages, or a
/// `sitecustomize`/`usercustomize` module, runs code at every interpreter start. Each one is
/// refused unless `packages.allow-startup-hooks` holds its distribution's name *and* the sha256 of
/// its content (checked against RECORD here and against the bytes when the wheel is unpacked), so
/// a new release of an allowed distribution cannot slip a different hook in.
pub(super) fn check_startup_hooks(
    plans: &[(&SelectedWheel, &WheelPlan)],
    allowed: &[AllowedStartupHook],
    progress: &Progress,
) -> Result<()> {
    for (choice, plan) in plans {
        let name = normalize_name(&choice.package.name);
        let mut refused = Vec::new();
        for file in plan.files.iter().filter(|f| is_startup_hook(&f.destination)) {
            let sha256 = plan.recorded_sha256_hex(&file.archive_path).unwrap_or_default();
            let is_allowed = allowed.iter().any(|entry| {
                matches!(entry, AllowedStartupHook::Pinned { name: allowed_name, sha256: allowed_sha256 }
                    if normalize_name(allowed_name) == name && allowed_sha256.eq_ignore_ascii_case(&sha256))
            });
            if is_allowed {
                progress.warn(format!(
                    "{}: installs startup hook {} (sha256 {sha256}, allowed by packages.allow-startup-hooks)",
                    plan.wheel, file.destination
                ));
            } else {
                refused.push((file.destination.as_str(), sha256));
            }
        }
        if refused.is_empty() {
            continue;
        }
        let listed: Vec<String> = refused.iter().map(|(path, sha256)| format!("{path} (sha256 {sha256})")).collect();
        let entries: Vec<String> =
            refused.iter().map(|(_, sha256)| format!("{{ name = \"{name}\", sha256 = \"{sha256}\" }}")).collect();
        bail!(
            "{}: refusing to install {}: a .pth file or sitecustomize/usercustomize module runs code at every \
             Python start (LiteLLM 1.82.8 shipped a credential-stealing .pth this way). If you trust it, add {} to \
             packages.allow-startup-hooks in layer.toml",
            plan.wheel,
            listed.join(", "),
            entries.join(", ")
        );
    }
    Ok(())
}

/// File names that usually hold credentials or private keys: a wheel carrying one may be leaking
/// its author's secrets, and a layer carrying one ships them to every function. Matched on the
/// last path component.
const SECRET_FILE_NAMES: &[&str] = &[
    ".env",
    ".netrc",
    "_netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".htpasswd",
    ".pgpass",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
];

/// Extensions of key and certificate stores.
const SECRET_FILE_EXTENSIONS: &[&str] = &["pem", "key", "p12", "pfx", "jks", "keystore"];

/// Whether an installed path looks like a secret by its name (see [`SECRET_FILE_NAMES`]).
pub(super) fn is_secret_shaped(destination: &str) -> bool {
    let file = destination.rsplit('/').next().unwrap_or(destination);
    let lower = file.to_ascii_lowercase();
    SECRET_FILE_NAMES.contains(&lower.as_str())
        || lower.starts_with(".env.")
        || lower.rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && SECRET_FILE_EXTENSIONS.contains(&ext))
        || destination.ends_with(".aws/credentials")
}

/// Refuse secret-shaped files unless `packages.allow-secret-files` names their path.
pub(super) fn check_secret_files(plans: &[(&SelectedWheel, &WheelPlan)], allowed: &[String]) -> Result<()> {
    for (_, plan) in plans {
        let refused: Vec<&str> = plan
            .files
            .iter()
            .map(|f| f.destination.as_str())
            .filter(|d| is_secret_shaped(d) && !allowed.iter().any(|a| a == d))
            .collect();
        if !refused.is_empty() {
            let quoted: Vec<String> = refused.iter().map(|path| format!("\"{path}\"")).collect();
            bail!(
                "{}: refusing to install {}: the name looks like a credential or private key, which must not ship \
                 in a layer. If it is meant to be there (a CA bundle, a public key), add {} to \
                 packages.allow-secret-files in layer.toml",
                plan.wheel,
                refused.join(", "),
                quoted.join(", ")
            );
        }
    }
    Ok(())
}

/// Whether an installed path (relative to site-packages) runs at interpreter start: a top-level
/// `*.pth` (read by `site`), or anything that makes `sitecustomize`/`usercustomize` importable
/// (`sitecustomize.py`, `.pyc`, an extension module, or a package directory).
pub(super) fn is_startup_hook(destination: &str) -> bool {
    let (first, rest) = match destination.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (destination, None),
    };
    if rest.is_none() && first.ends_with(".pth") {
        return true;
    }
    let module = first.split('.').next().unwrap_or(first);
    module == "sitecustomize" || module == "usercustomize"
}

/// Two wheels writing the same path, or one writing a file where another needs a directory, is an
/// error naming both.
pub(super) fn check_conflicts(plans: &[(&SelectedWheel, &WheelPlan)]) -> Result<()> {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for (_, plan) in plans {
        for file in &plan.files {
            if let Some(other) = owners.insert(&file.destination, &plan.wheel) {
                bail!(
                    "{} and {} both install {:?}; exclude one of them in layer.toml and re-lock",
                    other,
                    plan.wheel,
                    file.destination
                );
            }
        }
    }
    for (path, owner) in &owners {
        let mut prefix = *path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(other) = owners.get(parent) {
                bail!("{other} installs the file {parent:?}, but {owner} installs {path:?} inside it as a directory");
            }
            prefix = parent;
        }
    }
    Ok(())
}
