mod bench;
mod interrupt;
mod outputs;
mod profiling;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use profiler::{Mode, ProfileOptions, Requested, Session, printer, workload};
use profiling::ProfileArgs;
use std::time::{Duration, Instant};

/// tcpprof: loads a TCP server and shows, from inside the kernel, where its time goes and why it
/// stops scaling.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Profile a built-in loopback workload with known syscall counts and print what was counted.
    Demo {
        #[arg(long, default_value_t = 100)]
        connections: u64,
        #[arg(long, default_value_t = 100)]
        messages: u64,
        /// auto, kprobe, tracepoint or sampling.
        #[arg(long, default_value = "auto")]
        mode: Requested,
    },
    /// Profile a running process (all its threads) for a while and print where its time went.
    /// Ctrl-C ends the window early and still prints it.
    Profile {
        /// The process to watch (all its threads).
        #[arg(short, long)]
        pid: u32,
        /// How long to watch, in seconds.
        #[arg(short, long, default_value_t = 5.0)]
        duration: f64,
        #[command(flatten)]
        profiling: ProfileArgs,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also profile the process's children (nginx's or a prefork server's workers).
        #[arg(long)]
        children: bool,
        /// Print the breakdown of each interval of this many seconds as the window goes (a JSON
        /// line each with --json), counts since the last interval.
        #[arg(long, value_name = "SECS")]
        interval: Option<f64>,
        /// Serve Prometheus metrics at http://ADDR/metrics while the window lasts (counts since
        /// attach, updated every second).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Load a bench-server (or a loopback target) and print throughput and latency; with
    /// --profile, also where the server's time went.
    Bench(Box<bench::BenchArgs>),
    /// Add up HdrHistogram interval logs (several agents' --hlog files) exactly and print the
    /// union's count and percentiles.
    Merge {
        #[arg(required = true)]
        logs: Vec<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
        /// Also write the union's percentile distribution here (.hgrm).
        #[arg(long, value_name = "FILE")]
        hgrm: Option<std::path::PathBuf>,
    },
    /// The workload `demo` profiles (run as its child process).
    #[command(hide = true)]
    Workload {
        #[arg(long)]
        connections: u64,
        #[arg(long)]
        messages: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo {
            connections,
            messages,
            mode,
        } => {
            let exe = std::env::current_exe().context("locating the tcpprof binary")?;
            let options = ProfileOptions {
                mode,
                ..ProfileOptions::default()
            };
            let report = workload::profile(&exe, connections, messages, &options)?;
            let expected = workload::expected(connections, messages);
            println!(
                "workload: {connections} connections x {messages} messages of {} bytes, making {} accept, \
                 {} read and {} write calls itself",
                workload::MESSAGE,
                expected.accept,
                expected.read,
                expected.write
            );
            print!("{}", printer::report_table(&report));
        }
        Command::Profile {
            pid,
            duration,
            profiling,
            json,
            children,
            interval,
            listen,
        } => {
            ensure!(
                duration.is_finite() && duration > 0.0 && duration <= 86_400.0,
                "--duration must be between 0 and 86400 seconds, got {duration}"
            );
            ensure!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "no process with pid {pid}"
            );
            profiling.check_outputs()?;
            let mut pids = vec![pid];
            if children {
                pids.extend(profiler::procfs::children(pid));
            }
            let options = profiling.options(ProfileOptions::DEFAULT_FREQUENCY_HZ);
            ensure!(
                options.mode != Requested::Only(Mode::Userspace),
                "userspace mode is bench-server timing its own steps, so it serves `bench --profile --mode \
                 userspace`; a running process is profiled in kprobe, tracepoint or sampling mode"
            );
            // Named now: the process may be gone by the time its flame graph is drawn.
            let title = format!("{} (pid {pid})", profiler::procfs::comm(pid).unwrap_or_default());
            let mut session = Session::attach(&pids, &options).with_context(|| format!("profiling pid {pid}"))?;
            eprintln!("profiling pids {pids:?} for {duration} s (mode {})", session.mode());
            let interval = match interval {
                Some(s) if !(0.1..=3600.0).contains(&s) => {
                    anyhow::bail!("--interval must be between 0.1 and 3600 seconds, got {s}")
                }
                s => s.map(Duration::from_secs_f64),
            };
            let exporter = serve_metrics(listen)?;
            let live = LiveOutput {
                interval,
                json,
                exporter: exporter.as_ref(),
            };
            let interrupted = wait(&mut session, Duration::from_secs_f64(duration), &live);
            let mut report = session.finish(None)?;
            let profile = report.profile.as_mut().context("a session's report has a profile")?;
            profile.partial = interrupted.is_some();
            let written = profiling.write_stacks(profile, &title);
            print!("{}", printer::report(&report, json)?);
            if let Some(signal) = interrupted {
                if let Err(e) = written {
                    eprintln!("Error: {e:#}");
                }
                interrupt::exit(signal);
            }
            written?;
        }
        Command::Bench(args) => bench::run(*args)?,
        Command::Merge { logs, json, hgrm } => {
            let (union, intervals) = profiler::hlog::merge(&logs)?;
            if json {
                println!("{}", printer::merged_json(&union, logs.len(), intervals));
            } else {
                print!("{}", printer::merged_table(&union, logs.len(), intervals));
            }
            if let Some(path) = hgrm {
                std::fs::write(&path, printer::hgrm(&union)).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Workload { connections, messages } => workload::run_as_child(connections, messages)?,
    }
    Ok(())
}

/// Prints the breakdown of what was counted since `last` (the totals then, and when), and
/// moves `last` to now.
fn print_interval(session: &Session, last: &mut Option<(profiler::Totals, Instant)>, start: Instant, json: bool) {
    let (Some((before, began)), Ok(now)) = (last.as_mut(), session.totals()) else {
        return;
    };
    let ended = Instant::now();
    if let Ok(b) = session.breakdown_since(before, &now, ended - *began) {
        let end = ended - start;
        if json {
            println!("{}", printer::breakdown_json(end, &b));
        } else {
            println!("{}", printer::breakdown_line(end, &b));
        }
    }
    (*before, *began) = (now, ended);
}

/// The /metrics endpoint of `--listen ADDR`, if asked for, and where it is.
fn serve_metrics(listen: Option<std::net::SocketAddr>) -> Result<Option<profiler::metrics::Exporter>> {
    let exporter = listen.map(profiler::metrics::Exporter::serve).transpose()?;
    if let Some(e) = &exporter {
        eprintln!("metrics: http://{}/metrics", e.addr());
    }
    Ok(exporter)
}

/// What `profile` shows while its window lasts.
struct LiveOutput<'a> {
    /// Print each interval's breakdown as it ends (a JSON line with `json`).
    interval: Option<Duration>,
    json: bool,
    /// Keep the metrics' totals current.
    exporter: Option<&'a profiler::metrics::Exporter>,
}

