//! A benchmark: a bench-server child, a server already running, or one of the user's started for
//! the run (`--exec`); the load generator against it; and optionally the server's processes
//! profiled over the run. The node and the `tcpprof bench` command are two front ends to these
//! functions.
use crate::attach::AttachError;
use crate::launch;
use crate::live::{Event, Live};
use crate::report::{Report, Sweep};
use crate::server_stats::{Sampler, ServerStats};
use crate::session::{ProfileOptions, Session};
use crate::signals::{Watch, listen};
use anyhow::{Context, Result};
use bench::load::{Command, Intervals, LoadConfig, LoadReport};
use bench::server::{Model, ServerChild, ServerSpec};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What to load and how.
#[derive(Clone, Debug)]
pub struct Benchmark {
    pub target: Target,
    /// The load, aimed at the target's address at each run.
    pub load: LoadConfig,
    /// How [`Benchmark::profile`] profiles the server.
    pub profiling: ProfileOptions,
}

/// What a benchmark loads.
#[derive(Clone, Debug)]
pub enum Target {
    /// A bench-server of ours, started for each run and stopped after it.
    Server(ServerSpec),
    /// A server already listening, on this host or another.
    Addr(SocketAddr),
    /// The user's server: this command (a program and its arguments), started on `cpus` (or
    /// placed as ours is, [`default_cpus`]) for each run and stopped after it; the load goes to
    /// `addr`, once it accepts connections.
    Exec {
        command: Vec<String>,
        addr: SocketAddr,
        cpus: Option<Vec<usize>>,
    },
}

