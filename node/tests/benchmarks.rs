//! bench_run and bench_sweep with real load on real sockets (127.0.0.1).
mod common;
use common::{Node, ms};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Instant;

fn assert_run_ok(reply: &Value, requests: u64) {
    assert_eq!(reply["type"], "bench_run_ok", "{reply}");
    assert_eq!(reply["requests"], requests, "{reply}");
    assert_eq!(reply["errors"], 0, "{reply}");
    let p = |k: &str| reply[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {reply}"));
    assert!(p("throughput_rps") > 0.0);
    assert!(p("latency_p50_us") <= p("latency_p95_us"));
    assert!(p("latency_p95_us") <= p("latency_p99_us"));
    assert!(p("latency_p99_us") <= p("latency_p999_us"));
    assert!(p("latency_p999_us") <= p("latency_max_us"));
    assert!(p("elapsed_ms") >= 0.0 && p("bytes_sent") > 0.0 && p("bytes_received") > 0.0);
    assert!(!reply["workers"].as_array().unwrap().is_empty(), "{reply}");
    // Every run carries its saturation signals and a verdict.
    let signals = &reply["signals"];
    assert!(signals["server_cpu_pct"].as_f64().is_some(), "{signals}");
    assert!(signals["client_cpu_pct"].as_f64().is_some(), "{signals}");
    assert_eq!(signals["accept_queue_limit"], 4096, "{signals}");
    let kinds = [
        "server-cpu",
        "client-cpu",
        "run-queue",
        "accept-queue",
        "network",
        "none",
    ];
    assert!(
        kinds.contains(&reply["limit"]["kind"].as_str().unwrap_or("")),
        "{reply}"
    );
    assert!(!reply["limit"]["reason"].as_str().unwrap_or("").is_empty(), "{reply}");
}

#[test]
fn seed_bench_run() {
    let mut node = Node::start();
    node.send_line(r#"{"src":"c1","dest":"n1","body":{"type":"bench_run","msg_id":2,"num_requests":100,"payload_size_bytes":64,"concurrency":1}}"#);
    let reply = node.recv(ms(5000));
    assert_eq!(reply["body"]["in_reply_to"], 2);
    assert_eq!(reply["body"]["msg_id"], 1);
    assert_run_ok(&reply["body"], 100);
    // Each request moved "ECHO " + 64 bytes + "\n" out and 64 + "\n" back.
    assert_eq!(reply["body"]["bytes_sent"], 100 * 70);
    assert_eq!(reply["body"]["bytes_received"], 100 * 65);
}

#[test]
fn bench_run_at_several_concurrencies() {
    let mut node = Node::start();
    for concurrency in [1, 10, 100] {
        let reply = node.call(
            json!({"type": "bench_run", "num_requests": 2000, "concurrency": concurrency}),
            ms(20_000),
        );
        assert_run_ok(&reply, 2000);
        assert_eq!(reply["concurrency"], concurrency);
    }
}

#[test]
fn per_request_connections() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_run", "num_requests": 500, "concurrency": 10, "connection": "per-request"}),
        ms(20_000),
    );
    assert_run_ok(&reply, 500);
    assert_eq!(reply["connection"], "per-request");
}

#[test]
fn every_command() {
    let mut node = Node::start();
    for command in ["ECHO", "PING", "BURN 1000", "STREAM 100000", "WAIT 5"] {
        let reply = node.call(
            json!({"type": "bench_run", "num_requests": 200, "concurrency": 4, "command": command}),
            ms(20_000),
        );
        assert_run_ok(&reply, 200);
    }
    let wait = node.call(
        json!({"type": "bench_run", "num_requests": 20, "concurrency": 1, "command": "WAIT 20"}),
        ms(20_000),
    );
    assert!(
        wait["latency_p50_us"].as_u64().unwrap() >= 20_000,
        "WAIT 20 must take 20 ms: {wait}"
    );
}

