//! `cargo xtask bench NAME`: benchmarks that print tables, side by side with a peer tool, as
//! ratios from one run (these machines are shared and noisy: an absolute figure alone means
//! little). Benchmarks, not tests: they assert nothing.
use crate::setup::{apt_install, stdout_of as output};
use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// Our load generator against redis-benchmark, both loading one redis-server.
pub fn loadgen(root: &Path) -> Result<()> {
    apt_install(&["redis-server", "redis-tools"])?;
    let profiler = root.join("target/release/tcpprof");
    let port = 16379;
    let _redis = start_server(
        Command::new("taskset")
            .args(["-c", "0", "redis-server", "--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]),
        port,
    )?;
    let requests = 200_000;
    println!("redis-server on CPU 0; both clients on CPU 1, PING inline, {requests} requests per run,");
    println!("{ROUNDS} rounds alternating, median of each:\n");
    println!(
        "{:>3} {:>14} {:>14} {:>8} {:>12} {:>12}",
        "c", "ours req/s", "redis-b req/s", "ratio", "ours p99 us", "redis-b p99"
    );
    for c in [1usize, 10, 50] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(ours_ping(&profiler, port, c, requests)?);
            theirs.push(redis_benchmark(port, c, requests)?);
        }
        let (o, t) = (median(&mut ours), median(&mut theirs));
        println!(
            "{:>3} {:>14.0} {:>14.0} {:>8.2} {:>12.0} {:>12.0}",
            c,
            o.rps,
            t.rps,
            o.rps / t.rps,
            o.p99_us,
            t.p99_us
        );
    }
    println!("\nratio = ours / redis-benchmark (throughput); p99 in microseconds.");
    Ok(())
}

const MODELS: [&str; 9] = [
    "iterative",
    "threads",
    "select",
    "poll",
    "epoll",
    "epoll-et",
    "epoll-workers",
    "prefork",
    "async",
];

/// Every server model at 1 to 10,000 connections (PING, closed loop, server on CPU 0 and load on
/// CPU 1): throughput, p99, errors, server memory and context switches, and the limit reached;
/// then each model's breakdown at 100 connections.
pub fn models(root: &Path) -> Result<()> {
    let profiler = root.join("target/release/tcpprof");
    let bench = |model: &str, c: usize, extra: &[&str]| -> Result<serde_json::Value> {
        // Every connection sends a few requests, at least 20,000 in all.
        let n = (c * 4).max(20_000).to_string();
        let out = output(
            Command::new(&profiler)
                .args(["bench", "--server", model, "--command", "PING"])
                .args([
                    "-c",
                    &c.to_string(),
                    "-n",
                    &n,
                    "--server-cpus",
                    "0",
                    "--client-cpus",
                    "1",
                    "--json",
                ])
                .args(extra),
        )?;
        serde_json::from_str(&out).context("parsing tcpprof bench --json")
    };
    println!("PING, closed loop, server on CPU 0, load on CPU 1; n = max(20000, 4 x c) per run\n");
    println!(
        "{:<14} {:>6} {:>10} {:>9} {:>7} {:>9} {:>8} {:>10} {:>10}  limit",
        "model", "c", "req/s", "p99 us", "errors", "RSS MiB", "threads", "vol cs", "invol cs"
    );
    for model in MODELS {
        for c in [1usize, 10, 100, 1000, 10_000] {
            // Past these, the model cannot serve at all (one client at a time; FD_SETSIZE):
            // the run would only measure timeouts.
            if (model == "iterative" && c > 10) || (model == "select" && c > 1000) {
                println!("{model:<14} {c:>6} {:>10}", "-");
                continue;
            }
            let v = bench(model, c, &["--server-stats"])?;
            let (n, s) = (|k: &str| v[k].as_f64().unwrap_or(f64::NAN), &v["server_stats"]);
            let stat = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<14} {:>6} {:>10.0} {:>9} {:>7} {:>9.1} {:>8} {:>10} {:>10}  {}",
                model,
                c,
                n("throughput_rps"),
                n("latency_p99_us"),
                n("errors"),
                stat("rss_max_kb") / 1024.0,
                stat("threads_max"),
                stat("voluntary_switches"),
                stat("involuntary_switches"),
                v["limit"]["kind"].as_str().unwrap_or("?"),
            );
        }
    }
    println!("\nBreakdown at c = 100 (tcpprof, mode auto), percent of on-CPU + run-queue time:\n");
    println!(
        "{:<14} {:>7} {:>7} {:>8} {:>7} {:>9}  bottleneck",
        "model", "accept", "read", "process", "write", "overhead"
    );
    for model in MODELS {
        let c = if model == "iterative" { 1 } else { 100 };
        let v = bench(model, c, &["--profile"])?;
        let pct = |k: &str| v["breakdown"][k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<14} {:>7.1} {:>7.1} {:>8.1} {:>7.1} {:>9.1}  {} ({}{})",
            model,
            pct("accept_pct"),
            pct("read_pct"),
            pct("process_pct"),
            pct("write_pct"),
            pct("overhead_pct"),
            v["bottleneck"].as_str().unwrap_or("?"),
            v["mode"].as_str().unwrap_or("?"),
            if c == 1 { ", c = 1" } else { "" },
        );
    }
    Ok(())
}

