//! The mesh side of the engine: what peers ask of this node, and what the core asks of peers.
//!
//! Protocol flow (each request is one rpc on its own QUIC stream):
//!
//! - `CacheQuery { job, inline_limit }` → `CacheAnswer { result, inline }`: a peer's signed
//!   result, accepted only when its signature checks out and its signer is a team member; for
//!   a job whose outputs are wanted here, its output tree is fetched before the hit counts.
//!   The query then asks for up to [`INLINE_LIMIT`] bytes of the tree inline (its tree blobs
//!   and small files, each checked against its digest), so a small output costs no blob
//!   round trip at all. The answer is read from the store on a blocking thread.
//! - `Steal(request)` → `Granted { leases }`: the core picks the jobs and says, in each lease,
//!   where the outputs of the job's deps are.
//! - `Renew { jobs }` → `Renewed { lost }`.
//! - `Done { job, result }` / `JobFailed { .. }` → `Ack`: a thief's report. A success is
//!   checked like a cache answer; when the core wants its outputs first, they are fetched
//!   from the thief before the core hears whether they came.
//! - `DepsLost { job, lost }` → `Ack`: a thief could not fetch the outputs of those deps from
//!   any holder; the core runs them again rather than lend the job out to the next thief.
//! - `Have { jobs }` → `Ack`: the first announcement to a newly admitted peer of what this
//!   node holds; later ones are gossip.
//! - `Statements { statements }` → `Ack`: what a newly admitted peer knows of disowned nodes
//!   (`disown.rs` checks and records each).

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};
use weft_protocol::wire::{
    BuildEvent, FailureReport, GossipMessage, InlineBlob, LeaseDep, PeerMessage, StealRequest,
};
use weft_protocol::{ActionResult, Job, JobId, NodeId};

use super::command::{Command, StolenReport};
use super::disown::Heard;
use super::task::EngineTask;
use crate::core::{BuildId, Gossip, Report, Time};
use crate::mesh::{MeshEvent, node_id_of, peer_of};

/// How long a request to a peer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many bytes of a wanted hit's outputs a cache query asks to have inline. Most jobs'
/// outputs (an object file, a generated header) fit; a larger tree sends what fits and the
/// rest streams as usual.
const INLINE_LIMIT: u32 = 256 << 10;
/// The most inline bytes this node sends in one answer, whatever was asked.
const MAX_INLINE_SENT: u32 = 1 << 20;

