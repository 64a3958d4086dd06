//! What watching a server costs it. Run by `cargo xtask bench overhead` (as root: it loads eBPF).
//!
//! Each variant gets its own bench-server (epoll, CPU 0) answering PING from 50 connections (CPU 1)
//! for one steady load, and the variant is switched on and off in one-second windows across that
//! load: off, on, off, on, ..., off. Each on window is compared with the mean of the off windows
//! on either side of it, and the table shows the medians of those ratios: req/s with / without,
//! and the server's capacity with / without (its CPU time per request, from schedstat, inverted). The first also counts the load generator slowing
//! down, because a tracepoint runs for every task's syscalls and the load generator shares the
//! machine; the second is the server's own cost. These machines are shared and their speed
//! drifts by tens of percent within seconds, so separate runs compared later would measure the
//! drift, not the tool.
//!
//! The variants: the tracepoint programs attached to an idle process (the price every task pays
//! for a system-wide syscall tracepoint), tcpprof's tracepoint mode with and without stacks, its
//! sampling mode at 99 and 999 Hz, its userspace mode, and two peers: bpftrace summing syscall
//! time (exact), perf record sampling stacks at 999 Hz.
//!
//! Then what one syscall costs more, by wall clock, in a thread that makes nothing but cheap
//! syscalls: with the programs attached to an idle process (every run a filter miss: the price
//! of a system-wide tracepoint, paid by every task) and attached to this process (accounted).
//!
//! Then the programs' own cost from BPF run-time statistics, which add a clock read of their own
//! to every run: the cost per accounted syscall is taken above a filter miss (a run for a task
//! that is not the target, measured in windows where the target is an idle process), and the
//! same for the sampling program per target sample.
//!
//! Then stacks of code built without frame pointers: Debian's redis-server on CPU 0 under
//! redis-benchmark (SET and GET, 50 clients) on CPU 1, its throughput (commands per second, from
//! its own INFO) and capacity with tcpprof's sampling mode unwinding from CFI at 99 and 999 Hz, and
//! with frame pointers at 999 Hz, beside `perf record --call-graph dwarf` and `perf record -g` at
//! 999 Hz, switched on and off the same way; and a 10 s profile of it at 999 Hz end to end, by
//! `tcpprof profile` and by `perf record --call-graph dwarf` + `perf report`: the time from the
//! window's end to the printed profile, and each tool's CPU time and memory.
//!
//! TCPPROF_OVERHEAD_ONLY=redis runs only that part.
use anyhow::{Context, Result, bail};
use bench::load::{Command, LineCommand, LoadConfig, LoadReport};
use bench::server::{Model, ServerChild, ServerSpec, spawn_child, spawn_self_timed};
use owned_child::OwnedChild;
use profiler::breakdown::ProgramCost;
use profiler::server_stats::oncpu_ns;
use profiler::{Mode, Profile, ProfileOptions, Requested, Session, Unwind};
use std::io::BufRead;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
/// Before each window: loading or unloading programs, or starting bpftrace, is over by then.
const SETTLE: Duration = Duration::from_millis(200);
/// How long each variant's load runs; it holds as many windows as fit.
const LOAD: Duration = Duration::from_secs(40);
const CONNECTIONS: usize = 50;

