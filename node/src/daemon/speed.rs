//! How fast this machine runs a job, for the `speed` its beacons carry: peers give the jobs
//! on a build's critical path to a machine clearly faster than the others
//! (`core::CoreConfig::speed`).
//!
//! Measured once at start, when the node has a team: the best of a few runs of a small
//! single-threaded workload like a compiler's inner loops (random reads and writes in a
//! 4 MiB table, data-dependent branches), against the time it takes on the reference
//! machine. The best run, not the mean, so that a busy moment at start does not make a
//! machine look slow; and peers act only on a difference of a quarter or more, which is
//! far above what is left of the noise (four daemons measuring at once on this 2-core
//! machine spread by 11%). `speed = 1.5` in the daemon's configuration replaces the
//! measurement.
//!
//! The workload is this binary's code, so an unoptimized (debug) build measures itself about
//! five times slower than a release build on the same machine: peers compare fairly only
//! when they run the same kind of build, as a team does.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rounds of the workload per run.
const ROUNDS: u64 = 1_000_000;

/// Runs; the fastest counts.
const RUNS: usize = 5;

/// How long one run takes on the reference machine (a 2-core AMD EPYC virtual machine of
/// 2026, where weft is developed): speed 1000 there.
const REFERENCE: Duration = Duration::from_micros(3_500);

/// This machine's speed in thousandths of the reference's, rounded to a multiple of 50
/// (at least 50). Takes about 20 ms on the reference machine.
pub(crate) fn measure() -> u32 {
    let mut table = vec![0u32; 1 << 20];
    let best = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(workload(black_box(&mut table)));
            start.elapsed()
        })
        .min()
        .unwrap_or(REFERENCE);
    thousandths(best)
}

/// The speed of a machine whose best run took `best`.
fn thousandths(best: Duration) -> u32 {
    let ratio = REFERENCE.as_secs_f64() / best.as_secs_f64().max(1e-9);
    let rounded = (ratio * 20.0).round() * 50.0;
    rounded.clamp(50.0, 1_000_000.0) as u32
}

/// Random reads and writes in `table` (a power of two long), with branches on what they
/// read: xorshift for the addresses.
fn workload(table: &mut [u32]) -> u64 {
    let mask = table.len() - 1;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut acc = 0u64;
    for i in 0..ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x as usize) & mask;
        let v = table[slot];
        if v & 1 == 0 {
            acc = acc.wrapping_add(u64::from(v) ^ x);
        } else {
            acc = acc.rotate_left(5) ^ i;
        }
        table[slot] = v.wrapping_add(x as u32 | 1);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_are_relative_to_the_reference_and_rounded() {
        assert_eq!(thousandths(REFERENCE), 1000);
        assert_eq!(thousandths(REFERENCE * 2), 500);
        assert_eq!(thousandths(REFERENCE / 2), 2000);
        assert_eq!(thousandths(REFERENCE.mul_f64(1.0 / 1.52)), 1500);
        assert_eq!(thousandths(Duration::from_secs(100)), 50);
        assert_eq!(thousandths(Duration::ZERO), 1_000_000);
    }

    #[test]
    fn a_measurement_is_a_plausible_speed() {
        // Whatever machine runs the tests, and however busy: well within these bounds.
        let speed = measure();
        assert!((50..=20_000).contains(&speed), "measured {speed}");
        assert_eq!(speed % 50, 0);
    }
}
