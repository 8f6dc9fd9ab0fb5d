//! The state the swarm task and the stream tasks share: the peer table (who is connected, and
//! whether it is admitted), the counters, and the channels back to the swarm task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};
use weft_store::Store;

use super::bulk_tls::BulkTls;
use super::config::TestHooks;
use super::events::{Admission, Command, MeshEvent, MeshStats, PeerInfo};
use super::ids::node_id_of;
use super::team::AdmissionKey;

/// What the mesh knows of one peer: connected, or blocked after a failed admission.
#[derive(Debug, Clone)]
pub(crate) struct PeerEntry {
    pub(crate) state: State,
    /// The remote addresses of our connections to it.
    pub(crate) conn_addrs: Vec<Multiaddr>,
    /// The addresses it says it listens on (identify).
    pub(crate) listen_addrs: Vec<Multiaddr>,
    pub(crate) rtt: Option<Duration>,
    pub(crate) connected_since: Option<SystemTime>,
    /// Blobs it served that did not match their digest.
    pub(crate) n_corrupt: u64,
    /// Malformed messages it sent.
    pub(crate) n_malformed: u64,
}

/// A peer's admission state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Connected; it must prove team membership by `deadline`.
    Pending { deadline: Instant },
    /// It proved team membership.
    Admitted,
    /// It failed admission and is refused until `until`.
    Blocked { until: Instant },
}

impl PeerEntry {
    pub(crate) fn new(state: State) -> PeerEntry {
        PeerEntry {
            state,
            conn_addrs: Vec::new(),
            listen_addrs: Vec::new(),
            rtt: None,
            connected_since: None,
            n_corrupt: 0,
            n_malformed: 0,
        }
    }
}

/// The counters behind [`MeshStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) corrupt_blobs: AtomicU64,
    pub(crate) bulk_blobs: AtomicU64,
    pub(crate) admissions_ok: AtomicU64,
    pub(crate) admissions_failed: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) malformed_messages: AtomicU64,
    pub(crate) refused_streams: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MeshStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MeshStats {
            corrupt_blobs: get(&self.corrupt_blobs),
            bulk_blobs: get(&self.bulk_blobs),
            admissions_ok: get(&self.admissions_ok),
            admissions_failed: get(&self.admissions_failed),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            malformed_messages: get(&self.malformed_messages),
            refused_streams: get(&self.refused_streams),
            events_dropped: get(&self.events_dropped),
        }
    }
}

/// Everything the tasks of one mesh share.
pub(crate) struct Shared {
    pub(crate) local: PeerId,
    pub(crate) key: AdmissionKey,
    pub(crate) store: Store,
    pub(crate) hooks: TestHooks,
    pub(crate) counters: Counters,
    pub(crate) control: libp2p_stream::Control,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) events: mpsc::Sender<MeshEvent>,
    /// TLS for the bulk lane; `None` when it could not be set up (then QUIC carries all).
    pub(crate) bulk: Option<Arc<BulkTls>>,
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
    /// Bumped whenever a peer's admission state changes, so that stream tasks waiting for a
    /// pending peer wake up.
    admission_changed: watch::Sender<u64>,
}

/// How a stream from a peer is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Admitted,
    Refused,
}

impl Shared {
    pub(crate) fn new(
        local: PeerId,
        key: AdmissionKey,
        store: Store,
        hooks: TestHooks,
        control: libp2p_stream::Control,
        commands: mpsc::UnboundedSender<Command>,
        events: mpsc::Sender<MeshEvent>,
    ) -> Shared {
        Shared {
            local,
            key,
            store,
            hooks,
            counters: Counters::default(),
            control,
            commands,
            events,
            bulk: None,
            peers: Mutex::new(HashMap::new()),
            admission_changed: watch::channel(0).0,
        }
    }

    /// With the bulk lane's TLS settings.
    pub(crate) fn with_bulk(mut self, bulk: Option<Arc<BulkTls>>) -> Shared {
        self.bulk = bulk;
        self
    }

