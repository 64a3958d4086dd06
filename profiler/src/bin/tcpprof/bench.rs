//! `tcpprof bench`: the node's bench_run / bench_sweep / bench_profile from the shell, printed
//! as tables (or JSON), with a progress bar on runs longer than a second.
use crate::dashboard::{LiveArgs, LiveDashboard};
use crate::profiling::{ProfileArgs, wrong_flag};
use crate::{interrupt, outputs};
use anyhow::{Context, Result};
use bench::load::{ConnectionMode, LoadConfig, Protocol, RequestFields, Shard};
use bench::server::Model;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use profiler::benchmark::{Benchmark, ProfileError};
use profiler::compare::{self, Saved};
use profiler::dashboard::Pace;
use profiler::find_max::Search;
use profiler::hlog::{HlogSink, HlogWriter};
use profiler::live::{Live, Sink};
use profiler::metrics::Exporter;
use profiler::plan::{self, Fields, Kind, Limits, Plan, Policy, Work};
use profiler::printer::Format;
use profiler::printer::plots::{IntervalPoint, Timeline};
use profiler::report::{FindMaxResult, Ran, RunResult};
use profiler::{Report, printer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Args)]
pub struct BenchArgs {
    /// Server model to start (bench-server --model; default epoll).
    #[arg(long, conflicts_with = "target")]
    server: Option<Model>,
    /// Load a server at HOST:PORT instead (a name, an IPv4 address, or [IPv6]:PORT), speaking
    /// --protocol: one that runs, or one --exec starts. On this host, --profile profiles the
    /// processes holding its listening socket; on another, run `tcpprof profile` there.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// Start this server for the run (a program and its arguments, split as a shell would),
    /// wait until --target accepts connections, and stop it after: SIGTERM, then SIGKILL 5 s
    /// later. CPython 3.12+ is started with PYTHONPERFSUPPORT=1, so that a profile names its
    /// Python functions.
    #[arg(long, value_name = "CMD", requires = "target")]
    exec: Option<String>,
    /// line (bench-server's; the default without --target), fixed (the default with --target),
    /// http or resp.
    #[arg(long)]
    protocol: Option<Protocol>,
    /// line: ECHO, PING, "BURN n", "STREAM n" or "WAIT ms" (default ECHO).
    #[arg(long)]
    command: Option<String>,
    /// line: ECHO payload size in bytes (default 64).
    #[arg(long)]
    payload: Option<usize>,
    /// fixed: the bytes of each request (\r, \n and \t are understood); resp: the Redis
    /// command's words, e.g. "SET key:__rand_int__ value".
    #[arg(long)]
    request: Option<String>,
    /// fixed: the exact bytes of a right answer (\r, \n and \t are understood).
    #[arg(long)]
    response: Option<String>,
    /// http: the method (default GET).
    #[arg(long)]
    method: Option<String>,
    /// http: the request target (default /).
    #[arg(long)]
    path: Option<String>,
    /// http: a "Name: value" header (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// http: the request body (\r, \n and \t are understood).
    #[arg(long)]
    body: Option<String>,
    /// http: only this status is right (default: any 2xx).
    #[arg(long)]
    expect_status: Option<u16>,
    /// http: the body every response must have, byte for byte.
    #[arg(long)]
    expect_body: Option<String>,
    /// resp: replace __rand_int__ in the words with a random key below N, per request
    /// (redis-benchmark's -r).
    #[arg(long, value_name = "N")]
    keyspace: Option<u64>,
    /// Connections (requests in flight, per-request) [default: 10].
    #[arg(short, long)]
    concurrency: Option<u64>,
    /// Total requests (default 10000, or unlimited with --duration).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Run for this many seconds.
    #[arg(short, long)]
    duration: Option<f64>,
    /// persistent or per-request [default: persistent].
    #[arg(long)]
    connection: Option<ConnectionMode>,
    /// Open loop at this many requests/s in total (latency from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// CPUs of the server we start (bench-server, or --exec's) [default: 0, the load generator
    /// on the others].
    #[arg(long, value_delimiter = ',')]
    server_cpus: Option<Vec<u64>>,
    /// Listen backlog of the bench-server (accept queue length; the kernel caps it at
    /// net.core.somaxconn).
    #[arg(long, conflicts_with = "target")]
    backlog: Option<u64>,
    /// CPUs of the load generator [default: all but the server's].
    #[arg(long, value_delimiter = ',')]
    client_cpus: Option<Vec<u64>>,
    /// Run once per concurrency level, e.g. --sweep 1,10,100.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["profile", "live"])]
    sweep: Option<Vec<u64>>,
    /// Search for the highest open-loop rate that holds --slo: a closed-loop probe, then steps
    /// of --duration seconds each (default 3) that grow from half the probe's throughput (or
    /// from --rate) until one fails, then bisect to 3%; a step holds when it meets the SLO,
    /// achieves 99% of its rate and its latency does not grow within it.
    #[arg(long, requires = "slo", conflicts_with_all = FIND_MAX_CONFLICTS)]
    find_max: bool,
    /// The objectives a find-max step must meet, comma-separated: pNN<LATENCY (any percentile:
    /// p50, p99, p99.9), max<LATENCY, errors<PCT%; latencies in us, ms or s; `<=` too. E.g.
    /// 'p99<5ms,errors<0.1%'.
    #[arg(long, requires = "find_max")]
    slo: Option<String>,
    /// How long the whole search may take, in seconds (default 120): no step starts that could
    /// not end within it.
    #[arg(long, value_name = "SECS", requires = "find_max")]
    max_time: Option<f64>,
    /// Profile the server while it is loaded (the flags below say how).
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    profiling: ProfileArgs,
    /// Also sample the server's memory, threads and context switches during the run.
    #[arg(long, conflicts_with_all = ["profile", "sweep", "target"])]
    server_stats: bool,
    /// One JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the latency percentile distribution here, in HdrHistogram's text format
    /// (.hgrm, microseconds; corrected latency in open loop).
    #[arg(long, value_name = "FILE", conflicts_with = "sweep")]
    hgrm: Option<PathBuf>,
    /// Print a line per interval of this many seconds (a JSON line each with --json).
    #[arg(long, value_name = "SECS", conflicts_with = "sweep")]
    interval: Option<f64>,
    /// Write an HdrHistogram interval log here (V2, a compressed histogram per interval: 1 s, or
    /// --interval), tagged with --agent; `tcpprof merge` adds several up.
    #[arg(long, value_name = "FILE", conflicts_with = "sweep")]
    hlog: Option<PathBuf>,
    /// This load generator's name, the tag of its interval log's histograms.
    #[arg(long, default_value = "tcpprof")]
    agent: String,
    /// Run part I of a plan that N load generators run at once (I from 0): -c, -n and --rate
    /// are the whole plan's; this one opens its share of the connections, with their numbers in
    /// the plan (source addresses, keys, open-loop schedule), and sends its share of requests.
    #[arg(long, value_name = "I/N", conflicts_with = "sweep")]
    shard: Option<Shard>,
    /// Write SVG plots into this directory: latency.svg (the percentile spectrum), timeline.svg
    /// (latency and throughput per interval), or sweep.svg for a sweep.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Also save the run here for `tcpprof compare`: the result --json prints, each interval's
    /// figures, the latency spectrum and, with --stacks, the folded stacks.
    #[arg(long, value_name = "FILE", conflicts_with = "sweep")]
    save: Option<PathBuf>,
    /// Write one self-contained HTML report of the run here: parameters, summary, limit and
    /// signals, plots, breakdown and flame graph when profiled.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the load runs: requests, errors by
    /// kind and a latency histogram, updated each interval (1 s unless --interval); with
    /// --profile also the server's time by class, syscalls and run-queue waits.
    #[arg(long, value_name = "ADDR", conflicts_with = "sweep")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    live: LiveArgs,
}

