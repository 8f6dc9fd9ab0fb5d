//! Gossip: the core's [`Effect::Publish`](weft_node::core::Effect::Publish) carried over the
//! simulated links the way gossipsub, as the daemon configures it, carries it.
//!
//! # Model
//!
//! - **Mesh**: each node keeps up to `mesh_n` mesh peers among the nodes it is connected to
//!   (the daemon: 4), grafted when a connection comes up while either side has fewer than
//!   `mesh_n` (both sides take the link, up to twice `mesh_n`), and re-grafted at random when
//!   a node drops under half of `mesh_n`.
//! - **Publish**: with `flood_publish` (the daemon's setting), a node's own message goes to
//!   every connected peer, one copy after another on its uplink, so that at a thousand nodes
//!   a beacon takes the publisher's link for a while and the last copy leaves late. Without
//!   it, the message goes to the mesh peers only.
//! - **Forwarding**: every node that receives a message for the first time forwards it to
//!   its mesh peers. Without `flood_publish` this is how the message spreads, hop by hop; the
//!   arrival time at each node is the earliest over all mesh paths (a Dijkstra over the mesh
//!   with a latency sample per transmission). With `flood_publish`, a node's direct copy
//!   normally arrives first; a node whose direct copy was lost gets it from a mesh neighbour
//!   one latency after that neighbour did.
//! - **Repair**: a connected node that neither path reached (losses on every path) gets the
//!   message through lazy gossip (IHAVE, IWANT, the message): one heartbeat plus three
//!   latencies after the publish.
//! - **Costs**: the publisher's copies occupy its uplink; forwards are counted in the gossip
//!   bytes (each receiver sends `mesh_n - 1` copies) but not queued on links.
//! - **Delivery** to a core requires the receiver to be up and connected to the publisher
//!   when the message arrives (gossipsub validation drops messages from non-admitted peers;
//!   `Core::on_have` ignores unknown peers anyway).
//!
//! # Convergence
//!
//! For every announced result (a `Have`), the time from the job's finish on the node that
//! made it until 99% of the other nodes up at the publish received the announcement. An
//! announcement that cannot reach 99% of them (a partition) counts as unconverged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use weft_node::core::{Gossip, Time};

use super::net::micros;
use super::state::{Ev, GossipMsg};
use super::world::Sim;

impl Sim {
    /// `from` publishes `gossip`.
    pub(crate) fn publish(&mut self, from: u32, gossip: Gossip) {
        let now = self.now;
        let payload = match &gossip {
            Gossip::Beacon(beacon) => {
                48 + beacon.platform.len() as u64 + 32 * beacon.tools.len() as u64
            }
            Gossip::Have(jobs) => 16 + 32 * jobs.len() as u64,
        };
        let bytes = self.gossip.overhead.base as u64 + payload;
        match &gossip {
            Gossip::Beacon(_) => self.metrics.beacons += 1,
            Gossip::Have(_) => self.metrics.haves += 1,
        }
        let arrivals = self.arrivals(from, bytes);
        if let Gossip::Have(jobs) = &gossip {
            self.measure_convergence(from, jobs, &arrivals);
        }
        if arrivals.is_empty() {
            return;
        }
        let msg = GossipMsg {
            from,
            gossip,
            remaining: arrivals.len(),
        };
        let index = match self.free_messages.pop() {
            Some(index) => {
                self.messages[index as usize] = Some(msg);
                index
            }
            None => {
                self.messages.push(Some(msg));
                (self.messages.len() - 1) as u32
            }
        };
        for (node, at) in arrivals {
            self.queue
                .push(at.max(now), Ev::Gossip { node, msg: index });
        }
    }