    pub(crate) fn peers(&self) -> MutexGuard<'_, HashMap<PeerId, PeerEntry>> {
        // A panic while the lock was held leaves a table that is still consistent entry by
        // entry, so a poisoned lock is used as it is.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn state(&self, peer: &PeerId) -> Option<State> {
        self.peers().get(peer).map(|entry| entry.state)
    }

    pub(crate) fn is_admitted(&self, peer: &PeerId) -> bool {
        self.state(peer) == Some(State::Admitted)
    }

    /// Marks a connected, pending peer admitted. Returns whether that changed anything; only
    /// then does the caller tell the swarm task.
    pub(crate) fn set_admitted(&self, peer: &PeerId) -> bool {
        let changed = match self.peers().get_mut(peer) {
            Some(entry) if matches!(entry.state, State::Pending { .. }) => {
                entry.state = State::Admitted;
                true
            }
            _ => false,
        };
        if changed {
            self.admission_changed.send_modify(|n| *n += 1);
        }
        changed
    }

    /// Marks a peer blocked until `until`. Returns whether it was not blocked already.
    pub(crate) fn set_blocked(&self, peer: &PeerId, until: Instant) -> bool {
        let mut peers = self.peers();
        let entry = peers
            .entry(*peer)
            .or_insert_with(|| PeerEntry::new(State::Blocked { until }));
        let changed = !matches!(entry.state, State::Blocked { .. });
        entry.state = State::Blocked { until };
        drop(peers);
        self.admission_changed.send_modify(|n| *n += 1);
        changed
    }

    /// Wakes the tasks waiting for an admission decision.
    pub(crate) fn notify_admission_changed(&self) {
        self.admission_changed.send_modify(|n| *n += 1);
    }

    /// Decides whether to serve a stream from `peer`: at once when it is admitted, after
    /// waiting up to `wait` when its admission is still running (the other side may finish
    /// first and talk at once), and never otherwise.
    pub(crate) async fn gate(&self, peer: &PeerId, wait: Duration) -> Gate {
        let mut changes = self.admission_changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.state(peer) {
                Some(State::Admitted) => return Gate::Admitted,
                Some(State::Pending { .. }) => {}
                Some(State::Blocked { .. }) | None => return Gate::Refused,
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Gate::Refused,
            }
        }
    }

    /// Counts a malformed message from `peer`.
    pub(crate) fn penalise_malformed(&self, peer: &PeerId) {
        Counters::bump(&self.counters.malformed_messages, 1);
        if let Some(entry) = self.peers().get_mut(peer) {
            entry.n_malformed += 1;
        }
    }

    /// Counts a corrupt blob from `peer`.
    pub(crate) fn penalise_corrupt(&self, peer: &PeerId) {
        Counters::bump(&self.counters.corrupt_blobs, 1);
        if let Some(entry) = self.peers().get_mut(peer) {
            entry.n_corrupt += 1;
        }
    }

    /// Tells the swarm task something. Fails only once it has stopped.
    pub(crate) fn command(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// A snapshot of the peer table.
    pub(crate) fn peer_infos(&self) -> Vec<PeerInfo> {
        let now = Instant::now();
        let mut infos: Vec<PeerInfo> = self
            .peers()
            .iter()
            .map(|(peer, entry)| {
                let mut addrs = entry.conn_addrs.clone();
                for addr in &entry.listen_addrs {
                    if !addrs.contains(addr) {
                        addrs.push(addr.clone());
                    }
                }
                PeerInfo {
                    peer: *peer,
                    node: node_id_of(peer),
                    addrs,
                    rtt: entry.rtt,
                    admission: match entry.state {
                        State::Pending { .. } => Admission::Pending,
                        State::Admitted => Admission::Admitted,
                        State::Blocked { until } => Admission::Blocked {
                            remaining: until.saturating_duration_since(now),
                        },
                    },
                    connected_since: entry.connected_since,
                    n_corrupt: entry.n_corrupt,
                    n_malformed: entry.n_malformed,
                }
            })
            .collect();
        infos.sort_by_key(|info| info.peer);
        infos
    }
}
