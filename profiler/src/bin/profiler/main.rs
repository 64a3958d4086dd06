mod bench;

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use profiler::{Breakdown, Requested, Session, report, workload};
use std::time::{Duration, Instant};

/// tcpprof's profiler: where a TCP server's time goes, from inside the kernel.
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
        /// auto, kprobe or tracepoint.
        #[arg(long, default_value = "auto")]
        mode: Requested,
    },
    /// Profile a running process (all its threads) for a while and print where its time went.
    Profile {
        #[arg(long)]
        pid: u32,
        /// How long to watch, in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// auto (kprobe, then tracepoint), kprobe or tracepoint.
        #[arg(long, default_value = "auto")]
        mode: Requested,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also report the eBPF programs' own run time (BPF run-time statistics).
        #[arg(long)]
        bpf_stats: bool,
        /// Also profile the process's children (nginx's or a prefork server's workers).
        #[arg(long)]
        children: bool,
    },
    /// Load a bench-server (or a loopback target) and print throughput and latency; with
    /// --profile, also where the server's time went.
    Bench(Box<bench::BenchArgs>),
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
            let exe = std::env::current_exe().context("locating the profiler binary")?;
            let start = Instant::now();
            let (totals, session) = workload::profile(&exe, connections, messages, mode)?;
            let expected = workload::expected(connections, messages);
            println!(
                "workload: {connections} connections x {messages} messages of {} bytes, making {} accept, \
                 {} read and {} write calls itself",
                workload::MESSAGE,
                expected.accept,
                expected.read,
                expected.write
            );
            let breakdown = Breakdown::new(&totals, session.mode, session.fallback_reasons, start.elapsed());
            print!("{}", report::table(&breakdown));
        }
        Command::Profile {
            pid,
            duration,
            mode,
            json,
            bpf_stats,
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
                pids.extend(profiler::attach::child_processes(pid));
            }
            let session = Session::attach_processes(&pids, mode).with_context(|| format!("profiling pid {pid}"))?;
            eprintln!("profiling pids {pids:?} for {duration} s (mode {})", session.mode);
            let stats = bpf_stats.then(profiler::totals::enable_run_stats).transpose()?;
            let start = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(duration));
            let totals = session.read_totals()?;
            let mut breakdown =
                Breakdown::new(&totals, session.mode, session.fallback_reasons.clone(), start.elapsed());
            breakdown.programs = stats.map(|_fd| session.program_costs());
            if json {
                println!("{}", serde_json::to_string(&breakdown)?);
            } else {
                print!("{}", report::table(&breakdown));
            }
        }
        Command::Bench(args) => bench::run(*args)?,
        Command::Workload { connections, messages } => workload::run_as_child(connections, messages)?,
    }
    Ok(())
}
