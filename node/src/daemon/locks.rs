//! One build at a time per workspace.
//!
//! Builds in different workspaces run at once; a second build of the same workspace waits for
//! the first (saying who holds it), or fails at once when the client asked not to block.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedMutexGuard, TryLockError};

/// The per-workspace locks.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkspaceLocks {
    inner: Arc<Mutex<HashMap<PathBuf, Slot>>>,
}

#[derive(Debug, Clone)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The pid of the client whose build holds the lock, 0 when none.
    holder: Arc<Mutex<u32>>,
}

/// A held workspace lock; dropping it lets the next build in.
#[derive(Debug)]
pub(crate) struct WorkspaceGuard {
    _guard: OwnedMutexGuard<()>,
    holder: Arc<Mutex<u32>>,
}

impl Drop for WorkspaceGuard {
    fn drop(&mut self) {
        if let Ok(mut holder) = self.holder.lock() {
            *holder = 0;
        }
    }
}

/// Why a workspace lock was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    /// The pid of the client whose build holds the lock.
    pub(crate) holder_pid: u32,
}

impl WorkspaceLocks {
    fn slot(&self, workspace: &Path) -> Slot {
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(workspace.to_path_buf())
            .or_insert_with(|| Slot {
                lock: Arc::new(tokio::sync::Mutex::new(())),
                holder: Arc::new(Mutex::new(0)),
            })
            .clone()
    }

    /// Takes the lock if it is free; otherwise says who holds it.
    pub(crate) fn try_lock(&self, workspace: &Path, pid: u32) -> Result<WorkspaceGuard, Busy> {
        let slot = self.slot(workspace);
        match slot.lock.clone().try_lock_owned() {
            Ok(guard) => Ok(Self::held(slot, guard, pid)),
            Err(TryLockError { .. }) => {
                let holder_pid = slot.holder.lock().map(|h| *h).unwrap_or(0);
                Err(Busy { holder_pid })
            }
        }
    }

    /// Waits for the lock.
    pub(crate) async fn lock(&self, workspace: &Path, pid: u32) -> WorkspaceGuard {
        let slot = self.slot(workspace);
        let guard = slot.lock.clone().lock_owned().await;
        Self::held(slot, guard, pid)
    }

    fn held(slot: Slot, guard: OwnedMutexGuard<()>, pid: u32) -> WorkspaceGuard {
        if let Ok(mut holder) = slot.holder.lock() {
            *holder = pid;
        }
        WorkspaceGuard {
            _guard: guard,
            holder: slot.holder,
        }
    }

    /// The workspaces whose lock is held now.
    pub(crate) fn busy(&self) -> Vec<PathBuf> {
        let map = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut busy: Vec<PathBuf> = map
            .iter()
            .filter(|(_, s)| s.lock.try_lock().is_err())
            .map(|(p, _)| p.clone())
            .collect();
        busy.sort();
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_build_per_workspace() {
        let locks = WorkspaceLocks::default();
        let a = Path::new("/ws/a");
        let guard = locks.try_lock(a, 11).expect("free");
        assert_eq!(
            locks.try_lock(a, 12).map(|_| ()),
            Err(Busy { holder_pid: 11 })
        );
        let other = locks
            .try_lock(Path::new("/ws/b"), 13)
            .expect("another workspace is free");
        assert_eq!(locks.busy().len(), 2);
        drop(guard);
        let again = locks.lock(a, 12).await;
        drop((again, other));
        assert!(locks.busy().is_empty());
    }
}
