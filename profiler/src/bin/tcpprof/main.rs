mod bench;
mod profiling;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use profiler::{Mode, ProfileOptions, Requested, Session, printer, workload};
use profiling::ProfileArgs;
use std::sync::atomic::{AtomicI32, Ordering};
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
        #[arg(long)]
        pid: u32,
        /// How long to watch, in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[command(flatten)]
        profiling: ProfileArgs,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also profile the process's children (nginx's or a prefork server's workers).
        #[arg(long)]
        children: bool,
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
        } => {
            ensure!(
                duration.is_finite() && duration > 0.0 && duration <= 86_400.0,
                "--duration must be between 0 and 86400 seconds, got {duration}"
            );
            ensure!(
                std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "no process with pid {pid}"
            );
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
            let interrupted = wait(&mut session, Duration::from_secs_f64(duration));
            let mut report = session.finish(None)?;
            let profile = report.profile.as_mut().context("a session's report has a profile")?;
            profile.partial = interrupted.is_some();
            let written = profiling.write_stacks(profile, &title);
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", printer::report_table(&report));
            }
            if let Some(signal) = interrupted {
                if let Err(e) = written {
                    eprintln!("Error: {e:#}");
                }
                // The shell's convention for a command ended by a signal.
                std::process::exit(128 + signal);
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

/// The signal that asked us to stop, or 0.
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn request_stop(signal: libc::c_int) {
    STOP.store(signal, Ordering::Relaxed);
}

/// Waits out the window, or until SIGINT or SIGTERM (returns the signal then), reading the
/// targets' mappings again every second so that one that exits mid-window still gets its stacks
/// named.
fn wait(session: &mut Session, window: Duration) -> Option<i32> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
    }
    let start = Instant::now();
    let mut refreshed = start;
    let stopped = loop {
        match STOP.load(Ordering::Relaxed) {
            0 => {}
            signal => break Some(signal),
        }
        let left = window.saturating_sub(start.elapsed());
        if left.is_zero() {
            break None;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
        if refreshed.elapsed() >= Duration::from_secs(1) {
            session.refresh();
            refreshed = Instant::now();
        }
    };
    // A second Ctrl-C, while the stacks are named and printed, stops us at once.
    // SAFETY: restoring the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    stopped
}