impl EngineTask {
    pub(super) fn on_mesh_event(&mut self, event: MeshEvent) {
        let now = self.now();
        match event {
            MeshEvent::PeerAdmitted { peer, addr } => {
                let Some(node) = node_id_of(&peer) else {
                    return;
                };
                info!(%peer, addr = ?addr, "peer admitted");
                self.members.insert(node);
                self.connected.insert(node);
                let snapshot = self.core.on_peer_up(now, node);
                self.send_have_snapshot(node, snapshot);
                self.send_statements(node);
                if let Some(jobs) = self.died_running.remove(&node) {
                    self.send_worker_died(node, jobs);
                }
            }
            MeshEvent::PeerLost { peer } => {
                if let Some(node) = node_id_of(&peer) {
                    info!(%peer, "peer lost");
                    self.connected.remove(&node);
                    self.core.on_peer_down(now, node);
                }
            }
            MeshEvent::AdmissionFailed { peer, reason } => {
                warn!(%peer, %reason, "a peer failed team admission");
            }
            MeshEvent::Gossip { peer, msg } => {
                let Some(node) = node_id_of(&peer) else {
                    return;
                };
                match msg {
                    GossipMessage::Beacon(beacon) => self.core.on_beacon(now, node, &beacon),
                    GossipMessage::Have { jobs } => self.core.on_have(now, node, &jobs),
                    GossipMessage::Statement(statement) => {
                        self.heard_statement(statement, Heard::Gossip(node))
                    }
                }
            }
            MeshEvent::Request { peer, msg, reply } => {
                let Some(node) = node_id_of(&peer) else {
                    return;
                };
                if self.core.is_distrusted(&node) {
                    let _ = reply.send(PeerMessage::Refused {
                        reason: "this node has disowned you; its owner can run `weft team \
                                 trust` with your node id"
                            .to_owned(),
                    });
                    return;
                }
                if let PeerMessage::CacheQuery { job, inline_limit } = msg {
                    self.answer_cache_query(job, inline_limit, reply);
                    return;
                }
                if let Some(answer) = self.on_request(now, node, msg) {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Answers a cache query from the store, on a blocking thread: the signed result, and
    /// up to `inline_limit` bytes of its output tree.
    fn answer_cache_query(
        &self,
        job: JobId,
        inline_limit: u32,
        reply: tokio::sync::oneshot::Sender<PeerMessage>,
    ) {
        if self.core.is_nondeterministic(&job) {
            // Its results disagree: none of them is served until they agree again.
            let _ = reply.send(PeerMessage::CacheAnswer {
                job,
                result: None,
                inline: Vec::new(),
            });
            return;
        }
        let store = self.context.store.clone();
        let mesh = self.context.mesh.clone();
        tokio::task::spawn_blocking(move || {
            let result = match store.get_action(job) {
                Ok(Some(result)) if result.success() && result.signature.is_some() => Some(result),
                _ => None,
            };
            let budget = inline_limit.min(MAX_INLINE_SENT) as usize;
            let inline = match (&result, &mesh) {
                (Some(result), Some(mesh)) if budget > 0 => {
                    mesh.inline_blobs(&result.output_tree, budget)
                }
                _ => Vec::new(),
            };
            let _ = reply.send(PeerMessage::CacheAnswer {
                job,
                result,
                inline,
            });
        });
    }

    /// Answers a peer's request; `None` when the answer comes later or not at all.
    fn on_request(&mut self, now: Time, peer: NodeId, msg: PeerMessage) -> Option<PeerMessage> {
        Some(match msg {
            PeerMessage::Steal(request) => {
                let leases = self.core.on_steal_request(now, peer, &request);
                if !leases.is_empty() {
                    debug!(%peer, n = leases.len(), "lent jobs");
                }
                PeerMessage::Granted { leases }
            }
            PeerMessage::Renew { jobs } => PeerMessage::Renewed {
                lost: self.core.on_renew(now, peer, &jobs),
            },
            PeerMessage::Done { job, result } => {
                if let Err(why) = self.check_result(job, &result, Some(peer)) {
                    warn!(%peer, %job, %why, "a thief's result was refused");
                    let report = FailureReport {
                        job,
                        name: self.name_of(job),
                        command: Vec::new(),
                        exit_code: None,
                        message: format!("the result from `{peer}` was refused: {why}"),
                        stderr_tail: String::new(),
                    };
                    self.on_thief_failed(now, peer, job, true, report);
                    return Some(PeerMessage::Refused {
                        reason: why.to_string(),
                    });
                }
                match self.core.on_thief_done(now, peer, job, result.output_tree) {
                    Report::FetchOutputs => self.fetch_thief_outputs(peer, job, result),
                    report => self.on_thief_result(peer, job, &result, report),
                }
                PeerMessage::Ack
            }
            PeerMessage::JobFailed {
                job,
                infrastructure,
                report,
            } => {
                self.on_thief_failed(now, peer, job, infrastructure, report);
                PeerMessage::Ack
            }
            PeerMessage::Have { jobs } => {
                self.core.on_have(now, peer, &jobs);
                PeerMessage::Ack
            }
            PeerMessage::WorkerDied { jobs } => {
                warn!(%peer, n_jobs = jobs.len(), "a thief's daemon died while it ran jobs of this node's");
                self.core.on_worker_died(now, peer, &jobs);
                PeerMessage::Ack
            }
            PeerMessage::Statements { statements } => {
                for statement in statements {
                    self.heard_statement(statement, Heard::Relayed(peer));
                }
                PeerMessage::Ack
            }
            PeerMessage::DepsLost { job, lost } => {
                if self.core.on_thief_deps_lost(now, peer, job, &lost) == Report::Accepted {
                    let names: Vec<String> = lost.iter().map(|d| self.name_of(*d)).collect();
                    self.notice_for(
                        job,
                        format!(
                            "`{peer}` could not fetch the outputs of {} for `{}`; they run again",
                            names.join(", "),
                            self.name_of(job)
                        ),
                    );
                }
                PeerMessage::Ack
            }
            other => {
                debug!(%peer, ?other, "refused an unexpected request");
                PeerMessage::Refused {
                    reason: "this request is not served here".to_owned(),
                }
            }
        })
    }

    /// A thief's success, checked, and counted by the core (with `report`): the result is
    /// kept for the build, and its duration for the next build's plan.
    fn on_thief_result(&mut self, peer: NodeId, job: JobId, result: &ActionResult, report: Report) {
        self.record_result(job, result);
        let ran_for = Duration::from_millis(result.duration_ms);
        let here = self.core.local_duration(&peer, ran_for);
        self.durations.insert(self.name_of(job), here);
        match report {
            Report::Accepted => {
                for state in self.builds.values() {
                    if state.jobs.contains_key(&job) {
                        state.emit(BuildEvent::Finished {
                            job,
                            name: state.name(job),
                            node: peer,
                            duration_ms: result.duration_ms,
                        });
                    }
                }
            }
            Report::Duplicate => debug!(%peer, %job, "a late duplicate result"),
            Report::Unknown | Report::FetchOutputs => {}
        }
    }

    /// The outputs of a thief's job were fetched, or could not be.
    pub(super) fn on_thief_outputs(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        result: ActionResult,
        fetched: bool,
    ) {
        let report = self
            .core
            .on_thief_outputs(now, peer, job, result.output_tree, fetched);
        if fetched {
            self.on_thief_result(peer, job, &result, report);
        } else {
            self.notice_for(
                job,
                format!(
                    "the outputs of `{}` could not be fetched from `{peer}`; running it elsewhere",
                    self.name_of(job)
                ),
            );
        }
    }

    /// A thief's report that a job failed: the job itself, or (`infrastructure`) the thief.
    fn on_thief_failed(
        &mut self,
        now: Time,
        peer: NodeId,
        job: JobId,
        infrastructure: bool,
        report: FailureReport,
    ) {
        if infrastructure {
            self.notice_for(
                job,
                format!(
                    "`{}` could not run on `{peer}` ({}); running it elsewhere",
                    report.name, report.message
                ),
            );
            self.core.on_thief_failed(now, peer, job, true);
        } else if self.core.on_thief_failed(now, peer, job, false) == Report::Accepted {
            for state in self.builds.values() {
                if state.jobs.contains_key(&job) {
                    let mut report = report.clone();
                    report.name = state.name(job);
                    report.message = format!("on `{peer}`: {}", report.message);
                    state.emit(BuildEvent::Failed(report));
                }
            }
        }
    }

    /// Fetches a thief's outputs, which the core wants before the job counts; the answer
    /// comes back as `Command::ThiefOutputs`.
    fn fetch_thief_outputs(&self, peer: NodeId, job: JobId, result: ActionResult) {
        let inbox = self.inbox.clone();
        let here = self.context.store.has_tree(&result.output_tree);
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            let _ = inbox.send(Command::ThiefOutputs {
                peer,
                job,
                result,
                fetched: here,
            });
            return;
        };
        tokio::spawn(async move {
            let fetched = if here {
                Ok(())
            } else {
                mesh.fetch_tree(peer_id, result.output_tree).await
            };
            if let Err(e) = &fetched {
                warn!(%peer, %job, error = %e, "cannot fetch a thief's outputs");
                super::work::report_corrupt(&inbox, peer, e);
            }
            let _ = inbox.send(Command::ThiefOutputs {
                peer,
                job,
                result,
                fetched: fetched.is_ok(),
            });
        });
    }

    /// Asks `peer` for its result of a job (and, `with_outputs`, for what of its outputs fits
    /// inline). The answer comes back as `Command::PeerAnswer`.
    pub(super) fn query_peer(
        &mut self,
        build: BuildId,
        job: JobId,
        peer: NodeId,
        with_outputs: bool,
    ) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            let now = self.now();
            self.core.on_peer_cache(now, build, job, peer, None);
            return;
        };
        self.queries_sent
            .insert((build, job), std::time::Instant::now());
        let inline_limit = if with_outputs { INLINE_LIMIT } else { 0 };
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let query = PeerMessage::CacheQuery { job, inline_limit };
            let answer = mesh.request(peer_id, query, REQUEST_TIMEOUT).await;
            let (result, inline) = match answer {
                Ok(PeerMessage::CacheAnswer {
                    job: answered,
                    result,
                    inline,
                }) if answered == job => (result, inline),
                Ok(other) => {
                    debug!(%peer, ?other, "an odd answer to a cache query");
                    (None, Vec::new())
                }
                Err(e) => {
                    debug!(%peer, error = %e, "a cache query failed");
                    (None, Vec::new())
                }
            };
            let _ = inbox.send(Command::PeerAnswer {
                build,
                job,
                peer,
                with_outputs,
                result,
                inline,
            });
        });
    }

    /// A peer's cache answer: checked, and `with_outputs`, its outputs fetched first.
    pub(super) fn on_peer_answer(
        &mut self,
        build: BuildId,
        job: JobId,
        peer: NodeId,
        with_outputs: bool,
        result: Option<ActionResult>,
        inline: Vec<InlineBlob>,
    ) {
        let now = self.now();
        // Kept only for a hit, whose latency is recorded when it counts.
        let sent = self.queries_sent.remove(&(build, job));
        let Some(result) = result.filter(|r| r.success()) else {
            self.core.on_peer_cache(now, build, job, peer, None);
            return;
        };
        if let Some(sent) = sent {
            self.queries_sent.insert((build, job), sent);
        }
        if let Err(why) = self.check_result(job, &result, None) {
            self.queries_sent.remove(&(build, job));
            warn!(%peer, %job, %why, "a peer's cached result was refused");
            self.core.on_peer_cache(now, build, job, peer, None);
            return;
        }
        if !with_outputs || self.context.store.has_tree(&result.output_tree) {
            let _ = self.inbox.send(Command::PeerCache {
                build,
                job,
                peer,
                result: Some(result),
            });
            return;
        }
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            self.core.on_peer_cache(now, build, job, peer, None);
            return;
        };
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            // What came inline is stored first (verified), so the fetch finds it present.
            let inlined = mesh
                .store_inline(peer_id, inline, INLINE_LIMIT as usize)
                .await;
            let fetched = match inlined {
                Ok(()) => mesh.fetch_tree(peer_id, result.output_tree).await,
                Err(e) => Err(e),
            };
            if let Err(e) = &fetched {
                debug!(%peer, %job, error = %e, "a cache hit's outputs cannot be had: a miss");
                super::work::report_corrupt(&inbox, peer, e);
            }
            let result = fetched.ok().map(|()| result);
            let _ = inbox.send(Command::PeerCache {
                build,
                job,
                peer,
                result,
            });
        });
    }

    /// Asks a busy peer for work.
    pub(super) fn send_steal(&mut self, peer: NodeId, request: StealRequest) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            let now = self.now();
            self.core.on_steal_failed(now, peer);
            return;
        };
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            let answer = mesh
                .request(peer_id, PeerMessage::Steal(request), REQUEST_TIMEOUT)
                .await;
            let leases = match answer {
                Ok(PeerMessage::Granted { leases }) => Some(leases),
                Ok(other) => {
                    debug!(%peer, ?other, "an odd answer to a steal request");
                    None
                }
                Err(e) => {
                    debug!(%peer, error = %e, "a steal request failed");
                    None
                }
            };
            let _ = inbox.send(Command::Granted { peer, leases });
        });
    }

    /// Runs a job stolen from `origin`, once `deps`' outputs are fetched from where the
    /// lease says they are.
    pub(super) fn run_stolen(
        &mut self,
        origin: NodeId,
        id: JobId,
        job: Arc<Job>,
        deps: Vec<LeaseDep>,
    ) {
        debug!(job = %id, name = %job.name, %origin, "running a stolen job");
        self.journal.start_stolen(id, origin);
        let handle = tokio::spawn(super::work::run_stolen(
            self.context.clone(),
            self.inbox.clone(),
            origin,
            id,
            job,
            deps,
        ));
        self.stolen.insert(id, handle.abort_handle());
    }

    /// Tells `origin` that its jobs still run here.
    pub(super) fn send_renew(&mut self, origin: NodeId, jobs: Vec<JobId>) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&origin)) else {
            return;
        };
        let inbox = self.inbox.clone();
        tokio::spawn(async move {
            match mesh
                .request(peer_id, PeerMessage::Renew { jobs }, REQUEST_TIMEOUT)
                .await
            {
                Ok(PeerMessage::Renewed { lost }) => {
                    let _ = inbox.send(Command::Renewed { lost });
                }
                Ok(other) => debug!(%origin, ?other, "an odd answer to a renewal"),
                Err(e) => debug!(%origin, error = %e, "a lease renewal failed"),
            }
        });
    }

    /// Tells `origin` that the last daemon here died while it ran these jobs of its.
    fn send_worker_died(&self, origin: NodeId, jobs: Vec<JobId>) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&origin)) else {
            return;
        };
        tokio::spawn(async move {
            let message = PeerMessage::WorkerDied { jobs };
            if let Err(e) = mesh.request(peer_id, message, REQUEST_TIMEOUT).await {
                debug!(%origin, error = %e, "cannot tell a peer which of its jobs this daemon died in");
            }
        });
    }

    /// Tells `origin` that this node would not run a job it lent (it names a tool this node
    /// does not run for peers, or may use the network): nothing ran.
    pub(super) fn send_refused(&mut self, origin: NodeId, id: JobId) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&origin)) else {
            return;
        };
        let message = PeerMessage::JobFailed {
            job: id,
            infrastructure: true,
            report: FailureReport {
                job: id,
                name: id.short(12),
                command: Vec::new(),
                exit_code: None,
                message: "refused before it ran: it names a tool this node does not run for \
                          peers (`accept_tools`), or it may use the network"
                    .to_owned(),
                stderr_tail: String::new(),
            },
        };
        tokio::spawn(async move {
            if let Err(e) = mesh.request(peer_id, message, REQUEST_TIMEOUT).await {
                warn!(%origin, job = %id, error = %e, "cannot tell a job's origin it was refused");
            }
        });
    }

    /// Sends the report on a stolen job to its origin.
    pub(super) fn send_done(&mut self, origin: NodeId, id: JobId) {
        let Some(report) = self.stolen_reports.remove(&id) else {
            return;
        };
        let message = match report {
            StolenReport::Done(result) => PeerMessage::Done { job: id, result },
            StolenReport::DepsLost(lost) => PeerMessage::DepsLost { job: id, lost },
            StolenReport::Failed {
                infrastructure,
                report,
            } => PeerMessage::JobFailed {
                job: id,
                infrastructure,
                report,
            },
        };
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&origin)) else {
            return;
        };
        tokio::spawn(async move {
            match mesh.request(peer_id, message, REQUEST_TIMEOUT).await {
                Ok(PeerMessage::Refused { reason }) => {
                    warn!(%origin, job = %id, %reason, "the origin refused the report on its stolen job");
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(%origin, job = %id, error = %e, "cannot report a stolen job to its origin")
                }
            }
        });
    }

    pub(super) fn publish(&self, gossip: Gossip) {
        let Some(mesh) = &self.context.mesh else {
            return;
        };
        mesh.publish(match gossip {
            Gossip::Beacon(beacon) => GossipMessage::Beacon(beacon),
            Gossip::Have(jobs) => GossipMessage::Have { jobs },
        });
    }

    /// Tells a newly admitted peer which results this node holds: the `Have` messages the
    /// core gave, one after the other.
    pub(super) fn send_have_snapshot(&self, peer: NodeId, snapshot: Vec<Vec<JobId>>) {
        let (Some(mesh), Some(peer_id)) = (self.context.mesh.clone(), peer_of(&peer)) else {
            return;
        };
        if snapshot.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for jobs in snapshot {
                let message = PeerMessage::Have { jobs };
                if let Err(e) = mesh.request(peer_id, message, REQUEST_TIMEOUT).await {
                    debug!(%peer, error = %e, "cannot send what this node holds");
                    return;
                }
            }
        });
    }

    /// Checks a result from a peer: signed by a team member, over this job's id. With
    /// `thief`, the result must also have been made by that peer.
    fn check_result(
        &self,
        job: JobId,
        result: &ActionResult,
        thief: Option<NodeId>,
    ) -> Result<(), ResultRefused> {
        check_result(job, result, thief, |node| {
            if !self.members.contains(node) {
                Signer::Stranger
            } else if self.core.is_distrusted(node) {
                Signer::Disowned
            } else {
                Signer::Member
            }
        })
    }

    fn name_of(&self, job: JobId) -> String {
        self.builds
            .values()
            .find(|b| b.jobs.contains_key(&job))
            .map(|b| b.name(job))
            .unwrap_or_else(|| job.short(12))
    }

    fn notice_for(&self, job: JobId, text: String) {
        for state in self.builds.values() {
            if state.jobs.contains_key(&job) {
                state.emit(BuildEvent::Notice(text.clone()));
            }
        }
    }
}

