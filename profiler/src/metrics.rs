//! Prometheus metrics (`--listen ADDR`): what a profile or a load has counted so far, served at
//! `/metrics` in the text exposition format (prometheus-client's encoder), names in a `tcpprof_`
//! namespace and base units. The caller updates a snapshot (a profile's totals every second, a
//! load's counts at each interval); a scrape encodes the latest one.
use crate::http;
use crate::live::{Interval, Sink};
use crate::{Totals, log2_hist};
use anyhow::{Context, Result};
use bench::load::{ErrorCounts, LatencyHistogram};
use profiler_common::{HIST_BUCKETS, SyscallClass};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

/// Upper bounds of the latency histogram's buckets, in seconds: 50 us to about 13 s, doubling.
const LATENCY_BUCKETS: usize = 19;
/// The run-queue histogram's first bucket ends at 1,024 ns.
const RUNQ_FIRST_BUCKET: usize = 9;

/// What the metrics show: the latest of each part the run has.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// A profile's totals since attach.
    pub totals: Option<Totals>,
    /// A load's counts since it started.
    pub load: Option<LoadCounts>,
}

#[derive(Debug, Default)]
pub struct LoadCounts {
    pub requests: u64,
    pub errors: ErrorCounts,
    pub latency: LatencyHistogram,
}

/// The metrics of a run: the snapshot and the registry that encodes it. [`Exporter::serve`]
/// answers `/metrics` on a port of its own; the dashboard answers it beside its page.
#[derive(Clone)]
pub struct Exporter {
    snapshot: Arc<Mutex<Snapshot>>,
    registry: Arc<Registry>,
    addr: Option<SocketAddr>,
}

impl Exporter {
    pub fn new() -> Exporter {
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let mut registry = Registry::with_prefix("tcpprof");
        registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
        Exporter {
            snapshot,
            registry: Arc::new(registry),
            addr: None,
        }
    }

    /// Serves `/metrics` at `addr` from a thread of its own until the process ends.
    pub fn serve(addr: SocketAddr) -> Result<Exporter> {
        let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr} for /metrics"))?;
        let exporter = Exporter {
            addr: Some(listener.local_addr()?),
            ..Exporter::new()
        };
        let served = exporter.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    // One scrape at a time: they come every few seconds.
                    let _ = match http::read_request(&mut stream) {
                        Ok(Some(r)) if r.path == "/metrics" => served.answer(&mut stream),
                        _ => http::respond(
                            &mut stream,
                            "404 Not Found",
                            "text/plain",
                            b"only /metrics is served here\n",
                        ),
                    };
                }
            })
            .context("starting the /metrics thread")?;
        Ok(exporter)
    }

    /// Where [`Exporter::serve`] listens.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        change(&mut self.snapshot.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Answers a `GET /metrics` with the latest snapshot.
    pub fn answer(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry).map_err(std::io::Error::other)?;
        http::respond(
            stream,
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body.as_bytes(),
        )
    }
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new()
    }
}