/// What a find-max search cannot take: one run's outputs and other kinds of run.
const FIND_MAX_CONFLICTS: [&str; 11] = [
    "sweep",
    "profile",
    "requests",
    "interval",
    "hlog",
    "hgrm",
    "listen",
    "live",
    "server_stats",
    "shard",
    "save",
];

pub fn run(args: BenchArgs) -> Result<()> {
    let Plan { mut benchmark, work } = plan(&args)?;
    check_outputs(&args)?;
    let mut sinks = Sinks::open(&args)?;
    if args.interval.is_some() {
        // The lines are the progress: no bar over them.
        benchmark.load.progress = None;
    }
    // Ctrl-C stops the load: the run ends, and what it measured is printed and written.
    interrupt::catch();
    benchmark.load.stop = Some(&interrupt::STOP_LOAD);
    let result = run_benchmark(&args, &benchmark, &work, &mut sinks);
    interrupt::release();
    // A failure to write the interval log did not stop the load; it fails the command now.
    let failure = sinks.hlog.and_then(|h| h.failure);
    let result = result.and(failure.map_or(Ok(()), Err));
    match (interrupt::caught(), result) {
        (Some(signal), Ok(())) => interrupt::exit(signal),
        (_, result) => result,
    }
}

/// Where the run's intervals go as they end: each output asked for is a sink of the live loop.
struct Sinks {
    interval: Duration,
    /// `--interval` lines.
    lines: Option<printer::Lines>,
    /// `--hlog`.
    hlog: Option<HlogSink>,
    /// `--listen`: the load's counts and a profiled server's totals.
    exporter: Option<Exporter>,
    /// The timeline plot's points (`--plots`, `--report`).
    timeline: Option<Timeline>,
    /// `--live`.
    live: Option<LiveDashboard>,
}