#[test]
fn duration_and_rate() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_run", "duration_ms": 500, "concurrency": 2, "rate": 1000}),
        ms(20_000),
    );
    assert_eq!(reply["type"], "bench_run_ok", "{reply}");
    let n = reply["requests"].as_u64().unwrap();
    assert!((350..=650).contains(&n), "1000/s for 0.5 s made {n} requests: {reply}");
    assert_eq!(reply["errors"], 0);
}

#[test]
fn sweep_rows_in_order() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_sweep", "concurrency_levels": [1, 5, 20], "num_requests": 500}),
        ms(30_000),
    );
    assert_eq!(reply["type"], "bench_sweep_ok", "{reply}");
    let rows = reply["results"].as_array().unwrap();
    let levels: Vec<u64> = rows.iter().map(|r| r["concurrency"].as_u64().unwrap()).collect();
    assert_eq!(levels, [1, 5, 20]);
    for row in rows {
        assert!(row["throughput_rps"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["errors"], 0, "{row}");
        assert!(
            row["latency_p50_us"].is_u64() && row["latency_p99_us"].is_u64(),
            "{row}"
        );
    }
    assert!(
        reply.get("saturation").is_some() && reply.get("saturation_reason").is_some(),
        "saturation and its reason must be present (null or a level): {reply}"
    );
    for row in rows {
        assert!(row["limit"]["kind"].is_string() && row["signals"].is_object(), "{row}");
    }
}

#[test]
fn a_sweep_names_its_knee_and_why() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_sweep", "server": "threads", "command": "PING",
               "concurrency_levels": [1, 10, 100, 1000], "num_requests": 20_000}),
        ms(120_000),
    );
    assert_eq!(reply["type"], "bench_sweep_ok", "{reply}");
    let knee = reply["saturation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no knee: {reply}"));
    let reason = reply["saturation_reason"].as_str().unwrap();
    assert!(reason.contains(&format!("from {knee} to")), "{reason}");
    let rows = reply["results"].as_array().unwrap();
    let past = rows.iter().find(|r| r["concurrency"].as_u64().unwrap() > knee).unwrap();
    let kind = past["limit"]["kind"].as_str().unwrap();
    assert_ne!(kind, "none", "{past}");
    assert!(reason.contains(kind), "{reason}");
}

#[test]
fn echo_is_answered_during_a_long_run() {
    let mut node = Node::start();
    let run = node.send(json!({"type": "bench_run", "duration_ms": 3000, "concurrency": 10}));
    std::thread::sleep(ms(500));
    let sent = Instant::now();
    let echo = node.send(json!({"type": "echo", "echo": "hi"}));
    let reply = node.recv(ms(2000));
    let waited = sent.elapsed();
    assert_eq!(
        reply["body"]["in_reply_to"], echo,
        "the echo must overtake the run: {reply}"
    );
    assert!(waited < ms(50), "echo took {waited:?} during a run");
    let done = node.recv(ms(15_000));
    assert_eq!(done["body"]["in_reply_to"], run);
    assert_eq!(done["body"]["type"], "bench_run_ok");
}

#[test]
fn eof_answers_what_is_in_flight_then_exits_zero() {
    let mut node = Node::start();
    let run = node.send(json!({"type": "bench_run", "num_requests": 2000, "concurrency": 5}));
    let (status, rest) = node.close(ms(20_000));
    assert!(status.success(), "{status}");
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["body"]["in_reply_to"], run);
    assert_eq!(rest[0]["body"]["type"], "bench_run_ok");
}

/// A line server on loopback that answers `+PONG\r\n` but corrupts its 10th response.
fn corrupting_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut served = 0u64;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                served += 1;
                let answer: &[u8] = if served == 10 { b"+PONF\r\n" } else { b"+PONG\r\n" };
                if writer.write_all(answer).is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    addr
}

