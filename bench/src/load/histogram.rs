//! Latency recording: an HdrHistogram of microseconds with 3 significant digits, so percentiles
//! are within 0.1% whatever the spread, in constant memory per worker, and mergeable.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Latencies in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
}

/// The usual summary of a [`LatencyHistogram`]; all zero when nothing was recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        // Auto-resizing: no upper bound to guess, and a value is never rejected.
        let hist = Histogram::new(3).expect("3 significant digits is a valid precision");
        LatencyHistogram { hist }
    }

    /// Records `latency` rounded to the nearest microsecond.
    pub fn record(&mut self, latency: Duration) {
        let us = (latency.as_nanos() + 500) / 1000;
        self.record_us(us.min(u64::MAX as u128) as u64);
    }

    pub fn record_us(&mut self, us: u64) {
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp to its
        // current top instead.
        if self.hist.record(us).is_err() {
            self.hist.saturating_record(us);
        }
    }

    /// Forgets every recorded latency.
    pub fn reset(&mut self) {
        self.hist.reset();
    }

    /// Wraps a histogram of microseconds read back from a log.
    pub fn from_hdr(hist: Histogram<u64>) -> LatencyHistogram {
        let mut out = LatencyHistogram::new();
        out.hist.add(&hist).expect("auto-resizing histograms add");
        out
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both auto-resize, so adding cannot run out of range.
        self.hist.add(&other.hist).expect("auto-resizing histograms add");
    }

    /// Number of recorded latencies.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The latency at `percentile` (0..=100), in us; 0 when empty.
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        self.hist.value_at_percentile(percentile)
    }

    pub fn p50_us(&self) -> u64 {
        self.percentile_us(50.0)
    }

    pub fn p95_us(&self) -> u64 {
        self.percentile_us(95.0)
    }

    pub fn p99_us(&self) -> u64 {
        self.percentile_us(99.0)
    }

    pub fn p999_us(&self) -> u64 {
        self.percentile_us(99.9)
    }

    pub fn min_us(&self) -> u64 {
        if self.is_empty() { 0 } else { self.hist.min() }
    }

    pub fn max_us(&self) -> u64 {
        if self.is_empty() { 0 } else { self.hist.max() }
    }

    pub fn mean_us(&self) -> f64 {
        if self.is_empty() { 0.0 } else { self.hist.mean() }
    }

    pub fn summary(&self) -> Latency {
        Latency {
            p50_us: self.p50_us(),
            p95_us: self.p95_us(),
            p99_us: self.p99_us(),
            p999_us: self.p999_us(),
            max_us: self.max_us(),
            mean_us: self.mean_us(),
        }
    }

    /// The underlying histogram, for other quantiles or iteration.
    pub fn inner(&self) -> &Histogram<u64> {
        &self.hist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(LatencyHistogram::new().summary(), Latency::default());
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.len(), 10_000);
        let within = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(within(h.p50_us(), 5_000), "{}", h.p50_us());
        assert!(within(h.p95_us(), 9_500), "{}", h.p95_us());
        assert!(within(h.p99_us(), 9_900), "{}", h.p99_us());
        assert!(within(h.p999_us(), 9_990), "{}", h.p999_us());
        assert!(within(h.max_us(), 10_000), "{}", h.max_us());
        assert_eq!(h.min_us(), 1);
        assert!((h.mean_us() - 5000.5).abs() < 5.0, "{}", h.mean_us());
    }

    #[test]
    fn rounds_to_nearest_microsecond_and_merges() {
        let mut a = LatencyHistogram::new();
        a.record(Duration::from_nanos(1_499));
        let mut b = LatencyHistogram::new();
        b.record(Duration::from_nanos(2_500));
        b.record(Duration::from_secs(3600));
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.min_us(), 1);
        assert_eq!(a.percentile_us(50.0), 3);
        assert!(a.max_us() >= 3_600_000_000);
    }
}