fn main() -> Result<()> {
    // `cargo bench` passes --bench; a filter argument is not supported.
    if std::env::var("TCPPROF_OVERHEAD_ONLY").as_deref() == Ok("redis") {
        return redis();
    }
    let exe = profiler::benchmark::bench_server_exe()?;
    println!(
        "bench-server epoll on CPU 0, PING from {CONNECTIONS} connections on CPU 1; per variant one {} s load,\n\
         the variant switched on and off in {} s windows (off, on, off, on, ..., off); ratio = on / the mean of\n\
         the off windows on either side.\n",
        LOAD.as_secs(),
        WINDOW.as_secs()
    );
    println!(
        "{:<30} {:>11} {:>8} {:>14} {:>10} {:>14} {:>6}",
        "", "req/s (off)", "req/s", "range", "capacity", "range", "on"
    );
    println!(
        "{:<30} {:>11} {:>8} {:>14} {:>10} {:>14}",
        "", "", "on/off", "", "on/off", ""
    );
    let idle = IdleProcess::start()?;
    let tracepoint = options(Mode::Tracepoint, 0, false);
    let ebpf_rows = [
        ("tracepoint, target idle", tracepoint, true),
        ("tcpprof tracepoint", tracepoint, false),
        (
            "tcpprof tracepoint + stacks",
            options(Mode::Tracepoint, ProfileOptions::DEFAULT_FREQUENCY_HZ, true),
            false,
        ),
        ("tcpprof sampling 99 Hz", options(Mode::Sampling, 99, true), false),
        ("tcpprof sampling 999 Hz", options(Mode::Sampling, 999, true), false),
    ];
    for (name, options, idle_target) in ebpf_rows {
        row(name, &exe, false, |server| {
            let pid = if idle_target { idle.pid() } else { server.pid() };
            Ok(Box::new(attach(pid, &options)?))
        })?;
    }
    row("tcpprof userspace", &exe, true, |server| {
        server.reset_self_times()?;
        Ok(Box::new(SelfTiming(server)))
    })?;
    row("bpftrace raw_syscalls (peer)", &exe, false, |server| {
        Ok(Box::new(Bpftrace::attach(server.pid())?))
    })?;
    row("perf record -F 999 -g (peer)", &exe, false, |server| {
        Ok(Box::new(PerfRecord::attach(server.pid(), 999, CallGraph::Fp)?))
    })?;
    syscall_cost(&idle)?;
    program_costs(&exe, &idle)?;
    redis()
}

fn options(mode: Mode, frequency_hz: u32, stacks: bool) -> ProfileOptions {
    ProfileOptions {
        mode: Requested::Only(mode),
        frequency_hz,
        stacks,
        ..ProfileOptions::default()
    }
}

/// ns per syscall added by the programs, from a thread on CPU 0 calling getppid in a loop, in
/// alternating windows as above.
fn syscall_cost(idle: &IdleProcess) -> Result<()> {
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (calls, stop) = (calls.clone(), stop.clone());
        std::thread::spawn(move || {
            let _ = bench::sys::pin_current_thread(&[0]);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..256 {
                    // SAFETY: getppid takes no arguments and cannot fail.
                    unsafe { libc::getppid() };
                }
                calls.fetch_add(256, Ordering::Relaxed);
            }
        })
    };
    let window = || {
        std::thread::sleep(SETTLE);
        let (before, from) = (calls.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(WINDOW);
        from.elapsed().as_nanos() as f64 / (calls.load(Ordering::Relaxed) - before).max(1) as f64
    };
    let me = std::process::id();
    let (mut plain, mut miss, mut hit) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..8 {
        let tracepoint = options(Mode::Tracepoint, 0, false);
        for (target, added) in [(idle.pid(), &mut miss), (me, &mut hit)] {
            let (off, on) = if pair % 2 == 0 {
                let off = window();
                let _session = attach(target, &tracepoint)?;
                (off, window())
            } else {
                let session = attach(target, &tracepoint)?;
                let on = window();
                drop(session);
                (window(), on)
            };
            plain.push(off);
            added.push(on - off);
        }
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().map_err(|_| anyhow::anyhow!("syscall loop panicked"))?;
    println!(
        "\nA thread on CPU 0 calling getppid: {:.1} ns per call unprofiled ({} window pairs, medians)",
        median(&plain),
        hit.len()
    );
    println!(
        "  added per syscall of any other task (tracepoint dispatch + filter):  {:>6.1} ns",
        median(&miss)
    );
    println!(
        "  added per accounted syscall of the target (all of it, by wall clock): {:>6.1} ns",
        median(&hit)
    );
    Ok(())
}

/// Something switched on while it is alive.
trait On {}
impl On for Session<'_> {}

/// Self-timing of a server started with it; stopped on drop.
struct SelfTiming<'a>(&'a mut ServerChild);
impl On for SelfTiming<'_> {}
impl Drop for SelfTiming<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop_self_times();
    }
}

fn attach(pid: u32, options: &ProfileOptions) -> Result<Session<'static>> {
    Ok(Session::attach(&[pid], options)?)
}

