//! What to run against a target: command, connection handling, how much and how fast.

use super::histogram::LatencyHistogram;
use super::protocols::{Command, ConnectionMode, LineCommand};
use super::stats::ErrorCounts;
use anyhow::{Result, bail, ensure};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

/// Per-request timeout when none is configured (a `WAIT` request gets its wait on top).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a count-bounded run may take when no `max_time` is configured.
pub const DEFAULT_MAX_RUN: Duration = Duration::from_secs(60);
/// Most connections one run may ask for (the fd and port limits bite well before).
pub const MAX_CONCURRENCY: usize = 1_000_000;
/// Slowest open-loop rate, requests/s: keeps every scheduled time within a few decades.
pub const MIN_RATE: f64 = 0.001;
/// Added to the run's expected length for the hard limit, so draining the last requests and
/// connecting 10,000 sockets fit.
const HARD_LIMIT_SLACK: Duration = Duration::from_secs(5);

/// One load run, aimed at a target when it runs (the same load may go to servers started later).
/// Build with [`LoadConfig::new`] and struct update syntax:
///
/// ```
/// # use bench::load::{Command, LineCommand, LoadConfig};
/// let config = LoadConfig {
///     concurrency: 10,
///     requests: Some(1000),
///     ..LoadConfig::new(Command::Line(LineCommand::Ping))
/// };
/// // bench::load::run("127.0.0.1:7000".parse().unwrap(), &config)
/// ```
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Connections (persistent mode) or requests in flight at once (per-request mode).
    pub concurrency: usize,
    /// Stop after exactly this many requests in total (each ends as a success or an error).
    pub requests: Option<u64>,
    /// Stop sending after this long; requests in flight then still complete. With `requests`
    /// too, whichever comes first.
    pub duration: Option<Duration>,
    pub command: Command,
    pub connection: ConnectionMode,
    /// Open loop: this many requests per second in total, each on a fixed schedule, latency
    /// measured from the scheduled time. `None` is closed loop: each connection sends its next
    /// request as soon as the previous response is in.
    pub rate: Option<f64>,
    /// Pin worker `i` to `client_cpus[i % len]`; also the default worker count.
    pub client_cpus: Option<Vec<usize>>,
    /// Worker threads (one event loop each); default: one per `client_cpus` entry, else one per
    /// core. Never more than `concurrency`.
    pub threads: Option<usize>,
    /// A request (including a reconnect) that takes longer is an error and its connection is
    /// reset. Default [`DEFAULT_REQUEST_TIMEOUT`] plus the `WAIT` time.
    pub request_timeout: Option<Duration>,
    /// Hard limit on the whole run, connecting included; requests still in flight then count
    /// as timeouts. Default: `duration` (or [`DEFAULT_MAX_RUN`]) + request timeout + 5 s.
    pub max_time: Option<Duration>,
    /// Requests finished so far (answered or failed), for a progress display. Workers add to it
    /// in batches, so it lags by at most a few thousand requests.
    pub progress: Option<Arc<AtomicU64>>,
    /// Report the run in intervals (latencies and counts of each), as wrk2 and BCC's tools
    /// print them.
    pub intervals: Option<Intervals>,
    /// Once set (by a SIGINT handler, say), no request is sent; those in flight complete and the
    /// report is marked `interrupted`.
    pub stop: Option<&'static AtomicBool>,
    /// Run only this load generator's part of a plan that several run at once (on one machine
    /// past one process's descriptor limit, or on several): `concurrency`, `requests` and `rate`
    /// stay the whole plan's, and connection numbers (which fix each connection's source
    /// address, keys and place in the open-loop schedule) are the plan's.
    pub shard: Option<Shard>,
}

/// Load generator `index` of `count` running one plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    /// `i/N`, `i` from 0.
    fn from_str(s: &str) -> Result<Shard> {
        let parsed = s.split_once('/').and_then(|(i, n)| {
            Some(Shard {
                index: i.parse().ok()?,
                count: n.parse().ok()?,
            })
        });
        match parsed {
            Some(shard) if shard.count >= 1 && shard.index < shard.count => Ok(shard),
            _ => bail!("shard {s:?} is not i/N with 0 <= i < N"),
        }
    }
}

/// Part `index` of `0..total` cut into `parts` contiguous pieces whose sizes differ by at most one.
pub(crate) fn slice(total: usize, parts: usize, index: usize) -> Range<usize> {
    let bound = |k: usize| (total as u128 * k as u128 / parts as u128) as usize;
    bound(index)..bound(index + 1)
}

/// Intervals of a run: their length, and what receives each as it ends, in order.
#[derive(Clone)]
pub struct Intervals {
    pub length: Duration,
    pub sink: Arc<dyn Fn(&Interval) + Send + Sync>,
}

impl fmt::Debug for Intervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intervals")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// One interval of a run, over every worker.
#[derive(Clone, Debug)]
pub struct Interval {
    pub index: u64,
    /// From the run's start to the interval's start.
    pub start: Duration,
    /// Its length; the last interval ends with the run.
    pub length: Duration,
    pub requests: u64,
    pub errors: ErrorCounts,
    /// Latencies of the requests answered in it (corrected in open loop).
    pub latency: LatencyHistogram,
    /// Connections open at its end (at the last worker's stop, for the last).
    pub connections: u64,
}

impl Interval {
    /// Requests answered per second of the interval (0 for an empty one).
    pub fn throughput_rps(&self) -> f64 {
        if self.length.is_zero() {
            return 0.0;
        }
        self.requests as f64 / self.length.as_secs_f64()
    }
}

