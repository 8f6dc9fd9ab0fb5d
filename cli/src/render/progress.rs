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
                vec![format!(
                    "[{}/{}] {name} ({secs:.2}s)",
                    self.done, self.total
                )]
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
    use expect_test::expect;
    use weft_protocol::wire::CacheSource;
    use weft_protocol::{Digest, NodeId};

    use super::*;

    fn job(name: &str) -> JobId {
        JobId(Digest::of(name.as_bytes()))
    }

    fn node() -> NodeId {
        NodeId(*Digest::of(b"node").as_bytes())
    }

    fn started(name: &str) -> BuildEvent {
        BuildEvent::Started {
            job: job(name),
            name: name.into(),
            node: node(),
        }
    }

    fn finished(name: &str, duration_ms: u64) -> BuildEvent {
        BuildEvent::Finished {
            job: job(name),
            name: name.into(),
            node: node(),
            duration_ms,
        }
    }

    fn failed() -> BuildEvent {
        BuildEvent::Failed(FailureReport {
            job: job("//app:main"),
            name: "//app:main".into(),
            command: vec![
                "cc".into(),
                "-o".into(),
                "{{OUTPUT_DIR}}/main".into(),
                "it's.c".into(),
                String::new(),
            ],
            exit_code: Some(1),
            message: "exited with code 1".into(),
            stderr_tail: "it's.c:3:1: error: expected ';'\n1 error generated.\n\n".into(),
        })
    }

    /// A small build: waits for the lock, one cache hit, one job finished, one failed.
    fn small_build() -> Vec<BuildEvent> {
        vec![
            BuildEvent::WaitingForLock { holder_pid: 777 },
            BuildEvent::Planned { n_jobs: 3 },
            BuildEvent::CacheHit {
                job: job("//lib:greet"),
                name: "//lib:greet".into(),
                source: CacheSource::Peer(node()),
            },
            started("//lib:shout"),
            started("//app:main"),
            finished("//lib:shout", 1_234),
            failed(),
            BuildEvent::Output {
                name: "//lib:shout".into(),
                path: "weft-out/lib/shout.o".into(),
            },
            BuildEvent::Notice("running local-only: the mesh did not start".into()),
            BuildEvent::Done(BuildSummary {
                success: false,
                n_ran: 2,
                n_cached: 1,
                n_failed: 1,
                duration_ms: 2_005,
            }),
        ]
    }

    /// Every line the events make, each ended by a newline.
    fn transcript(live: bool, events: &[BuildEvent]) -> String {
        let mut progress = Progress::new(live);
        events
            .iter()
            .flat_map(|event| progress.event(event))
            .map(|line| line + "\n")
            .collect()
    }

    #[test]
    fn plain_lines() {
        expect![[r#"
            waiting for another build in this workspace (client pid 777) to finish
            planned 3 jobs
            [2/3] //lib:shout (1.23s)
            FAILED: `//app:main`
              command: cc -o '{{OUTPUT_DIR}}/main' 'it'\''s.c' ''
              exit code: 1
              exited with code 1
              stderr:
                it's.c:3:1: error: expected ';'
                1 error generated.
            output weft-out/lib/shout.o
            running local-only: the mesh did not start
            build FAILED: 2 jobs ran, 1 from cache, 1 failed, in 2.00s
        "#]]
        .assert_eq(&transcript(false, &small_build()));
    }

    #[test]
    fn a_live_display_leaves_out_what_it_shows() {
        expect![[r#"
            waiting for another build in this workspace (client pid 777) to finish
            FAILED: `//app:main`
              command: cc -o '{{OUTPUT_DIR}}/main' 'it'\''s.c' ''
              exit code: 1
              exited with code 1
              stderr:
                it's.c:3:1: error: expected ';'
                1 error generated.
            output weft-out/lib/shout.o
            running local-only: the mesh did not start
            build FAILED: 2 jobs ran, 1 from cache, 1 failed, in 2.00s
        "#]]
        .assert_eq(&transcript(true, &small_build()));
    }

    #[test]
    fn many_outputs_are_counted() {
        let mut events = vec![BuildEvent::Planned { n_jobs: 30 }];
        for i in 0..22 {
            events.push(BuildEvent::Output {
                name: format!("//gen:f{i}"),
                path: format!("weft-out/gen/f{i}.txt"),
            });
        }
        events.push(BuildEvent::Counted {
            cache_hits: 8,
            outputs: 3,
        });
        events.push(BuildEvent::Done(BuildSummary {
            success: true,
            n_ran: 22,
            n_cached: 8,
            n_failed: 0,
            duration_ms: 61_049,
        }));
        expect![[r#"
            planned 30 jobs
            output weft-out/gen/f0.txt
            output weft-out/gen/f1.txt
            output weft-out/gen/f2.txt
            output weft-out/gen/f3.txt
            output weft-out/gen/f4.txt
            output weft-out/gen/f5.txt
            output weft-out/gen/f6.txt
            output weft-out/gen/f7.txt
            output weft-out/gen/f8.txt
            output weft-out/gen/f9.txt
            output weft-out/gen/f10.txt
            output weft-out/gen/f11.txt
            output weft-out/gen/f12.txt
            output weft-out/gen/f13.txt
            output weft-out/gen/f14.txt
            output weft-out/gen/f15.txt
            output weft-out/gen/f16.txt
            output weft-out/gen/f17.txt
            output weft-out/gen/f18.txt
            output weft-out/gen/f19.txt
            … and 5 more outputs
            build succeeded: 22 jobs ran, 8 from cache, in 61.05s
        "#]]
        .assert_eq(&transcript(false, &events));
    }

    #[test]
    fn the_live_message() {
        let mut progress = Progress::new(true);
        for event in [
            BuildEvent::Planned { n_jobs: 9 },
            BuildEvent::Counted {
                cache_hits: 4,
                outputs: 0,
            },
            started("//a:one"),
            started("//a:two"),
        ] {
            progress.event(&event);
        }
        let mut messages = vec![progress.message(Duration::from_millis(1_250))];
        progress.event(&started("//a:three"));
        progress.event(&started("//a:four"));
        messages.push(progress.message(Duration::from_millis(65_000)));
        progress.event(&finished("//a:one", 10));
        progress.event(&finished("//a:two", 10));
        progress.event(&finished("//a:three", 10));
        progress.event(&finished("//a:four", 10));
        messages.push(progress.message(Duration::from_millis(70_040)));
        // Quoted, to show the trailing space of the last one. The running jobs are in the
        // order of their ids.
        expect![[r#"
            [
                "4 cached · 1.2s · //a:one, //a:two",
                "4 cached · 65.0s · //a:one, //a:four, //a:three, …",
                "4 cached · 70.0s · ",
            ]
        "#]]
        .assert_eq(&format!("{messages:#?}\n"));
        assert_eq!((progress.done(), progress.total()), (8, 9));
    }

    #[test]
    fn failures_read_well() {
        let report = FailureReport {
            job: job("x"),
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

    #[test]
    fn a_failure_without_a_command() {
        let report = FailureReport {
            job: job("//:gen"),
            name: "//:gen".into(),
            command: vec![],
            exit_code: None,
            message: "timed out after 60s; the process group was killed".into(),
            stderr_tail: "  \n".into(),
        };
        expect![[r#"
            FAILED: `//:gen`
              timed out after 60s; the process group was killed
        "#]]
        .assert_eq(&(failure_text(&report) + "\n"));
    }
}