/// Who a result's maker is to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// An admitted member in good standing.
    Member,
    /// Not admitted since this daemon started.
    Stranger,
    /// Disowned.
    Disowned,
}

/// Whether a peer's `result` for `job` may be taken: made by `thief` when it is a thief's
/// report, by a member in good standing (`standing` says who is), and signed by its maker's
/// key over the job id and the result.
fn check_result(
    job: JobId,
    result: &ActionResult,
    thief: Option<NodeId>,
    standing: impl Fn(&NodeId) -> Signer,
) -> Result<(), ResultRefused> {
    if let Some(thief) = thief
        && result.executed_by != thief
    {
        return Err(ResultRefused::OtherMaker(result.executed_by));
    }
    match standing(&result.executed_by) {
        Signer::Member => {}
        Signer::Stranger => return Err(ResultRefused::NotAMember(result.executed_by)),
        Signer::Disowned => return Err(ResultRefused::Distrusted(result.executed_by)),
    }
    let signature = result.signature.ok_or(ResultRefused::Unsigned)?;
    let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&result.executed_by.0)
        .map_err(ResultRefused::MalformedKey)?;
    if !key.verify(result.signing_digest(job).as_bytes(), &signature.0) {
        return Err(ResultRefused::BadSignature);
    }
    Ok(())
}

