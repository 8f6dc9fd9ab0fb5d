//! [`Durations`]: how long each job (by name) took last time, kept across daemon restarts.
//!
//! The scheduler orders ready jobs by their longest remaining chain of estimated durations,
//! and a job reserved for a faster peer must be expected to run a while; both need these
//! estimates. The daemon stops after hours idle, and without this file the first build of
//! each day would be planned blind. `$WEFT_HOME/durations.json` maps names to milliseconds;
//! it is read at start and written (to a temporary file, then renamed over it) after a build
//! that learned something. It is a hint only: a missing, unreadable or malformed file means
//! no estimates, with a warning for the last two.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::warn;

/// The most names kept: past this, new names are not recorded (a workspace with more jobs
/// than this is planned with what is known).
const MAX_NAMES: usize = 1_000_000;

/// A file larger than this is not read (it would hold far more than [`MAX_NAMES`]).
const MAX_FILE_BYTES: u64 = 128 << 20;

/// How long each job took last time, by name.
#[derive(Debug, Default)]
pub(crate) struct Durations {
    /// Milliseconds by name, as the file has them.
    by_name: HashMap<String, u64>,
    /// Where they are kept; `None` keeps them in memory only.
    path: Option<PathBuf>,
    /// Changed since the last save.
    dirty: bool,
}

impl Durations {
    /// The durations kept at `path`, or none.
    pub(crate) fn load(path: PathBuf) -> Durations {
        let by_name = match read(&path) {
            Ok(by_name) => by_name,
            Err(why) => {
                if let Some(why) = why {
                    warn!(file = %path.display(), "{why}; job durations start from nothing");
                }
                HashMap::new()
            }
        };
        Durations {
            by_name,
            path: Some(path),
            dirty: false,
        }
    }

    /// How long `name` took last time.
    pub(crate) fn get(&self, name: &str) -> Option<Duration> {
        self.by_name.get(name).map(|ms| Duration::from_millis(*ms))
    }

    /// `name` took `duration` this time.
    pub(crate) fn insert(&mut self, name: String, duration: Duration) {
        // Kept to the millisecond: a run that differs by less does not make the file dirty.
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        if self.by_name.len() >= MAX_NAMES && !self.by_name.contains_key(&name) {
            return;
        }
        if self.by_name.insert(name, ms) != Some(ms) {
            self.dirty = true;
        }
    }

    /// What to write, and where, when something changed since the last call: the caller
    /// writes it off the engine's task with [`write`].
    pub(crate) fn take_changes(&mut self) -> Option<(PathBuf, Vec<u8>)> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let path = self.path.clone()?;
        match serde_json::to_vec(&self.by_name) {
            Ok(bytes) => Some((path, bytes)),
            Err(e) => {
                warn!("cannot encode job durations: {e}");
                None
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader (or a
/// crash) sees the old file or the new one, never half of one.
pub(crate) fn write(path: &Path, bytes: &[u8]) {
    let result = crate::fs::write_replacing(path, bytes, crate::fs::Contents::Rebuildable);
    if let Err(e) = result {
        warn!(file = %path.display(), "cannot keep job durations: {e}");
    }
}

/// The file's durations; `Err(None)` when there is no file.
fn read(path: &Path) -> Result<HashMap<String, u64>, Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("cannot read it: {e}"))),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(Some(format!(
            "it is {} bytes, more than the {MAX_FILE_BYTES} a durations file can hold",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Some(format!("cannot read it: {e}")))?;
    let millis: HashMap<String, u64> = serde_json::from_slice(&bytes)
        .map_err(|e| Some(format!("it is not a durations file: {e}")))?;
    Ok(millis.into_iter().take(MAX_NAMES).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_survive_a_restart_and_bad_files_mean_none() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("durations.json");
        let mut d = Durations::load(path.clone());
        assert_eq!(d.get("a"), None);
        assert!(d.take_changes().is_none(), "nothing learned yet");
        d.insert("a".into(), Duration::from_millis(1500));
        d.insert("b".into(), Duration::from_micros(2_400));
        let (to, bytes) = d.take_changes().expect("changed");
        write(&to, &bytes);
        assert!(d.take_changes().is_none(), "saved");
        d.insert("a".into(), Duration::from_micros(1_500_400));
        assert!(d.take_changes().is_none(), "the same to the millisecond");

        let again = Durations::load(path.clone());
        assert_eq!(again.get("a"), Some(Duration::from_millis(1500)));
        assert_eq!(again.get("b"), Some(Duration::from_millis(2)));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != "durations.json")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

        std::fs::write(&path, b"{\"a\": \"soon\"}").expect("write");
        assert_eq!(Durations::load(path.clone()).get("a"), None);
        std::fs::write(&path, b"\x00\x01").expect("write");
        assert_eq!(Durations::load(path).get("a"), None);
    }
}
