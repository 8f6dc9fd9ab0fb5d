//! A build's progress as text: what has happened so far, and the lines each event adds. Pure:
//! [`super::Renderer`] draws it, live or as plain lines.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_protocol::JobId;
use weft_protocol::wire::{BuildEvent, BuildSummary, FailureReport};

/// How many published outputs are listed one per line; the rest are counted.
const SHOWN_OUTPUTS: u64 = 20;

/// Counts a build's events and says, for each, which lines to show.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Whether a live display shows the counts, so that plain lines for them are left out.
    live: bool,
    total: u64,
    done: u64,
    cached: u64,
    running: BTreeMap<JobId, String>,
    n_outputs: u64,
}

impl Progress {
    /// Nothing happened yet. `live`: a progress bar shows the plan and the finished jobs.
    pub(crate) fn new(live: bool) -> Progress {
        Progress {
            live,
            total: 0,
            done: 0,
            cached: 0,
            running: BTreeMap::new(),
            n_outputs: 0,
        }
    }

    /// How many jobs the build needs, once it is planned.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// How many jobs are over: cached, finished or failed.
    pub(crate) fn done(&self) -> u64 {
        self.done
    }

    /// Takes in one event and returns the lines to show for it, without line ends.
    pub(crate) fn event(&mut self, event: &BuildEvent) -> Vec<String> {
        match event {
            BuildEvent::WaitingForLock { holder_pid } => vec![format!(
                "waiting for another build in this workspace (client pid {holder_pid}) to finish"
            )],
            BuildEvent::Planned { n_jobs } => {
                self.total = *n_jobs;
                if self.live {
                    Vec::new()
                } else {
                    vec![format!("planned {n_jobs} jobs")]
                }
            }
            BuildEvent::CacheHit { .. } => {
                self.cached += 1;
                self.done += 1;
                Vec::new()
            }
            BuildEvent::Started { job, name, .. } => {
                self.running.insert(*job, name.clone());
                Vec::new()
            }
            BuildEvent::Finished {
                job,
                name,
                duration_ms,
                ..
            } => {
                self.running.remove(job);
                self.done += 1;
                if self.live {
                    return Vec::new();
                }
                let secs = *duration_ms as f64 / 1000.0;
                vec![format!("[{}/{}] {name} ({secs:.2}s)", self.done, self.total)]
            }
            BuildEvent::Failed(report) => {
                self.running.remove(&report.job);
                self.done += 1;
                vec![failure_text(report)]
            }
            BuildEvent::Output { path, .. } => {
                self.n_outputs += 1;
                if self.n_outputs <= SHOWN_OUTPUTS {
                    vec![format!("output {path}")]
                } else {
                    Vec::new()
                }
            }
            BuildEvent::Notice(text) => vec![text.clone()],
            BuildEvent::Counted {
                cache_hits,
                outputs,
            } => {
                self.cached += cache_hits;
                self.done += cache_hits;
                self.n_outputs += outputs;
                Vec::new()
            }
            BuildEvent::Done(summary) => {
                let mut lines = Vec::new();
                if self.n_outputs > SHOWN_OUTPUTS {
                    lines.push(format!(
                        "… and {} more outputs",
                        self.n_outputs - SHOWN_OUTPUTS
                    ));
                }
                lines.push(summary_line(summary));
                lines
            }
        }
    }

    /// The live display's message: jobs from cache, time since the build started, and up to
    /// three of the running jobs.
    pub(crate) fn message(&self, elapsed: Duration) -> String {
        let mut names: Vec<&str> = self.running.values().map(String::as_str).take(3).collect();
        if self.running.len() > 3 {
            names.push("…");
        }
        format!(
            "{} cached · {:.1}s · {}",
            self.cached,
            elapsed.as_secs_f64(),
            names.join(", ")
        )
    }
}

/// The last line of a build: the verdict and the counts.
fn summary_line(summary: &BuildSummary) -> String {
    let secs = summary.duration_ms as f64 / 1000.0;
    let verdict = if summary.success {
        "build succeeded"
    } else {
        "build FAILED"
    };
    let failed = if summary.n_failed > 0 {
        format!(", {} failed", summary.n_failed)
    } else {
        String::new()
    };
    format!(
        "{verdict}: {} jobs ran, {} from cache{failed}, in {secs:.2}s",
        summary.n_ran, summary.n_cached
    )
}

/// A failed job, as the user needs to see it: label, command, exit code, stderr tail.
fn failure_text(report: &FailureReport) -> String {
    let mut text = format!("FAILED: `{}`", report.name);
    if !report.command.is_empty() {
        text.push_str(&format!("\n  command: {}", shell_words(&report.command)));
    }
    if let Some(code) = report.exit_code {
        text.push_str(&format!("\n  exit code: {code}"));
    }
    if !report.message.is_empty() {
        text.push_str(&format!("\n  {}", report.message));
    }
    if !report.stderr_tail.trim().is_empty() {
        text.push_str("\n  stderr:");
        for line in report.stderr_tail.trim_end().lines() {
            text.push_str("\n    ");
            text.push_str(line);
        }
    }
    text
}

/// A command line a user can paste into a shell.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_well() {
        let report = FailureReport {
            job: JobId(weft_protocol::Digest::of(b"x")),
            name: "//src:app".into(),
            command: vec!["cc".into(), "-c".into(), "a file.c".into()],
            exit_code: Some(1),
            message: "exited with code 1".into(),
            stderr_tail: "a file.c:1: error: oops\n".into(),
        };
        assert_eq!(
            failure_text(&report),
            "FAILED: `//src:app`\n  command: cc -c 'a file.c'\n  exit code: 1\n  exited with \
             code 1\n  stderr:\n    a file.c:1: error: oops"
        );
    }
}
