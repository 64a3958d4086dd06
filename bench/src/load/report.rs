//! What a run measured, merged over its workers. Every number comes from a counter or a recorded
//! latency; nothing is estimated.

use super::histogram::{Latency, LatencyHistogram};
use super::stats::{CallStats, ErrorCounts};
use super::worker::Outcome;
use serde::{Serialize, Serializer};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Requests answered correctly.
    pub requests: u64,
    /// Failed requests (plus unsolicited data events, see [`ErrorCounts::unsolicited`]).
    pub errors: u64,
    pub error_counts: ErrorCounts,
    /// The first error seen, for a human.
    pub first_error: Option<String>,
    /// From the start signal to the last worker's last response.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub throughput_rps: f64,
    /// Latency of correct responses. Open loop: from each request's scheduled time (corrected,
    /// includes waiting behind a slow response); closed loop: from its send.
    pub latency_p50_us: u64,
    pub latency_p95_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
    pub latency_mean_us: f64,
    /// Open loop only: latency from the actual send (what a naive client would report).
    pub latency_uncorrected: Option<Latency>,
    /// Open loop: the requested rate in requests/s.
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Connects started (setup included); failed connects count too.
    pub connections_opened: u64,
    /// Local addresses the connections came from (more than one past one address's ephemeral
    /// ports, see [`super::MAX_SOURCE_ADDRESSES`]).
    pub source_addresses: usize,
    /// The hard time limit ended the run; requests in flight then are counted as timeouts.
    pub stopped_early: bool,
    /// Ended early on request ([`super::LoadConfig::stop`]): the figures cover a part of the run.
    pub interrupted: bool,
    pub workers: Vec<WorkerStats>,
    /// All latencies behind the `latency_*` fields, for other quantiles or merging runs.
    #[serde(skip)]
    pub histogram: LatencyHistogram,
    #[serde(skip)]
    pub histogram_uncorrected: Option<LatencyHistogram>,
}

/// One worker thread's share of the run.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerStats {
    pub worker: usize,
    /// The CPU it was pinned to, if any.
    pub pinned_cpu: Option<usize>,
    /// The CPU it was running on at the end of the run.
    pub cpu: Option<usize>,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    /// The worker thread's CPU time over the run, and as a share of one core of the run's
    /// elapsed time.
    #[serde(rename = "cpu_ms", serialize_with = "millis")]
    pub cpu_time: Duration,
    pub cpu_pct: f64,
    /// Its time runnable but waiting for a CPU (another process had its core), same scale.
    #[serde(rename = "runq_wait_ms", serialize_with = "millis")]
    pub runq_wait: Duration,
    pub runq_wait_pct: f64,
    /// Every `write` of a request.
    pub send: CallStats,
    /// Every `read` of a response.
    pub recv: CallStats,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

impl LoadReport {
    pub(crate) fn merge(outcomes: Vec<Outcome>, rate: Option<f64>, concurrency: usize) -> LoadReport {
        let mut histogram = LatencyHistogram::new();
        let mut uncorrected = rate.map(|_| LatencyHistogram::new());
        let mut error_counts = ErrorCounts::default();
        let (mut requests, mut bytes_sent, mut bytes_received, mut opened) = (0, 0, 0, 0);
        let mut first_error = None;
        let mut stopped_early = false;
        for o in &outcomes {
            histogram.merge(&o.latency);
            if let (Some(all), Some(mine)) = (&mut uncorrected, &o.uncorrected) {
                all.merge(mine);
            }
            error_counts.add(&o.errors);
            requests += o.ok;
            bytes_sent += o.send.bytes();
            bytes_received += o.recv.bytes();
            opened += o.connections_opened;
            first_error = first_error.or_else(|| o.first_error.clone());
            stopped_early |= o.stopped_early;
        }
        let started = outcomes.iter().map(|o| o.started).min();
        let finished = outcomes.iter().map(|o| o.finished).max();
        let elapsed = match (started, finished) {
            (Some(s), Some(f)) => f.saturating_duration_since(s),
            _ => Duration::ZERO,
        };
        let throughput_rps = if elapsed.is_zero() {
            0.0
        } else {
            requests as f64 / elapsed.as_secs_f64()
        };
        let latency = histogram.summary();
        LoadReport {
            requests,
            errors: error_counts.total(),
            error_counts,
            first_error,
            elapsed,
            throughput_rps,
            latency_p50_us: latency.p50_us,
            latency_p95_us: latency.p95_us,
            latency_p99_us: latency.p99_us,
            latency_p999_us: latency.p999_us,
            latency_max_us: latency.max_us,
            latency_mean_us: latency.mean_us,
            latency_uncorrected: uncorrected.as_ref().map(LatencyHistogram::summary),
            rate,
            concurrency,
            bytes_sent,
            bytes_received,
            connections_opened: opened,
            source_addresses: 1,
            stopped_early,
            interrupted: false,
            workers: outcomes.iter().map(|o| worker_stats(o, elapsed)).collect(),
            histogram,
            histogram_uncorrected: uncorrected,
        }
    }

    /// The `latency_*` fields as one value.
    pub fn latency(&self) -> Latency {
        self.histogram.summary()
    }

    /// The load generator's own CPU use over the run: is it the limit?
    pub fn client_cpu(&self) -> ClientCpu {
        let cpu: Duration = self.workers.iter().map(|w| w.cpu_time).sum();
        let pinned: Option<BTreeSet<usize>> = self.workers.iter().map(|w| w.pinned_cpu).collect();
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A worker is one thread: it can use one core at most.
        let cores = pinned.map_or(available, |cpus| cpus.len()).min(self.workers.len());
        let busiest = self.workers.iter().max_by(|a, b| a.cpu_pct.total_cmp(&b.cpu_pct));
        ClientCpu {
            pct: percent_of(cpu, self.elapsed),
            cores,
            busiest_worker_pct: busiest.map_or(0.0, |w| w.cpu_pct),
            busiest_worker_runq_pct: busiest.map_or(0.0, |w| w.runq_wait_pct),
        }
    }
}

/// The load generator's CPU use: 100 is one core busy for the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClientCpu {
    pub pct: f64,
    /// Cores its workers could use: distinct pinned CPUs, or the machine's, at most one per
    /// worker.
    pub cores: usize,
    pub busiest_worker_pct: f64,
    /// The same worker's share of the run spent waiting for a CPU: on CPU plus waiting near
    /// 100% means its core was full, shared or not.
    pub busiest_worker_runq_pct: f64,
}

/// `part` as a percentage of `whole` (0 when `whole` is zero).
fn percent_of(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    part.as_secs_f64() * 100.0 / whole.as_secs_f64()
}

fn worker_stats(o: &Outcome, elapsed: Duration) -> WorkerStats {
    WorkerStats {
        cpu_time: o.cpu_time,
        cpu_pct: percent_of(o.cpu_time, elapsed),
        runq_wait: o.runq_wait,
        runq_wait_pct: percent_of(o.runq_wait, elapsed),
        worker: o.index,
        pinned_cpu: o.pinned_cpu,
        cpu: o.cpu,
        connections: o.connections,
        requests: o.ok,
        errors: o.errors.total(),
        send: o.send.stats(),
        recv: o.recv.stats(),
    }
}