/// `profiler/benches/overhead.rs`: server throughput with the profiler switched on and off in
/// alternating windows of one load, beside bpftrace; the programs' own cost per accounted
/// syscall. Needs root (eBPF) and bpftrace with tracefs mounted.
pub fn overhead() -> Result<()> {
    // The peers the table compares with: bpftrace (exact accounting) and perf (sampling).
    apt_install(&["bpftrace", "linux-perf"])?;
    // bpftrace finds tracepoints through tracefs, which this machine does not mount by itself.
    if !Path::new("/sys/kernel/tracing/events").exists() {
        crate::setup::run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    }
    crate::setup::run(crate::cargo().args(["bench", "--quiet", "--package", "profiler", "--bench", "overhead"]))
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Figures {
    rps: f64,
    p99_us: f64,
}

fn median(runs: &mut [Figures]) -> Figures {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs[runs.len() / 2];
    let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_us).collect();
    p99.sort_by(f64::total_cmp);
    Figures {
        rps: mid.rps,
        p99_us: p99[p99.len() / 2],
    }
}

fn ours_ping(profiler: &Path, port: u16, c: usize, n: u64) -> Result<Figures> {
    let out = output(Command::new(profiler).args([
        "bench",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--request",
        "PING\\r\\n",
        "--response",
        "+PONG\\r\\n",
        "--client-cpus",
        "1",
        "--server-cpus",
        "0",
        "-c",
        &c.to_string(),
        "-n",
        &n.to_string(),
        "--json",
    ]))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing tcpprof bench --json")?;
    if v["errors"].as_u64() != Some(0) {
        bail!("our load generator saw errors: {}", v["first_error"]);
    }
    Ok(Figures {
        rps: v["throughput_rps"].as_f64().unwrap_or(0.0),
        p99_us: v["latency_p99_us"].as_f64().unwrap_or(0.0),
    })
}

/// redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
/// "p95_latency_ms","p99_latency_ms","max_latency_ms".
fn redis_benchmark(port: u16, c: usize, n: u64) -> Result<Figures> {
    let out = output(
        Command::new("taskset")
            .args(["-c", "1", "redis-benchmark", "-h", "127.0.0.1"])
            .args([
                "-p",
                &port.to_string(),
                "-t",
                "ping_inline",
                "-c",
                &c.to_string(),
                "-n",
                &n.to_string(),
                "--csv",
            ]),
    )?;
    let row = out
        .lines()
        .find(|l| l.starts_with("\"PING_INLINE\""))
        .context("no PING_INLINE row")?;
    let cols: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN))
        .collect();
    let [rps, _, _, _, _, p99_ms, ..] = cols[..] else {
        bail!("unexpected redis-benchmark row {row:?}")
    };
    Ok(Figures {
        rps,
        p99_us: p99_ms * 1000.0,
    })
}

/// Starts a peer server for a benchmark; it is killed when the guard drops.
fn start_server(cmd: &mut Command, port: u16) -> Result<ChildGuard> {
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let guard = ChildGuard(child);
    wait_listening(port).with_context(|| format!("{cmd:?}"))?;
    Ok(guard)
}
