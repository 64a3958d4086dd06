//! The `tcpprof` command as a user runs it: the stack files it writes, and Ctrl-C during a
//! `profile` window. Needs root (eBPF).
mod common;

use common::{Peer, TempDir, profile_json, require_root};
use std::process::Command;
use std::time::Duration;

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

#[test]
fn bench_writes_folded_stacks_and_a_flame_graph() {
    require_root();
    let tmp = TempDir::new("cli");
    let dir = &tmp.0;
    let (folded, svg) = (dir.join("stacks.folded"), dir.join("flame.svg"));
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "BURN 20000",
            "-c",
            "2",
            "-n",
            "1500",
            "--profile",
            "--mode",
            "sampling",
        ])
        .arg("--folded")
        .arg(&folded)
        .arg("--flamegraph")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("mode: sampling") && stdout.contains("top functions"),
        "{stdout}"
    );
    let folded = std::fs::read_to_string(&folded).unwrap();
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("process;bench-server;") && l.contains("burn ")),
        "{folded}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("bench-server epoll, BURN 20000"),
        "the title names the run"
    );
}

/// An output that could not be written is refused before the run, not after it.
#[test]
fn unwritable_outputs_are_refused_before_the_run() {
    for (flag, path) in [
        ("--hgrm", "/nonexistent/dir/x.hgrm"),
        ("--hlog", "/nonexistent/dir/x.hlog"),
        ("--report", "/tmp"),
    ] {
        let out = Command::new(PROFILER)
            .args(["bench", "-n", "100", flag, path])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(&format!("{flag} {path}: ")), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "ran anyway: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn profiling_flags_without_profile_are_refused() {
    let out = Command::new(PROFILER)
        .args(["bench", "-n", "10", "--flamegraph", "never-written.svg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--stacks (or --folded, --flamegraph): profiles the server"),
        "{stderr}"
    );
    assert!(stderr.contains("bench --profile"), "{stderr}");
    assert!(!std::path::Path::new("never-written.svg").exists());
}

#[test]
fn ctrl_c_ends_a_profile_early_and_still_prints_it_marked_partial() {
    require_root();
    let target = Peer::start("sleep", &["60"]);
    let child = profile_json(&target.pid().to_string(), "60")
        .args(["--mode", "sampling"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the profile, as JSON");
    assert_eq!(json["partial"], true, "{json}");
    assert_eq!(json["mode"], "sampling", "{json}");
    let window = json["window_ms"].as_u64().unwrap();
    assert!((1000..10_000).contains(&window), "window {window} ms");
}

#[test]
fn a_sweep_prints_its_knee_and_why() {
    require_root();
    let tmp = TempDir::new("sweep");
    let out = Command::new(PROFILER)
        .args(["bench", "--server", "threads", "--command", "PING", "-n", "20000"])
        .args(["--sweep", "1,10,100,1000"])
        .arg("--plots")
        .arg(&tmp.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let knee = stdout
        .lines()
        .find(|l| l.starts_with("knee at "))
        .unwrap_or_else(|| panic!("no knee line: {stdout}"));
    let kinds = ["server-cpu", "client-cpu", "run-queue", "accept-queue", "network"];
    assert!(kinds.iter().any(|k| knee.contains(k)), "{knee}");
    assert!(knee.contains("throughput changed"), "{knee}");
    let svg = std::fs::read_to_string(tmp.0.join("sweep.svg")).unwrap();
    let level = knee.split_whitespace().nth(2).unwrap();
    assert!(
        svg.contains(&format!("knee: {level} connections")),
        "the knee is marked"
    );
}

/// A running server profiled by pid while a load generator of its own (another `tcpprof bench
/// --target`) loads it: both report signals, the first without a load generator of its own.
#[test]
fn profile_and_target_runs_report_signals() {
    require_root();
    let (server, addr) = bench_server();
    let hgrm = std::env::temp_dir().join(format!("tcpprof-{}.hgrm", std::process::id()));
    let load = ping_load(&addr)
        .args(["-d", "3", "-c", "4", "--json", "--hgrm"])
        .arg(&hgrm)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let profile = profile_json(&server.pid().to_string(), "1")
        .args(["--interval", "0.5"])
        .output()
        .unwrap();
    assert!(profile.status.success(), "{}", String::from_utf8_lossy(&profile.stderr));
    // A JSON line per half second, each a breakdown of that interval, then the profile.
    let stdout = String::from_utf8(profile.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (json, intervals) = lines.split_last().unwrap();
    assert_eq!(intervals.len(), 2, "{stdout}");
    for i in intervals {
        let sum: f64 = ["accept_pct", "read_pct", "process_pct", "write_pct", "overhead_pct"]
            .iter()
            .map(|k| i["breakdown"][k].as_f64().unwrap())
            .sum();
        assert!((sum - 100.0).abs() < 0.5 && i["oncpu_ns"].as_u64().unwrap() > 0, "{i}");
    }
    let s = &json["signals"];
    assert!(s["server_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert_eq!(s["accept_queue_limit"], 4096, "{s}");
    assert!(s["runq_waits"].is_u64() && s["retransmits"].is_u64(), "{s}");
    assert!(s["client_cpu_pct"].is_null(), "{s}");
    assert!(s["signal_errors"]["client_cpu_pct"].is_string(), "{s}");
    assert!(json["limit"]["kind"].is_string(), "{json}");

    let out = load.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["signals"];
    // The target's process was found by its listening socket.
    assert!(s["server_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert!(s["client_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert!(s["runq_waits"].is_u64(), "{s}");
    // The .hgrm's last row is 100% of the requests.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let _ = std::fs::remove_file(&hgrm);
    let last = text
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "1.000000000000", "{text}");
    assert_eq!(
        fields[2].parse::<u64>().unwrap(),
        json["requests"].as_u64().unwrap(),
        "{text}"
    );
}

/// `bench --profile --interval`: one live loop hands each interval of the load and of the
/// profile to the lines, as they end.
#[test]
fn a_profiled_bench_prints_load_and_profile_intervals_as_they_end() {
    require_root();
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "PING",
            "-c",
            "4",
            "-d",
            "2",
            "--profile",
            "--mode",
            "sampling",
        ])
        .args(["--interval", "0.5", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (run, intervals) = lines.split_last().unwrap();
    let (load, profile): (Vec<_>, Vec<_>) = intervals.iter().partition(|i| i.get("interval").is_some());
    assert!(load.len() >= 4, "{stdout}");
    let answered: u64 = load.iter().map(|i| i["requests"].as_u64().unwrap()).sum();
    assert_eq!(answered, run["requests"].as_u64().unwrap(), "{stdout}");
    assert!(profile.len() >= 3, "{stdout}");
    for i in &profile {
        let sum: f64 = ["accept_pct", "read_pct", "process_pct", "write_pct", "overhead_pct"]
            .iter()
            .map(|k| i["breakdown"][k].as_f64().unwrap())
            .sum();
        assert!((sum - 100.0).abs() < 0.5, "{i}");
    }
    let ends: Vec<f64> = profile.iter().map(|i| i["t_s"].as_f64().unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
}

/// Two agents load one server on one plan, each at half the rate with its own interval log;
/// `tcpprof merge` gives the union: every request of both, percentiles within both's range.
#[test]
fn two_agents_merge_into_one_result() {
    let (_server, addr) = bench_server();
    let tmp = TempDir::new("agents");
    let dir = &tmp.0;
    let agents: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let log = dir.join(format!("{name}.hlog"));
            let child = ping_load(&addr)
                .args(["-c", "4", "-d", "2", "--rate", "2000", "--interval", "0.5", "--json"])
                .args(["--agent", name, "--hlog"])
                .arg(&log)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (log, child)
        })
        .collect();
    let mut total = 0;
    let mut maxes = Vec::new();
    let mut logs = Vec::new();
    for (log, child) in agents {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // A JSON line per interval, then the run.
        let (run, intervals) = lines.split_last().unwrap();
        assert!(intervals.len() >= 4, "{stdout}");
        let per_interval: u64 = intervals.iter().map(|i| i["requests"].as_u64().unwrap()).sum();
        assert_eq!(per_interval, run["requests"].as_u64().unwrap());
        total += run["requests"].as_u64().unwrap();
        maxes.push(run["latency_max_us"].as_u64().unwrap());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("#[StartTime: "), "{text}");
        let name = log.file_stem().unwrap().to_str().unwrap();
        assert!(
            text.lines().filter(|l| l.starts_with(&format!("Tag={name},"))).count() >= 4,
            "{text}"
        );
        logs.push(log);
    }
    let out = Command::new(PROFILER)
        .arg("merge")
        .args(&logs)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["requests"].as_u64().unwrap(), total, "{merged}");
    assert_eq!(merged["files"], 2);
    assert_eq!(
        merged["latency_max_us"].as_u64().unwrap(),
        *maxes.iter().max().unwrap(),
        "{merged}"
    );
    let bad = Command::new(PROFILER)
        .args(["merge", "/etc/hostname"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/etc/hostname"));
}

/// An epoll bench-server on a free port of 127.0.0.1, started apart from any `tcpprof`, and its
/// address.
fn bench_server() -> (Peer, String) {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let exe = std::path::Path::new(PROFILER).with_file_name("bench-server");
    let server = Peer::start(exe.to_str().unwrap(), &["--model", "epoll", "--addr", &addr]);
    common::wait_for_port(addr.rsplit(':').next().unwrap().parse().unwrap());
    (server, addr)
}

/// `--report`: one self-contained HTML file, opened in headless Chromium (Debian's, installed by
/// `cargo xtask test`), which must render every section; `--plots` writes the SVGs beside.
#[test]
fn the_html_report_renders_in_chromium() {
    require_root();
    let tmp = TempDir::new("report");
    let dir = &tmp.0;
    let report = dir.join("report.html");
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "BURN 3000",
            "-c",
            "4",
            "-d",
            "2.5",
            "--rate",
            "6000",
        ])
        .args(["--profile", "--mode", "sampling", "--report"])
        .arg(&report)
        .arg("--plots")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for plot in ["latency.svg", "timeline.svg"] {
        let svg = std::fs::read_to_string(dir.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{plot}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing to fetch.
    for external in ["src=\"http", "href=\"http", "<link", "@import", "@font-face"] {
        assert!(
            !html.contains(external),
            "the report refers to something outside it: {external}"
        );
    }
    // url() only for the flame graph's own gradients (#id, inside the page).
    assert!(html.split("url(").skip(1).all(|rest| rest.starts_with('#')));
    let chromium = |args: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-sync",
            ])
            .args(["--disable-background-networking", "--disable-component-update"])
            .arg(format!("--user-data-dir={}", dir.join("chromium").display()))
            .args(args)
            .arg(format!("file://{}", report.display()))
            .output()
            .unwrap_or_else(|e| panic!("starting chromium ({e}): `cargo xtask test` installs it from Debian"))
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for section in ["parameters", "summary", "limit", "plots", "breakdown", "flamegraph"] {
        assert!(
            dom.contains(&format!("<section id=\"{section}\"")),
            "{section} missing from the rendered page"
        );
    }
    // The two plots rendered as SVG, the bar has its five parts, the flame graph its frame.
    assert_eq!(dom.matches("<div class=\"plot\"><svg").count(), 2);
    assert_eq!(dom.matches("<span title=\"").count(), 5);
    assert!(dom.contains("<iframe title=\"flame graph\""));
    assert!(dom.contains("bench::protocol::burn"), "the top function is in the page");
    let shot = dir.join("report.png");
    let out = chromium(&["--window-size=1250,3400", &format!("--screenshot={}", shot.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 50_000,
        "a real picture: {} bytes",
        png.len()
    );
}

/// `tcpprof bench` loading `addr` with the line protocol's PING, as a target.
fn ping_load(addr: &str) -> Command {
    let mut command = Command::new(PROFILER);
    command.args([
        "bench",
        "--target",
        addr,
        "--request",
        "PING\\n",
        "--response",
        "PONG\\n",
    ]);
    command
}

/// `profile --listen` under a real Prometheus (Debian's, installed by `cargo xtask test`)
/// scraping every second: the value Prometheus stored, read through its query API, is the one
/// tcpprof prints at the end.
#[test]
fn prometheus_scrapes_what_the_profile_counts() {
    require_root();
    let (server, addr) = bench_server();
    let (metrics_port, prometheus_port) = (common::free_port(), common::free_port());
    let tmp = TempDir::new("prometheus");
    let dir = &tmp.0;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tcpprof\n    static_configs:\n      \
             - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Peer::start(
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
    );
    common::wait_for_port(prometheus_port);
    let profile = profile_json(&server.pid().to_string(), "9")
        .args(["--mode", "tracepoint", "--listen", &format!("127.0.0.1:{metrics_port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // A second of load, then the server idles and the counts hold still.
    let load = ping_load(&addr).args(["-d", "1", "-c", "2"]).output().unwrap();
    assert!(load.status.success());
    let query = "tcpprof_syscalls_total%7Bclass%3D%22write%22%7D";
    let mut scraped = None;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let body = http_get(prometheus_port, &format!("/api/v1/query?query={query}"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let value = json["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        // Wait for the value of the idle server (two equal scrapes in a row).
        if value.is_some() && value == scraped {
            break;
        }
        scraped = value;
    }
    let out = profile.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls = json["classes"]["write"]["calls"].as_u64().unwrap();
    assert!(calls > 1000, "the load's writes were counted: {calls}");
    assert_eq!(scraped, Some(calls as f64), "Prometheus's value against tcpprof's own");
}

/// `bench --profile --listen`: while the load runs, /metrics has the load's counts with errors by
/// kind and the profiled server's totals, run-queue histogram included.
#[test]
fn a_profiled_bench_serves_the_server_metrics_live() {
    require_root();
    let port = common::free_port();
    let bench = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "PING",
            "-d",
            "3",
            "--profile",
            "--mode",
            "tracepoint",
            "--json",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port);
    // Past the load's first interval and the first second of totals.
    std::thread::sleep(Duration::from_millis(2200));
    let page = http_get(port, "/metrics");
    let value = |series: &str| -> f64 {
        let line = page.lines().find(|l| l.starts_with(series));
        let line = line.unwrap_or_else(|| panic!("no {series} in\n{page}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("tcpprof_requests_total ") > 1000.0, "{page}");
    assert_eq!(value("tcpprof_request_errors_total{kind=\"timeout\"} "), 0.0);
    assert!(value("tcpprof_syscalls_total{class=\"write\"} ") > 1000.0, "{page}");
    assert!(value("tcpprof_runq_wait_seconds_count ") >= 0.0, "{page}");
    assert!(value("tcpprof_cpu_seconds_total{class=\"user\",state=\"oncpu\"} ") > 0.0);
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["requests"].as_u64().unwrap() as f64 >= value("tcpprof_requests_total "));
}

/// The body of `GET path` on 127.0.0.1:`port`.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The completion scripts and man pages a package installs come from the CLI's own definition.
#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let run = |args: &[&str]| {
        let out = Command::new(PROFILER).args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, bash, _) = run(&["completions", "bash"]);
    assert!(
        ok && bash.contains("_tcpprof()") && bash.contains("--profile"),
        "{bash}"
    );
    assert!(bash.contains("complete -F _tcpprof"), "{bash}");
    let (ok, zsh, _) = run(&["completions", "zsh"]);
    assert!(ok && zsh.starts_with("#compdef tcpprof"), "{zsh}");
    let (ok, fish, _) = run(&["completions", "fish"]);
    assert!(ok && fish.contains("complete -c tcpprof"), "{fish}");
    let (ok, _, why) = run(&["completions", "tcsh"]);
    assert!(!ok && why.contains("tcsh"), "{why}");

    let (ok, page, _) = run(&["man"]);
    assert!(ok && page.contains(".TH tcpprof 1"), "{page}");
    // Each command is listed by its own page's name.
    assert!(
        page.contains("tcpprof\\-bench(1)") && page.contains("tcpprof\\-profile(1)"),
        "{page}"
    );
    let (ok, page, _) = run(&["man", "bench"]);
    assert!(
        ok && page.contains(".TH tcpprof-bench 1") && page.contains("\\-\\-profile"),
        "{page}"
    );
    let (ok, _, why) = run(&["man", "nope"]);
    assert!(!ok && why.contains("no command \"nope\""), "{why}");
    // Every page into a directory, as the package build writes them; the hidden commands have none.
    let dir = TempDir::new("man");
    let (ok, _, why) = run(&["man", "--dir", dir.0.to_str().unwrap()]);
    assert!(ok, "{why}");
    let mut pages: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let commands = ["bench", "compare", "completions", "demo", "man", "merge", "profile"];
    let expected: Vec<String> = commands
        .iter()
        .map(|c| format!("tcpprof-{c}.1"))
        .chain(["tcpprof.1".into()])
        .collect();
    assert_eq!(pages, expected);
    let bench = std::fs::read_to_string(dir.0.join("tcpprof-bench.1")).unwrap();
    assert!(
        bench.contains("\\-\\-live") && bench.contains("\\-\\-linger"),
        "{bench}"
    );
}