/// Waits out the window, or until SIGINT or SIGTERM (returns the signal then), reading the
/// targets' mappings again every second so that one that exits mid-window still gets its stacks
/// named, and keeping `live` up to date.
fn wait(session: &mut Session, window: Duration, live: &LiveOutput) -> Option<i32> {
    let (interval, json) = (live.interval, live.json);
    interrupt::catch();
    let start = Instant::now();
    let mut refreshed = start;
    // The totals at the last interval's end, and when the next one ends.
    let mut last = interval.and_then(|_| session.totals().ok()).map(|t| (t, start));
    let stopped = loop {
        if let Some(signal) = interrupt::caught() {
            break Some(signal);
        }
        let left = window.saturating_sub(start.elapsed());
        if left.is_zero() {
            break None;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
        if let Some(length) = interval
            && last.as_ref().is_some_and(|(_, began)| began.elapsed() >= length)
        {
            print_interval(session, &mut last, start, json);
        }
        if refreshed.elapsed() >= Duration::from_secs(1) {
            if let (Some(exporter), Ok(totals)) = (live.exporter, session.totals()) {
                exporter.update(|s| s.totals = Some(totals));
            }
            session.refresh();
            refreshed = Instant::now();
        }
    };
    // The last interval, cut short by the window's end or a signal.
    if last
        .as_ref()
        .is_some_and(|(_, began)| began.elapsed() >= Duration::from_millis(50))
    {
        print_interval(session, &mut last, start, json);
    }
    interrupt::release();
    stopped
}