impl Sinks {
    fn open(args: &BenchArgs) -> Result<Sinks> {
        let interval = match args.interval {
            Some(s) => plan::interval(s).map_err(wrong_flag)?,
            None => Duration::from_secs(1),
        };
        let hlog = match &args.hlog {
            Some(path) => Some(HlogSink::new(HlogWriter::create(path, &args.agent)?)),
            None => None,
        };
        let plotted = args.sweep.is_none() && (args.plots.is_some() || args.report.is_some() || args.save.is_some());
        let mut exporter = crate::serve_metrics(args.listen)?;
        let live = args
            .live
            .open(Pace::Load, || exporter.get_or_insert_with(Exporter::new).clone())?;
        Ok(Sinks {
            interval,
            lines: args.interval.map(|_| printer::Lines(Format::json_if(args.json))),
            hlog,
            exporter,
            timeline: plotted.then(|| Timeline::new(interval)),
            live,
        })
    }

    /// The live loop's sinks: these, for the length of one run.
    fn live(&mut self) -> Live<'_> {
        let mut live = Live::new();
        live.interval = self.interval;
        let sinks: [Option<&mut dyn Sink>; 5] = [
            self.lines.as_mut().map(|s| s as _),
            self.hlog.as_mut().map(|s| s as _),
            self.exporter.as_mut().map(|s| s as _),
            self.timeline.as_mut().map(|s| s as _),
            self.live.as_mut().map(|l| &mut l.dashboard as _),
        ];
        sinks.into_iter().flatten().for_each(|s| live.add(s));
        live
    }

    fn points(&self) -> &[IntervalPoint] {
        self.timeline.as_ref().map_or(&[], |t| &t.points)
    }
}