/// Runs one variant's load and prints its row.
fn row(
    name: &str,
    exe: &std::path::Path,
    self_timed: bool,
    mut on: impl for<'a> FnMut(&'a mut ServerChild) -> Result<Box<dyn On + 'a>>,
) -> Result<()> {
    let mut server = if self_timed {
        spawn_self_timed(exe, &pinned_epoll())?
    } else {
        spawn_child(exe, &pinned_epoll())?
    };
    let load = Load::start(&server)?;
    let pid = server.pid();
    let measured = alternate(&mut server, || load.left(), || load.window(pid), &mut on);
    load.finish()?;
    print_row(name, &measured?)
}

/// What the windows of one variant measured: the rate with it off, and on / off per on window.
struct OnOff {
    off_rates: Vec<f64>,
    ratios: Vec<f64>,
    capacity: Vec<f64>,
}

impl OnOff {
    /// The throughput the variant costs: 1 - on / off (median).
    fn cost(&self) -> f64 {
        1.0 - median(&self.ratios)
    }
}

/// Windows off and on in turn (off, on, off, on, ..., off), the variant switched on (given
/// `state`) for every other one, while `left` leaves room for two more: each on window is
/// compared with the mean of the off windows on either side of it, which takes out a drift that
/// is steady over the three.
fn alternate<S>(
    state: &mut S,
    left: impl Fn() -> Duration,
    window: impl Fn() -> Result<Window>,
    mut on: impl for<'s> FnMut(&'s mut S) -> Result<Box<dyn On + 's>>,
) -> Result<OnOff> {
    let mut measured = OnOff {
        off_rates: Vec::new(),
        ratios: Vec::new(),
        capacity: Vec::new(),
    };
    let mut before = window()?;
    while left() >= 2 * (WINDOW + SETTLE) + Duration::from_secs(2) {
        let guard = on(state)?;
        let with = window()?;
        drop(guard);
        let after = window()?;
        let off_rate = (before.rate + after.rate) / 2.0;
        let off_cpu = (before.cpu_per_request + after.cpu_per_request) / 2.0;
        measured.off_rates.push(off_rate);
        measured.ratios.push(with.rate / off_rate);
        measured.capacity.push(off_cpu / with.cpu_per_request);
        before = after;
    }
    Ok(measured)
}

fn print_row(name: &str, measured: &OnOff) -> Result<()> {
    if measured.ratios.is_empty() {
        bail!("{name}: no on window fitted in the {} s load", LOAD.as_secs());
    }
    println!(
        "{name:<30} {:>11.0} {:>8.3} {:>14} {:>10.3} {:>14} {:>6}",
        median(&measured.off_rates),
        median(&measured.ratios),
        range(&measured.ratios),
        median(&measured.capacity),
        range(&measured.capacity),
        measured.ratios.len()
    );
    Ok(())
}

fn range(v: &[f64]) -> String {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    format!("{lo:.3}..{hi:.3}")
}

