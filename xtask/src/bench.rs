//! `cargo xtask bench NAME`: benchmarks that print tables, side by side with a peer tool, as
//! ratios from one run (these machines are shared and noisy: an absolute figure alone means
//! little). Benchmarks, not tests: they assert nothing.
use crate::setup::{apt_install, stdout_of as output};
use anyhow::{Context, Result, bail};
use owned_child::OwnedChild;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 3;

/// Our load generator against wrk on nginx (HTTP) and against redis-benchmark on redis-server
/// (SET and GET): the server on CPU 0 and each client in turn on CPU 1, alternating, median of
/// [`ROUNDS`]; requests/s and the client's CPU time per request (user + system, from its rusage).
pub fn loadgen(root: &Path) -> Result<()> {
    apt_install(&["nginx-light", "wrk", "redis-server", "redis-tools"])?;
    let tcpprof = root.join("target/release/tcpprof");
    let dir = std::env::temp_dir().join(format!("tcpprof-loadgen-{}", std::process::id()));
    let (http_port, redis_port) = (18080, 16379);
    let _nginx = start_nginx(&dir, http_port)?;
    let _redis = start_server(
        Command::new("taskset")
            .args(["-c", "0", "redis-server", "--port", &redis_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]),
        redis_port,
    )?;
    println!(
        "server on CPU 0, client on CPU 1, {CONNECTIONS} connections, {ROUNDS} rounds alternating, median of each\n"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>7} {:>10} {:>10} {:>7}  bar",
        "workload", "ours req/s", "peer req/s", "ratio", "ours us/rq", "peer us/rq", "ratio"
    );
    let url = format!("http://127.0.0.1:{http_port}/index.html");
    let http = [
        "--target".to_string(),
        format!("127.0.0.1:{http_port}"),
        "--protocol".into(),
        "http".into(),
        "--path".into(),
        "/index.html".into(),
        "-d".into(),
        HTTP_SECONDS.to_string(),
    ];
    let row = compare(|| ours(&tcpprof, &http), || wrk(&url), "nginx 1 KiB, vs wrk -t1")?;
    let bar = row.ours.rps >= row.peer.rps && row.ours.cpu_us <= row.peer.cpu_us;
    row.print(&format!("req/s >= 1.0 and CPU <= wrk: {}", met(bar)));
    for test in ["SET", "GET"] {
        let words = format!("{test} key:__rand_int__{}", if test == "SET" { " xxx" } else { "" });
        let resp = [
            "--target".to_string(),
            format!("127.0.0.1:{redis_port}"),
            "--protocol".into(),
            "resp".into(),
            "--request".into(),
            words,
            "--keyspace".into(),
            KEYSPACE.to_string(),
            "-n".into(),
            REDIS_REQUESTS.to_string(),
        ];
        let row = compare(
            || ours(&tcpprof, &resp),
            || redis_benchmark(redis_port, test),
            &format!("redis {test}, vs redis-benchmark"),
        )?;
        row.print(&format!("req/s >= 1.5: {}", met(row.ours.rps >= 1.5 * row.peer.rps)));
    }
    println!(
        "\nratio = ours / peer. CPU per request is the whole client process's user + system time over its\n\
         requests; on loopback a sender's system time includes the kernel's delivery to the receiver."
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const CONNECTIONS: usize = 50;
const HTTP_SECONDS: u64 = 5;
const REDIS_REQUESTS: u64 = 300_000;
/// Keys SET and GET spread over (redis-benchmark's -r).
const KEYSPACE: u64 = 100_000;

fn met(bar: bool) -> &'static str {
    if bar { "met" } else { "NOT met" }
}

/// One client run: requests/s, and its CPU time per request.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    cpu_us: f64,
}

struct Row {
    name: String,
    ours: Run,
    peer: Run,
}

