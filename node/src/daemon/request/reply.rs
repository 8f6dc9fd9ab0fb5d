//! What a request sends back besides its answer: an error report, and a build's events,
//! most cache hits and outputs counted rather than listed ([`EventSink`]).

use std::fmt::Display;
use std::sync::Arc;
use std::time::Instant;

use weft_protocol::wire::{BuildEvent, BuildSummary, CacheSource, DaemonMessage, ErrorReport};
use weft_protocol::{Job, JobId};

use super::super::conn::{ConnError, ConnWriter};
use super::super::outputs::Published;
use crate::core::BuildOutcome;

/// Sends an error report; the client shows `error` as it reads. (The report is made before
/// the future, so the future holds no reference to `error`, which need not be `Sync`.)
pub(crate) fn send_error<'w>(
    writer: &'w mut ConnWriter,
    error: &dyn Display,
) -> impl Future<Output = Result<(), ConnError>> + use<'w> {
    let report = DaemonMessage::Error(ErrorReport {
        message: error.to_string(),
    });
    async move { writer.send(&report).await }
}

/// How a build sends events: every one, or cache hits and most outputs counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventSink {
    /// Whether the client asked for every event.
    pub(crate) every: bool,
    outputs_listed: u64,
}

impl EventSink {
    /// Outputs listed one by one before the rest are counted.
    const LISTED_OUTPUTS: u64 = 20;

    pub(crate) fn new(every: bool) -> EventSink {
        EventSink {
            every,
            outputs_listed: 0,
        }
    }

    /// What of `events` is sent: all of them when the client asked for every event;
    /// otherwise the events less the cache hits and the outputs past the first
    /// [`LISTED_OUTPUTS`](Self::LISTED_OUTPUTS), with one [`BuildEvent::Counted`] at the end
    /// for those left out.
    fn sift(&mut self, mut events: Vec<BuildEvent>) -> Vec<BuildEvent> {
        if self.every {
            return events;
        }
        let (mut cache_hits, mut outputs) = (0, 0);
        events.retain(|event| match event {
            BuildEvent::CacheHit { .. } => {
                cache_hits += 1;
                false
            }
            BuildEvent::Output { .. } if self.outputs_listed >= Self::LISTED_OUTPUTS => {
                outputs += 1;
                false
            }
            BuildEvent::Output { .. } => {
                self.outputs_listed += 1;
                true
            }
            _ => true,
        });
        if cache_hits + outputs > 0 {
            events.push(BuildEvent::Counted {
                cache_hits,
                outputs,
            });
        }
        events
    }

    /// The events of a replayed build of `jobs`, every one a local cache hit: what
    /// [`sift`](Self::sift) would keep of them, without making the hits it would drop.
    pub(crate) fn replayed(&self, jobs: &[(JobId, Arc<Job>)]) -> Vec<BuildEvent> {
        let n_jobs = jobs.len() as u64;
        if !self.every {
            return vec![
                BuildEvent::Planned { n_jobs },
                BuildEvent::Counted {
                    cache_hits: n_jobs,
                    outputs: 0,
                },
            ];
        }
        let mut events = Vec::with_capacity(jobs.len() + 1);
        events.push(BuildEvent::Planned { n_jobs });
        events.extend(jobs.iter().map(|(id, job)| BuildEvent::CacheHit {
            job: *id,
            name: job.name.clone(),
            source: CacheSource::Local,
        }));
        events
    }

    /// The events that announce `published`: an [`BuildEvent::Output`] for each file, or,
    /// unless the client asked for every event, for the first few and a count of the rest.
    fn outputs(&mut self, published: &[Published]) -> Vec<BuildEvent> {
        let listed = if self.every {
            published.len()
        } else {
            let left = Self::LISTED_OUTPUTS.saturating_sub(self.outputs_listed);
            published
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX))
        };
        self.outputs_listed += listed as u64;
        let mut events: Vec<BuildEvent> = published[..listed]
            .iter()
            .map(|p| BuildEvent::Output {
                name: p.name.clone(),
                path: p.shown.clone(),
            })
            .collect();
        let outputs = (published.len() - listed) as u64;
        if outputs > 0 {
            events.push(BuildEvent::Counted {
                cache_hits: 0,
                outputs,
            });
        }
        events
    }
}

/// Sends `events` in one write, as [`EventSink::sift`] keeps them.
pub(crate) async fn send_events(
    writer: &mut ConnWriter,
    events: Vec<BuildEvent>,
    sink: &mut EventSink,
) -> Result<(), ConnError> {
    queue_all(writer, sink.sift(events))?;
    writer.flush().await
}

