//! `--live ADDR` and `--linger SECS`, as `bench` and `profile` take them: the dashboard is up
//! before the run starts (a port in use fails the command then), gets the result after it, and
//! stays up for the linger.
use crate::profiling::wrong_flag;
use anyhow::Result;
use clap::Args;
use profiler::dashboard::{Dashboard, Pace};
use profiler::metrics::Exporter;
use profiler::plan;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Args)]
pub struct LiveArgs {
    /// Serve a live dashboard at http://ADDR/ while the run goes (one self-contained page,
    /// updated every interval from the event stream at /events), and /metrics beside it.
    #[arg(long, value_name = "ADDR")]
    live: Option<SocketAddr>,
    /// Keep serving the dashboard, with the result, this many seconds after the run.
    #[arg(long, value_name = "SECS", requires = "live")]
    linger: Option<f64>,
}

/// A dashboard being served, and how long it stays after the run.
pub struct LiveDashboard {
    pub dashboard: Dashboard,
    linger: Duration,
}

impl LiveArgs {
    /// Starts the dashboard, if asked for; `metrics` is what its /metrics answers.
    pub fn open(&self, pace: Pace, metrics: impl FnOnce() -> Exporter) -> Result<Option<LiveDashboard>> {
        let Some(addr) = self.live else { return Ok(None) };
        let linger = match self.linger {
            Some(s) => plan::seconds("linger", s).map_err(wrong_flag)?,
            None => Duration::ZERO,
        };
        let dashboard = Dashboard::serve(addr, pace, metrics())?;
        eprintln!("live: http://{}/", dashboard.addr());
        Ok(Some(LiveDashboard { dashboard, linger }))
    }
}

impl LiveDashboard {
    /// The run is over: its result goes to the page, which stays up for the linger (not after
    /// Ctrl-C: one ends the run and the linger both).
    pub fn finish(&self, result: &impl Serialize) {
        self.dashboard.finish(result);
        self.dashboard
            .linger(self.linger, || crate::interrupt::caught().is_some());
    }
}
