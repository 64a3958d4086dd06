mod bench;
mod interrupt;
mod outputs;
mod profile;
mod profiling;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use profiler::{ProfileOptions, Requested, printer, workload};

/// Loads a TCP server and shows, from inside the kernel, where its time goes and why it stops
/// scaling.
#[derive(Parser)]
#[command(name = "tcpprof", version)]
struct Cli {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
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
    /// Profile a running process (all its threads) for a while, or a command from its start
    /// until it exits, and print where its time went. Ctrl-C ends the window early and still
    /// prints it.
    Profile(Box<profile::ProfileCmd>),
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
    /// Print a completion script for SHELL (bash, zsh, fish, elvish or powershell), e.g.
    /// `tcpprof completions bash > /usr/share/bash-completion/completions/tcpprof`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `tcpprof man > tcpprof.1; man -l tcpprof.1`; with a
    /// command, its own page (tcpprof-bench(1)).
    Man { command: Option<String> },
    /// A command `profile -- CMD` starts: waits until the profiler has attached, then runs it.
    #[command(hide = true)]
    ExecGated {
        #[arg(last = true)]
        command: Vec<String>,
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
    match Cli::parse().action {
        Action::Demo {
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
            let expected = workload::own_calls(connections, messages);
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
        Action::Profile(args) => profile::run(*args)?,
        Action::Bench(args) => bench::run(*args)?,
        Action::Merge { logs, json, hgrm } => {
            let (union, intervals) = profiler::hlog::merge(&logs)?;
            print!(
                "{}",
                printer::merged(&union, logs.len(), intervals, printer::Format::json_if(json))
            );
            if let Some(path) = hgrm {
                std::fs::write(&path, printer::hgrm(&union)).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Action::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tcpprof", &mut std::io::stdout());
        }
        Action::Man { command } => {
            let cli = Cli::command();
            let page = match command {
                None => cli,
                Some(name) => {
                    let found = cli.get_subcommands().find(|c| c.get_name() == name && !c.is_hide_set());
                    let command = found.with_context(|| format!("no command {name:?}: see tcpprof --help"))?;
                    command
                        .clone()
                        .name(format!("tcpprof-{name}"))
                        .version(env!("CARGO_PKG_VERSION"))
                }
            };
            let mut roff = Vec::new();
            clap_mangen::Man::new(page)
                .render(&mut roff)
                .context("writing the man page")?;
            std::io::Write::write_all(&mut std::io::stdout(), &roff).context("printing the man page")?;
        }
        Action::ExecGated { command } => return Err(profiler::launch::exec_gated(&command)),
        Action::Workload { connections, messages } => workload::run_as_child(connections, messages)?,
    }
    Ok(())
}

/// The /metrics endpoint of `--listen ADDR`, if asked for, and where it is.
fn serve_metrics(listen: Option<std::net::SocketAddr>) -> Result<Option<profiler::metrics::Exporter>> {
    let exporter = listen.map(profiler::metrics::Exporter::serve).transpose()?;
    if let Some(e) = &exporter {
        eprintln!("metrics: http://{}/metrics", e.addr());
    }
    Ok(exporter)
}