/// The programs' cost per run from BPF run-time statistics, in alternating windows: attached to
/// an idle process (every run a filter miss), then to the server; tracepoint mode, then sampling
/// mode at 999 Hz.
fn program_costs(exe: &std::path::Path, idle: &IdleProcess) -> Result<()> {
    let _stats = profiler::totals::enable_run_stats()?;
    let server = spawn_child(exe, &pinned_epoll())?;
    let load = Load::start(&server)?;
    let mut per_program: Vec<(String, Vec<f64>)> = Vec::new();
    let modes = [
        (options(Mode::Tracepoint, 0, false), SYSCALL_PROGRAMS.as_slice()),
        (
            options(Mode::Sampling, 999, true),
            [profiler_common::names::CPU_SAMPLE].as_slice(),
        ),
    ];
    // Per mode: the cost of a run for another task, and per accounted event above it.
    let mut miss_ns = [Vec::new(), Vec::new()];
    let mut above_miss = [Vec::new(), Vec::new()];
    while load.left() >= 4 * (WINDOW + SETTLE) + Duration::from_secs(2) {
        for (m, (options, programs)) in modes.iter().enumerate() {
            let options = ProfileOptions {
                bpf_stats: true,
                ..*options
            };
            let idle_profile = watch(idle.pid(), &options)?;
            let (runs, ns) = runs_of(&idle_profile, programs);
            let miss = ns as f64 / runs.max(1) as f64;

            let profile = watch(server.pid(), &options)?;
            let costs = profile.program_costs.as_deref().unwrap_or_default();
            // Accounted events: syscalls in tracepoint mode, target samples in sampling mode.
            let classes = &profile.breakdown.classes;
            let accounted = match profile.breakdown.mode {
                Mode::Sampling => classes.samples(),
                _ => classes.accept.calls + classes.read.calls + classes.write.calls + classes.other.calls,
            };
            let (runs, ns) = runs_of(&profile, programs);
            miss_ns[m].push(miss);
            above_miss[m].push((ns as f64 - runs as f64 * miss) / accounted.max(1) as f64);
            for p in costs.iter().filter(|p| p.runs > 0) {
                match per_program.iter_mut().find(|(name, _)| *name == p.name) {
                    Some((_, v)) => v.push(p.ns_per_run()),
                    None => per_program.push((p.name.clone(), vec![p.ns_per_run()])),
                }
            }
        }
    }
    load.finish()?;
    if miss_ns[0].is_empty() {
        bail!("no window pair fitted in the {} s load", LOAD.as_secs());
    }
    println!(
        "\neBPF programs, BPF run-time statistics ({} window pairs per mode, idle target then the server; medians):",
        miss_ns[0].len()
    );
    for (name, v) in &per_program {
        println!("  {name:<20} {:>8.1} ns/run (profiling the server)", median(v));
    }
    println!(
        "  sys_enter/sys_exit run for another task (filter miss + the statistics' own clock read): {:>6.1} ns",
        median(&miss_ns[0])
    );
    println!(
        "  the target's enter + exit above two misses, per accounted syscall of the server:        {:>6.1} ns",
        median(&above_miss[0])
    );
    println!(
        "  cpu_sample run for another task (filter miss + the statistics' own clock read):         {:>6.1} ns",
        median(&miss_ns[1])
    );
    println!(
        "  cpu_sample above a miss, per sample of the server (classify + two stack walks):        {:>6.1} ns",
        median(&above_miss[1])
    );
    Ok(())
}

const SYSCALL_PROGRAMS: [&str; 2] = [profiler_common::names::SYS_ENTER, profiler_common::names::SYS_EXIT];

/// A profile of `pid` over one window.
fn watch(pid: u32, options: &ProfileOptions) -> Result<Profile> {
    let session = attach(pid, options)?;
    std::thread::sleep(WINDOW);
    session
        .finish(None)?
        .profile
        .context("a session's report has a profile")
}

/// The epoll server on CPU 0 (the load runs on CPU 1).
fn pinned_epoll() -> ServerSpec {
    ServerSpec {
        cpus: Some(vec![0]),
        ..ServerSpec::new(Model::Epoll)
    }
}

/// Runs and run time of the named programs together.
fn runs_of(profile: &Profile, programs: &[&str]) -> (u64, u64) {
    profile
        .program_costs
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| programs.contains(&p.name.as_str()))
        .fold((0, 0), |(runs, ns), p: &ProgramCost| (runs + p.runs, ns + p.run_ns))
}

struct Window {
    rate: f64,
    cpu_per_request: f64,
}

/// A closed-loop PING load on its own thread, with a counter of finished requests.
struct Load {
    progress: Arc<AtomicU64>,
    ends: Instant,
    thread: JoinHandle<Result<LoadReport>>,
}

impl Load {
    fn start(server: &ServerChild) -> Result<Load> {
        let progress = Arc::new(AtomicU64::new(0));
        let config = LoadConfig {
            concurrency: CONNECTIONS,
            duration: Some(LOAD),
            client_cpus: Some(vec![1]),
            progress: Some(progress.clone()),
            ..LoadConfig::new(Command::Line(LineCommand::Ping))
        };
        let addr = server.addr();
        let thread = std::thread::spawn(move || bench::load::run(addr, &config));
        // Past connecting and warming up.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Load {
            progress,
            ends: Instant::now() + LOAD - Duration::from_millis(500),
            thread,
        })
    }

    fn left(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }

    /// Throughput and the server's CPU time per request over the next window, which starts after
    /// a pause so that switching a variant on or off is over before it.
    fn window(&self, server: u32) -> Result<Window> {
        std::thread::sleep(SETTLE);
        let cpu = || oncpu_ns(server).context("reading the server's schedstat");
        let (before, cpu_before, from) = (self.progress.load(Ordering::Relaxed), cpu()?, Instant::now());
        std::thread::sleep(WINDOW);
        let done = (self.progress.load(Ordering::Relaxed) - before).max(1) as f64;
        Ok(Window {
            rate: done / from.elapsed().as_secs_f64(),
            cpu_per_request: (cpu()? - cpu_before) as f64 / done,
        })
    }

    fn finish(self) -> Result<()> {
        let report = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??;
        if report.errors > 0 {
            bail!("the load saw {} errors: {:?}", report.errors, report.first_error);
        }
        Ok(())
    }
}

