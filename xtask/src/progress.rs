//! Progress output: one plain line per step, `::group::` sections on GitHub Actions, a bar for long
//! downloads only when stderr is a terminal, and per-step timings for the final summary.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports steps to stderr and remembers how long each took.
#[derive(Debug)]
pub struct Progress {
    github: bool,
    terminal: bool,
    timings: Mutex<Vec<(String, Duration)>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            github: std::env::var_os("GITHUB_ACTIONS").is_some(),
            terminal: std::io::stderr().is_terminal(),
            timings: Mutex::new(Vec::new()),
        }
    }

    /// Print a one-line note that belongs to the current step.
    pub(crate) fn note(&self, message: impl AsRef<str>) {
        eprintln!("    {}", message.as_ref());
    }

    /// Print a warning.
    pub(crate) fn warn(&self, message: impl AsRef<str>) {
        if self.github {
            eprintln!("::warning::{}", message.as_ref());
        } else {
            eprintln!("warning: {}", message.as_ref());
        }
    }

    /// Run one named step: prints `==> name`, times it, groups its output on GitHub Actions.
    pub(crate) fn step<T>(&self, name: impl Into<String>, body: impl FnOnce() -> T) -> T {
        let name = name.into();
        if self.github {
            eprintln!("::group::{name}");
        }
        eprintln!("==> {name}");
        let started = Instant::now();
        let result = body();
        let took = started.elapsed();
        if self.github {
            eprintln!("::endgroup::");
        }
        self.timings.lock().expect("timings lock").push((name, took));
        result
    }

    /// The steps run so far and their durations, in order.
    pub(crate) fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().expect("timings lock").clone()
    }

    /// A one-line summary of step times: `runtime 1.2s, install 3.4s, ...`.
    pub(crate) fn timing_summary(&self) -> String {
        self.timings()
            .iter()
            .map(|(name, took)| format!("{} {:.1}s", short_step_name(name), took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A byte counter for a download: a bar on a terminal, nothing otherwise.
    pub(crate) fn download_bar(&self, label: &str, total: Option<u64>) -> ProgressBar {
        if !self.terminal || self.github {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template("    {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar
    }
}

/// The first word of a step name, used in the summary line.
fn short_step_name(name: &str) -> &str {
    name.split_whitespace().next().unwrap_or(name)
}

/// Human-readable bytes: `12.3 MB` (10^6, as Lambda counts).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(35_000_000), "35.0 MB");
    }

    #[test]
    fn steps_are_timed_in_order() {
        let progress = Progress::new();
        let value = progress.step("runtime (x86_64)", || 7);
        progress.step("install", || ());
        assert_eq!(value, 7);
        let names: Vec<String> = progress.timings().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["runtime (x86_64)", "install"]);
        assert!(progress.timing_summary().starts_with("runtime "));
    }
}
