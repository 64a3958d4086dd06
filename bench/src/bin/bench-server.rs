//! `bench-server --model epoll --addr 127.0.0.1:0 [--cpus 0,1]`: serves the benchmark line
//! protocol until killed. Prints exactly one line, `listening on ADDR`, once it accepts
//! connections, so that a parent can start it on port 0 and learn the port (one line and one
//! port for every model, `epoll-workers` and `prefork` included).
//!
//! Models (`--model`): iterative, threads, select, poll, epoll, epoll-et, epoll-workers,
//! prefork, async; see `bench::server`. With `prefork`, the process started is the parent of
//! the worker processes that serve.

use anyhow::{Context, Result};
use bench::server::Model;
use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;

#[derive(Parser, Debug)]
#[command(about = "Serves the benchmark line protocol (PING, ECHO, WAIT, BURN, STREAM).")]
struct Args {
    /// Concurrency model: iterative, threads, select, poll, epoll, epoll-et, epoll-workers,
    /// prefork or async.
    #[arg(long, default_value_t = Model::Epoll)]
    model: Model,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Pin the server (every thread it starts) to these CPUs, e.g. `0` or `0,1`.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Listen backlog (accept queue length); the kernel caps it at net.core.somaxconn.
    #[arg(long, default_value_t = bench::server::DEFAULT_BACKLOG, value_parser = clap::value_parser!(u32).range(1..=i64::from(bench::server::MAX_BACKLOG)))]
    backlog: u32,
    /// Listen with SO_REUSEPORT, so that several bench-servers share one port and its
    /// connections (more than one process's descriptor limit holds).
    #[arg(long)]
    reuseport: bool,
    /// Answer `reset` (start timing our own accept, read, process and write steps: userspace
    /// profiling mode) and `stats` lines on stdin.
    #[arg(long)]
    self_timing: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !(args.self_timing && args.model.forks_workers()),
        "--self-timing needs a single-process model; {} serves from worker processes",
        args.model
    );
    // Not fatal: the server still works, just for fewer connections.
    if let Err(e) = bench::raise_nofile_limit() {
        eprintln!("warning: {e:#}");
    }
    if !args.cpus.is_empty() {
        bench::sys::pin_current_thread(&args.cpus)?;
    }
    // Before any thread exists: prefork forks its workers from this (single) thread.
    let listener = args.model.bind(args.addr, args.backlog, args.reuseport)?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {addr}").context("writing the listening line")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);
    if args.self_timing {
        std::thread::Builder::new()
            .name("self-timing".into())
            .spawn(bench::server::selftime::serve_control)
            .context("starting the self-timing control thread")?;
    }
    args.model
        .serve(listener, args.backlog)
        .with_context(|| format!("{} server on {addr}", args.model))
}