/// Why a result from a peer is not taken.
#[derive(Debug, thiserror::Error)]
enum ResultRefused {
    /// A thief's report carries a result another node made.
    #[error("it says it was made by `{0}`")]
    OtherMaker(NodeId),
    /// The signer was not admitted to the team since this daemon started.
    #[error("its signer `{0}` is not a known team member")]
    NotAMember(NodeId),
    /// The signer is disowned (`weft team distrust`, or it served corrupt data).
    #[error("its signer `{0}` is disowned")]
    Distrusted(NodeId),
    #[error("it is not signed")]
    Unsigned,
    #[error("its signer's key is malformed: {0}")]
    MalformedKey(libp2p_identity::DecodingError),
    #[error("its signature does not match")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;
    use weft_protocol::{Digest, Signature};

    use super::*;

    fn signed(key: &Keypair, job: JobId) -> ActionResult {
        let mut result = ActionResult {
            exit_code: 0,
            outputs: Vec::new(),
            output_tree: Digest::of(b"tree"),
            stdout: Digest::of(b""),
            stderr: Digest::of(b""),
            duration_ms: 1,
            executed_by: crate::daemon::node_id(key),
            signature: None,
        };
        let bytes = key
            .sign(result.signing_digest(job).as_bytes())
            .expect("sign");
        result.signature = Some(Signature(
            <[u8; 64]>::try_from(bytes.as_slice()).expect("64"),
        ));
        result
    }

