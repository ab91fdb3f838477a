//! What `verify` found: one line per check, the verdict, and the timing recorded in
//! `size-report.json`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::arch::Arch;
use crate::stats::median;
use crate::verify::openai_server::OpenAiServer;
use crate::verify::runner::PythonRun;
use crate::verify::sandbox::Isolation;

/// One line of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub(crate) ok: bool,
    /// A path, count or figure when it passed; the traceback or the offending files when not.
    pub(crate) detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub(crate) arch: Arch,
    pub mode: &'static str,
    pub(crate) isolation: Isolation,
    pub checks: Vec<CheckResult>,
    /// `import litellm` inside each timed process, in milliseconds.
    pub import_litellm_ms: Vec<f64>,
    /// Wall time of each whole timed process (start-up included), in milliseconds.
    pub(crate) process_ms: Vec<f64>,
    /// The modules the workload loaded from `.py`/`.pyc` files (the import profile's source).
    pub(crate) loaded_modules: Option<crate::verify::profile::LoadedModules>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    pub(crate) fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    pub(crate) fn import_litellm_ms_median(&self) -> Option<f64> {
        median(&self.import_litellm_ms)
    }

    /// One line per check (failures followed by their detail, indented), then the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            let first = if check.ok || !check.detail.contains('\n') { check.detail.as_str() } else { "" };
            out.push_str(format!("{mark} {}  {first}", check.name).trim_end());
            out.push('\n');
            if !check.ok && check.detail.contains('\n') {
                for line in check.detail.trim_end().lines() {
                    out.push_str(&format!("       {line}\n"));
                }
            }
        }
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }

    pub(crate) fn verdict(&self) -> String {
        let how = format!("{}, {}", self.mode, self.isolation.describe());
        if self.passed() {
            format!("verify {}: PASSED, {} checks ({how})", self.arch, self.checks.len())
        } else {
            let names: Vec<&str> = self.failed().iter().map(|c| c.name.as_str()).collect();
            format!(
                "verify {}: FAILED {} of {} checks: {} ({how})",
                self.arch,
                names.len(),
                self.checks.len(),
                names.join("; ")
            )
        }
    }
}

/// Turn the `@@verify` lines of the main run into checks.
pub(crate) fn check_results(run: &PythonRun, timeout: Duration) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    for result in run.results() {
        let ok = result["ok"].as_bool().unwrap_or(false);
        let detail = result["detail"].as_str().unwrap_or("").to_string();
        let name = match result["check"].as_str().unwrap_or("") {
            "python" => "interpreter starts".to_string(),
            "import" => format!("import {}", result["name"].as_str().unwrap_or("?")),
            "token_counter" => "token_counter offline (gpt-3.5-turbo)".to_string(),
            "completion" => "completion".to_string(),
            "stream" => "streaming completion".to_string(),
            "async" => "async completion and streaming (acompletion)".to_string(),
            "extensions" => "every extension module loads (dlopen, PyInit_<name>)".to_string(),
            "network" => "no network beyond 127.0.0.1".to_string(),
            _ => continue,
        };
        let detail = if name.starts_with("no network") && !ok {
            format!("tried to reach {detail}")
        } else if name.starts_with("no network") {
            "none attempted".to_string()
        } else {
            detail
        };
        checks.push(CheckResult { name, ok, detail });
    }
    if !run.finished() {
        checks.push(CheckResult {
            name: "interpreter finished the checks".into(),
            ok: false,
            detail: run.explain(timeout),
        });
    }
    checks
}

/// The local server must have seen both completions, with the prompt, one of them streaming.
pub(crate) fn server_checks(server: &OpenAiServer, run: &PythonRun, prompt: &str) -> Vec<CheckResult> {
    let chats: Vec<_> = server.chat_requests().into_iter().filter(|c| c.last_message == prompt).collect();
    let python_ok = |name: &str| run.results().iter().any(|r| r["check"] == name && r["ok"].as_bool() == Some(true));
    if !python_ok("completion") && !python_ok("stream") {
        return Vec::new();
    }
    let plain = chats.iter().filter(|c| !c.stream).count();
    let streamed = chats.iter().filter(|c| c.stream).count();
    vec![CheckResult {
        name: "answers came from the local server".into(),
        ok: plain >= 1 && streamed >= 1,
        detail: format!("{} ({plain} plain, {streamed} streaming request(s) with the prompt)", server.api_base()),
    }]
}

