//! [`Journal`]: the jobs this daemon is running, written down before each starts, so that a
//! daemon that died while its machine stayed up (a job that took it down, the OOM killer) knows
//! when it starts again which runs it died in. Its own such jobs count as lost workers towards
//! their quarantine ([`crate::core::CoreConfig::max_job_losses`]); peers' jobs are reported to
//! their origins once those are admitted again.
//!
//! `$WEFT_HOME/running.log` holds a line per event: `boot <boot id>` first, then `start <job id>
//! <losses before>` for this node's jobs, `stolen <job id> <origin>` for peers', and `end <job
//! id>`. Lines are appended with one `write` each and not synced: a daemon that dies loses none
//! of them (the kernel has them). When the machine itself restarted (another boot id), the runs
//! open in the file died with the machine, and nothing is blamed. The file is read once at
//! start and then started afresh; while the daemon runs it is rewritten with just the open
//! runs whenever it grows past [`MAX_LEN`].

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};
use weft_protocol::{Digest, JobId, NodeId};

/// The file is compacted when it grows past this many bytes.
const MAX_LEN: u64 = 1 << 20;

/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The runs in progress, on disk.
#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    boot: String,
    file: Option<File>,
    /// The runs started and not ended: this node's with their losses before the start, and
    /// peers' with their origin.
    open: HashMap<JobId, Run>,
    len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Own { losses: u32 },
    Stolen { origin: NodeId },
}

/// The runs a daemon died in, as the next one finds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Died {
    /// This node's jobs, each with how many times it has lost its worker, this run included.
    pub(super) own: Vec<(JobId, u32)>,
    /// Peers' jobs, by origin.
    pub(super) stolen: BTreeMap<NodeId, Vec<JobId>>,
}

impl Journal {
    /// Opens the journal at `path`, returning the runs the last daemon died in (none when the
    /// machine restarted since). A missing file means none; a damaged line is skipped.
    pub(super) fn open(path: PathBuf) -> (Journal, Died) {
        let boot = std::fs::read_to_string(BOOT_ID)
            .map(|id| id.trim().to_owned())
            .unwrap_or_default();
        let died = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (then, died) = parse(&text);
                if then == boot && !boot.is_empty() {
                    died
                } else {
                    if died != Died::default() {
                        info!(
                            "the machine restarted since the last daemon ran: the runs it had open are not blamed"
                        );
                    }
                    Died::default()
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Died::default(),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot read the running jobs' journal");
                Died::default()
            }
        };
        let mut journal = Journal {
            path,
            boot,
            file: None,
            open: HashMap::new(),
            len: 0,
        };
        journal.rewrite();
        (journal, died)
    }

    /// An in-memory journal, for an engine without a home.
    pub(super) fn none() -> Journal {
        Journal {
            path: PathBuf::new(),
            boot: String::new(),
            file: None,
            open: HashMap::new(),
            len: 0,
        }
    }

    /// One of this node's jobs starts; it had lost its worker `losses` times before.
    pub(super) fn start(&mut self, job: JobId, losses: u32) {
        self.open.insert(job, Run::Own { losses });
        self.append(&line(job, Run::Own { losses }));
    }

    /// A job stolen from `origin` starts.
    pub(super) fn start_stolen(&mut self, job: JobId, origin: NodeId) {
        self.open.insert(job, Run::Stolen { origin });
        self.append(&line(job, Run::Stolen { origin }));
    }

    /// `job`'s run ended (in any way but the daemon's death).
    pub(super) fn end(&mut self, job: JobId) {
        if self.open.remove(&job).is_some() {
            self.append(&format!("end {job}\n"));
        }
    }

    fn append(&mut self, line: &str) {
        let Some(file) = &mut self.file else {
            return;
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            warn!(file = %self.path.display(), error = %e, "cannot write the running jobs' journal");
            self.file = None;
            return;
        }
        self.len += line.len() as u64;
        if self.len > MAX_LEN {
            self.rewrite();
        }
    }

    /// Starts the file afresh with the open runs.
    fn rewrite(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let mut text = format!("boot {}\n", self.boot);
        for (job, run) in &self.open {
            text.push_str(&line(*job, *run));
        }
        match write_fresh(&self.path, &text) {
            Ok(file) => {
                self.file = Some(file);
                self.len = text.len() as u64;
            }
            Err(e) => {
                warn!(file = %self.path.display(), error = %e, "cannot write the running jobs' journal");
                self.file = None;
            }
        }
    }
}

