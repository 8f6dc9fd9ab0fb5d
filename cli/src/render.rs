//! Showing a build: a live display on a terminal, plain lines otherwise, and JSON lines for
//! `--events`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_protocol::JobId;
use weft_protocol::wire::{BuildEvent, BuildSummary, FailureReport};

/// Draws a build's events as they arrive.
pub(crate) struct Renderer {
    bar: Option<ProgressBar>,
    events: Option<BufWriter<File>>,
    started: Instant,
    total: u64,
    done: u64,
    cached: u64,
    running: BTreeMap<JobId, String>,
    failures: Vec<FailureReport>,
    n_outputs: u64,
}

/// How many published outputs are listed one per line; the rest are counted.
const SHOWN_OUTPUTS: u64 = 20;

impl Renderer {
    /// A renderer that draws live when stderr is a terminal, and also writes JSON lines to
    /// `events_path`.
    pub(crate) fn new(events_path: Option<&Path>) -> Result<Renderer> {
        let events = match events_path {
            Some(path) => Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create the events file `{}`", path.display())
            })?)),
            None => None,
        };
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(12));
            bar.set_style(
                ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix("building");
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Ok(Renderer {
            bar,
            events,
            started: Instant::now(),
            total: 0,
            done: 0,
            cached: 0,
            running: BTreeMap::new(),
            failures: Vec::new(),
            n_outputs: 0,
        })
    }

    /// Shows one event.
    pub(crate) fn event(&mut self, event: &BuildEvent) -> Result<()> {
        if let Some(events) = &mut self.events {
            serde_json::to_writer(&mut *events, event)?;
            events.write_all(b"\n")?;
            // Whoever tails the file sees each event as it happens.
            events.flush()?;
        }
        match event {
            BuildEvent::WaitingForLock { holder_pid } => self.line(&format!(
                "waiting for another build in this workspace (client pid {holder_pid}) to finish"
            )),
            BuildEvent::Planned { n_jobs } => {
                self.total = *n_jobs;
                match &self.bar {
                    Some(bar) => bar.set_length(*n_jobs),
                    None => self.line(&format!("planned {n_jobs} jobs")),
                }
            }
            BuildEvent::CacheHit { .. } => {
                self.cached += 1;
                self.advance();
            }
            BuildEvent::Started { job, name, .. } => {
                self.running.insert(*job, name.clone());
                self.update();
            }
            BuildEvent::Finished {
                job,
                name,
                duration_ms,
                ..
            } => {
                self.running.remove(job);
                self.advance();
                if self.bar.is_none() {
                    let secs = *duration_ms as f64 / 1000.0;
                    self.line(&format!(
                        "[{}/{}] {name} ({secs:.2}s)",
                        self.done, self.total
                    ));
                }
            }
            BuildEvent::Failed(report) => {
                self.running.remove(&report.job);
                self.advance();
                self.line(&failure_text(report));
                self.failures.push(report.clone());
            }
            BuildEvent::Output { path, .. } => {
                self.n_outputs += 1;
                if self.n_outputs <= SHOWN_OUTPUTS {
                    self.line(&format!("output {path}"));
                }
            }
            BuildEvent::Notice(text) => self.line(text),
            BuildEvent::Counted {
                cache_hits,
                outputs,
            } => {
                self.cached += cache_hits;
                self.done += cache_hits;
                self.n_outputs += outputs;
                if let Some(bar) = &self.bar {
                    bar.set_position(self.done);
                }
                self.update();
            }
            BuildEvent::Done(summary) => self.finish(summary),
        }
        Ok(())
    }

    fn advance(&mut self) {
        self.done += 1;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        }
        self.update();
    }

    fn update(&self) {
        let Some(bar) = &self.bar else { return };
        let mut names: Vec<&str> = self.running.values().map(String::as_str).take(3).collect();
        if self.running.len() > 3 {
            names.push("…");
        }
        bar.set_message(format!(
            "{} cached · {:.1}s · {}",
            self.cached,
            self.started.elapsed().as_secs_f64(),
            names.join(", ")
        ));
    }

    /// Prints a line without tearing the live display.
    pub(crate) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&mut self, summary: &BuildSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.n_outputs > SHOWN_OUTPUTS {
            eprintln!("… and {} more outputs", self.n_outputs - SHOWN_OUTPUTS);
        }
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
        eprintln!(
            "{verdict}: {} jobs ran, {} from cache{failed}, in {secs:.2}s",
            summary.n_ran, summary.n_cached
        );
    }

    /// Flushes the events file.
    pub(crate) fn close(&mut self) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(events) = &mut self.events {
            events.flush()?;
        }
        Ok(())
    }
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
