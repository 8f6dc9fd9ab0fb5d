//! Disowning nodes, in the engine: this node's own verdicts (`weft team distrust`, `weft team
//! trust`), the statements teammates gossip or hand a newcomer, and carrying out what changed.
//!
//! Protocol flow:
//! - an owner's verdict becomes a [`TrustStatement`] signed with the node's key, recorded,
//!   written to `distrusted.toml`, and gossiped once ([`GossipMessage::Statement`]);
//! - a gossiped statement is taken only from its issuer (the gossip's author), with a valid
//!   signature, from an issuer not disowned here; [`Statements`](crate::core::Statements) says
//!   whether it counts (`follow_distrust`);
//! - each newly admitted peer is sent every statement known here (`PeerMessage::Statements`,
//!   answered with `Ack`), so that a node that joins later learns the distrusts in force;
//!   those are checked as gossip is, except that a peer may relay others' statements.
//!
//! Disowning a node: the core treats it as gone and keeps it out, what this node remembers
//! of its results is dropped, and every action-cache entry it signed is removed (on a
//! blocking thread; the blobs stay until gc). Taking it back: the core counts it again, at
//! once when it is connected.

use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use weft_protocol::wire::{BuildEvent, GossipMessage, PeerMessage, VerdictReport};
use weft_protocol::{NodeId, TrustStatement, Verdict};

use super::api::VerdictError;
use super::task::EngineTask;
use crate::core::Change;
use crate::daemon::disown::{self, NodeRef};
use crate::mesh::peer_of;

/// How long sending the statements to a newcomer may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a statement came from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Heard {
    /// Gossip authored by this node.
    Gossip(NodeId),
    /// The statements an admitted peer sent this node when it was admitted.
    Relayed(NodeId),
}

impl Heard {
    /// The peer it came from.
    fn via(self) -> NodeId {
        match self {
            Heard::Gossip(node) | Heard::Relayed(node) => node,
        }
    }
}

impl EngineTask {
    /// This node's owner disowns the node `node` names, or takes it back.
    pub(super) fn own_verdict(
        &mut self,
        node: NodeRef,
        verdict: Verdict,
        reason: String,
        reply: oneshot::Sender<Result<VerdictReport, VerdictError>>,
    ) {
        let mut known: Vec<NodeId> = self.members.iter().copied().collect();
        known.extend(self.statements.subjects());
        known.extend(self.core.distrusted());
        let subject = match node.resolve(&known, self.node) {
            Ok(subject) => subject,
            Err(e) => {
                let _ = reply.send(Err(VerdictError::Name(e)));
                return;
            }
        };
        let was_distrusted = self.core.is_distrusted(&subject);
        let stamp = self.statements.next_stamp(&subject, unix_ms());
        let Some(statement) = disown::sign(&self.context.keypair, subject, verdict, reason, stamp)
        else {
            let _ = reply.send(Err(VerdictError::CannotSign));
            return;
        };
        if let Err(ignored) = self.statements.record(statement.clone(), unix_ms()) {
            // Only a statement about this node could be, and `resolve` refused that.
            let _ = reply.send(Err(VerdictError::Refused(ignored)));
            return;
        }
        info!(node = %subject, verdict = verdict.name(), reason = %statement.reason, "the owner's verdict");
        let gossiped = match &self.context.mesh {
            Some(mesh) => {
                mesh.publish(GossipMessage::Statement(statement));
                true
            }
            None => false,
        };
        if verdict == Verdict::Trust {
            // The owner's word also takes back a node disowned for serving corrupt data.
            self.served_corrupt.remove(&subject);
        }
        // The owner's distrust removes what the node signed even when it was disowned
        // already; the owner's trust takes it back whatever it was disowned for.
        let distrusted = verdict == Verdict::Distrust;
        let removal = self.carry_out(Change {
            subject,
            was_distrusted: !distrusted,
            distrusted,
        });
        self.persist(removal, move |outcome| {
            let report = outcome.map(|n_removed| VerdictReport {
                node: subject,
                verdict,
                changed: was_distrusted != (verdict == Verdict::Distrust),
                n_removed,
                gossiped,
            });
            let _ = reply.send(report);
        });
    }