impl Row {
    fn print(&self, bar: &str) {
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>7.2} {:>10.2} {:>10.2} {:>7.2}  {bar}",
            self.name,
            self.ours.rps,
            self.peer.rps,
            self.ours.rps / self.peer.rps,
            self.ours.cpu_us,
            self.peer.cpu_us,
            self.ours.cpu_us / self.peer.cpu_us
        );
    }
}

/// [`ROUNDS`] of ours then the peer's; the median of each figure.
fn compare(mut ours: impl FnMut() -> Result<Run>, mut peer: impl FnMut() -> Result<Run>, name: &str) -> Result<Row> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(ours()?);
        b.push(peer()?);
    }
    let median = |runs: &[Run], f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let figures = |runs: &[Run]| Run {
        rps: median(runs, |r| r.rps),
        cpu_us: median(runs, |r| r.cpu_us),
    };
    Ok(Row {
        name: name.to_string(),
        ours: figures(&a),
        peer: figures(&b),
    })
}

/// Runs `cmd` to its end: its stdout, and the CPU time (user + system) it and its children used.
fn timed(cmd: &mut Command) -> Result<(String, Duration)> {
    let before = children_cpu();
    let out = output(cmd)?;
    Ok((out, children_cpu().saturating_sub(before)))
}

/// CPU time of every child this process has waited for.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn ours(tcpprof: &Path, args: &[String]) -> Result<Run> {
    let (out, cpu) = timed(
        Command::new(tcpprof)
            .args(["bench", "--server-cpus", "0", "--client-cpus", "1", "-c"])
            .arg(CONNECTIONS.to_string())
            .args(args)
            .arg("--json"),
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing tcpprof bench --json")?;
    if v["errors"].as_u64() != Some(0) {
        bail!("our load generator saw errors: {}", v["first_error"]);
    }
    let requests = v["requests"].as_u64().unwrap_or(0).max(1);
    Ok(Run {
        rps: v["throughput_rps"].as_f64().unwrap_or(0.0),
        cpu_us: cpu.as_secs_f64() * 1e6 / requests as f64,
    })
}

fn wrk(url: &str) -> Result<Run> {
    let (out, cpu) = timed(
        Command::new("taskset")
            .args(["-c", "1", "wrk", "-t1", "-c"])
            .arg(CONNECTIONS.to_string())
            .arg(format!("-d{HTTP_SECONDS}s"))
            .arg(url),
    )?;
    // "  473776 requests in 5.00s, 570.66MB read" and "Requests/sec:  94740.16".
    let requests: f64 = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
        .with_context(|| format!("no request count in wrk's output: {out}"))?;
    let rps: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:")?.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {out}"))?;
    if out.contains("Non-2xx") || out.contains("Socket errors") {
        bail!("wrk saw errors: {out}");
    }
    Ok(Run {
        rps,
        cpu_us: cpu.as_secs_f64() * 1e6 / requests.max(1.0),
    })
}

/// redis-benchmark --csv: "test","rps","avg_latency_ms",...
fn redis_benchmark(port: u16, test: &str) -> Result<Run> {
    let (out, cpu) = timed(
        Command::new("taskset")
            .args(["-c", "1", "redis-benchmark", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-t", &test.to_lowercase(), "-c"])
            .arg(CONNECTIONS.to_string())
            .args(["-n", &REDIS_REQUESTS.to_string(), "-r", &KEYSPACE.to_string(), "--csv"]),
    )?;
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("\"{test}\"")))
        .with_context(|| format!("no {test} row in {out}"))?;
    let rps: f64 = row
        .split(',')
        .nth(1)
        .and_then(|f| f.trim_matches('"').parse().ok())
        .with_context(|| format!("unexpected redis-benchmark row {row:?}"))?;
    Ok(Run {
        rps,
        cpu_us: cpu.as_secs_f64() * 1e6 / REDIS_REQUESTS as f64,
    })
}