/// A process that makes no syscalls while it lives, for windows where the programs run for
/// every task on the machine but account none.
struct IdleProcess(OwnedChild);

impl IdleProcess {
    fn start() -> Result<IdleProcess> {
        let sleep = OwnedChild::spawn(std::process::Command::new("sleep").arg("3600"));
        Ok(IdleProcess(sleep.context("starting sleep")?))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// bpftrace summing the server's syscall time per syscall number, the way one would by hand.
struct Bpftrace {
    _process: OwnedChild,
}
impl On for Bpftrace {}

impl Bpftrace {
    fn attach(pid: u32) -> Result<Bpftrace> {
        let script = format!(
            "tracepoint:raw_syscalls:sys_enter /pid == {pid}/ {{ @start[tid] = nsecs; }} \
             tracepoint:raw_syscalls:sys_exit /pid == {pid} && @start[tid]/ \
             {{ @ns[args->id] = sum(nsecs - @start[tid]); @n[args->id] = count(); delete(@start[tid]); }}"
        );
        let mut child = OwnedChild::spawn(
            std::process::Command::new("bpftrace")
                .args(["-e", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .context("starting bpftrace (cargo xtask bench installs it)")?;
        // It prints "Attaching N probes..." once attached.
        let stdout = child.take_stdout().context("bpftrace stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let attached = lines.next().transpose()?.unwrap_or_default();
        let bpftrace = Bpftrace { _process: child };
        if !attached.starts_with("Attaching") {
            bail!("bpftrace did not attach: {attached:?}");
        }
        std::thread::spawn(move || lines.for_each(drop));
        Ok(bpftrace)
    }
}

/// How perf record walks user stacks.
#[derive(Clone, Copy)]
enum CallGraph {
    /// `-g`: frame pointers, walked in the kernel.
    Fp,
    /// `--call-graph dwarf`: 8 KiB of user stack copied per sample, unwound by `perf report`.
    Dwarf,
}

/// perf sampling the server's stacks into a file, as one would by hand to find the code behind a
/// part; stopped with SIGINT (which makes it write the file) on drop.
struct PerfRecord {
    // Dropped first: perf writes the file, then the file is removed.
    _process: OwnedChild,
    _data: TempFile,
}
impl On for PerfRecord {}

impl PerfRecord {
    fn attach(pid: u32, hz: u32, call_graph: CallGraph) -> Result<PerfRecord> {
        let data = TempFile(std::env::temp_dir().join(format!("tcpprof-overhead-{}.perf.data", std::process::id())));
        let walk: &[&str] = match call_graph {
            CallGraph::Fp => &["-g"],
            CallGraph::Dwarf => &["--call-graph", "dwarf"],
        };
        let child = OwnedChild::spawn(
            std::process::Command::new("perf")
                .args(["record", "-q"])
                .args(walk)
                .args(["-F", &hz.to_string(), "-p", &pid.to_string(), "-o"])
                .arg(&data.0)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("starting perf record (cargo xtask bench installs linux-perf)")?;
        Ok(PerfRecord {
            _process: child.stopped_with(libc::SIGINT),
            _data: data,
        })
    }
}

/// A file removed on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The redis part (see the top of this file).
fn redis() -> Result<()> {
    println!(
        "\nredis-server (Debian's, built without frame pointers) on CPU 0 under redis-benchmark -t set,get -c 50 on \
         CPU 1;\nthroughput is commands/s from its INFO; one {} s load per variant, switched on and off as above.\n",
        LOAD.as_secs()
    );
    println!(
        "{:<30} {:>11} {:>8} {:>14} {:>10} {:>14} {:>6}",
        "", "cmd/s (off)", "cmd/s", "range", "capacity", "range", "on"
    );
    let sampling = |hz: u32, unwind: Unwind| ProfileOptions {
        unwind,
        ..options(Mode::Sampling, hz, true)
    };
    let ours = [
        ("tcpprof sampling 99 Hz, CFI", sampling(99, Unwind::Auto)),
        ("tcpprof sampling 999 Hz, CFI", sampling(999, Unwind::Auto)),
        ("tcpprof sampling 999 Hz, fp", sampling(999, Unwind::Fp)),
    ];
    let mut costs = Vec::new();
    for (name, options) in ours {
        let redis = Redis::start()?;
        let measured = alternate(
            &mut (),
            || redis.left(),
            || redis.window(),
            |_| Ok(Box::new(attach(redis.pid, &options)?)),
        )?;
        print_row(name, &measured)?;
        costs.push(measured);
    }
    let mut perf = Vec::new();
    for (name, call_graph) in [
        ("perf --call-graph dwarf (peer)", CallGraph::Dwarf),
        ("perf -g (peer)", CallGraph::Fp),
    ] {
        let redis = Redis::start()?;
        let measured = alternate(
            &mut (),
            || redis.left(),
            || redis.window(),
            |_| Ok(Box::new(PerfRecord::attach(redis.pid, 999, call_graph)?)),
        )?;
        print_row(name, &measured)?;
        perf.push(measured);
    }
    let at_99 = median(&costs[0].ratios);
    let (ours_999, dwarf_999) = (costs[1].cost(), perf[0].cost());
    println!(
        "\n99 Hz with CFI keeps {at_99:.3} of the unprofiled throughput (bar: >= 0.99): {}",
        met(at_99 >= 0.99)
    );
    println!(
        "999 Hz with CFI costs {:.1}% of throughput, perf --call-graph dwarf {:.1}%: a ratio of {:.2} (bar: <= 0.5): {}",
        ours_999 * 100.0,
        dwarf_999 * 100.0,
        ours_999 / dwarf_999,
        met(ours_999 <= dwarf_999 / 2.0)
    );
    end_to_end()
}

fn met(bar: bool) -> &'static str {
    if bar { "met" } else { "NOT MET" }
}

/// A 10 s profile of redis with whole stacks at 999 Hz, end to end, by tcpprof and by perf:
/// `tcpprof profile` (unwinding as the window goes, printing the named profile at its end), and
/// `perf record --call-graph dwarf` then `perf report` (which unwinds what record wrote). For each,
/// the time from the window's end to the printed profile, the CPU time of the tool's processes in
/// all (getrusage of the children reaped), and their largest RSS.
fn end_to_end() -> Result<()> {
    println!(
        "\nA 10 s profile of redis-server at 999 Hz with whole stacks, end to end (one run each):\n\n\
         {:<44} {:>10} {:>12} {:>10}",
        "", "to print", "CPU time", "RSS max"
    );
    let redis = Redis::start()?;
    let pid = redis.pid.to_string();
    let profile = |unwind: &str| {
        Tool::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_tcpprof"))
                .args(["profile", "-p", &pid, "-d", "10", "--mode", "sampling"])
                .args(["--frequency", "999", "--json", "--unwind", unwind]),
        )
    };
    let tcpprof = profile("auto")?;
    let report: serde_json::Value = serde_json::from_slice(&tcpprof.stdout).context("tcpprof's JSON")?;
    let after = tcpprof.took.saturating_sub(Duration::from_secs(10));
    tcpprof.print("tcpprof profile --mode sampling (CFI)", after);
    // The same with frame pointers (stacks cut short): what unwinding from CFI itself costs.
    let fp = profile("fp")?;
    fp.print(
        "  the same, --unwind fp",
        fp.took.saturating_sub(Duration::from_secs(10)),
    );
    let data = TempFile(std::env::temp_dir().join(format!("tcpprof-end-to-end-{}.perf.data", std::process::id())));
    let record = Tool::run(
        std::process::Command::new("perf")
            .args(["record", "-q", "--call-graph", "dwarf", "-F", "999", "-p", &pid, "-o"])
            .arg(&data.0)
            .args(["--", "sleep", "10"]),
    )?;
    let perf_report = Tool::run(
        std::process::Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-i"])
            .arg(&data.0),
    )?;
    let perf_after = record.took.saturating_sub(Duration::from_secs(10)) + perf_report.took;
    let perf = Tool {
        cpu: record.cpu + perf_report.cpu,
        rss_kib: record.rss_kib.max(perf_report.rss_kib),
        ..perf_report
    };
    perf.print("perf record --call-graph dwarf + perf report", perf_after);
    let cut_short = report["stack_errors"]["truncated"].as_u64().unwrap_or(0)
        + ["copy_too_short", "no_cfi", "unknown_mapping", "unwind_error"]
            .iter()
            .map(|k| report["stack_errors"][k].as_u64().unwrap_or(0))
            .sum::<u64>();
    println!(
        "\ntcpprof: {} samples, {cut_short} with a user stack cut short; window's end to the printed profile \
         {:.2} s (bar: <= 2 s): {}; perf.data was {} MB",
        report["samples"],
        after.as_secs_f64(),
        met(after <= Duration::from_secs(2)),
        std::fs::metadata(&data.0).map_or(0, |m| m.len() >> 20)
    );
    Ok(())
}

/// One run of a tool to its end: how long it took, the CPU time it and its children used, its
/// largest RSS, and what it printed.
struct Tool {
    took: Duration,
    cpu: Duration,
    rss_kib: u64,
    stdout: Vec<u8>,
}

impl Tool {
    fn run(command: &mut std::process::Command) -> Result<Tool> {
        let before = children_cpu();
        let started = Instant::now();
        let child = OwnedChild::spawn(command.stdout(Stdio::piped()).stderr(Stdio::null()))
            .with_context(|| format!("starting {command:?}"))?;
        let memory = profiler::server_stats::Sampler::start(vec![child.id()]);
        let out = child.wait_with_output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!("{command:?} failed: {}", out.status);
        }
        Ok(Tool {
            took,
            cpu: children_cpu().saturating_sub(before),
            rss_kib: memory.finish().rss_max_kb,
            stdout: out.stdout,
        })
    }

    fn print(&self, name: &str, to_print: Duration) {
        println!(
            "{name:<44} {:>8.2} s {:>9} ms {:>7} MB",
            to_print.as_secs_f64(),
            self.cpu.as_millis(),
            self.rss_kib / 1024
        );
    }
}

/// User and system time of the children this process has reaped.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Debian's redis-server on CPU 0 with redis-benchmark looping SET and GET from 50 clients on
/// CPU 1, for [`LOAD`]; both stopped on drop.
struct Redis {
    pid: u32,
    port: u16,
    ends: Instant,
    // Dropped in order: the load, then the server.
    _load: OwnedChild,
    _server: OwnedChild,
}

impl Redis {
    fn start() -> Result<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let port_arg = port.to_string();
        let server = OwnedChild::spawn_group(
            std::process::Command::new("taskset")
                .args(["-c", "0", "redis-server", "--port", &port_arg, "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null()),
        )
        .context("starting redis-server (cargo xtask bench installs it)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let load = OwnedChild::spawn_group(
            std::process::Command::new("taskset")
                .args([
                    "-c",
                    "1",
                    "redis-benchmark",
                    "-p",
                    &port_arg,
                    "-t",
                    "set,get",
                    "-c",
                    "50",
                ])
                // About 15 s of each before the other: few windows straddle a switch.
                .args(["-n", "1000000", "-l", "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("starting redis-benchmark")?;
        // Past connecting and warming up.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Redis {
            pid: server.id(),
            port,
            ends: Instant::now() + LOAD,
            _load: load,
            _server: server,
        })
    }

    fn left(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }

    /// Commands processed so far, from the server's INFO.
    fn commands(&self) -> Result<u64> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", "stats"])
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:")?.trim().parse().ok())
            .context("no total_commands_processed in redis's INFO")
    }

    fn window(&self) -> Result<Window> {
        std::thread::sleep(SETTLE);
        let cpu = || oncpu_ns(self.pid).context("reading redis's schedstat");
        let (before, cpu_before, from) = (self.commands()?, cpu()?, Instant::now());
        std::thread::sleep(WINDOW);
        let done = (self.commands()? - before).max(1) as f64;
        Ok(Window {
            rate: done / from.elapsed().as_secs_f64(),
            cpu_per_request: (cpu()? - cpu_before) as f64 / done,
        })
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
