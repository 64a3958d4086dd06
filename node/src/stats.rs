//! The node's own message handling (bench_stats): every reply's latency from the line being
//! read to the reply being written, on the monotonic clock.
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct Stats {
    since: Instant,
    latencies_us: Histogram<u64>,
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            since: Instant::now(),
            latencies_us: Histogram::new(3).expect("3 significant digits is valid"),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.latencies_us
            .saturating_record(latency.as_micros().try_into().unwrap_or(u64::MAX));
    }

    pub fn report(&self) -> Value {
        let h = &self.latencies_us;
        let elapsed = self.since.elapsed();
        let total = h.len();
        let throughput = if elapsed.is_zero() {
            0.0
        } else {
            total as f64 / elapsed.as_secs_f64()
        };
        json!({
            "type": "bench_stats_ok",
            "total_messages": total,
            "elapsed_ms": elapsed.as_millis() as u64,
            "throughput_per_sec": (throughput * 10.0).round() / 10.0,
            "avg_latency_us": h.mean().round() as u64,
            "p50_latency_us": h.value_at_quantile(0.50),
            "p99_latency_us": h.value_at_quantile(0.99),
            "max_latency_us": h.max(),
        })
    }
}