/// nginx with one worker on CPU 0, serving a 1 KiB index.html from `dir`, keep-alive.
fn start_nginx(dir: &Path, port: u16) -> Result<OwnedChild> {
    std::fs::create_dir_all(dir.join("html"))?;
    std::fs::write(dir.join("html/index.html"), "x".repeat(1024))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; user root; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {d}/html; }} }}\n",
            d = dir.display()
        ),
    )?;
    start_server(
        Command::new("taskset")
            .args(["-c", "0", "nginx", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir),
        port,
    )
}

/// 100,000 connections held for 10 s against the epoll bench-server, PING in closed loop: errors,
/// and the resident memory of the servers and of the load generators.
///
/// One process may hold no more descriptors than RLIMIT_NOFILE's hard limit, which root raises
/// only with CAP_SYS_RESOURCE (20,000 and no such capability on these machines): the plan runs
/// as several load generators (`--shard i/N`) against several epoll bench-servers sharing one
/// port (`--reuseport`), as many of each as the limit requires. Past one source address's
/// ephemeral ports the connections come from 127.0.0.1, 127.0.0.2, ...
pub fn c100k(root: &Path) -> Result<()> {
    const CONNECTIONS: usize = 100_000;
    const SECONDS: u64 = 10;
    let (tcpprof, server) = (
        root.join("target/release/tcpprof"),
        root.join("target/release/bench-server"),
    );
    let hard_limit = nofile_hard_limit()?;
    let per_process = hard_limit.saturating_sub(1000).max(1000) as usize;
    // SO_REUSEPORT hashes connections over the listeners: leave room for the unevenness.
    let servers = CONNECTIONS.div_ceil(per_process * 8 / 10);
    let clients = CONNECTIONS.div_ceil(per_process * 9 / 10);
    println!(
        "{CONNECTIONS} connections, PING closed loop for {SECONDS} s: {servers} epoll bench-servers on one port \
         (SO_REUSEPORT, CPU 0), {clients} load generators (--shard, CPU 1); RLIMIT_NOFILE {}",
        hard_limit
    );
    let first = start_bench_server(&server, "127.0.0.1:0")?;
    let addr = first.1.clone();
    let mut server_guards = vec![first.0];
    for _ in 1..servers {
        server_guards.push(start_bench_server(&server, &addr)?.0);
    }
    let server_pids: Vec<u32> = server_guards.iter().map(OwnedChild::id).collect();
    let started = Instant::now();
    let mut loads: Vec<OwnedChild> = (0..clients)
        .map(|i| {
            OwnedChild::spawn(
                Command::new(&tcpprof)
                    .args(["bench", "--target", &addr, "--protocol", "line", "--command", "PING"])
                    .args(["-c", &CONNECTIONS.to_string(), "-d", &SECONDS.to_string()])
                    .args(["--shard", &format!("{i}/{clients}"), "--client-cpus", "1", "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .env("RUST_BACKTRACE", "0"),
            )
            .context("starting a load generator")
        })
        .collect::<Result<_>>()?;
    // The most either side held at once, sampled while the load runs.
    let (mut server_rss, mut client_rss) = (0u64, 0u64);
    while loads.iter_mut().any(|c| c.has_exited().ok().flatten().is_none()) {
        server_rss = server_rss.max(server_pids.iter().map(|&p| rss_kib(p)).sum());
        client_rss = client_rss.max(loads.iter().map(|c| rss_kib(c.id())).sum());
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(SECONDS + 60) {
            bail!("the load generators did not finish within {} s", SECONDS + 60);
        }
    }
    let (mut requests, mut errors, mut opened, mut sources) = (0, 0, 0, 0);
    let mut first_error = serde_json::Value::Null;
    for load in loads {
        let out = load.wait_with_output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            format!("a load generator failed ({}): {}", out.status, stderr.trim())
        })?;
        requests += v["requests"].as_u64().unwrap_or(0);
        errors += v["errors"].as_u64().unwrap_or(0);
        opened += v["connections_opened"].as_u64().unwrap_or(0);
        sources = sources.max(v["source_addresses"].as_u64().unwrap_or(0));
        if first_error.is_null() {
            first_error = v["first_error"].clone();
        }
    }
    println!("\n{:<34} {:>12}   bar", "", "measured");
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!("{:<34} {:>12}", "connections opened", opened);
    println!("{:<34} {:>12}", "source addresses", sources);
    println!("{:<34} {:>12}", "requests answered", requests);
    println!("{:<34} {:>12}   0: {}", "errors", errors, met(errors == 0));
    println!(
        "{:<34} {:>10.0} MB   <= 200 MB: {}",
        "server RSS (all processes)",
        mb(server_rss),
        met(mb(server_rss) <= 200.0)
    );
    println!(
        "{:<34} {:>10.0} MB   <= 300 MB: {}",
        "client RSS (all processes)",
        mb(client_rss),
        met(mb(client_rss) <= 300.0)
    );
    if errors > 0 {
        println!("first error: {first_error}");
    }
    Ok(())
}

