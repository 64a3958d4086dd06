mod bench;
mod compare;
mod dashboard;
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
    /// Compare two saved runs (bench --save FILE, or --json > FILE): every figure's change, marked
    /// significant only beyond the noise; --fail-on rules exit 1 for CI.
    Compare(Box<compare::CompareArgs>),
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
    Man {
        command: Option<String>,
        /// Write every page into DIR instead (tcpprof.1 and a tcpprof-COMMAND.1 per command).
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<std::path::PathBuf>,
    },
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
        Action::Compare(args) => {
            if !compare::run(*args)? {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(1);
            }
        }
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
        Action::Man { command, dir } => match dir {
            Some(dir) => {
                for (name, page) in man_pages() {
                    let path = dir.join(format!("{name}.1"));
                    std::fs::write(&path, render(page)?).with_context(|| format!("writing {}", path.display()))?;
                }
            }
            None => {
                let (_, page) = man_pages()
                    .into_iter()
                    .find(|(name, _)| command.as_ref().is_none_or(|c| *name == format!("tcpprof-{c}")))
                    .with_context(|| format!("no command {:?}: see tcpprof --help", command.unwrap_or_default()))?;
                std::io::Write::write_all(&mut std::io::stdout(), &render(page)?).context("printing the man page")?;
            }
        },
        Action::ExecGated { command } => return Err(profiler::launch::exec_gated(&command)),
        Action::Workload { connections, messages } => workload::run_as_child(connections, messages)?,
    }
    Ok(())
}

/// The man pages: tcpprof(1), then tcpprof-COMMAND(1) for each command a user types.
fn man_pages() -> Vec<(String, clap::Command)> {
    let cli = Cli::command();
    let commands = cli.get_subcommands().filter(|c| !c.is_hide_set()).map(|c| {
        let name = format!("tcpprof-{}", c.get_name());
        (name.clone(), c.clone().name(name).version(env!("CARGO_PKG_VERSION")))
    });
    let commands: Vec<_> = commands.collect();
    std::iter::once(("tcpprof".to_string(), cli)).chain(commands).collect()
}

fn render(page: clap::Command) -> Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("writing the man page")?;
    Ok(roff)
}

/// The /metrics endpoint of `--listen ADDR`, if asked for, and where it is.
fn serve_metrics(listen: Option<std::net::SocketAddr>) -> Result<Option<profiler::metrics::Exporter>> {
    let exporter = listen.map(profiler::metrics::Exporter::serve).transpose()?;
    if let Some(addr) = exporter.as_ref().and_then(|e| e.addr()) {
        eprintln!("metrics: http://{addr}/metrics");
    }
    Ok(exporter)
}
