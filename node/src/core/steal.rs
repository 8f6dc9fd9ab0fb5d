//! Stealing, the thief's side: whom this node asks for work ([`Stealing::draw`]: a busy peer
//! at random, in proportion to its queue, and on a large mesh only when its turn comes), and
//! the steal request in flight.
//!
//! Its randomness is the core's [`Rng`].

use std::time::Duration;

use weft_protocol::NodeId;

use super::Time;
use super::peers::PeerTable;
use super::rng::Rng;

/// How long a steal request may go unanswered before the thief tries elsewhere.
const STEAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest an idle node sleeps before its turn to ask a busy peer for work (a peer that
/// turns busy ends the wait at once).
const MAX_STEAL_TURN_WAIT: Duration = Duration::from_secs(10);

/// The thief's side of stealing: the request in flight, when the next may go, and the draw.
#[derive(Debug)]
pub(super) struct Stealing {
    /// The steal request in flight: the victim, and when it was sent.
    pending: Option<(NodeId, Time)>,
    /// No steal attempt before this: the last roll of the odds said not to ask.
    gate: Time,
    /// This node drew its turn to ask: it asks once `gate` passes.
    turn: bool,
}

/// The settings that shape the odds of a draw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Draw {
    /// About how many requests should chase each queued job
    /// ([`super::CoreConfig::steal_fanout`]).
    pub(super) fanout: u32,
    /// How long one roll of the odds lasts ([`super::CoreConfig::steal_backoff`]).
    pub(super) backoff: Duration,
}

impl Stealing {
    /// Nothing in flight.
    pub(super) fn new() -> Stealing {
        Stealing {
            pending: None,
            gate: Time::ZERO,
            turn: false,
        }
    }

    /// When to look again: when the request in flight times out, or (with `may_steal` and
    /// nothing in flight) when the first busy peer may be asked (`busy_ready`), after the
    /// gate.
    pub(super) fn next_time(&self, may_steal: bool, busy_ready: Option<Time>) -> Option<Time> {
        match self.pending {
            Some((_, sent)) => Some(sent + STEAL_TIMEOUT),
            None if may_steal => busy_ready.map(|ready| ready.max(self.gate)),
            None => None,
        }
    }

    /// `peer` answered the request in flight (or is gone): another may go.
    pub(super) fn answered(&mut self, peer: &NodeId) {
        if self.pending.is_some_and(|(victim, _)| victim == *peer) {
            self.pending = None;
        }
    }

    /// The victim of a request that went unanswered too long at `now`.
    pub(super) fn timed_out(&self, now: Time) -> Option<NodeId> {
        let (victim, sent) = self.pending?;
        (now >= sent + STEAL_TIMEOUT).then_some(victim)
    }

    /// A busy peer has more work than when this node drew its turn: draw again, with the new
    /// odds.
    pub(super) fn more_work(&mut self, now: Time) {
        if self.turn {
            self.gate = self.gate.min(now);
            self.turn = false;
        }
    }

    /// Whether this node may try to steal at `now` (nothing in flight, past the gate).
    pub(super) fn may_try(&self, now: Time) -> bool {
        self.pending.is_none() && now >= self.gate
    }

    /// Whom to ask for work now, if anyone: busy peers on this platform, not avoided, not
    /// backing off, picked at random with odds in proportion to their queue, so thieves
    /// spread out. With many idle nodes and few queued jobs, a node asks only when its turn
    /// comes, so that about `fanout` requests chase each queued job. A victim found is the
    /// request in flight.
    pub(super) fn draw(
        &mut self,
        now: Time,
        peers: &PeerTable,
        draw: Draw,
        rng: &mut Rng,
    ) -> Option<NodeId> {
        // Counted and picked in two passes: this runs after every event, most often to find
        // no victim or to be turned away by the odds below.
        let total: u64 = peers
            .busy()
            .filter_map(|node| peers.steal_weight(node, now))
            .sum();
        if total == 0 {
            return None;
        }
        // Every peer not known to be busy counts as a competitor, and so does this node. A
        // node that victims reserve jobs for competes only with the other fast peers (a build
        // box among laptops asks at once rather than wait its turn behind them), and with
        // every peer whose speed it does not know yet: on a large mesh beacons are sparse.
        let idle = if peers.is_fast_here() {
            (peers.fast().len() + peers.n_unknown_speed()) as u64 + 1
        } else {
            (peers.len() - peers.n_busy().min(peers.len()) + 1) as u64
        };
        let wanted = total.saturating_mul(u64::from(draw.fanout.max(1)));
        // Rather than roll every `backoff` (a wake-up each time, on every idle node), draw
        // how many rolls it takes, and sleep until then: about idle / wanted of them.
        if wanted < idle && !std::mem::take(&mut self.turn) {
            let rolls = rng.next() % (2 * idle / wanted + 1);
            if rolls > 0 {
                let backoff = draw.backoff.max(Duration::from_millis(1));
                let wait = backoff.saturating_mul(u32::try_from(rolls).unwrap_or(u32::MAX));
                self.gate = now + wait.min(MAX_STEAL_TURN_WAIT);
                self.turn = true;
                return None;
            }
        }
        self.turn = false;
        let mut pick = rng.next() % total;
        let mut victim = None;
        for node in peers.busy() {
            let Some(queue) = peers.steal_weight(node, now) else {
                continue;
            };
            if victim.is_none() || pick < queue {
                victim = Some(*node);
            }
            if pick < queue {
                break;
            }
            pick -= queue;
        }
        let victim = victim?;
        self.pending = Some((victim, now));
        Some(victim)
    }
}
