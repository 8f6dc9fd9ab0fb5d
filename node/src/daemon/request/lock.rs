//! Taking a workspace's (or a graph run's out directory's) build lock for a request: at
//! once, waiting behind the build that holds it (and saying so), or failing at once.

use std::path::{Path, PathBuf};

use weft_protocol::wire::{BuildEvent, ClientMessage, DaemonMessage};

use super::super::conn::{ConnError, ConnReader, ConnWriter};
use super::super::locks::WorkspaceGuard;
use super::super::shared::Shared;
use super::reply::send_error;

/// Another build holds the lock, and the client asked not to wait.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "another build (client pid {holder_pid}) is running in `{}`; wait for it, or run \
     without `--no-block-for-lock` to queue behind it",
    key.display()
)]
pub(crate) struct LockBusy {
    /// The pid of the client whose build holds the lock.
    holder_pid: u32,
    /// The locked directory.
    key: PathBuf,
}

/// Takes the lock of `key`, waiting (and saying so) when `block`, or failing at once. `None`
/// means the client has been answered or has gone.
pub(crate) async fn lock(
    shared: &Shared,
    key: &Path,
    pid: u32,
    block: bool,
    reader: &mut ConnReader,
    writer: &mut ConnWriter,
) -> Result<Option<WorkspaceGuard>, ConnError> {
    match shared.locks.try_lock(key, pid) {
        Ok(guard) => Ok(Some(guard)),
        Err(busy) if !block => {
            let busy = LockBusy {
                holder_pid: busy.holder_pid,
                key: key.to_owned(),
            };
            send_error(writer, &busy).await?;
            Ok(None)
        }
        Err(busy) => {
            let waiting = BuildEvent::WaitingForLock {
                holder_pid: busy.holder_pid,
            };
            writer.send(&DaemonMessage::Event(waiting)).await?;
            tokio::select! {
                guard = shared.locks.lock(key, pid) => Ok(Some(guard)),
                _ = reader.recv::<ClientMessage>() => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_lock_names_the_holder_and_the_way_to_wait() {
        let busy = LockBusy {
            holder_pid: 42,
            key: PathBuf::from("/home/me/ws"),
        };
        assert_eq!(
            busy.to_string(),
            "another build (client pid 42) is running in `/home/me/ws`; wait for it, or run \
             without `--no-block-for-lock` to queue behind it"
        );
    }
}