    /// When each node the message reaches gets it, by gossipsub's rules (see the module
    /// documentation).
    fn arrivals(&mut self, from: u32, bytes: u64) -> Vec<(u32, Time)> {
        let now = self.now;
        let n = self.nodes.len();
        let mesh_n = self.gossip.mesh_n as u64;
        let direct: Vec<u32> = if self.gossip.flood_publish {
            self.nodes[from as usize].conn.iter().collect()
        } else {
            let source = &self.nodes[from as usize];
            source
                .mesh
                .iter()
                .copied()
                .filter(|p| source.conn.contains(*p))
                .collect()
        };
        if direct.is_empty() {
            return Vec::new();
        }
        // The publisher's copies leave one after another, starting at a random peer.
        let rate = self.nodes[from as usize].spec.bandwidth;
        let per_copy = bytes as f64 / rate * 1e6;
        let start = self.nodes[from as usize].up_free.max(now);
        let offset = self.rng_gossip.index(direct.len());
        let mut arrival: Vec<Option<Time>> = vec![None; n];
        let mut lost_direct: Vec<u32> = Vec::new();
        for k in 0..direct.len() {
            let peer = direct[(k + offset) % direct.len()];
            let sent = start + micros(per_copy * (k + 1) as f64);
            let latency = self.latency(from, peer);
            if self.reachable(from, peer) && !self.gossip_lost(from, peer) {
                arrival[peer as usize] = Some(sent + micros(latency));
            } else {
                lost_direct.push(peer);
            }
        }
        self.nodes[from as usize].up_free = start + micros(per_copy * direct.len() as f64);
        self.metrics.bytes_gossip += bytes * direct.len() as u64;
        if !self.gossip.flood_publish {
            self.spread_over_mesh(from, &mut arrival);
        } else if !lost_direct.is_empty() {
            for peer in lost_direct {
                if !self.reachable(from, peer) {
                    continue;
                }
                let mut best: Option<Time> = None;
                let neighbours = self.nodes[peer as usize].mesh.clone();
                for w in neighbours {
                    if let Some(at) = arrival[w as usize]
                        && w != peer
                        && !self.gossip_lost(w, peer)
                    {
                        let via = at + micros(self.latency(w, peer));
                        best = Some(best.map_or(via, |b| b.min(via)));
                    }
                }
                arrival[peer as usize] = best;
            }
        }
        // Lazy repair for connected nodes nothing reached.
        let heartbeat = micros(self.gossip.heartbeat.base);
        let mut out = Vec::new();
        for node in 0..n as u32 {
            if node == from {
                continue;
            }
            match arrival[node as usize] {
                Some(at) => out.push((node, at)),
                None => {
                    let connected = self.nodes[from as usize].conn.contains(node);
                    if connected && self.reachable(from, node) && self.nodes[node as usize].is_up()
                    {
                        let latency = self.latency(from, node);
                        out.push((node, now + heartbeat + micros(3.0 * latency)));
                    }
                }
            }
        }
        // Each receiver forwards to its other mesh peers.
        self.metrics.bytes_gossip += out.len() as u64 * mesh_n.saturating_sub(1) * bytes;
        out
    }

    fn gossip_lost(&mut self, a: u32, b: u32) -> bool {
        self.lost(a, b)
    }