#[test]
fn a_corrupted_response_is_counted_in_errors() {
    let addr = corrupting_server();
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_run", "num_requests": 100, "concurrency": 1, "target": addr.to_string(),
               "request": "PING\r\n", "response": "+PONG\r\n"}),
        ms(20_000),
    );
    assert_eq!(reply["type"], "bench_run_ok", "{reply}");
    assert_eq!(reply["errors"], 1, "{reply}");
    assert_eq!(
        reply["requests"].as_u64().unwrap() + reply["errors"].as_u64().unwrap(),
        100,
        "{reply}"
    );
}

/// An HTTP/1.1 server on loopback: `GET /ok` is 200 with a 2-byte body, anything else 404, on
/// keep-alive connections.
fn http_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                let mut ok = false;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.starts_with("GET ") {
                        ok = line.starts_with("GET /ok ");
                    } else if line == "\r\n" {
                        let answer: &[u8] = if ok {
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                        };
                        if writer.write_all(answer).is_err() {
                            break;
                        }
                    }
                    line.clear();
                }
            });
        }
    });
    addr
}

#[test]
fn bench_run_and_bench_sweep_speak_http_to_a_target() {
    let addr = http_server().to_string();
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_run", "num_requests": 200, "concurrency": 4, "target": addr,
               "protocol": "http", "path": "/ok", "expect_body": "ok", "headers": ["Accept: */*"]}),
        ms(20_000),
    );
    assert_eq!(reply["type"], "bench_run_ok", "{reply}");
    assert_eq!(
        (reply["requests"].as_u64(), reply["errors"].as_u64()),
        (Some(200), Some(0)),
        "{reply}"
    );
    assert_eq!(reply["protocol"], "http");
    let reply = node.call(
        json!({"type": "bench_sweep", "num_requests": 50, "concurrency_levels": [1, 2], "target": addr,
               "protocol": "http", "path": "/missing"}),
        ms(20_000),
    );
    assert_eq!(reply["type"], "bench_sweep_ok", "{reply}");
    let rows = reply["results"].as_array().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(rows.len(), 2, "{reply}");
    for row in rows {
        assert_eq!(row["error_counts"]["http_status"], 50, "{row}");
    }
}

/// Our bench-server SIGKILLed in the middle of a bench_run: the reply still comes when the run's
/// bound ends (bench_run_ok, the errors by kind, and a note that the server exited), and the next
/// bench_run on the node works.
#[test]
fn a_server_killed_mid_run_is_reported_and_the_node_goes_on() {
    let mut node = Node::start();
    let started = std::time::Instant::now();
    let run = node.send(json!({"type": "bench_run", "duration_ms": 3000, "command": "PING", "concurrency": 4}));
    // The node's bench-server child (its benchmark thread starts it), once it serves.
    let server = loop {
        if let Some(server) = bench_server_child(node.pid()) {
            break server;
        }
        assert!(started.elapsed() < ms(5000), "no bench-server child appeared");
        std::thread::sleep(ms(20));
    };
    std::thread::sleep(ms(500));
    // SAFETY: signalling the node's child.
    assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0);
    let reply = node.recv(ms(10_000));
    let body = &reply["body"];
    assert_eq!(body["in_reply_to"], run);
    assert_eq!(body["type"], "bench_run_ok", "{reply}");
    assert!(started.elapsed() < ms(8000), "{:?}", started.elapsed());
    assert!(body["requests"].as_u64().unwrap() > 0, "answered before the kill");
    let counts = &body["error_counts"];
    let failed = |kind: &str| counts[kind].as_u64().unwrap();
    assert!(failed("connect") > 0 && failed("closed") + failed("io") > 0, "{counts}");
    let exit = body["server_exited"].as_str().unwrap_or_else(|| panic!("{reply}"));
    assert!(exit.contains("signal: 9"), "{exit}");
    let next = node.call(
        json!({"type": "bench_run", "num_requests": 200, "command": "PING"}),
        ms(20_000),
    );
    assert_eq!(next["type"], "bench_run_ok", "{next}");
    assert_eq!(
        (next["requests"].as_u64(), next["errors"].as_u64()),
        (Some(200), Some(0))
    );
    assert!(next["server_exited"].is_null(), "{next}");
}