/// The live loop keeps the metrics current: the load's counts add up, the profile's totals
/// replace the last.
impl Sink for Exporter {
    fn take(&mut self, interval: &Interval) {
        self.update(|s| match interval {
            Interval::Load(i) => {
                let load = s.load.get_or_insert_with(Default::default);
                load.requests += i.requests;
                load.errors.add(&i.errors);
                load.latency.merge(&i.latency);
            }
            Interval::Profile { totals, .. } => s.totals = Some((*totals).clone()),
        });
    }
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = &snapshot.totals {
            let classes: Vec<(&str, &profiler_common::ClassTotals)> = SyscallClass::ALL
                .iter()
                .map(|&c| (c.name(), t.class(c)))
                .chain([("user", t.user())])
                .collect();
            let seconds = |ns: u64| ns as f64 / 1e9;
            let mut family = encoder.encode_descriptor(
                "cpu_seconds",
                "Time of the target's threads by where they were (syscall class or user) and scheduler state",
                None,
                MetricType::Counter,
            )?;
            for (class, c) in &classes {
                for (state, ns) in [("oncpu", c.oncpu_ns), ("blocked", c.blocked_ns), ("runq", c.runq_ns)] {
                    let labels = [("class", *class), ("state", state)];
                    ConstCounter::new(seconds(ns)).encode(family.encode_family(&labels)?)?;
                }
            }
            let per_class = [
                ("syscalls", "Syscalls completed, by class", 0),
                ("syscall_errors", "Syscalls that returned an error, by class", 1),
                ("syscall_bytes", "Bytes moved by read and write syscalls, by class", 2),
            ];
            for (name, help, which) in per_class {
                let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (class, c) in classes.iter().take(SyscallClass::ALL.len()) {
                    let value = [c.calls, c.errors, c.bytes][which];
                    ConstCounter::new(value).encode(family.encode_family(&[("class", *class)])?)?;
                }
            }
            let mut family = encoder.encode_descriptor(
                "context_switches",
                "Context switches of the target's threads",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in [("voluntary", t.sched.voluntary), ("involuntary", t.sched.involuntary)] {
                ConstCounter::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
            }
            // The kernel's log2 buckets (bucket i ends at 2^(i+1) ns), those under a microsecond
            // folded into the first: a wait that short is a wait not worth telling apart.
            let first = RUNQ_FIRST_BUCKET;
            let buckets: Vec<(f64, u64)> = (first..HIST_BUCKETS)
                .map(|b| {
                    let upper = if b + 1 == HIST_BUCKETS {
                        f64::INFINITY
                    } else {
                        seconds(log2_hist::bucket_bounds(b).1)
                    };
                    let count = if b == first {
                        t.runq.hist[..=b].iter().sum()
                    } else {
                        t.runq.hist[b]
                    };
                    (upper, count)
                })
                .collect();
            encoder
                .encode_descriptor(
                    "runq_wait_seconds",
                    "Waits of the target's threads for a CPU, from wakeup or preemption to running",
                    None,
                    MetricType::Histogram,
                )?
                .encode_histogram::<NoLabelSet>(seconds(t.runq.wait_ns), t.runq.waits, &buckets, None)?;
        }
        if let Some(load) = &snapshot.load {
            let counter = ConstCounter::new(load.requests);
            counter.encode(encoder.encode_descriptor(
                "requests",
                "Requests answered correctly",
                None,
                counter.metric_type(),
            )?)?;
            let mut family = encoder.encode_descriptor(
                "request_errors",
                "Requests that failed, by kind (as in error_counts)",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in load.errors.by_kind() {
                ConstCounter::new(n).encode(family.encode_family(&[("kind", kind)])?)?;
            }
            let h = load.latency.inner();
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS + 1);
            let mut below = 0;
            for i in 0..LATENCY_BUCKETS {
                let bound_us = 50u64 << i;
                let upto = if h.is_empty() { 0 } else { h.count_between(0, bound_us) };
                buckets.push((bound_us as f64 / 1e6, upto - below));
                below = upto;
            }
            buckets.push((f64::INFINITY, h.len() - below));
            let sum = if h.is_empty() {
                0.0
            } else {
                h.mean() * h.len() as f64 / 1e6
            };
            encoder
                .encode_descriptor(
                    "request_latency_seconds",
                    "Latency of correct responses (from the intended send in open loop)",
                    None,
                    MetricType::Histogram,
                )?
                .encode_histogram::<NoLabelSet>(sum, h.len(), &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn scrape(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_snapshot_as_metrics() {
        let exporter = Exporter::serve("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut latency = LatencyHistogram::new();
        for us in [40, 80, 1000] {
            latency.record(Duration::from_micros(us));
        }
        exporter.update(|s| {
            s.load = Some(LoadCounts {
                requests: 3,
                errors: ErrorCounts {
                    timeout: 1,
                    ..ErrorCounts::default()
                },
                latency,
            })
        });
        let mut totals = Totals::default();
        // Two waits in [1024, 2048) ns.
        totals.runq.waits = 2;
        totals.runq.wait_ns = 3000;
        totals.runq.hist[10] = 2;
        exporter.update(|s| s.totals = Some(totals));
        let page = scrape(exporter.addr().unwrap(), "/metrics");
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(page.contains("tcpprof_runq_wait_seconds_count 2\n"), "{page}");
        assert!(
            page.contains("tcpprof_runq_wait_seconds_bucket{le=\"0.000001024\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("tcpprof_runq_wait_seconds_bucket{le=\"0.000002048\"} 2\n"),
            "{page}"
        );
        assert!(page.contains("tcpprof_runq_wait_seconds_sum 0.000003\n"), "{page}");
        assert!(page.contains("\ntcpprof_requests_total 3\n"), "{page}");
        assert!(
            page.contains("\ntcpprof_request_errors_total{kind=\"timeout\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("\ntcpprof_request_errors_total{kind=\"io\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("tcpprof_request_latency_seconds_bucket{le=\"0.00005\"} 1\n"),
            "{page}"
        );
        assert!(page.contains("tcpprof_request_latency_seconds_count 3\n"), "{page}");
        assert!(page.trim_end().ends_with("# EOF"), "{page}");
        assert!(scrape(exporter.addr().unwrap(), "/").starts_with("HTTP/1.1 404"));
    }
}