    /// Hop-by-hop spread over the mesh: the earliest arrival at every node over all mesh
    /// paths (Dijkstra, a latency sample per transmission).
    fn spread_over_mesh(&mut self, from: u32, arrival: &mut [Option<Time>]) {
        let mut heap: BinaryHeap<Reverse<(Time, u32)>> = arrival
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.map(|at| Reverse((at, i as u32))))
            .collect();
        let mut done = vec![false; arrival.len()];
        done[from as usize] = true;
        while let Some(Reverse((at, node))) = heap.pop() {
            if done[node as usize] || arrival[node as usize] != Some(at) {
                continue;
            }
            done[node as usize] = true;
            let mesh = self.nodes[node as usize].mesh.clone();
            for peer in mesh {
                if done[peer as usize]
                    || !self.nodes[node as usize].conn.contains(peer)
                    || !self.reachable(node, peer)
                    || self.gossip_lost(node, peer)
                {
                    continue;
                }
                let via = at + micros(self.latency(node, peer));
                if arrival[peer as usize].is_none_or(|old| via < old) {
                    arrival[peer as usize] = Some(via);
                    heap.push(Reverse((via, peer)));
                }
            }
        }
    }

    fn measure_convergence(
        &mut self,
        from: u32,
        jobs: &[weft_protocol::JobId],
        arrivals: &[(u32, Time)],
    ) {
        let others = self.n_up.saturating_sub(1);
        let finished: Vec<Time> = {
            let node = &mut self.nodes[from as usize];
            jobs.iter()
                .filter_map(|job| node.finished_at.remove(job))
                .collect()
        };
        if finished.is_empty() {
            return;
        }
        let needed = (others as f64 * 0.99).ceil() as usize;
        if needed == 0 {
            return;
        }
        let mut times: Vec<u64> = arrivals
            .iter()
            .filter(|(node, _)| self.nodes[*node as usize].is_up())
            .map(|(_, at)| at.as_micros())
            .collect();
        if times.len() < needed {
            self.metrics.unconverged += finished.len() as u64;
            return;
        }
        let (_, nth, _) = times.select_nth_unstable(needed - 1);
        let t99 = *nth;
        for at in finished {
            self.metrics
                .convergence
                .push(t99.saturating_sub(at.as_micros()));
        }
    }

    /// A gossip message will reach `node` soon: asks the CPU for the memory the delivery
    /// will read. A thousand cores' holder maps fill gigabytes, so each delivery would
    /// otherwise wait for main memory two or three times in a row; asked a few events
    /// ahead, those loads overlap with the deliveries before it. Changes nothing else.
    pub(crate) fn prefetch_gossip(&self, node: u32, index: u32) {
        let Some(Some(msg)) = self.messages.get(index as usize) else {
            return;
        };
        if let (Gossip::Have(jobs), Some(core)) = (&msg.gossip, &self.nodes[node as usize].core) {
            core.prefetch_have(&self.nodes[msg.from as usize].id, jobs);
        }
    }

    /// A gossip message reaches `node`.
    pub(crate) fn on_gossip(&mut self, node: u32, index: u32) {
        let now = self.now;
        let Some(Some(msg)) = self.messages.get_mut(index as usize) else {
            return;
        };
        msg.remaining -= 1;
        let from = msg.from;
        let last = msg.remaining == 0;
        let receiver = &self.nodes[node as usize];
        if self.nodes[from as usize].conn_from.contains(node) && receiver.is_up() {
            debug_assert!(receiver.conn.contains(from));
            let peer = self.nodes[from as usize].id;
            let messages = &self.messages;
            let nodes = &mut self.nodes;
            if let (Some(Some(msg)), Some(core)) = (
                messages.get(index as usize),
                nodes[node as usize].core.as_mut(),
            ) {
                match &msg.gossip {
                    Gossip::Beacon(beacon) => core.on_beacon(now, peer, beacon),
                    Gossip::Have(jobs) => core.on_have(now, peer, jobs),
                }
            }
            self.metrics.gossip_deliveries += 1;
            self.drain(node);
        }
        if last {
            self.messages[index as usize] = None;
            self.free_messages.push(index);
        }
    }

    /// Grafts `a` and `b` into each other's mesh when either needs peers.
    pub(crate) fn graft(&mut self, a: u32, b: u32) {
        let mesh_n = self.gossip.mesh_n;
        let high = 2 * mesh_n;
        let (la, lb) = (
            self.nodes[a as usize].mesh.len(),
            self.nodes[b as usize].mesh.len(),
        );
        if (la < mesh_n || lb < mesh_n) && la < high && lb < high {
            if !self.nodes[a as usize].mesh.contains(&b) {
                self.nodes[a as usize].mesh.push(b);
            }
            if !self.nodes[b as usize].mesh.contains(&a) {
                self.nodes[b as usize].mesh.push(a);
            }
        }
    }

    /// After a node lost mesh peers: grafts random connected peers when it is under half of
    /// `mesh_n`.
    pub(crate) fn regraft(&mut self, node: u32) {
        let mesh_n = self.gossip.mesh_n;
        if self.nodes[node as usize].mesh.len() >= mesh_n.div_ceil(2) {
            return;
        }
        let candidates: Vec<u32> = self.nodes[node as usize]
            .conn
            .iter()
            .filter(|p| !self.nodes[node as usize].mesh.contains(p))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let offset = self.rng_gossip.index(candidates.len());
        for k in 0..candidates.len() {
            if self.nodes[node as usize].mesh.len() >= mesh_n {
                break;
            }
            let peer = candidates[(k + offset) % candidates.len()];
            if self.nodes[peer as usize].mesh.len() < 2 * mesh_n {
                self.nodes[node as usize].mesh.push(peer);
                if !self.nodes[peer as usize].mesh.contains(&node) {
                    self.nodes[peer as usize].mesh.push(node);
                }
            }
        }
    }
}