/// A bench-server child of any thread of process `pid`.
fn bench_server_child(pid: u32) -> Option<i32> {
    let child = profiler::procfs::children(pid)
        .into_iter()
        .find(|&p| profiler::procfs::comm(p).as_deref() == Some("bench-server"))?;
    Some(child as i32)
}

/// Every key of `value`, nested ones as paths (a list's by its first entry).
fn keys(value: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}/{k}");
                out.insert(here.clone());
                keys(v, &here, out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                keys(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn a_reply_is_the_result_tcpprof_bench_json_prints_plus_the_envelope() {
    let tcpprof = std::path::Path::new(env!("CARGO_BIN_EXE_node")).with_file_name("tcpprof");
    assert!(
        tcpprof.exists(),
        "{} is missing: build it first (cargo build -p profiler --bin tcpprof; cargo xtask test does)",
        tcpprof.display()
    );
    let mut node = Node::start();
    for (body, flags) in [
        (
            json!({"type": "bench_run", "num_requests": 300, "concurrency": 2, "command": "PING"}),
            vec!["-n", "300", "-c", "2", "--command", "PING"],
        ),
        (
            json!({"type": "bench_sweep", "num_requests": 300, "concurrency_levels": [1, 2], "command": "PING"}),
            vec!["-n", "300", "--sweep", "1,2", "--command", "PING"],
        ),
    ] {
        let reply = node.call(body, ms(30_000));
        let out = std::process::Command::new(&tcpprof)
            .arg("bench")
            .args(&flags)
            .arg("--json")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let (mut ours, mut theirs) = (Default::default(), Default::default());
        keys(&reply, "", &mut ours);
        keys(&printed, "", &mut theirs);
        for envelope in ["/type", "/msg_id", "/in_reply_to"] {
            assert!(ours.remove(envelope), "{envelope} missing: {reply}");
        }
        assert_eq!(ours, theirs, "node: {reply}\ncli: {printed}");
        // What was asked is the same; what was measured (a sweep's knee among them) is two runs'.
        for same in ["server", "command", "protocol", "connection", "requests"] {
            assert_eq!(reply.get(same), printed.get(same), "{same}: {reply}\n{printed}");
        }
        let levels = |v: &Value| {
            v["results"]
                .as_array()
                .map(|r| r.iter().map(|l| l["concurrency"].clone()).collect::<Vec<_>>())
        };
        assert_eq!(levels(&reply), levels(&printed), "{reply}\n{printed}");
    }
}

/// bench_find_max: `bench --find-max` as a message; a bad SLO is error 12 naming `slo`.
#[test]
fn bench_find_max_finds_a_rate_and_refuses_a_bad_slo() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_find_max", "command": "BURN 20000", "concurrency": 4, "slo": "p99<100ms",
               "duration_ms": 1000, "max_time_ms": 12000}),
        ms(60_000),
    );
    assert_eq!(reply["type"], "bench_find_max_ok", "{reply}");
    assert_eq!(reply["command"], "BURN 20000", "{reply}");
    let f = &reply["find_max"];
    assert_eq!(f["slo"], "p99<100ms", "{f}");
    assert!(f["rate"].as_f64().is_some_and(|r| r > 0.0), "{f}");
    assert!(f["steps"].as_array().unwrap().len() >= 2, "{f}");
    let reply = node.call(json!({"type": "bench_find_max", "slo": "p99<5parsecs"}), ms(5000));
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], 12, "{reply}");
    assert!(reply["text"].as_str().unwrap().starts_with("slo: "), "{reply}");
    let reply = node.call(json!({"type": "bench_run", "slo": "p99<5ms"}), ms(5000));
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("slo: belongs to a find_max search"),
        "{reply}"
    );
}