pub(crate) fn writes_check(probe: &[String], read_only: &[String], entries: usize) -> CheckResult {
    let ok = probe.is_empty() && read_only.is_empty();
    let detail = if ok {
        format!("{entries} paths unchanged (writable probe and read-only runs)")
    } else {
        let mut lines = Vec::new();
        if !probe.is_empty() {
            lines.push(format!(
                "{} change(s) when the tree was writable (stale or missing .pyc, or a library writing into its package):",
                probe.len()
            ));
            lines.extend(probe.iter().take(20).map(|c| format!("  {c}")));
            if probe.len() > 20 {
                lines.push(format!("  ... and {} more", probe.len() - 20));
            }
        }
        if !read_only.is_empty() {
            lines.push(format!("{} change(s) during the read-only runs:", read_only.len()));
            lines.extend(read_only.iter().take(20).map(|c| format!("  {c}")));
        }
        lines.join("\n") + "\n"
    };
    CheckResult { name: "no file written into the layer tree".into(), ok, detail }
}

/// Add (or replace) the `"verify"` key of the size report, creating the file if absent. The file
/// is replaced atomically (temp file in the same directory, then rename).
pub fn record_in_size_report(path: &Path, verify: Value) -> Result<()> {
    let mut report = if path.exists() {
        let text = fs_err::read_to_string(path)?;
        let value: Value = serde_json::from_str(&text).with_context(|| {
            format!("{}: not valid JSON; rebuild it with `cargo xtask layer` or delete it", path.display())
        })?;
        if !value.is_object() {
            bail!("{}: expected a JSON object at the top; rebuild it with `cargo xtask layer`", path.display());
        }
        value
    } else {
        json!({})
    };
    report["verify"] = verify;
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    // The report keeps the mode the build gave it (it used to come back 0600).
    crate::files::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_report_gains_a_verify_key_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("size-report.json");
        fs_err::write(&path, r#"{"totals": {"zipped": 123}}"#).unwrap();
        record_in_size_report(&path, json!({"import_litellm_ms_median": 512.5, "runs": 3})).unwrap();
        let value: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(value["totals"]["zipped"], 123);
        assert_eq!(value["verify"]["import_litellm_ms_median"], 512.5);
        let fresh = dir.path().join("new/size-report.json");
        record_in_size_report(&fresh, json!({"runs": 1})).unwrap();
        assert!(fs_err::read_to_string(&fresh).unwrap().contains("\"runs\": 1"));
        fs_err::write(&path, "[1, 2]").unwrap();
        let error = format!("{:#}", record_in_size_report(&path, json!({})).unwrap_err());
        assert!(error.contains("expected a JSON object"), "{error}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "[1, 2]");
    }

    #[test]
    fn render_shows_tracebacks_under_the_failing_line() {
        let report = VerifyReport {
            arch: Arch::X86_64,
            mode: "native",
            isolation: Isolation::PermissionBits,
            checks: vec![
                CheckResult { name: "import litellm".into(), ok: true, detail: "/opt/x.py".into() },
                CheckResult {
                    name: "import tokenizers".into(),
                    ok: false,
                    detail: "Traceback (most recent call last):\nModuleNotFoundError: No module named 'tokenizers'\n"
                        .into(),
                },
            ],
            import_litellm_ms: vec![],
            process_ms: vec![],
            loaded_modules: None,
        };
        let text = report.render();
        assert!(text.contains("ok   import litellm  /opt/x.py\n"), "{text}");
        assert!(text.contains("FAIL import tokenizers\n       Traceback"), "{text}");
        assert!(text.contains("verify x86_64: FAILED 1 of 2 checks: import tokenizers"), "{text}");
    }
}
