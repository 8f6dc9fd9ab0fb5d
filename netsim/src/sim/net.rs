//! Links and rpcs.
//!
//! # Link model
//!
//! Every node has one link to a switch, with a bandwidth in each direction (its group's, or
//! the network's). A message of `B` bytes from `a` to `b`:
//!
//! - waits until `a`'s uplink is free, then occupies it for `B / bandwidth(a)`;
//! - travels for one latency sample (the network's distribution, plus each end's
//!   `extra_latency`);
//! - is received no earlier than `b`'s downlink is free, occupies it for
//!   `B / bandwidth(b)`, and arrives when both the sending and the receiving are done.
//!
//! So a large blob takes time, messages queue behind it in both directions, and a node that
//! serves many fetches at once serves them one after another. Each message is lost with the
//! network's loss rate combined with both ends' (a lost message still used the links).
//! Messages between the two sides of a partition are dropped.
//!
//! # Rpcs
//!
//! Each request of the daemon's peer protocol is an rpc: a request and a reply, both
//! messages as above. An rpc fails when its request or reply is lost (at the client, after
//! `network.rpc_timeout`), when the client drops its connection to the server (at once), or
//! when the server is not connected (at once). The server must be up and connected to the
//! client when the request arrives, and the client when the reply arrives; otherwise the
//! message goes nowhere and the timeout or the dropped connection ends the rpc.

use std::time::Duration;

use weft_node::core::Time;

use super::state::{Ev, Reply, Rpc, RpcKind};
use super::world::{Sim, kind};

impl Sim {
    /// One latency sample between `a` and `b`, in microseconds.
    pub(crate) fn latency(&mut self, a: u32, b: u32) -> f64 {
        let mut latency = self.network.latency.sample(&mut self.rng_net);
        for end in [a, b] {
            if let Some(extra) = &self.nodes[end as usize].spec.extra_latency {
                latency += extra.sample(&mut self.rng_net);
            }
        }
        latency
    }

    /// Whether one message between `a` and `b` is lost.
    pub(crate) fn lost(&mut self, a: u32, b: u32) -> bool {
        let keep = (1.0 - self.network.loss)
            * (1.0 - self.nodes[a as usize].spec.loss)
            * (1.0 - self.nodes[b as usize].spec.loss);
        keep < 1.0 && self.rng_net.chance(1.0 - keep)
    }

    /// Sends `bytes` from `from` to `to` over their links; returns when it arrives, or
    /// `None` when it is lost or the two are on different sides of a partition.
    pub(crate) fn transmit(&mut self, from: u32, to: u32, bytes: u64) -> Option<Time> {
        if !self.reachable(from, to) {
            return None;
        }
        let now = self.now;
        let latency = self.latency(from, to);
        let up_rate = self.nodes[from as usize].spec.bandwidth;
        let down_rate = self.nodes[to as usize].spec.bandwidth;
        let sender = &mut self.nodes[from as usize];
        let start = sender.up_free.max(now);
        let sent = start + micros(bytes as f64 / up_rate * 1e6);
        sender.up_free = sent;
        let receiver = &mut self.nodes[to as usize];
        let first_bit = start + micros(latency);
        let receive_start = first_bit.max(receiver.down_free);
        let received =
            (receive_start + micros(bytes as f64 / down_rate * 1e6)).max(sent + micros(latency));
        receiver.down_free = received;
        if self.lost(from, to) {
            return None;
        }
        Some(received)
    }

    /// Sends an rpc from `client` to `server`; its outcome comes back through
    /// [`Sim::on_response`] or [`Sim::on_rpc_failed`].
    pub(crate) fn send_rpc(&mut self, client: u32, server: u32, kind: RpcKind) -> u64 {
        let now = self.now;
        let id = self.next_rpc;
        self.next_rpc += 1;
        let bytes = request_bytes(&kind);
        self.metrics.rpcs += 1;
        self.metrics.bytes_rpc += bytes;
        let c = &mut self.nodes[client as usize];
        let connected = c.conn.contains(server);
        c.pending.insert(id);
        let client_life = c.life;
        self.rpcs.insert(
            id,
            Rpc {
                client,
                client_life,
                server,
                kind,
                reply: None,
            },
        );
        if !connected {
            self.queue.push(now, Ev::Fail { rpc: id });
            return id;
        }
        match self.transmit(client, server, bytes) {
            Some(at) => self.queue.push(at, Ev::Request { rpc: id }),
            None => self.metrics.rpcs_lost += 1,
        }
        let timeout = Duration::from_micros(self.network.rpc_timeout.micros());
        self.queue.push(now + timeout, Ev::Fail { rpc: id });
        id
    }

