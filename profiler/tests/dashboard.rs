//! `--live`: the dashboard in a real headless Chromium (Debian's, driven through chromedriver
//! over WebDriver) during a profiled run against Debian's redis-server, and its event stream read
//! on the wire. Needs root (eBPF) and what `cargo xtask test` installs.
mod common;

use common::{Peer, free_port, require_root, wait_for_port};
use fantoccini::{ClientBuilder, Locator};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

/// A `tcpprof` run with `--live 127.0.0.1:0`: where its dashboard is, its stderr lines as they
/// come, and its stdout once it ends.
struct LiveRun {
    child: Child,
    addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl LiveRun {
    fn start(args: &[&str]) -> LiveRun {
        let mut child = Command::new(PROFILER)
            .args(args)
            .args(["--live", "127.0.0.1:0", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            s
        });
        let (send, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no `live:` line from tcpprof; it said {seen:?}"));
            if let Some(url) = line.strip_prefix("live: http://") {
                break url.trim_end_matches('/').parse().unwrap();
            }
            seen.push(line);
        };
        LiveRun {
            child,
            addr,
            stderr,
            stdout: Some(stdout),
        }
    }

    /// Waits for the process to end (at most `limit`), returning how long that took and its
    /// JSON result.
    fn end(mut self, limit: Duration) -> (Duration, serde_json::Value) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < limit, "tcpprof still runs {limit:?} later");
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = start.elapsed();
        let err: Vec<String> = self.stderr.try_iter().collect();
        assert!(status.success(), "tcpprof failed: {err:?}");
        let out = self.stdout.take().unwrap().join().unwrap();
        (
            took,
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")),
        )
    }
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// One server-sent event: its id, its data as JSON, and when it came.
struct Event {
    id: u64,
    data: serde_json::Value,
    at: Instant,
}

/// Reads `/events` (after `last_id`, if given) until the result event.
fn read_events(addr: SocketAddr, last_id: Option<u64>) -> Vec<Event> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let resume = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    write!(stream, "GET /events HTTP/1.1\r\nHost: x\r\n{resume}\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while reader.read_line(&mut head).unwrap() > 2 && !head.ends_with("\r\n\r\n") {}
    assert!(
        head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
        "{head}"
    );
    let mut events = Vec::new();
    let mut id = None;
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("id: ") {
            id = Some(n.parse().unwrap());
        } else if let Some(data) = line.strip_prefix("data: ") {
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            let over = data["kind"] == "result";
            events.push(Event {
                id: id.take().expect("an id before each event's data"),
                data,
                at: Instant::now(),
            });
            if over {
                break;
            }
        }
    }
    events
}

