//! `cargo xtask`: the only place that knows how to build eBPF and where toolchains come from.
mod bench;
mod deb;
mod fuzz;
mod setup;
mod soak;
mod vm;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use setup::{is_root, run, setup};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(about = "tcpprof's build, run and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and loading the eBPF programs needs (idempotent).
    Setup,
    /// Build in release mode and run tcpprof (as root, through sudo when needed).
    /// With no arguments: a profiled benchmark of the epoll bench-server.
    Run {
        /// Arguments for the tcpprof binary, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, lints, every test (the eBPF tests need root), a short fuzz run, and the
    /// Debian package installed, tried and removed.
    Test,
    /// The Debian package: target/debian/tcpprof_VERSION_ARCH.deb (tcpprof, bench-server, man
    /// pages, bash, zsh and fish completions).
    Deb,
    /// The eBPF tests in kprobe and tracepoint mode on a Debian kernel with kprobes, under QEMU.
    VmTest,
    /// Benchmarks printed as tables beside a peer tool.
    Bench {
        #[arg(value_enum)]
        name: BenchName,
    },
    /// One node fed random valid and invalid messages, benchmarks among them, for N minutes:
    /// messages, replies, errors and the node's memory at the start and the end.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Every cargo-fuzz target in fuzz/ (nightly), each from a scratch copy of its seed corpus;
    /// prints what libFuzzer did and fails on a crash.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchName {
    /// Our load generator vs wrk on nginx and vs redis-benchmark on redis-server (SET, GET).
    Loadgen,
    /// Server throughput with the profiler attached vs not, beside bpftrace's raw_syscalls
    /// accounting; the programs' own cost per event.
    Overhead,
    /// Every server model from 1 to 10,000 connections, and each one's breakdown.
    Models,
    /// 100,000 connections held for 10 s: errors, server and client memory.
    C100k,
    /// `tcpprof compare`'s false positives over 20 A/A pairs, beside the level it states.
    Compare,
    /// A run's throughput and p99 with fifty dashboard viewers (--live) and with none.
    Live,
    /// The 64-byte ECHO load's breakdown in tracepoint mode (its tracing cost taken out) beside
    /// sampling mode's, runs alternating.
    Tracing,
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup(),
        Task::Run { args } => {
            setup()?;
            run_profiler(args)
        }
        Task::Test => {
            setup()?;
            test()
        }
        Task::Deb => {
            setup()?;
            build_release()?;
            deb::build(&workspace_root()).map(drop)
        }
        Task::VmTest => {
            setup()?;
            vm::vm_test(&workspace_root())
        }
        Task::Bench { name } => {
            setup()?;
            build_release()?;
            match name {
                BenchName::Loadgen => bench::loadgen(&workspace_root()),
                BenchName::Overhead => bench::overhead(),
                BenchName::Models => bench::models(&workspace_root()),
                BenchName::C100k => bench::c100k(&workspace_root()),
                BenchName::Tracing => bench::tracing(&workspace_root()),
                BenchName::Live => bench::live(&workspace_root()),
                BenchName::Compare => bench::compare_false_positives(&workspace_root()),
            }
        }
        Task::Fuzz { seconds } => {
            setup()?;
            fuzz::fuzz(&workspace_root(), seconds)
        }
        Task::Soak { minutes } => {
            setup()?;
            build_release()?;
            soak::soak(&workspace_root(), minutes)
        }
    }
}

/// The tcpprof, bench-server and node binaries, optimised, for runs and benchmarks.
fn build_release() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--quiet",
        "--package",
        "profiler",
        "--package",
        "bench",
        "--package",
        "node",
    ]))
}

fn run_profiler(mut args: Vec<String>) -> Result<()> {
    if args.is_empty() {
        // The main job: a profiled benchmark of our own epoll server.
        args.extend(["bench", "--profile", "--stacks", "-c", "10", "-n", "100000"].map(String::from));
    }
    build_release()?;
    let profiler = workspace_root().join("target/release/tcpprof");
    let mut cmd = if is_root() {
        Command::new(&profiler)
    } else {
        eprintln!("xtask: loading eBPF needs root; running the profiler through sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg("--").arg(&profiler);
        sudo
    };
    run(cmd.args(&args))
}

/// Debian packages the tests start: redis-server under redis-benchmark, nginx under wrk,
/// Node.js and a JVM with their perf maps, Chromium to render the HTML report and (driven by
/// chromedriver) the live dashboard, Prometheus to
/// scrape our metrics, bpftool to count what our programs leave in the kernel, iproute2 and iptables
/// for the test hosts in network namespaces and the faults between them. (CPython 3.12+ for the Python
/// tests is not in Debian 12: this machine image has it under pyenv, where the tests find it.)
const TEST_PEERS: &[&str] = &[
    "redis-server",
    "redis-tools",
    "nginx-light",
    "wrk",
    "nodejs",
    "openjdk-17-jdk-headless",
    "chromium",
    "chromium-driver",
    "prometheus",
    "bpftool",
    "iproute2",
    "iptables",
];

fn test() -> Result<()> {
    if !is_root() {
        let hint = "the eBPF tests load programs into the kernel: run `sudo -E cargo xtask test`";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("not root under CI=true; {hint}");
        }
        eprintln!("xtask: warning: not root, so the eBPF tests will fail; {hint}");
    }
    // Servers and load tools nobody here wrote, which the tests start and profile.
    setup::apt_install(TEST_PEERS)?;
    let nginx = setup::source_nginx(&workspace_root())?;
    eprintln!("xtask: cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("xtask: cargo clippy");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: cargo test");
    // Default members: every crate but profiler-ebpf, which only builds for the BPF target.
    run(cargo()
        .args(["test", "--", "--test-threads=1"])
        .env("TCPPROF_SOURCE_NGINX", &nginx))?;
    fuzz::fuzz(&workspace_root(), 10)?;
    eprintln!("xtask: the Debian package");
    build_release()?;
    let package = deb::build(&workspace_root())?;
    deb::install_and_try(&package)?;
    // The tests assert the counts; this shows them, and the attach mode, in the log.
    eprintln!("xtask: tcpprof demo");
    run(Command::new(workspace_root().join("target/debug/tcpprof")).args([
        "demo",
        "--connections",
        "10",
        "--messages",
        "10",
    ]))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}
