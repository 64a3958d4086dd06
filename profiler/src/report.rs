//! The one typed result of a run: what the load generator measured, the profile when one was
//! taken, the saturation signals and the verdict. [`crate::printer`] writes it out.
use crate::Profile;
use crate::limit::{Limit, LimitKind};
use crate::signals::Signals;
use bench::load::LoadReport;
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
