//! [`Rng`]: the core's only randomness, a splitmix64 generator seeded from the node's id, so
//! that a run is a pure function of its inputs (netsim's traces depend on it).

use weft_protocol::NodeId;

/// splitmix64, seeded from a node's id.
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    /// The generator of node `local`.
    pub(super) fn new(local: NodeId) -> Rng {
        let seed = u64::from_le_bytes([
            local.0[0], local.0[1], local.0[2], local.0[3], local.0[4], local.0[5], local.0[6],
            local.0[7],
        ]);
        Rng(seed | 1)
    }

    /// True with odds of `per_million` in a million.
    pub(super) fn chance(&mut self, per_million: u32) -> bool {
        self.next() % 1_000_000 < u64::from(per_million)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