impl Target {
    /// A bench-server of `model`, placed by default (see [`default_cpus`]).
    pub fn server(model: Model) -> Target {
        Target::Server(ServerSpec::new(model))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Server(spec) => write!(f, "bench-server {}", spec.model),
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Exec { command, addr, .. } => write!(f, "`{}` on {addr}", launch::shell_words(command)),
        }
    }
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
    /// Requests in a count-bounded run when neither a count nor a duration is given.
    pub const DEFAULT_REQUESTS: u64 = 10_000;
    /// Connections when none are given.
    pub const DEFAULT_CONCURRENCY: usize = 10;
    /// The sampler's frequency in a profiled benchmark: a server busy at least half a core
    /// yields 1,000 samples per second of run (a profile's window is the run, often short).
    pub const PROFILE_FREQUENCY_HZ: u32 = 1999;

    /// `command` against `target`: 10 persistent connections, closed loop,
    /// [`Self::DEFAULT_REQUESTS`] requests. Server and load CPUs left unset are chosen when it
    /// runs ([`default_cpus`]), so that building a benchmark asks nothing of the machine.
    pub fn new(target: Target, command: Command) -> Benchmark {
        Benchmark {
            target,
            load: LoadConfig {
                concurrency: Self::DEFAULT_CONCURRENCY,
                requests: Some(Self::DEFAULT_REQUESTS),
                ..LoadConfig::new(command)
            },
            profiling: ProfileOptions {
                frequency_hz: Self::PROFILE_FREQUENCY_HZ,
                ..ProfileOptions::default()
            },
        }
    }

    /// One load run, with the saturation signals over it.
    pub fn run(&self) -> Result<Report> {
        self.run_live(&mut Live::new())
    }

    /// [`Self::run`], its intervals handed to `live`'s sinks as they end.
    pub fn run_live(&self, live: &mut Live) -> Result<Report> {
        let (mut server, addr, load) = self.start_server()?;
        let pids = self.watched_pids(&server, addr);
        if let Ok(pids) = &pids {
            live.watching(pids);
        }
        let mut watch = Watch::attach(pids, vec![addr.port()]);
        watched_run(&mut watch, &mut server, addr, &load, live)
    }

    /// One run per concurrency level, in order, against the same server, and the knee.
    pub fn sweep(&self, levels: &[usize], mut progress: impl FnMut(usize, &LoadReport)) -> Result<Sweep> {
        self.on_one_server(|runner| {
            let mut reports = Vec::with_capacity(levels.len());
            for &level in levels {
                let at_level = LoadConfig {
                    concurrency: level,
                    ..runner.load.clone()
                };
                let report = runner
                    .run(&at_level, &mut Live::new())
                    .with_context(|| format!("at concurrency {level}"))?;
                let load = report.load.as_ref().expect("a load run reports its load");
                progress(level, load);
                let stop = load.interrupted || report.server_exited.is_some();
                reports.push(report);
                if stop {
                    break;
                }
            }
            Ok(Sweep::new(reports))
        })
    }

    /// Starts the server once and hands `work` a [`Runner`] of loads against it.
    pub fn on_one_server<T>(&self, work: impl FnOnce(&mut Runner) -> Result<T>) -> Result<T> {
        let (server, addr, load) = self.start_server()?;
        let watch = Watch::attach(self.watched_pids(&server, addr), vec![addr.port()]);
        work(&mut Runner {
            server,
            addr,
            load,
            watch,
        })
    }

    /// One load run on a fresh server, with the server's memory and context switches sampled
    /// during the run; its intervals go to `live`'s sinks.
    pub fn run_with_server_stats(&self, live: &mut Live) -> Result<(Report, ServerStats)> {
        let (mut server, addr, load) = self.start_server()?;
        let Running::Ours(ours) = &server else {
            anyhow::bail!("server statistics need our own bench-server, not a target");
        };
        let pids = self.server_processes(ours)?;
        let sampler = Sampler::start(pids.clone());
        live.watching(&pids);
        let mut watch = Watch::attach(Ok(pids), vec![addr.port()]);
        let run = watched_run(&mut watch, &mut server, addr, &load, live);
        let stats = sampler.finish();
        Ok((run?, stats))
    }

    /// One load run with the server's threads profiled over exactly the run: in an eBPF mode,
    /// or, for our bench-server, in userspace mode (the server times itself) when asked or when
    /// no eBPF mode attaches. Another server is profiled as the processes that hold its
    /// listening socket (with their children, when the options say so).
    pub fn profile(&self) -> Result<Report, ProfileError> {
        self.profile_live(&mut Live::new())
    }

    /// [`Self::profile`], handing `live`'s sinks the load's intervals and the profile's (not in
    /// userspace mode, which has no kernel totals) as they end.
    pub fn profile_live(&self, live: &mut Live) -> Result<Report, ProfileError> {
        let (target, load) = self.placed();
        if let Target::Server(spec) = target {
            return self.profile_ours(&spec, &load, live);
        }
        if let Target::Addr(addr) = target
            && !bench::sys::is_local_address(addr.ip())
        {
            return Err(ProfileError::Unavailable(remote(addr)));
        }
        let (mut server, addr, load) = self.start(target, load, true)?;
        let pids = listen::processes_listening_on(addr.port()).with_context(|| format!("profiling {addr}"))?;
        let targets = self.profiling.targets(&pids);
        let session =
            Session::attach(&targets, &self.profiling).map_err(|e| ProfileError::Unavailable(e.to_string()))?;
        live.watching(&targets);
        let mut report = profiled_run(session, addr, &load, live)?;
        report.server_exited = server.exit();
        Ok(report)
    }

    /// [`Self::profile_live`] of a bench-server of ours.
    fn profile_ours(&self, spec: &ServerSpec, load: &LoadConfig, live: &mut Live) -> Result<Report, ProfileError> {
        let exe = bench_server_exe()?;
        let model = spec.model;
        let mut server = bench::server::spawn_child(&exe, spec)?;
        let can_time_itself = !model.forks_workers();
        let mut pids = self.server_processes(&server)?;
        let (session, addr) = match Session::attach(&pids, &self.profiling) {
            Ok(session) => (session, server.addr()),
            Err(AttachError::NoMode { reasons }) if can_time_itself && self.profiling.mode.allows_userspace() => {
                // A server started with self-timing has a control thread: started only now, so
                // that an eBPF-profiled server stays single-threaded (glibc's syscall wrappers
                // keep a cancel flag in rbp in threaded processes, cutting sampled user stacks).
                server = bench::server::spawn_self_timed(&exe, spec)?;
                let addr = server.addr();
                pids = vec![server.pid()];
                (Session::self_timed(&mut server, reasons)?, addr)
            }
            Err(e @ AttachError::NoMode { .. }) if !can_time_itself => {
                return Err(ProfileError::Unavailable(format!("{e}; {model} cannot time itself")));
            }
            Err(e) => return Err(ProfileError::Unavailable(e.to_string())),
        };
        live.watching(&pids);
        let mut report = profiled_run(session, addr, load, live)?;
        report.server_exited = server.exit();
        Ok(report)
    }

    /// The server's processes: a prefork server serves from its workers, accounted with it.
    fn server_processes(&self, server: &ServerChild) -> Result<Vec<u32>> {
        let mut pids = vec![server.pid()];
        if matches!(&self.target, Target::Server(spec) if spec.model.forks_workers()) {
            pids.extend(workers_of(server.pid())?);
        }
        Ok(pids)
    }

    /// The processes whose signals a run measures: our server's, or the target's found by its
    /// listening socket (or why they are unknown).
    fn watched_pids(&self, server: &Running, addr: SocketAddr) -> Result<Vec<u32>, String> {
        match server {
            Running::Ours(server) => self.server_processes(server).map_err(|e| format!("{e:#}")),
            Running::Already if !bench::sys::is_local_address(addr.ip()) => Err(remote(addr)),
            Running::Theirs(_) | Running::Already => listen::processes_listening_on(addr.port())
                .map_err(|e| format!("finding the target's processes: {e:#}")),
        }
    }

    /// The target and the load with the CPUs left unset chosen now: [`default_cpus`].
    pub fn placed(&self) -> (Target, LoadConfig) {
        let server_cpus = match &self.target {
            Target::Server(ServerSpec { cpus, .. }) | Target::Exec { cpus, .. } => cpus.clone(),
            Target::Addr(_) => None,
        };
        let (cpus, client_cpus) = default_cpus(server_cpus, self.load.client_cpus.clone());
        let target = match &self.target {
            Target::Server(spec) => Target::Server(ServerSpec { cpus, ..spec.clone() }),
            Target::Exec { command, addr, .. } => Target::Exec {
                command: command.clone(),
                addr: *addr,
                cpus,
            },
            Target::Addr(addr) => Target::Addr(*addr),
        };
        let load = LoadConfig {
            client_cpus,
            ..self.load.clone()
        };
        (target, load)
    }

    /// The server to load, started if it is ours or the user's to start; and the load placed
    /// beside it.
    fn start_server(&self) -> Result<(Running, SocketAddr, LoadConfig)> {
        let (target, load) = self.placed();
        self.start(target, load, false)
    }

    /// [`Self::start_server`] of a target placed already; `profiled`, the user's server is started
    /// as naming its functions needs.
    fn start(&self, target: Target, load: LoadConfig, profiled: bool) -> Result<(Running, SocketAddr, LoadConfig)> {
        Ok(match target {
            Target::Server(spec) => {
                let child = bench::server::spawn_child(&bench_server_exe()?, &spec)?;
                let addr = child.addr();
                (Running::Ours(child), addr, load)
            }
            Target::Exec { command, addr, cpus } => {
                let how = launch::How {
                    profiled,
                    cpus: cpus.as_deref(),
                    timeout: launch::STARTUP_TIMEOUT,
                    stop: load.stop,
                };
                let server = launch::Server::start(&command, addr, &how)?;
                (Running::Theirs(server), addr, load)
            }
            Target::Addr(addr) => (Running::Already, addr, load),
        })
    }
}