/// RLIMIT_NOFILE's hard limit: what one process can raise its descriptors to without
/// CAP_SYS_RESOURCE.
fn nofile_hard_limit() -> Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    Ok(limit.rlim_max)
}

/// Resident memory of `pid` in KiB (0 once it has exited).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// An epoll bench-server with SO_REUSEPORT on CPU 0, and its address once it listens.
fn start_bench_server(exe: &Path, addr: &str) -> Result<(OwnedChild, String)> {
    use std::io::BufRead;
    let mut child = OwnedChild::spawn_group(
        Command::new(exe)
            .args([
                "--model",
                "epoll",
                "--reuseport",
                "--cpus",
                "0",
                "--backlog",
                "65535",
                "--addr",
                addr,
            ])
            .stdout(Stdio::piped()),
    )
    .context("starting bench-server")?;
    let stdout = child.take_stdout().context("bench-server's stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("bench-server printed {line:?}"))?
        .to_string();
    Ok((child, addr))
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

/// The exact modes take their own tracing cost out of the parts: the 64-byte ECHO load (the
/// default bench, epoll server) in tracepoint mode beside sampling mode, runs alternating, each
/// part's median; the bar is every part within 3 points. With stacks the tracepoint runs also say
/// how many samples caught the target in the tracing path, a check on the cost measured at attach.
pub fn tracing(root: &Path) -> Result<()> {
    const RUNS: usize = 5;
    const PARTS: [&str; 5] = ["accept_pct", "read_pct", "process_pct", "write_pct", "overhead_pct"];
    let profiler = root.join("target/release/tcpprof");
    let bench = |mode: &str| -> Result<serde_json::Value> {
        let mut cmd = Command::new(&profiler);
        cmd.args(["bench", "-n", "300000", "--profile", "--mode", mode, "--json"]);
        if mode == "tracepoint" {
            cmd.arg("--stacks");
        }
        serde_json::from_str(&output(&mut cmd)?).context("parsing tcpprof bench --json")
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut traced, mut gross, mut sampled) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cost, mut stacked) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = bench("tracepoint")?;
        traced.push(PARTS.map(|k| t["breakdown"][k].as_f64().unwrap_or(f64::NAN)));
        gross.push(with_tracing_cost(&t));
        cost.push(t["tracing"]["tracing_pct"].as_f64().unwrap_or(f64::NAN));
        let sum = |v: &serde_json::Value, field: Option<&str>| {
            v.as_object().map_or(0.0, |m| {
                m.values()
                    .filter_map(|x| field.map_or(x, |f| &x[f]).as_f64())
                    .sum::<f64>()
            })
        };
        let (samples, total) = (sum(&t["tracing_samples"], None), sum(&t["classes"], Some("samples")));
        stacked.push(samples * 100.0 / total);
        let s = bench("sampling")?;
        sampled.push(PARTS.map(|k| s["breakdown"][k].as_f64().unwrap_or(f64::NAN)));
    }
    println!("64-byte ECHO, epoll server, c = 10, 300,000 requests; {RUNS} runs of each mode, alternating\n");
    println!(
        "{:<10} {:>12} {:>10} {:>7}   {:>18}",
        "part", "tracepoint", "sampling", "diff", "cost left in (was)"
    );
    let mut worst: f64 = 0.0;
    for (i, part) in PARTS.iter().enumerate() {
        let column = |runs: &[[f64; 5]]| median(runs.iter().map(|r| r[i]).collect());
        let (t, s, g) = (column(&traced), column(&sampled), column(&gross));
        worst = worst.max((t - s).abs());
        println!(
            "{:<10} {t:>11.1}% {s:>9.1}% {:>+7.1}   {g:>17.1}%",
            part.trim_end_matches("_pct"),
            t - s
        );
    }
    println!(
        "\ntracing cost taken out (measured at attach): median {:.1}% of the target's traced time; samples in the \
         tracing path (stacks): median {:.1}%",
        median(cost),
        median(stacked)
    );
    println!("largest difference {worst:.1} points: {} (bar: 3)", met(worst <= 3.0));
    Ok(())
}