    /// A statement from a teammate: checked, recorded, and carried out when it changes what
    /// this node holds.
    pub(super) fn heard_statement(&mut self, statement: TrustStatement, from: Heard) {
        let why_not = match from {
            Heard::Gossip(author) if author != statement.issuer => {
                Some("not gossiped by its issuer")
            }
            _ if !disown::verify(&statement) => Some("its signature does not match"),
            _ if self.core.is_distrusted(&statement.issuer) => Some("its issuer is disowned here"),
            _ => None,
        };
        if let Some(why) = why_not {
            debug!(via = %from.via(), subject = %statement.subject, issuer = %statement.issuer, why, "a statement was dropped");
            return;
        }
        let (subject, issuer, verdict) = (statement.subject, statement.issuer, statement.verdict);
        match self.statements.record(statement, unix_ms()) {
            Ok(change) => {
                info!(node = %subject, %issuer, verdict = verdict.name(), followed = change.distrusted == (verdict == Verdict::Distrust), "a teammate's verdict");
                let removal = self.carry_out(change);
                self.persist(removal, |_| {});
            }
            Err(ignored) => {
                debug!(via = %from.via(), node = %subject, %issuer, %ignored, "a statement changes nothing")
            }
        }
    }

    /// Makes the core, and what this node remembers, agree with `change`; returns the node
    /// whose action-cache entries are to be removed, if any.
    fn carry_out(&mut self, change: Change) -> Option<NodeId> {
        let now = self.now();
        let subject = change.subject;
        if change.distrusted && change.was_distrusted {
            return None;
        }
        if change.distrusted && !self.core.is_distrusted(&subject) {
            warn!(node = %subject, "disowned: nothing more is taken from it");
            for state in self.builds.values() {
                state.emit(BuildEvent::Notice(format!(
                    "`{subject}` is disowned from now on: no result, blob or job of its is taken \
                     (`weft team trust {}` takes it back)",
                    disown::key_text(&subject)
                )));
            }
            self.core.distrust(now, subject);
        }
        if change.distrusted {
            self.known.forget_made_by(&subject);
            self.doubted();
            return Some(subject);
        }
        if change.was_distrusted
            && self.core.is_distrusted(&subject)
            && !self.served_corrupt.contains(&subject)
        {
            info!(node = %subject, "taken back: its results and jobs count again");
            self.core.trust(&subject);
            if self.connected.contains(&subject) {
                let snapshot = self.core.on_peer_up(now, subject);
                self.send_have_snapshot(subject, snapshot);
            }
        }
        None
    }

    /// Writes every statement known to `distrusted.toml` and removes the action-cache
    /// entries `remove` signed, in that order, on a blocking thread; then `done` gets how
    /// many entries went, or why the file could not be written.
    fn persist(
        &mut self,
        remove: Option<NodeId>,
        done: impl FnOnce(Result<u64, VerdictError>) + Send + 'static,
    ) {
        self.statements_seq += 1;
        let seq = self.statements_seq;
        let statements = self.statements.statements();
        let file = self.statements_file.clone();
        let written = self.statements_written.clone();
        let store = self.context.store.clone();
        tokio::task::spawn_blocking(move || {
            let recorded = match &file {
                Some(path) => {
                    // Writes may finish out of order: a newer one that got there first stands.
                    let mut last = written.lock().unwrap_or_else(|p| p.into_inner());
                    if *last < seq {
                        let stored = disown::store(path, &statements);
                        if stored.is_ok() {
                            *last = seq;
                        }
                        stored
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            };
            if let Err(e) = &recorded {
                warn!(error = %e, "cannot record the disowned nodes; they are trusted again after a restart");
            }
            let removed = match remove {
                Some(node) => match store.remove_actions_by(node) {
                    Ok(jobs) => {
                        info!(%node, n_removed = jobs.len(), "removed the action-cache entries a disowned node signed");
                        jobs.len() as u64
                    }
                    Err(e) => {
                        warn!(%node, error = %e, "cannot remove a disowned node's action-cache entries; they are refused at lookup");
                        0
                    }
                },
                None => 0,
            };
            done(recorded.map(|()| removed).map_err(VerdictError::Record));
        });
    }

    /// Sends a newly admitted peer every statement known here.
    pub(super) fn send_statements(&self, peer: NodeId) {
        let statements = self.statements.statements();
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            return;
        };
        if statements.is_empty() || self.core.is_distrusted(&peer) {
            return;
        }
        tokio::spawn(async move {
            let message = PeerMessage::Statements { statements };
            if let Err(e) = mesh.request(peer_id, message, SEND_TIMEOUT).await {
                debug!(%peer, error = %e, "cannot send a newcomer the statements on disowned nodes");
            }
        });
    }
}

/// Milliseconds since the Unix epoch on this machine's clock (0 before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
