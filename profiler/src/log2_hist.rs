//! The kernel's log2 histograms read back: [`profiler_common::hist_bucket`] files a duration in
//! ns into bucket `i` = [2^i, 2^(i+1)) (bucket 0 also holds 0). The syscall latencies of the
//! breakdown and the run-queue waits of the signals are both kept this way.
use profiler_common::HIST_BUCKETS;

/// The range of bucket `b`, in ns.
pub fn bucket_bounds(b: usize) -> (u64, u64) {
    let from = if b == 0 { 0 } else { 1u64 << b };
    (from, 1u64 << (b + 1))
}

/// The `q` quantile in ns, interpolated linearly inside its bucket; 0 when empty.
pub fn quantile_ns(hist: &[u64; HIST_BUCKETS], q: f64) -> f64 {
    let count: u64 = hist.iter().sum();
    if count == 0 {
        return 0.0;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (b, &n) in hist.iter().enumerate() {
        if seen + n >= rank {
            let (low, high) = bucket_bounds(b);
            let within = (rank - seen) as f64 / n as f64;
            return low as f64 + (high - low) as f64 * within;
        }
        seen += n;
    }
    (1u64 << HIST_BUCKETS) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_fall_in_their_bucket() {
        let mut hist = [0; HIST_BUCKETS];
        hist[10] = 99; // [1024, 2048)
        hist[20] = 1; // [1 Mi, 2 Mi)
        let p50 = quantile_ns(&hist, 0.5) as u64;
        assert!((1024..2048).contains(&p50), "{p50}");
        let p99 = quantile_ns(&hist, 0.99) as u64;
        assert!((1024..=2048).contains(&p99), "{p99}");
        assert!(quantile_ns(&hist, 1.0) as u64 >= 1 << 20);
        assert_eq!(quantile_ns(&[0; HIST_BUCKETS], 0.5), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_log2_buckets() {
        let mut hist = [0; HIST_BUCKETS];
        // 100 values in [1024, 2048) ns.
        hist[10] = 100;
        assert_eq!(quantile_ns(&hist, 0.5), 1024.0 + 1024.0 * 0.5);
        assert_eq!(quantile_ns(&hist, 0.99), 1024.0 + 1024.0 * 0.99);
        // 99 short values and one long one: p50 short, p99 still short, p100 long.
        let mut hist = [0; HIST_BUCKETS];
        hist[3] = 99;
        hist[20] = 1;
        assert!(quantile_ns(&hist, 0.5) <= 16.0);
        assert!(quantile_ns(&hist, 0.99) <= 16.0);
        assert!(quantile_ns(&hist, 1.0) >= (1 << 20) as f64 * 0.99);
        assert_eq!(bucket_bounds(0), (0, 2));
        assert_eq!(bucket_bounds(10), (1024, 2048));
    }
}