/// A tracepoint run's parts with the tracing cost it took out put back: what they read before
/// the exact modes subtracted it.
fn with_tracing_cost(run: &serde_json::Value) -> [f64; 5] {
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let per_call = &run["tracing"]["tracing_ns_per_syscall"];
    let (in_process, in_syscall) = (num(&per_call["process_ns"]), num(&per_call["syscall_ns"]));
    let calls = |class: &str| num(&run["classes"][class]["calls"]);
    let all_calls: f64 = ["accept", "read", "write", "other"].iter().map(|c| calls(c)).sum();
    let net_total = num(&run["oncpu_ns"]) + num(&run["runq_ns"]);
    let added = [
        in_syscall * calls("accept"),
        in_syscall * calls("read"),
        in_process * all_calls,
        in_syscall * calls("write"),
        in_syscall * calls("other"),
    ];
    let gross_total = net_total + added.iter().sum::<f64>();
    let parts = ["accept_pct", "read_pct", "process_pct", "write_pct", "overhead_pct"];
    std::array::from_fn(|i| (num(&run["breakdown"][parts[i]]) / 100.0 * net_total + added[i]) * 100.0 / gross_total)
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

/// Starts a peer server for a benchmark, killed with what it started (nginx's worker) when the
/// returned value drops.
fn start_server(cmd: &mut Command, port: u16) -> Result<OwnedChild> {
    let child = OwnedChild::spawn_group(cmd.stdout(Stdio::null())).with_context(|| format!("starting {cmd:?}"))?;
    wait_listening(port).with_context(|| format!("{cmd:?}"))?;
    Ok(child)
}

/// `--live` with no viewer and with fifty, alternating: the load generator's throughput and
/// p99 (the viewers' threads run in its process), median of five runs each. Fifty viewers
/// follow the event stream from the start, each over its own connection.
pub fn live(root: &Path) -> Result<()> {
    const RUNS: usize = 5;
    const VIEWERS: usize = 50;
    let profiler = root.join("target/release/tcpprof");
    let run = |viewers: usize| -> Result<(f64, f64)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&profiler)
            .args(["bench", "-c", "20", "-d", "5", "--json", "--live", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpprof")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                bail!("tcpprof's dashboard never listened on {addr}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let readers: Vec<_> = (0..viewers)
            .map(|_| {
                let addr = addr.clone();
                std::thread::spawn(move || -> std::io::Result<usize> {
                    use std::io::{Read, Write};
                    let mut s = TcpStream::connect(&addr)?;
                    s.write_all(b"GET /events HTTP/1.1\r\n\r\n")?;
                    let mut all = Vec::new();
                    s.read_to_end(&mut all)?;
                    Ok(all.len())
                })
            })
            .collect();
        let out = child.wait_with_output()?;
        let got: Vec<usize> = readers.into_iter().filter_map(|r| r.join().ok()?.ok()).collect();
        if got.len() != viewers || got.contains(&0) {
            bail!(
                "{} of {viewers} viewers read the stream",
                got.iter().filter(|&&n| n > 0).count()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing tcpprof bench --json")?;
        Ok((
            v["throughput_rps"].as_f64().unwrap_or(f64::NAN),
            v["latency_p99_us"].as_f64().unwrap_or(f64::NAN),
        ))
    };
    let (mut alone, mut watched) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        alone.push(run(0)?);
        watched.push(run(VIEWERS)?);
    }
    let median = |runs: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("tcpprof bench -c 20 -d 5 --live ADDR (epoll server, 64-byte ECHO); {RUNS} runs each, alternating\n");
    println!(
        "{:<8} {:>12} {:>8}   requests/s of each run",
        "viewers", "requests/s", "p99 us"
    );
    for (name, runs) in [("0", &alone), (&*VIEWERS.to_string(), &watched)] {
        let each: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0)).collect();
        let (rps, p99) = (median(runs, |r| r.0), median(runs, |r| r.1));
        println!("{name:<8} {rps:>12.0} {p99:>8.0}   {}", each.join(" "));
    }
    let ratio = median(&watched, |r| r.0) / median(&alone, |r| r.0);
    println!("\nthroughput with {VIEWERS} viewers / without: {ratio:.3}");
    Ok(())
}

