//! `tcpprof profile`: a running process (`-p PID`) for a while, or a command it starts
//! (`-- CMD ARGS`) until it exits, and where its time went.
use crate::interrupt;
use crate::profiling::{ProfileArgs, wrong_flag};
use anyhow::{Context, Result, ensure};
use clap::Args;
use profiler::launch::{Gated, shell_words};
use profiler::printer::Format;
use profiler::{Mode, ProfileOptions, Requested, Session, plan, printer};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ProfileCmd {
    /// The process to watch (all its threads).
    #[arg(short, long, required_unless_present = "command", conflicts_with = "command")]
    pid: Option<u32>,
    /// How long to watch, in seconds [default: 5 with --pid; a command until it exits].
    #[arg(short, long)]
    duration: Option<f64>,
    #[command(flatten)]
    profiling: ProfileArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Print the breakdown of each interval of this many seconds as the window goes (a JSON
    /// line each with --json), counts since the last interval.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// Serve Prometheus metrics at http://ADDR/metrics while the window lasts (counts since
    /// attach, updated every second).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// A command to start and profile from its first instruction until it exits (or --duration
    /// ends, when it is stopped); after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// With --pid and no --duration.
const DEFAULT_SECONDS: f64 = 5.0;

pub fn run(args: ProfileCmd) -> Result<()> {
    let duration = match args.duration {
        Some(d) => Some(plan::seconds("duration_ms", d).map_err(wrong_flag)?),
        None if args.command.is_empty() => Some(Duration::from_secs_f64(DEFAULT_SECONDS)),
        None => None,
    };
    let interval = args.interval.map(plan::interval).transpose().map_err(wrong_flag)?;
    let format = Format::json_if(args.json);
    args.profiling.check_outputs()?;
    let options = args
        .profiling
        .fields()
        .options(ProfileOptions::DEFAULT_FREQUENCY_HZ)
        .map_err(wrong_flag)?;
    ensure!(
        options.mode != Requested::Only(Mode::Userspace),
        "userspace mode is bench-server timing its own steps, so it serves `bench --profile --mode userspace`; a \
         process is profiled in kprobe, tracepoint or sampling mode"
    );
    let (mut session, mut command, title) = match args.pid {
        Some(pid) => {
            ensure!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "no process with pid {pid}"
            );
            let pids = options.targets(&[pid]);
            // Named now: the process may be gone by the time its flame graph is drawn.
            let title = format!("{} (pid {pid})", profiler::procfs::comm(pid).unwrap_or_default());
            let session = Session::attach(&pids, &options).with_context(|| format!("profiling pid {pid}"))?;
            eprintln!(
                "profiling pids {pids:?} for {} s (mode {})",
                seconds(duration),
                session.mode()
            );
            (session, None, title)
        }
        None => {
            ensure!(
                !options.children,
                "--children follows the workers of a running server (-p); a command's processes are not known \
                 before it starts them"
            );
            let exe = std::env::current_exe().context("locating the tcpprof binary")?;
            let mut gated = Gated::start(&exe, &args.command)?;
            let shown = shell_words(&args.command);
            let session = Session::attach_before_exec(gated.pid(), &gated.program, &options)
                .with_context(|| format!("profiling `{shown}`"))?;
            gated.release()?;
            eprintln!(
                "profiling `{shown}` (pid {}) {} (mode {})",
                gated.pid(),
                match duration {
                    Some(d) => format!("until it exits, at most {} s", d.as_secs_f64()),
                    None => "until it exits".into(),
                },
                session.mode()
            );
            let title = format!("{shown} (pid {})", gated.pid());
            (session, Some(gated), title)
        }
    };
    let exporter = crate::serve_metrics(args.listen)?;
    let live = LiveOutput {
        interval,
        format,
        exporter: exporter.as_ref(),
    };
    let interrupted = wait(&mut session, duration, command.as_mut(), &live);
    // A command still running when the window ends is stopped; its exit is the window's end.
    let status = command.as_mut().map(|c| {
        let status = c.has_exited();
        c.stop();
        status
    });
    let mut report = session.finish(None)?;
    let profile = report.profile.as_mut().context("a session's report has a profile")?;
    profile.partial = interrupted.is_some();
    let written = args.profiling.write_stacks(profile, &title);
    print!("{}", printer::profile(&report, format));
    if let Some(status) = status {
        match status {
            Some(status) => eprintln!("the command exited ({status})"),
            None if interrupted.is_some() => eprintln!("the command was stopped with the interrupted window"),
            None => eprintln!("the command was stopped at the window's end"),
        }
    }
    // Gone before an exit that runs no destructors: the command, and a perf map it was made to write.
    drop(command);
    if let Some(signal) = interrupted {
        if let Err(e) = written {
            eprintln!("Error: {e:#}");
        }
        interrupt::exit(signal);
    }
    written
}

fn seconds(duration: Option<Duration>) -> f64 {
    duration.map_or(DEFAULT_SECONDS, |d| d.as_secs_f64())
}

/// What `profile` shows while its window lasts.
struct LiveOutput<'a> {
    /// Print each interval's breakdown as it ends.
    interval: Option<Duration>,
    format: Format,
    /// Keep the metrics' totals current.
    exporter: Option<&'a profiler::metrics::Exporter>,
}