    /// A request reached its server.
    pub(crate) fn on_request(&mut self, id: u64) {
        let Some(rpc) = self.rpcs.get_mut(&id) else {
            return;
        };
        let (client, server) = (rpc.client, rpc.server);
        let s = &self.nodes[server as usize];
        if !s.is_up() || !s.conn.contains(client) || rpc.reply.is_some() {
            return;
        }
        let kind = std::mem::replace(&mut rpc.kind, RpcKind::Have { jobs: Vec::new() });
        let (kind, reply) = self.serve(server, client, kind);
        let (bytes, data) = reply_bytes(&reply, &kind);
        self.metrics.bytes_rpc += bytes;
        self.metrics.bytes_data += data;
        if let Some(rpc) = self.rpcs.get_mut(&id) {
            rpc.kind = kind;
            rpc.reply = Some(reply);
        }
        match self.transmit(server, client, bytes + data) {
            Some(at) => self.queue.push(at, Ev::Response { rpc: id }),
            None => self.metrics.rpcs_lost += 1,
        }
    }

    /// A reply reached its client.
    pub(crate) fn on_response(&mut self, id: u64) {
        let Some(rpc) = self.rpcs.get(&id) else {
            return;
        };
        let c = &self.nodes[rpc.client as usize];
        if c.life != rpc.client_life || !c.is_up() || !c.conn.contains(rpc.server) {
            return;
        }
        let Some(rpc) = self.rpcs.remove(&id) else {
            return;
        };
        self.nodes[rpc.client as usize].pending.remove(&id);
        let Some(reply) = rpc.reply else { return };
        self.on_reply(rpc.client, rpc.server, rpc.kind, reply);
    }

    /// An rpc's timeout, or a failure scheduled at once.
    pub(crate) fn on_rpc_failed(&mut self, id: u64) {
        self.fail_rpc(id);
    }

    /// Ends an rpc as failed, if it is still open: it timed out, or its connection dropped.
    pub(crate) fn fail_rpc(&mut self, id: u64) {
        let Some(rpc) = self.rpcs.remove(&id) else {
            return;
        };
        self.metrics.rpcs_failed += 1;
        let c = &mut self.nodes[rpc.client as usize];
        c.pending.remove(&id);
        if c.life != rpc.client_life || !c.is_up() {
            return;
        }
        self.trace
            .record(self.now, rpc.client, kind::RPC_FAIL, u64::from(rpc.server));
        self.on_failure(rpc.client, rpc.server, rpc.kind);
    }
}

/// Microseconds as a duration (rounded up, so that a transfer never takes no time).
pub(crate) fn micros(us: f64) -> Duration {
    Duration::from_micros(us.ceil().max(0.0) as u64)
}

/// Bytes of a request on the wire (frame, message and ids; sizes of the daemon's encoding,
/// rounded).
fn request_bytes(kind: &RpcKind) -> u64 {
    match kind {
        RpcKind::Steal { request } => 64 + 32 * request.tools.len() as u64,
        RpcKind::Renew { jobs } | RpcKind::Have { jobs } => 48 + 32 * jobs.len() as u64,
        RpcKind::Done { .. } => 420,
        RpcKind::DepsLost { lost, .. } => 80 + 32 * lost.len() as u64,
        RpcKind::Query { .. } | RpcKind::Fetch { .. } => 80,
    }
}

/// Bytes of a reply: `(control, data)`, where data is a fetched payload.
fn reply_bytes(reply: &Reply, kind: &RpcKind) -> (u64, u64) {
    match reply {
        Reply::Granted(leases) => {
            let leases: u64 = leases
                .iter()
                .map(|lease| {
                    let job = &lease.job;
                    let deps: u64 = lease
                        .deps
                        .iter()
                        .map(|d| 72 + 32 * d.holders.len() as u64)
                        .sum();
                    200 + job.name.len() as u64
                        + 80 * job.inputs.len() as u64
                        + 32 * job.deps.len() as u64
                        + deps
                })
                .sum();
            (32 + leases, 0)
        }
        Reply::Renewed(lost) => (32 + 32 * lost.len() as u64, 0),
        Reply::Ack => (24, 0),
        Reply::Answer { hit } => (if *hit { 420 } else { 40 }, 0),
        Reply::Data { ok } => match (ok, kind) {
            (true, RpcKind::Fetch { bytes, .. }) => (64, *bytes),
            _ => (40, 0),
        },
    }
}
