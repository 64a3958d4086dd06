//! A benchmark session: a bench-server child (or a loopback target), the load generator against
//! it, and optionally the profiler attached to the server process alone. The node and the
//! `profiler bench` command are two front ends to these functions.
use crate::server_stats::{Sampler, ServerStats};
use crate::{AttachError, Breakdown, Mode, Requested, Session, Totals};
use anyhow::{Context, Result};
use bench::load::{LoadConfig, LoadReport};
use bench::server::selftime::{SelfTimes, StepTotals};
use bench::server::{Model, ServerChild};
use profiler_common::{CONTEXT_USER, ClassTotals, SyscallClass};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to load and how.
#[derive(Clone, Debug)]
pub struct Benchmark {
    pub server: Model,
    /// Load this loopback address instead of starting a bench-server.
    pub target: Option<SocketAddr>,
    pub server_cpus: Option<Vec<usize>>,
    /// The load; its `target` is filled in with the server's address.
    pub load: LoadConfig,
    /// Report the eBPF programs' own run time (BPF run-time statistics) with a profile.
    pub bpf_stats: bool,
}

/// Why a profiled run could not happen.
#[derive(Debug)]
pub enum ProfileError {
    /// No requested mode could run here (the reasons are in the text).
    Unavailable(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for ProfileError {
    fn from(e: anyhow::Error) -> Self {
        ProfileError::Failed(e)
    }
}

impl Benchmark {
    /// One load run.
    pub fn run(&self) -> Result<LoadReport> {
        let (_server, addr) = self.start_server()?;
        bench::load::run(&self.load_at(addr, self.load.concurrency))
    }

    /// One run per concurrency level, in order, against the same server.
    pub fn sweep(&self, levels: &[usize], mut progress: impl FnMut(usize, &LoadReport)) -> Result<Vec<LoadReport>> {
        let (_server, addr) = self.start_server()?;
        let mut reports = Vec::with_capacity(levels.len());
        for &level in levels {
            let report =
                bench::load::run(&self.load_at(addr, level)).with_context(|| format!("at concurrency {level}"))?;
            progress(level, &report);
            reports.push(report);
        }
        Ok(reports)
    }

    /// One load run on a fresh server, with the server's memory and context switches sampled
    /// during the run.
    pub fn run_with_server_stats(&self) -> Result<(LoadReport, ServerStats)> {
        let (server, addr) = self.start_server()?;
        let server = server.context("server statistics need our own bench-server, not a target")?;
        let mut pids = vec![server.pid()];
        if self.server.forks_workers() {
            pids.extend(workers_of(server.pid())?);
        }
        let sampler = Sampler::start(pids);
        let report = bench::load::run(&self.load_at(addr, self.load.concurrency));
        let stats = sampler.finish();
        Ok((report?, stats))
    }

    /// One load run with the server's threads profiled over exactly the run: in an eBPF mode,
    /// or in userspace mode (the server times itself) when asked or when no eBPF mode attaches.
    pub fn profile(&self, requested: Requested) -> Result<(LoadReport, Breakdown), ProfileError> {
        if self.target.is_some() {
            return Err(ProfileError::Failed(anyhow::anyhow!(
                "a target is not our child: profile it with `profiler profile --pid`"
            )));
        }
        let exe = bench_server_exe()?;
        // Self-timing stays off until asked for, so it costs an eBPF-profiled run nothing.
        let self_timed = !self.server.forks_workers();
        let mut server = if self_timed {
            bench::server::spawn_self_timed(&exe, self.server, self.server_cpus.as_deref())?
        } else {
            bench::server::spawn_child(&exe, self.server, self.server_cpus.as_deref())?
        };
        let load = self.load_at(server.addr(), self.load.concurrency);
        // A prefork server serves from its worker processes: account them with the parent.
        let mut processes = vec![server.pid()];
        if self.server.forks_workers() {
            processes.extend(workers_of(server.pid())?);
        }
        let reasons = match Session::attach_processes(&processes, requested) {
            Ok(session) => {
                let stats = self.bpf_stats.then(crate::totals::enable_run_stats).transpose()?;
                let start = Instant::now();
                let report = bench::load::run(&load)?;
                settle();
                let totals = session.read_totals()?;
                let mut breakdown =
                    Breakdown::new(&totals, session.mode, session.fallback_reasons.clone(), start.elapsed());
                breakdown.programs = stats.map(|_fd| session.program_costs());
                return Ok((report, breakdown));
            }
            Err(AttachError { reasons }) => reasons,
        };
        let userspace_allowed = matches!(requested, Requested::Auto | Requested::Only(Mode::Userspace));
        if !userspace_allowed || !self_timed {
            let why = if self_timed {
                String::new()
            } else {
                format!("; {} cannot time itself", self.server)
            };
            return Err(ProfileError::Unavailable(format!("{}{why}", AttachError { reasons })));
        }
        server.reset_self_times()?;
        let report = bench::load::run(&load)?;
        settle();
        let times = server.self_times()?;
        let window = Duration::from_nanos(times.window_ns);
        Ok((
            report,
            Breakdown::new(&userspace_totals(&times), Mode::Userspace, reasons, window),
        ))
    }

    fn load_at(&self, target: SocketAddr, concurrency: usize) -> LoadConfig {
        LoadConfig {
            target,
            concurrency,
            ..self.load.clone()
        }
    }

    /// A new bench-server child (stopped when the returned value drops), or the target.
    fn start_server(&self) -> Result<(Option<ServerChild>, SocketAddr)> {
        if let Some(target) = self.target {
            return Ok((None, target));
        }
        let child = bench::server::spawn_child(&bench_server_exe()?, self.server, self.server_cpus.as_deref())?;
        let addr = child.addr();
        Ok((Some(child), addr))
    }
}

/// A prefork server prints its address before it forks: wait until its workers exist and their
/// number has held for a moment.
fn workers_of(pid: u32) -> Result<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = crate::attach::child_processes(pid);
        if !now.is_empty() && now.len() == seen.len() {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the prefork server {pid} started no workers within 5 s"
        );
        seen = now;
    }
}