    #[test]
    fn only_a_members_signature_over_this_job_is_taken() {
        let (maker, other) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let job = JobId(Digest::of(b"job"));
        let member = |_: &NodeId| Signer::Member;
        let good = signed(&maker, job);
        assert!(check_result(job, &good, None, member).is_ok());
        let thief = crate::daemon::node_id(&maker);
        assert!(check_result(job, &good, Some(thief), member).is_ok());

        // Made by another node than the thief that reports it.
        let elsewhere = crate::daemon::node_id(&other);
        let refused = check_result(job, &good, Some(elsewhere), member);
        assert!(
            matches!(refused, Err(ResultRefused::OtherMaker(_))),
            "{refused:?}"
        );
        // A stranger's, or a disowned member's.
        let refused = check_result(job, &good, None, |_| Signer::Stranger);
        assert!(
            matches!(refused, Err(ResultRefused::NotAMember(_))),
            "{refused:?}"
        );
        let refused = check_result(job, &good, None, |_| Signer::Disowned);
        assert!(
            matches!(refused, Err(ResultRefused::Distrusted(_))),
            "{refused:?}"
        );
        // Unsigned.
        let mut unsigned = good.clone();
        unsigned.signature = None;
        let refused = check_result(job, &unsigned, None, member);
        assert!(
            matches!(refused, Err(ResultRefused::Unsigned)),
            "{refused:?}"
        );
        // Signed for another job, signed by another key, or edited after signing.
        let refused = check_result(JobId(Digest::of(b"other job")), &good, None, member);
        assert!(
            matches!(refused, Err(ResultRefused::BadSignature)),
            "{refused:?}"
        );
        let mut forged = signed(&other, job);
        forged.executed_by = good.executed_by;
        let refused = check_result(job, &forged, None, member);
        assert!(
            matches!(refused, Err(ResultRefused::BadSignature)),
            "{refused:?}"
        );
        let mut edited = good.clone();
        edited.output_tree = Digest::of(b"evil");
        let refused = check_result(job, &edited, None, member);
        assert!(
            matches!(refused, Err(ResultRefused::BadSignature)),
            "{refused:?}"
        );
    }
}