fn run_benchmark(args: &BenchArgs, benchmark: &Benchmark, work: &Work, sinks: &mut Sinks) -> Result<()> {
    let format = Format::json_if(args.json);
    if let Work::FindMax(search) = work {
        // Its steps are its progress.
        return find_max(args, benchmark, search, format);
    }
    let progress = Progress::start(&benchmark.load);
    if let Work::Sweep(levels) = work {
        let sweep = benchmark.sweep(levels, |_, _| progress.reset())?;
        progress.finish();
        print!("{}", printer::sweep(Ran::of(benchmark), &sweep, format));
        if let Some(dir) = plots_dir(args)? {
            outputs::write_file(&dir.join("sweep.svg"), &printer::plots::sweep(&sweep)?, "sweep plot")?;
        }
        if let Some(path) = &args.report {
            outputs::write_file(path, &printer::html::sweep_report(&command_line(), &sweep)?, "report")?;
        }
        return Ok(());
    }
    let (report, server_stats) = match work {
        Work::Profile => {
            let report = benchmark.profile_live(&mut sinks.live()).map_err(|e| match e {
                ProfileError::Unavailable(reason) => anyhow::anyhow!("cannot profile: {reason}"),
                ProfileError::Failed(e) => e,
            })?;
            (report, None)
        }
        _ if args.server_stats => {
            let (report, stats) = benchmark.run_with_server_stats(&mut sinks.live())?;
            (report, Some(stats))
        }
        _ => (benchmark.run_live(&mut sinks.live())?, None),
    };
    progress.finish();
    let result = RunResult {
        server_stats,
        ..RunResult::new(benchmark, &report)
    };
    print!("{}", printer::run(&result, format));
    write_files(args, &report, sinks.points())?;
    if let Some(path) = &args.save {
        let saved = Saved {
            tcpprof_saved: compare::SAVED_VERSION,
            result: serde_json::to_value(&result)?,
            intervals: sinks.points().to_vec(),
            spectrum: report
                .load
                .as_ref()
                .map_or(Vec::new(), |l| compare::spectrum_points(&l.histogram)),
            folded: report
                .profile
                .as_ref()
                .and_then(|p| p.stacks.as_ref())
                .map_or(Vec::new(), |s| s.folded.clone()),
        };
        outputs::write_file(path, serde_json::to_vec(&saved)?, "saved run")?;
    }
    let written = match &report.profile {
        Some(profile) => {
            let what = format!("{}, {}", benchmark.target, benchmark.load.command);
            args.profiling.write_stacks(profile, &what)
        }
        None => Ok(()),
    };
    if let Some(live) = &sinks.live {
        live.finish(&result);
    }
    written
}

/// A find-max search: each step printed as it ends (tables), then the answer, and the plot and
/// report when asked for.
fn find_max(args: &BenchArgs, benchmark: &Benchmark, search: &Search, format: Format) -> Result<()> {
    // The steps are the progress: on stdout in the table, on stderr beside the JSON.
    let show = |line: &str| match format {
        Format::Table => print!("{line}"),
        Format::Json => eprint!("{line}"),
    };
    show(&format!(
        "find-max {} ({} s steps, at most {} s)\n{}",
        search.slo,
        search.step.as_secs_f64(),
        search.max_time.as_secs_f64(),
        printer::FIND_MAX_HEADER
    ));
    let found = benchmark.find_max(search, |step| show(&printer::find_max_step(step)))?;
    let result = FindMaxResult {
        ran: Ran::of(benchmark),
        find_max: found,
    };
    print!("{}", printer::find_max(&result, format));
    let p99 = search.slo.percentile_limit_us(99.0);
    if let Some(dir) = plots_dir(args)? {
        let svg = printer::plots::find_max(&result.find_max, p99)?;
        outputs::write_file(&dir.join("find-max.svg"), &svg, "find-max plot")?;
    }
    if let Some(path) = &args.report {
        let html = printer::html::find_max_report(&command_line(), &result.find_max, p99)?;
        outputs::write_file(path, &html, "report")?;
    }
    Ok(())
}

/// The files a run was asked for: --hgrm, --plots, --report.
fn write_files(args: &BenchArgs, report: &Report, points: &[IntervalPoint]) -> Result<()> {
    let Some(load) = &report.load else { return Ok(()) };
    if let Some(path) = &args.hgrm {
        outputs::write_file(path, printer::hgrm(&load.histogram), "latency distribution")?;
    }
    if let Some(dir) = plots_dir(args)? {
        outputs::write_file(
            &dir.join("latency.svg"),
            &printer::plots::latency_spectrum(load)?,
            "latency plot",
        )?;
        if !points.is_empty() {
            outputs::write_file(
                &dir.join("timeline.svg"),
                &printer::plots::timeline(points)?,
                "timeline plot",
            )?;
        }
    }
    if let Some(path) = &args.report {
        let html = printer::html::run_report(&command_line(), report, points)?;
        outputs::write_file(path, &html, "report")?;
    }
    Ok(())
}

/// Refuses, before the run, an output that could not be written after it; creates --plots.
fn check_outputs(args: &BenchArgs) -> Result<()> {
    for (flag, path) in [
        ("--hgrm", &args.hgrm),
        ("--hlog", &args.hlog),
        ("--report", &args.report),
        ("--save", &args.save),
    ] {
        if let Some(path) = path {
            outputs::check_writable(flag, path)?;
        }
    }
    plots_dir(args)?;
    args.profiling.check_outputs()
}