fn line(job: JobId, run: Run) -> String {
    match run {
        Run::Own { losses } => format!("start {job} {losses}\n"),
        Run::Stolen { origin } => format!("stolen {job} {}\n", Digest::from_bytes(origin.0)),
    }
}

/// Writes `text` to a temporary file beside `path`, renames it over `path`, and returns it
/// open for appending.
fn write_fresh(path: &Path, text: &str) -> io::Result<File> {
    crate::fs::write_replacing(path, text.as_bytes(), crate::fs::Contents::Rebuildable)?;
    OpenOptions::new().append(true).open(path)
}

/// The boot id a journal's text was written in, and the runs started and not ended in it.
fn parse(text: &str) -> (String, Died) {
    let mut boot = String::new();
    let mut open: HashMap<JobId, Run> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let kind = words.next();
        if kind == Some("boot") {
            boot = words.next().unwrap_or_default().to_owned();
            continue;
        }
        let Some(job) = words.next().and_then(|id| id.parse::<JobId>().ok()) else {
            continue;
        };
        match kind {
            Some("start") => {
                let losses = words.next().and_then(|n| n.parse().ok()).unwrap_or(0u32);
                open.insert(job, Run::Own { losses });
            }
            Some("stolen") => {
                if let Some(origin) = words.next().and_then(|n| n.parse::<Digest>().ok()) {
                    let origin = NodeId(*origin.as_bytes());
                    open.insert(job, Run::Stolen { origin });
                }
            }
            Some("end") => {
                open.remove(&job);
            }
            _ => {}
        }
    }
    let mut died = Died::default();
    for (job, run) in open {
        match run {
            Run::Own { losses } => died.own.push((job, losses.saturating_add(1))),
            Run::Stolen { origin } => died.stolen.entry(origin).or_default().push(job),
        }
    }
    died.own.sort_unstable();
    for jobs in died.stolen.values_mut() {
        jobs.sort_unstable();
    }
    (boot, died)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId(Digest::from_bytes([n; 32]))
    }

    #[test]
    fn a_run_the_daemon_died_in_counts_as_a_loss_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("running.log");
        let (mut journal, died) = Journal::open(path.clone());
        assert_eq!(died, Died::default());
        let origin = NodeId([9; 32]);
        journal.start(job(1), 0);
        journal.start(job(2), 0);
        journal.start_stolen(job(3), origin);
        journal.end(job(1));
        drop(journal);
        // The daemon died while jobs 2 and 3 ran (this test's machine did not restart).
        let (mut journal, died) = Journal::open(path.clone());
        assert_eq!(died.own, vec![(job(2), 1)]);
        assert_eq!(died.stolen, BTreeMap::from([(origin, vec![job(3)])]));
        journal.start(job(2), 1);
        drop(journal);
        // And again.
        let (journal, died) = Journal::open(path.clone());
        assert_eq!(died.own, vec![(job(2), 2)]);
        drop(journal);
        // A clean start after that: nothing was running.
        let (_journal, died) = Journal::open(path);
        assert_eq!(died, Died::default());
    }

    #[test]
    fn runs_open_when_the_machine_restarted_are_not_blamed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("running.log");
        let text = format!("boot another-boot\nstart {} 0\n", job(1));
        std::fs::write(&path, text).expect("write");
        let (_journal, died) = Journal::open(path);
        assert_eq!(died, Died::default());
    }

    #[test]
    fn damaged_lines_are_skipped() {
        let text = format!(
            "boot b\nstart nonsense 3\nstart {} x\nstolen {} nonsense\nhalf a line\nend\n",
            job(4),
            job(5)
        );
        let (boot, died) = parse(&text);
        assert_eq!(boot, "b");
        assert_eq!(died.own, vec![(job(4), 1)]);
        assert!(died.stolen.is_empty());
    }
}
