use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use profiler::{Session, Totals, workload};
use std::time::Duration;

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
    },
    /// Profile a running process for a while and print its syscalls per class.
    Profile {
        /// The process to profile (all its threads).
        #[arg(long)]
        pid: u32,
        /// How long to watch, in seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
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
        } => {
            let exe = std::env::current_exe().context("locating the profiler binary")?;
            let (totals, mode) = workload::profile(&exe, connections, messages)?;
            let expected = workload::expected(connections, messages);
            println!("mode: {mode} (raw_syscalls sys_enter/sys_exit)");
            println!(
                "workload: {connections} connections x {messages} messages of {} bytes; it makes \
                 {} accept, {} read, {} write calls itself",
                workload::MESSAGE,
                expected.accept,
                expected.read,
                expected.write
            );
            print_table(&totals);
        }
        Command::Profile { pid, duration } => {
            anyhow::ensure!(
                duration.is_finite() && duration > 0.0 && duration <= 86_400.0,
                "--duration must be between 0 and 86400 seconds, got {duration}"
            );
            let session = Session::attach(pid).with_context(|| format!("profiling pid {pid}"))?;
            eprintln!(
                "profiling pid {pid} for {duration} s (mode {})",
                session.mode
            );
            std::thread::sleep(Duration::from_secs_f64(duration));
            print_table(&session.read_totals()?);
        }
        Command::Workload {
            connections,
            messages,
        } => workload::run_as_child(connections, messages)?,
    }
    Ok(())
}

fn print_table(totals: &Totals) {
    println!(
        "{:<8} {:>10} {:>8} {:>14} {:>12}",
        "class", "calls", "errors", "in-syscall ms", "bytes"
    );
    for class in profiler_common::SyscallClass::ALL {
        let t = totals.class(class);
        println!(
            "{:<8} {:>10} {:>8} {:>14.3} {:>12}",
            class.name(),
            t.calls,
            t.errors,
            t.total_ns as f64 / 1e6,
            t.bytes
        );
    }
}
