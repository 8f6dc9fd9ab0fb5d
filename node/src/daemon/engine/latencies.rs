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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_latest_samples() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.percentiles(), None);
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let (p50, p99) = latencies.percentiles().expect("samples");
        assert_eq!(p50, Duration::from_millis(51));
        assert_eq!(p99, Duration::from_millis(99));
        // Only the latest are kept: old slow samples age out.
        for _ in 0..Latencies::KEPT {
            latencies.record(Duration::from_millis(5));
        }
        assert_eq!(
            latencies.percentiles(),
            Some((Duration::from_millis(5), Duration::from_millis(5)))
        );
    }
}
