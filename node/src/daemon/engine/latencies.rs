//! [`Latencies`]: the latest samples of a duration, for the percentiles `weft status` shows.

use std::collections::VecDeque;
use std::time::Duration;

/// The latest durations of something, for percentiles.
#[derive(Default)]
pub(super) struct Latencies {
    samples: VecDeque<Duration>,
}

impl Latencies {
    const KEPT: usize = 4096;

    pub(super) fn record(&mut self, sample: Duration) {
        if self.samples.len() == Self::KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The median and the 99th percentile.
    pub(super) fn percentiles(&self) -> Option<(Duration, Duration)> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }
}