impl LoadConfig {
    /// One persistent connection, closed loop, no limit set yet (set `requests` or `duration`).
    pub fn new(command: Command) -> LoadConfig {
        LoadConfig {
            concurrency: 1,
            requests: None,
            duration: None,
            command,
            connection: ConnectionMode::Persistent,
            rate: None,
            client_cpus: None,
            threads: None,
            request_timeout: None,
            max_time: None,
            progress: None,
            intervals: None,
            stop: None,
            shard: None,
        }
    }

    /// The connections this load generator opens, by their numbers in the plan.
    pub fn connections(&self) -> Range<usize> {
        match self.shard {
            None => 0..self.concurrency,
            Some(s) => slice(self.concurrency, s.count, s.index),
        }
    }

    /// The requests this load generator sends, in a count-bounded run.
    pub fn own_requests(&self) -> Option<u64> {
        let n = self.requests?;
        Some(match self.shard {
            None => n,
            Some(s) => slice(n as usize, s.count, s.index).len() as u64,
        })
    }

    /// Whether this load may run (against any target), or the first problem with it.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.concurrency >= 1, "concurrency must be at least 1");
        ensure!(
            self.concurrency <= MAX_CONCURRENCY,
            "concurrency {} is above the limit of {MAX_CONCURRENCY}",
            self.concurrency
        );
        ensure!(
            self.requests.is_some() || self.duration.is_some(),
            "set a request count or a duration"
        );
        ensure!(self.requests != Some(0), "requests must be at least 1");
        ensure!(self.duration != Some(Duration::ZERO), "duration must be above zero");
        if let Some(rate) = self.rate {
            ensure!(
                rate.is_finite() && rate >= MIN_RATE,
                "rate must be a number of requests/s of at least {MIN_RATE}, got {rate}"
            );
        }
        if let Some(shard) = self.shard {
            ensure!(
                shard.count <= self.concurrency && self.requests.is_none_or(|n| shard.count as u64 <= n),
                "{} shards need at least one connection and one request each",
                shard.count
            );
        }
        if let Some(cpus) = &self.client_cpus {
            ensure!(!cpus.is_empty(), "client_cpus is empty");
        }
        ensure!(self.threads != Some(0), "threads must be at least 1");
        self.command.validate()
    }

    pub fn effective_request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or_else(|| match self.command {
            Command::Line(LineCommand::Wait(ms)) => DEFAULT_REQUEST_TIMEOUT + Duration::from_millis(ms),
            _ => DEFAULT_REQUEST_TIMEOUT,
        })
    }

    pub fn effective_max_time(&self) -> Duration {
        self.max_time.unwrap_or_else(|| {
            self.duration.unwrap_or(DEFAULT_MAX_RUN) + self.effective_request_timeout() + HARD_LIMIT_SLACK
        })
    }

    /// Worker threads: one per client CPU or core, at most one per connection.
    pub fn effective_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wanted = self
            .threads
            .or(self.client_cpus.as_ref().map(Vec::len))
            .unwrap_or(cores);
        wanted.clamp(1, self.connections().len().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let ok = LoadConfig {
            requests: Some(1),
            ..LoadConfig::new(Command::Line(LineCommand::Ping))
        };
        ok.validate().unwrap();
        let cases = [
            (
                LoadConfig {
                    concurrency: 0,
                    ..ok.clone()
                },
                "concurrency",
            ),
            (
                LoadConfig {
                    requests: None,
                    ..ok.clone()
                },
                "duration",
            ),
            (
                LoadConfig {
                    requests: Some(0),
                    ..ok.clone()
                },
                "requests",
            ),
            (
                LoadConfig {
                    rate: Some(0.0),
                    ..ok.clone()
                },
                "rate",
            ),
            (
                LoadConfig {
                    rate: Some(f64::NAN),
                    ..ok.clone()
                },
                "rate",
            ),
            (
                LoadConfig {
                    client_cpus: Some(vec![]),
                    ..ok.clone()
                },
                "client_cpus",
            ),
        ];
        for (config, word) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{err:?} should mention {word}");
        }
    }

    #[test]
    fn defaults_bound_the_run() {
        let config = LoadConfig {
            requests: Some(1),
            ..LoadConfig::new(Command::Line(LineCommand::Wait(2000)))
        };
        assert_eq!(config.effective_request_timeout(), Duration::from_secs(12));
        assert_eq!(config.effective_max_time(), Duration::from_secs(60 + 12 + 5));
        assert_eq!(config.effective_threads(), 1, "never more threads than connections");
        let config = LoadConfig {
            concurrency: 100,
            threads: Some(3),
            ..config
        };
        assert_eq!(config.effective_threads(), 3);
    }

    #[test]
    fn shards_split_one_plan() {
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { index: 2, count: 3 });
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let plan = LoadConfig {
            concurrency: 10,
            requests: Some(100),
            ..LoadConfig::new(Command::Line(LineCommand::Ping))
        };
        let parts: Vec<_> = (0..3)
            .map(|index| LoadConfig {
                shard: Some(Shard { index, count: 3 }),
                ..plan.clone()
            })
            .collect();
        let conns: Vec<_> = parts.iter().map(LoadConfig::connections).collect();
        assert_eq!(conns, [0..3, 3..6, 6..10]);
        let requests: u64 = parts.iter().map(|p| p.own_requests().unwrap()).sum();
        assert_eq!(requests, 100);
        let too_many = LoadConfig {
            shard: Some(Shard { index: 0, count: 11 }),
            ..plan
        };
        assert!(too_many.validate().unwrap_err().to_string().contains("shards"));
    }
}