/// The stream on the wire: ids from 0 up by one, about one event a second, the result last; a
/// viewer that comes late gets the run from its start, one that reconnects gets what it missed,
/// fifty at once all get everything; the page refers to nothing outside itself, /metrics answers
/// beside it, other paths are 404.
#[test]
fn the_event_stream_replays_the_run_and_ends_with_its_result() {
    require_root();
    let run = LiveRun::start(&["bench", "-c", "8", "-d", "5", "--linger", "10"]);
    let addr = run.addr;
    let page = get(addr, "/");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<html"), "{page}");
    assert!(!page.contains("://"), "the page refers to something outside itself");
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(external), "the page loads something: {external}");
    }
    assert!(get(addr, "/nothing").starts_with("HTTP/1.1 404"));
    // Fifty viewers from the start, one more after two seconds.
    let viewers: Vec<_> = (0..50)
        .map(|_| std::thread::spawn(move || read_events(addr, None)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let metrics = get(addr, "/metrics");
    assert!(metrics.contains("\ntcpprof_requests_total "), "{metrics}");
    let late = read_events(addr, None);
    let all: Vec<Vec<Event>> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    let first = &all[0];
    for (i, events) in all.iter().enumerate() {
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, (0..first.len() as u64).collect::<Vec<_>>(), "viewer {i}");
    }
    assert_eq!(late.len(), first.len(), "the late viewer got the run from its start");
    assert_eq!(late[0].data, first[0].data);
    let intervals = &first[..first.len() - 1];
    assert!(
        (4..=7).contains(&intervals.len()),
        "{} intervals in 5 s",
        intervals.len()
    );
    // Whole intervals come a second apart (the last, cut short, comes with the run's end).
    for pair in intervals[..intervals.len() - 1].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap > Duration::from_millis(600) && gap < Duration::from_millis(1600),
            "{gap:?} between events {} and {}",
            pair[0].id,
            pair[1].id
        );
    }
    let middle = &intervals[1].data;
    assert!(middle["load"]["throughput_rps"].as_f64().unwrap() > 0.0, "{middle}");
    assert_eq!(middle["load"]["connections"], 8, "{middle}");
    assert!(middle["load"]["p99_us"].as_u64().unwrap() >= middle["load"]["p50_us"].as_u64().unwrap());
    assert!(middle["server"]["threads"].as_u64().unwrap() >= 1, "{middle}");
    assert!(middle["limit"]["kind"].is_string(), "{middle}");
    // Reconnecting after event 1 gives the rest.
    let resumed = read_events(addr, Some(1));
    assert_eq!(resumed[0].id, 2);
    assert_eq!(resumed.len(), first.len() - 2);
    let result = &first.last().unwrap().data["result"];
    let (_, printed) = run.end(Duration::from_secs(20));
    assert_eq!(result, &printed, "the page's result is what --json printed");
    let interval_requests: u64 = intervals
        .iter()
        .map(|e| e.data["load"]["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(interval_requests, printed["requests"].as_u64().unwrap());
}

/// `--live` on a port in use fails before the run, naming the address.
#[test]
fn live_on_a_port_in_use_fails_before_the_run() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let start = Instant::now();
    let out = Command::new(PROFILER)
        .args(["bench", "-d", "30", "--live", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("--live {addr}: cannot listen there")), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "it ran first: {err}");
    assert!(out.stdout.is_empty());
}

/// Debian's chromedriver on a free port, with the Chromium it drives.
fn chromedriver() -> (Peer, u16) {
    let port = free_port();
    let driver = Peer::start("chromedriver", &[&format!("--port={port}")]);
    wait_for_port(port);
    (driver, port)
}

fn chromium_capabilities(profile_dir: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1100",
    ]
    .map(String::from)
    .into_iter()
    .chain([format!("--user-data-dir={}", profile_dir.display())]);
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args.collect::<Vec<_>>()},
    });
    capabilities.as_object().unwrap().clone()
}