/// The server a run loads, as it was started for the run; dropping it stops what was started.
enum Running {
    /// A bench-server of ours.
    Ours(ServerChild),
    /// The user's server (`--exec`).
    Theirs(launch::Server),
    /// A server that was running before (`--target`), left running.
    Already,
}

impl Running {
    /// How a server started for the run ended during it, if it has.
    fn exit(&mut self) -> Option<String> {
        match self {
            Running::Ours(server) => server.exit(),
            Running::Theirs(server) => server.exit(),
            Running::Already => None,
        }
    }
}

/// Why a server on another host is not measured from here.
fn remote(addr: SocketAddr) -> String {
    format!(
        "{addr} is on another host: its CPU, run queue and accept queue are measured there (run `tcpprof profile \
         --pid PID` on that host); from here only the client's side of its TCP connections"
    )
}

/// Loads, one after another, against one server ([`Benchmark::on_one_server`]), each with the
/// signals measured over it.
pub struct Runner {
    server: Running,
    addr: SocketAddr,
    watch: Watch,
    /// The benchmark's load, placed on its CPUs: what each run varies.
    pub load: LoadConfig,
}

impl Runner {
    /// One run of `load`, its intervals handed to `live`'s sinks; a server that died during it
    /// is in the report's `server_exited`.
    pub fn run(&mut self, load: &LoadConfig, live: &mut Live) -> Result<Report> {
        watched_run(&mut self.watch, &mut self.server, self.addr, load, live)
    }
}