/// `tcpprof compare`'s false positives: 20 A/A pairs (the same configuration run twice,
/// one after the other), how often each figure came out significant, beside the level the test
/// states ([`ALPHA`] per figure) and how often the test alone (without the noise floor) would
/// have said so.
pub fn compare_false_positives(root: &Path) -> Result<()> {
    const PAIRS: usize = 20;
    const ALPHA: f64 = 0.01;
    let profiler = root.join("target/release/tcpprof");
    let dir = std::env::temp_dir().join(format!("tcpprof-bench-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let save = |path: &Path| -> Result<()> {
        output(
            Command::new(&profiler)
                .args(["bench", "--command", "BURN 2000", "-c", "4", "-d", "6", "--save"])
                .arg(path),
        )
        .map(drop)
    };
    // Per figure: pairs marked significant, pairs with p < ALPHA, and each pair's |change| in %.
    let mut significant: std::collections::BTreeMap<String, (usize, usize, Vec<f64>)> = Default::default();
    for pair in 0..PAIRS {
        let (a, b) = (dir.join(format!("{pair}a.json")), dir.join(format!("{pair}b.json")));
        save(&a)?;
        save(&b)?;
        let out = Command::new(&profiler)
            .arg("compare")
            .args([&a, &b])
            .arg("--json")
            .output()?;
        let c: serde_json::Value = serde_json::from_slice(&out.stdout).context("parsing tcpprof compare --json")?;
        for m in c["load"].as_array().into_iter().flatten() {
            let entry = significant
                .entry(m["name"].as_str().unwrap_or("?").to_string())
                .or_default();
            entry.0 += usize::from(m["significant"] == true);
            entry.1 += usize::from(m["p_value"].as_f64().is_some_and(|p| p < ALPHA));
            entry.2.push(m["change"].as_f64().map_or(0.0, f64::abs));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("tcpprof bench --command 'BURN 2000' -c 4 -d 6 --save, {PAIRS} A/A pairs, tcpprof compare each\n");
    println!(
        "{:<16} {:>12} {:>16} {:>14} {:>12} {:>12}",
        "figure", "significant", "p < 0.01 alone", "stated level", "|change| p90", "|change| max"
    );
    for (name, (marked, by_p, changes)) in &mut significant {
        changes.sort_by(f64::total_cmp);
        let p90 = changes.get(changes.len() * 9 / 10).copied().unwrap_or(f64::NAN);
        println!(
            "{name:<16} {:>11.0}% {:>15.0}% {:>13.0}% {p90:>11.1}% {:>11.1}%",
            *marked as f64 * 100.0 / PAIRS as f64,
            *by_p as f64 * 100.0 / PAIRS as f64,
            ALPHA * 100.0,
            changes.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