/// The --plots directory, created if need be.
fn plots_dir(args: &BenchArgs) -> Result<Option<&PathBuf>> {
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("--plots {}: creating it", dir.display()))?;
    }
    Ok(args.plots.as_ref())
}

/// How this run was asked for, for the report.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let program = args.first().map_or("tcpprof", |p| p.rsplit('/').next().unwrap_or(p));
    std::iter::once(program.to_string())
        .chain(args.into_iter().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The run these flags ask for, checked by the one rulebook the node's runs go through too.
fn plan(args: &BenchArgs) -> Result<Plan> {
    let request = RequestFields {
        protocol: args.protocol,
        command: args.command.clone(),
        payload_size: args.payload,
        // Redis words are words: only fixed bytes and bodies carry escapes.
        request: args.request.as_deref().map(|r| match args.protocol {
            Some(Protocol::Resp) => r.to_string(),
            _ => unescape(r),
        }),
        response: args.response.as_deref().map(unescape),
        method: args.method.clone(),
        path: args.path.clone(),
        headers: args.header.clone(),
        body: args.body.as_deref().map(unescape),
        expect_status: args.expect_status,
        expect_body: args.expect_body.as_deref().map(unescape),
        keyspace: args.keyspace,
    };
    let exec = match &args.exec {
        Some(line) => Some(shlex::split(line).with_context(|| format!("--exec {line:?}: unbalanced quotes"))?),
        None => None,
    };
    let target = args.target.as_deref().map(plan::resolve_target).transpose();
    let fields = Fields {
        target: target.map_err(wrong_flag)?,
        exec,
        server: args.server,
        backlog: args.backlog,
        server_cpus: args.server_cpus.clone(),
        client_cpus: args.client_cpus.clone(),
        request,
        concurrency: args.concurrency,
        num_requests: args.requests,
        duration: args.duration,
        connection: args.connection,
        rate: args.rate,
        shard: args.shard,
        concurrency_levels: args.sweep.clone(),
        slo: args.slo.clone(),
        max_time: args.max_time,
        profile: args.profiling.fields(),
    };
    let kind = match (&args.sweep, args.profile, args.find_max) {
        (Some(_), _, _) => Kind::Sweep,
        (None, _, true) => Kind::FindMax,
        (None, true, false) => Kind::Profile,
        (None, false, false) => Kind::Run,
    };
    let mut plan = fields
        .plan(kind, &Limits::of_this_machine(), &Policy::SHELL)
        .map_err(wrong_flag)?;
    plan.benchmark.load.progress = Some(Arc::new(AtomicU64::new(0)));
    Ok(plan)
}

fn unescape(s: &str) -> String {
    s.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")
}

/// A progress bar fed by the load generator's counter; it appears only once a run has lasted a
/// second, so short runs print nothing but their result.
struct Progress {
    counter: Option<Arc<AtomicU64>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(load: &LoadConfig) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let (Some(counter), Some(total)) = (load.progress.clone(), load.own_requests()) else {
            // Time-bounded: the bar shows seconds instead of requests.
            return Progress::by_time(load.duration, done);
        };
        let thread = {
            let (counter, done) = (counter.clone(), done.clone());
            std::thread::spawn(move || show(&done, total, "requests", || counter.load(Ordering::Relaxed)))
        };
        Progress {
            counter: Some(counter),
            done,
            thread: Some(thread),
        }
    }

    fn by_time(duration: Option<Duration>, done: Arc<AtomicBool>) -> Progress {
        let thread = duration.map(|d| {
            let done = done.clone();
            let start = std::time::Instant::now();
            std::thread::spawn(move || show(&done, d.as_millis() as u64, "ms", || start.elapsed().as_millis() as u64))
        });
        Progress {
            counter: None,
            done,
            thread,
        }
    }

    /// Between sweep levels: the counter starts over.
    fn reset(&self) {
        if let Some(c) = &self.counter {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn show(done: &AtomicBool, total: u64, unit: &str, position: impl Fn() -> u64) {
    let tick = Duration::from_millis(100);
    for _ in 0..10 {
        if done.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(tick);
    }
    let bar = ProgressBar::new(total);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}}");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    while !done.load(Ordering::Relaxed) {
        bar.set_position(position().min(total));
        std::thread::sleep(tick);
    }
    bar.finish_and_clear();
}