/// One load run from `session`'s window, in the live loop: the session's signals start over
/// when every connection is open, and the window ends after the last response.
fn profiled_run(mut session: Session<'_>, addr: SocketAddr, load: &LoadConfig, live: &mut Live) -> Result<Report> {
    let load = loaded(
        addr,
        load,
        live,
        |events| {
            let (ack, acked) = mpsc::channel();
            if events.send(Event::Opened(ack)).is_ok() {
                let _ = acked.recv();
            }
        },
        Some(&mut session),
    )?;
    // The client can read the last response before the server's write call has returned
    // and been counted: give the server that moment.
    std::thread::sleep(Duration::from_millis(20));
    session.finish(Some(load))
}

/// A load run with `watch`'s window over exactly the measured run (from when every connection is
/// open to the last response), and whether our `server` outlived it.
fn watched_run(
    watch: &mut Watch,
    server: &mut Running,
    target: SocketAddr,
    load: &LoadConfig,
    live: &mut Live,
) -> Result<Report> {
    let load = loaded(target, load, live, |_| watch.open(), None)?;
    let signals = watch.close();
    let mut report = Report::new(Some(load), signals, None);
    report.server_exited = server.exit();
    Ok(report)
}

/// Runs `load` against `target` on a thread of its own while this one runs `live`'s loop (on
/// `session`, when profiling): the load's intervals, when a sink takes them, go to the loop, and
/// `opened` runs once every connection is open, before the measured load starts.
fn loaded(
    target: SocketAddr,
    load: &LoadConfig,
    live: &mut Live,
    opened: impl FnOnce(&Sender<Event>) + Send,
    session: Option<&mut Session<'_>>,
) -> Result<LoadReport> {
    let (events, receiver) = mpsc::channel();
    let mut load = load.clone();
    if live.wanted() {
        let events = events.clone();
        load.intervals = Some(Intervals {
            length: live.interval,
            sink: Arc::new(move |i| {
                let _ = events.send(Event::Interval(Box::new(i.clone())));
            }),
        });
    }
    let opened = Mutex::new(Some(opened));
    std::thread::scope(|scope| {
        let loader = scope.spawn(move || {
            let open = || {
                if let Some(opened) = opened.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    opened(&events);
                }
            };
            // The load, its intervals' sender with it, ends here: the loop sees the hang-up.
            bench::load::run_observed(target, &load, &open)
        });
        live.run(session, &receiver, None, || None);
        loader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A prefork server prints its address before it forks: wait until its workers exist and their
/// number has held for a moment.
fn workers_of(pid: u32) -> Result<Vec<u32>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = crate::procfs::children(pid);
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
        let rest = bench::sys::cpus_besides(&server);
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