/// Sends the events that announce `published` in one write.
pub(crate) async fn send_outputs(
    writer: &mut ConnWriter,
    published: &[Published],
    sink: &mut EventSink,
) -> Result<(), ConnError> {
    queue_all(writer, sink.outputs(published))?;
    writer.flush().await
}

/// Sends `events` as they are, in one write.
pub(crate) async fn send_all(
    writer: &mut ConnWriter,
    events: Vec<BuildEvent>,
) -> Result<(), ConnError> {
    queue_all(writer, events)?;
    writer.flush().await
}

fn queue_all(writer: &mut ConnWriter, events: Vec<BuildEvent>) -> Result<(), ConnError> {
    for event in events {
        writer.queue(&DaemonMessage::Event(event))?;
    }
    Ok(())
}

/// The summary of a build that started at `started` and ended with `outcome`.
pub(crate) fn summary(outcome: &BuildOutcome, started: Instant) -> BuildSummary {
    BuildSummary {
        success: outcome.success,
        n_ran: outcome.n_ran,
        n_cached: outcome.n_cached,
        n_failed: outcome.n_failed,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_protocol::Digest;

    fn hit(n: u8) -> BuildEvent {
        BuildEvent::CacheHit {
            job: JobId(Digest::of(&[n])),
            name: format!("//:{n}"),
            source: CacheSource::Local,
        }
    }

    fn output(n: u64) -> BuildEvent {
        BuildEvent::Output {
            name: format!("//:{n}"),
            path: format!("weft-out/{n}"),
        }
    }

    fn counted(cache_hits: u64, outputs: u64) -> BuildEvent {
        BuildEvent::Counted {
            cache_hits,
            outputs,
        }
    }

    #[test]
    fn sift_counts_hits_and_the_outputs_past_the_listed_ones() {
        let notice = BuildEvent::Notice("local only".into());
        let mut sink = EventSink::new(false);
        assert_eq!(
            sink.sift(vec![hit(1), notice.clone(), hit(2)]),
            [notice.clone(), counted(2, 0)]
        );
        assert_eq!(
            sink.sift(vec![notice.clone()]),
            std::slice::from_ref(&notice)
        );
        // Twenty outputs are listed over all batches, the rest counted.
        let first: Vec<BuildEvent> = (0..15).map(output).collect();
        assert_eq!(sink.sift(first.clone()), first);
        let second: Vec<BuildEvent> = (15..30).map(output).collect();
        let mut expected: Vec<BuildEvent> = (15..20).map(output).collect();
        expected.push(counted(0, 10));
        assert_eq!(sink.sift(second), expected);
        assert_eq!(sink.sift(vec![output(31), hit(3)]), [counted(1, 1)]);

        let mut every = EventSink::new(true);
        let all: Vec<BuildEvent> = (0..30).map(output).chain([hit(1)]).collect();
        assert_eq!(every.sift(all.clone()), all);
    }

    #[test]
    fn outputs_continue_the_count_of_listed_outputs() {
        let published: Vec<Published> = (0..5)
            .map(|n| Published::for_test(&format!("//:{n}"), &format!("weft-out/{n}")))
            .collect();
        let mut sink = EventSink::new(false);
        let _ = sink.sift((0..18).map(output).collect());
        let mut expected = vec![output(0), output(1)];
        expected.push(counted(0, 3));
        assert_eq!(sink.outputs(&published), expected);
        assert_eq!(sink.outputs(&published), [counted(0, 5)]);
        assert_eq!(sink.outputs(&[]), []);

        let mut every = EventSink::new(true);
        let _ = every.sift((0..30).map(output).collect());
        assert_eq!(
            every.outputs(&published),
            (0..5).map(output).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_replay_is_what_sift_would_keep_of_its_hits() {
        let job = |n: u8| {
            let job = Job {
                name: format!("//:{n}"),
                inputs: Vec::new(),
                deps: Vec::new(),
                cmds: Vec::new(),
                env: Default::default(),
                outs: Vec::new(),
                toolchain: Default::default(),
                network: false,
            };
            (JobId(Digest::of(&[n])), Arc::new(job))
        };
        let jobs = vec![job(1), job(2)];
        for every in [false, true] {
            let sink = EventSink::new(every);
            let mut sifting = sink;
            let events = sifting.sift(vec![BuildEvent::Planned { n_jobs: 2 }, hit(1), hit(2)]);
            assert_eq!(sink.replayed(&jobs), events, "every: {every}");
        }
        // Even with no job at all, a replay says how many hits it counted.
        assert_eq!(
            EventSink::new(false).replayed(&[]),
            [BuildEvent::Planned { n_jobs: 0 }, counted(0, 0)]
        );
    }
}
