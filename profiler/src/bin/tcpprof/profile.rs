//! `tcpprof profile`: a running process (`-p PID`) for a while, or a command it starts
//! (`-- CMD ARGS`) until it exits, and where its time went.
use crate::dashboard::LiveArgs;
use crate::interrupt;
use crate::profiling::{ProfileArgs, wrong_flag};
use anyhow::{Context, Result, ensure};
use clap::Args;
use profiler::dashboard::Pace;
use profiler::launch::{Gated, shell_words};
use profiler::live::{End, Live};
use profiler::metrics::Exporter;
use profiler::printer::Format;
use profiler::{Mode, ProfileOptions, Requested, Session, plan, printer};
use std::sync::mpsc;
use std::time::Duration;

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
    /// attach, updated each interval: 1 s unless --interval).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    live: LiveArgs,
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
    let mut exporter = crate::serve_metrics(args.listen)?;
    let mut dashboard = args
        .live
        .open(Pace::Profile, || exporter.get_or_insert_with(Exporter::new).clone())?;
    let mut lines = interval.map(|_| printer::Lines(format));
    let mut live = Live::new();
    live.interval = interval.unwrap_or(live.interval);
    if let Some(lines) = &mut lines {
        live.add(lines);
    }
    if let Some(exporter) = &mut exporter {
        live.add(exporter);
    }
    if let Some(d) = &mut dashboard {
        live.add(&mut d.dashboard);
    }
    live.watching(session.pids());
    // No load here: nothing comes on the channel, and it never hangs up.
    let (_no_load, events) = mpsc::channel();
    interrupt::catch();
    let end = live.run(Some(&mut session), &events, duration, || {
        if let Some(signal) = interrupt::caught() {
            return Some(End::Signal(signal));
        }
        let exited = command.as_mut().is_some_and(|c| c.has_exited().is_some());
        exited.then_some(End::Exited)
    });
    interrupt::release();
    let interrupted = match end {
        End::Signal(signal) => Some(signal),
        _ => None,
    };
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
    if let Some(d) = &dashboard {
        d.finish(&report);
    }
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
