//! The one typed result of a run: what the load generator measured, the profile when one was
//! taken, the saturation signals and the verdict. [`crate::printer`] writes it out.
use crate::Profile;
use crate::benchmark::{Benchmark, Target};
use crate::find_max::FindMax;
use crate::limit::{Limit, LimitKind};
use crate::server_stats::ServerStats;
use crate::signals::Signals;
use bench::load::{ConnectionMode, ErrorCounts, LoadReport, Protocol};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The load, when this process generated it (not for `profile --pid`).
    #[serde(flatten)]
    pub load: Option<LoadReport>,
    #[serde(flatten)]
    pub profile: Option<Profile>,
    pub signals: Signals,
    pub limit: Limit,
    /// How our bench-server ended when it died during the run (its errors then are its absence).
    pub server_exited: Option<String>,
}

impl Report {
    /// Adds the load generator's CPU use to `signals` and judges the limit.
    pub fn new(load: Option<LoadReport>, mut signals: Signals, profile: Option<Profile>) -> Report {
        if let Some(load) = &load {
            signals.add_client(load);
        }
        let limit = Limit::judge(&signals, load.as_ref().map(|l| l.requests + l.errors));
        Report {
            load,
            profile,
            signals,
            limit,
            server_exited: None,
        }
    }
}

/// One run per concurrency level, and where more connections stopped paying off.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub levels: Vec<Report>,
    /// The knee: the last level after which throughput grows by less than [`Sweep::FLAT`] while
    /// p99 latency still grows. `None` when every step still pays off.
    pub saturation: Option<usize>,
    /// Why: the step past the knee, and the limit measured there.
    pub saturation_reason: Option<String>,
}

impl Sweep {
    /// Throughput growth below which a step "does not pay off".
    pub const FLAT: f64 = 0.10;

    pub fn new(levels: Vec<Report>) -> Sweep {
        let knee = levels.windows(2).find_map(|pair| {
            let (a, b) = (pair[0].load.as_ref()?, pair[1].load.as_ref()?);
            let flat = b.throughput_rps < a.throughput_rps * (1.0 + Sweep::FLAT);
            let slower = b.latency_p99_us > a.latency_p99_us;
            (flat && slower).then_some((&pair[0], &pair[1], a, b))
        });
        let Some((before, after, a, b)) = knee else {
            return Sweep {
                levels,
                saturation: None,
                saturation_reason: None,
            };
        };
        // The limit past the knee explains it; if nothing is at a limit there, the knee's own.
        let limit = if after.limit.kind != LimitKind::None {
            &after.limit
        } else {
            &before.limit
        };
        let growth = if a.throughput_rps > 0.0 {
            (b.throughput_rps / a.throughput_rps - 1.0) * 100.0
        } else {
            0.0
        };
        let reason = format!(
            "from {} to {} connections throughput changed {growth:+.0}% while p99 went from {} to {} us; {}: {}",
            a.concurrency, b.concurrency, a.latency_p99_us, b.latency_p99_us, limit.kind, limit.reason
        );
        let saturation = Some(a.concurrency);
        Sweep {
            levels,
            saturation,
            saturation_reason: Some(reason),
        }
    }
}

/// What a benchmark ran, as its results name it.
#[derive(Clone, Debug, Serialize)]
pub struct Ran {
    /// Our bench-server's model, or the target's address.
    pub server: String,
    pub command: String,
    pub protocol: Protocol,
    pub connection: ConnectionMode,
}

impl Ran {
    pub fn of(b: &Benchmark) -> Ran {
        Ran {
            server: match &b.target {
                Target::Server(spec) => spec.model.name().to_string(),
                Target::Addr(addr) | Target::Exec { addr, .. } => addr.to_string(),
            },
            command: b.load.command.to_string(),
            protocol: b.load.command.protocol(),
            connection: b.load.connection,
        }
    }
}

/// A run's result as `tcpprof bench --json` prints it and the node replies with it (plus the
/// envelope's fields): what ran, and the report.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult<'a> {
    #[serde(flatten)]
    pub ran: Ran,
    #[serde(flatten)]
    pub report: &'a Report,
    /// The server's memory, threads and context switches, when sampled (`--server-stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_stats: Option<ServerStats>,
}

impl<'a> RunResult<'a> {
    pub fn new(benchmark: &Benchmark, report: &'a Report) -> RunResult<'a> {
        RunResult::of(Ran::of(benchmark), report)
    }

    /// What `ran` measured, without server statistics.
    pub fn of(ran: Ran, report: &'a Report) -> RunResult<'a> {
        RunResult {
            ran,
            report,
            server_stats: None,
        }
    }
}

/// A find-max search's result, for both front ends: what ran, and what the search found.
#[derive(Clone, Debug, Serialize)]
pub struct FindMaxResult {
    #[serde(flatten)]
    pub ran: Ran,
    pub find_max: FindMax,
}

/// A sweep's result, for both front ends: what ran, the knee, and a row per level (DESIGN.md's
/// `results`).
#[derive(Clone, Debug, Serialize)]
pub struct SweepResult<'a> {
    #[serde(flatten)]
    pub ran: Ran,
    pub saturation: Option<usize>,
    pub saturation_reason: Option<&'a str>,
    pub results: Vec<SweepRow<'a>>,
}

/// One level of a sweep: the load's headline figures, the signals and the limit.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow<'a> {
    pub concurrency: usize,
    pub throughput_rps: f64,
    pub latency_p50_us: u64,
    pub latency_p95_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
    pub requests: u64,
    pub errors: u64,
    pub error_counts: &'a ErrorCounts,
    pub first_error: Option<&'a str>,
    pub signals: &'a Signals,
    pub limit: &'a Limit,
    pub server_exited: Option<&'a str>,
}

impl<'a> SweepResult<'a> {
    pub fn new(ran: Ran, sweep: &'a Sweep) -> SweepResult<'a> {
        let results = sweep
            .levels
            .iter()
            .filter_map(|level| {
                let load = level.load.as_ref()?;
                Some(SweepRow {
                    concurrency: load.concurrency,
                    throughput_rps: load.throughput_rps,
                    latency_p50_us: load.latency_p50_us,
                    latency_p95_us: load.latency_p95_us,
                    latency_p99_us: load.latency_p99_us,
                    latency_max_us: load.latency_max_us,
                    requests: load.requests,
                    errors: load.errors,
                    error_counts: &load.error_counts,
                    first_error: load.first_error.as_deref(),
                    signals: &level.signals,
                    limit: &level.limit,
                    server_exited: level.server_exited.as_deref(),
                })
            })
            .collect();
        SweepResult {
            ran,
            saturation: sweep.saturation,
            saturation_reason: sweep.saturation_reason.as_deref(),
            results,
        }
    }
}