/// Waits out the window (`None`: until `command` exits), or until `command` exits, or SIGINT or
/// SIGTERM (returns the signal then), reading the targets' mappings again now and then so that
/// one that exits mid-window still gets its stacks named, and keeping `live` up to date.
fn wait(
    session: &mut Session,
    window: Option<Duration>,
    mut command: Option<&mut Gated>,
    live: &LiveOutput,
) -> Option<i32> {
    let (interval, format) = (live.interval, live.format);
    interrupt::catch();
    let start = Instant::now();
    let (mut refreshed, mut exported) = (start, start);
    // The totals at the last interval's end, and when the next one ends.
    let mut last = interval.and_then(|_| session.totals().ok()).map(|t| (t, start));
    let stopped = loop {
        if let Some(signal) = interrupt::caught() {
            break Some(signal);
        }
        if command.as_mut().is_some_and(|c| c.has_exited().is_some()) {
            break None;
        }
        let left = window.map_or(Duration::MAX, |w| w.saturating_sub(start.elapsed()));
        if left.is_zero() {
            break None;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
        if let Some(length) = interval
            && last.as_ref().is_some_and(|(_, began)| began.elapsed() >= length)
        {
            print_interval(session, &mut last, start, format);
        }
        if exported.elapsed() >= Duration::from_secs(1) {
            if let (Some(exporter), Ok(totals)) = (live.exporter, session.totals()) {
                exporter.update(|s| s.totals = Some(totals));
            }
            exported = Instant::now();
        }
        // Soon after the start (a command has just mapped its program and libraries), then
        // every second.
        let every = (start.elapsed() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        if refreshed.elapsed() >= every {
            session.refresh();
            refreshed = Instant::now();
        }
    };
    // The last interval, cut short by the window's end or a signal.
    if last
        .as_ref()
        .is_some_and(|(_, began)| began.elapsed() >= Duration::from_millis(50))
    {
        print_interval(session, &mut last, start, format);
    }
    interrupt::release();
    stopped
}

/// Prints the breakdown of what was counted since `last` (the totals then, and when), and
/// moves `last` to now.
fn print_interval(session: &Session, last: &mut Option<(profiler::Totals, Instant)>, start: Instant, format: Format) {
    let (Some((before, began)), Ok(now)) = (last.as_mut(), session.totals()) else {
        return;
    };
    let ended = Instant::now();
    if let Ok(b) = session.breakdown_since(before, &now, ended - *began) {
        let end = ended - start;
        print!("{}", printer::breakdown_interval(end, &b, format));
    }
    (*before, *began) = (now, ended);
}