/// The client can read the last response before the server's write call has returned and been
/// counted: give the server that moment before reading its totals.
fn settle() {
    std::thread::sleep(Duration::from_millis(20));
}

/// The server's own wall-clock timings in the shape of kernel totals: accept, read and write
/// steps as their classes, processing as user space, and the rest of the process's CPU time
/// (getrusage) as other syscalls.
fn userspace_totals(t: &SelfTimes) -> Totals {
    let class = |s: &StepTotals| ClassTotals {
        calls: s.calls,
        errors: s.errors,
        total_ns: s.ns,
        oncpu_ns: s.ns,
        bytes: s.bytes,
        hist: s.hist,
        ..ClassTotals::ZERO
    };
    let mut totals = Totals::default();
    totals.contexts[SyscallClass::Accept as usize] = class(&t.accept);
    totals.contexts[SyscallClass::Read as usize] = class(&t.read);
    totals.contexts[SyscallClass::Write as usize] = class(&t.write);
    totals.contexts[CONTEXT_USER as usize].oncpu_ns = t.process.ns;
    let timed = t.accept.ns + t.read.ns + t.write.ns + t.process.ns;
    totals.contexts[SyscallClass::Other as usize].oncpu_ns = t.cpu_ns.saturating_sub(timed);
    totals.sched.voluntary = t.voluntary_switches;
    totals.sched.involuntary = t.involuntary_switches;
    totals
}

/// By default the server gets core 0 and the load generator the others, so that they do not take
/// turns on one core; with one core they share it.
pub fn default_cpus(
    server: Option<Vec<usize>>,
    client: Option<Vec<usize>>,
) -> (Option<Vec<usize>>, Option<Vec<usize>>) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 || (server.is_some() && client.is_some()) {
        return (server, client);
    }
    let server = server.unwrap_or_else(|| vec![0]);
    let client = client.or_else(|| {
        let rest: Vec<usize> = (0..n).filter(|c| !server.contains(c)).collect();
        (!rest.is_empty()).then_some(rest)
    });
    (Some(server), client)
}

/// bench-server sits beside the running binary (cargo builds every binary of the workspace into
/// one directory); TCPPROF_BENCH_SERVER overrides.
pub fn bench_server_exe() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("TCPPROF_BENCH_SERVER") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().context("locating the running binary")?;
    // Test binaries live one level down, in target/<profile>/deps.
    let dir = exe.parent().context("binary has no directory")?;
    for candidate in [dir.join("bench-server"), dir.join("../bench-server")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "bench-server not found beside {}: build it with `cargo build -p bench`",
        exe.display()
    )
}