/// Headless Chromium opens the page while tcpprof loads and profiles redis-server: the rendered
/// throughput is above 0 and changes from one second to the next, the breakdown shows; after the
/// run the page's figures are the run's JSON, and the open tab does not keep tcpprof past its
/// --linger.
#[test]
fn chromium_shows_the_run_live_and_then_its_result() {
    require_root();
    let tmp = common::TempDir::new("dashboard");
    let (_driver, driver_port) = chromedriver();
    let port = free_port().to_string();
    let exec = format!("redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no");
    let target = format!("127.0.0.1:{port}");
    let linger = 6;
    let run = LiveRun::start(&[
        "bench",
        "--target",
        &target,
        "--exec",
        &exec,
        "--protocol",
        "resp",
        "--request",
        "SET key:__rand_int__ value",
        "--keyspace",
        "1000",
        "-c",
        "10",
        "-d",
        "8",
        "--profile",
        "--mode",
        "sampling",
        "--linger",
        &linger.to_string(),
    ]);
    let url = format!("http://{}/", run.addr);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (page, printed) = runtime.block_on(async {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(chromium_capabilities(&tmp.0))
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
            .expect("chromedriver starts Chromium");
        client.goto(&url).await.unwrap();
        let text = |id: &'static str| {
            let client = client.clone();
            async move { client.find(Locator::Id(id)).await.unwrap().text().await.unwrap() }
        };
        let number = |s: String| s.replace(',', "").parse::<f64>().ok();
        // The first interval's figures, then another second's.
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = loop {
            if let Some(rps) = number(text("throughput").await).filter(|&r| r > 0.0) {
                break rps;
            }
            assert!(Instant::now() < deadline, "no throughput on the page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let requests_then = number(text("requests-total").await).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = number(text("throughput").await).unwrap();
        let requests_now = number(text("requests-total").await).unwrap();
        assert!(second > 0.0 && second != first, "throughput {first} then {second}");
        assert!(requests_now > requests_then);
        assert!(number(text("cpu-user").await).is_some(), "server CPU shown");
        assert!(
            text("thread-cpu").await.contains("redis-server"),
            "redis's threads listed"
        );
        // The breakdown of a profile interval, and the verdict so far.
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.find(Locator::Id("bottleneck")).await.is_err() {
            assert!(Instant::now() < deadline, "no breakdown on the page");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(!text("limit-kind").await.is_empty());
        if let Ok(path) = std::env::var("TCPPROF_DASHBOARD_SCREENSHOT") {
            std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
        }
        // The result, once the run is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !text("status").await.starts_with("finished") {
            assert!(Instant::now() < deadline, "no result on the page");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let seen = Instant::now();
        let mut page = std::collections::BTreeMap::new();
        for cell in client.find_all(Locator::Css("[data-field]")).await.unwrap() {
            let field = cell.attr("data-field").await.unwrap().unwrap();
            page.insert(field, cell.text().await.unwrap());
        }
        // The tab stays open while tcpprof lingers, and it ends all the same.
        let (_, printed) = run.end(Duration::from_secs(linger + 20));
        let after_result = seen.elapsed();
        assert!(
            after_result < Duration::from_secs(linger + 4),
            "tcpprof ended {after_result:?} after the result, with --linger {linger}"
        );
        client.close().await.unwrap();
        (page, printed)
    });
    for field in [
        "requests",
        "errors",
        "throughput_rps",
        "latency_p50_us",
        "latency_p99_us",
        "latency_p999_us",
        "latency_max_us",
    ] {
        let shown: f64 = page[field]
            .parse()
            .unwrap_or_else(|_| panic!("{field}: {:?}", page[field]));
        assert_eq!(shown, printed[field].as_f64().unwrap(), "{field}");
    }
    assert_eq!(page["limit"], printed["limit"]["kind"].as_str().unwrap());
    assert!(printed["requests"].as_u64().unwrap() > 0);
}

/// `profile --live` on a running redis-server under redis-benchmark: an event per profile
/// interval with the server and its breakdown (no load of ours), then the profile's result.
#[test]
fn profile_live_follows_a_running_server() {
    require_root();
    let (redis, port) = common::redis();
    let pid = redis.pid().to_string();
    let load = Peer::start(
        "redis-benchmark",
        &["-p", &port.to_string(), "-t", "set", "-n", "2000000", "-c", "10", "-q"],
    );
    let run = LiveRun::start(&["profile", "--pid", &pid, "--duration", "4", "--mode", "sampling"]);
    let events = read_events(run.addr, None);
    let (_, printed) = run.end(Duration::from_secs(20));
    drop(load);
    let (result, intervals) = events.split_last().unwrap();
    assert!(
        (3..=5).contains(&intervals.len()),
        "{} intervals in 4 s",
        intervals.len()
    );
    for e in intervals {
        let e = &e.data;
        assert!(e.get("load").is_none(), "{e}");
        assert!(e["server"]["cpu_system_pct"].as_f64().unwrap() > 0.0, "{e}");
        assert_eq!(e["server"]["thread_cpu"][0]["name"], "redis-server", "{e}");
        assert!(e["profile"]["bottleneck"].is_string(), "{e}");
        assert!(e["server"]["runq_p99_us"].is_number(), "{e}");
    }
    assert_eq!(result.data["result"], printed);
}
