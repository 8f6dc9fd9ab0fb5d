//! Drawing a build as its events arrive: a live display on a terminal, plain lines otherwise,
//! and JSON lines for `--events`. What the lines say is [`Progress`]'s.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_protocol::wire::BuildEvent;

use super::progress::Progress;

/// Draws a build's events as they arrive.
pub(crate) struct Renderer {
    bar: Option<ProgressBar>,
    events: Option<BufWriter<File>>,
    started: Instant,
    progress: Progress,
}

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
            progress: Progress::new(bar.is_some()),
            bar,
            events,
            started: Instant::now(),
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
        let lines = self.progress.event(event);
        if let BuildEvent::Done(_) = event
            && let Some(bar) = self.bar.take()
        {
            // The summary goes below where the display was.
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.bar {
            match event {
                BuildEvent::Planned { .. } => bar.set_length(self.progress.total()),
                BuildEvent::CacheHit { .. }
                | BuildEvent::Finished { .. }
                | BuildEvent::Failed(_)
                | BuildEvent::Counted { .. } => {
                    bar.set_position(self.progress.done());
                    bar.set_message(self.progress.message(self.started.elapsed()));
                }
                BuildEvent::Started { .. } => {
                    bar.set_message(self.progress.message(self.started.elapsed()));
                }
                BuildEvent::Done(_)
                | BuildEvent::WaitingForLock { .. }
                | BuildEvent::Output { .. }
                | BuildEvent::Notice(_) => {}
            }
        }
        for line in &lines {
            self.line(line);
        }
        Ok(())
    }

    /// Prints a line without tearing the live display.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
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
