//! `cargo xtask bench NAME`: benchmarks that print tables, side by side with a peer tool, as
//! ratios from one run (these machines are shared and noisy: an absolute figure alone means
//! little). Benchmarks, not tests: they assert nothing.
use crate::setup::apt_install;
use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// Our load generator against redis-benchmark, both loading one redis-server.
pub fn loadgen(root: &Path) -> Result<()> {
    apt_install(&["redis-server", "redis-tools"])?;
    let profiler = root.join("target/release/profiler");
    let port = 16379;
    let _redis = Server::start(
        Command::new("taskset")
            .args(["-c", "0", "redis-server", "--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]),
        port,
    )?;
    let requests = 200_000;
    println!(
        "redis-server on CPU 0; both clients on CPU 1, PING inline, {requests} requests per run,"
    );
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
    let v: serde_json::Value =
        serde_json::from_str(&out).context("parsing profiler bench --json")?;
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

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A peer server started for a benchmark and killed afterwards.
pub struct Server(Child);

impl Server {
    pub fn start(cmd: &mut Command, port: u16) -> Result<Server> {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("{cmd:?} did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
