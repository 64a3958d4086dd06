//! The load generator's HTTP/1.1 and RESP framing against real servers (Debian's nginx and
//! redis-server, installed by `cargo xtask test`) and against small scripted servers that send
//! chunked, cut and malformed responses. Every run is bounded and ends on its own.
mod common;

use bench::load::{self, Command, ConnectionMode, HttpRequest, LoadConfig, LoadReport, RespCommand};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn run(target: SocketAddr, command: Command, concurrency: usize, requests: u64) -> LoadReport {
    let config = LoadConfig {
        concurrency,
        requests: Some(requests),
        request_timeout: Some(Duration::from_secs(2)),
        max_time: Some(Duration::from_secs(20)),
        ..LoadConfig::new(command)
    };
    let report = load::run(target, &config).unwrap();
    eprintln!(
        "{} ok, errors {:?}, first error {:?}",
        report.requests, report.error_counts, report.first_error
    );
    report
}

fn get(path: &str) -> Command {
    Command::Http(HttpRequest {
        path: path.into(),
        ..HttpRequest::default()
    })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn nginx_answers_and_a_missing_path_counts_http_status_errors() {
    let (_nginx, port, _dir) = common::nginx();
    let ok = run(loopback(port), get("/index.html"), 10, 2000);
    assert_eq!((ok.requests, ok.errors), (2000, 0), "{:?}", ok.first_error);
    // Status line, headers and the 1 KiB body, every time.
    assert!(ok.bytes_received >= 2000 * 1124, "{}", ok.bytes_received);
    let expected_body = Command::Http(HttpRequest {
        path: "/index.html".into(),
        expect_status: Some(200),
        expect_body: Some(vec![b'x'; 1024]),
        ..HttpRequest::default()
    });
    let checked = run(loopback(port), expected_body, 4, 500);
    assert_eq!(
        (checked.requests, checked.errors),
        (500, 0),
        "{:?}",
        checked.first_error
    );
    // A connection per request: the request asks for the close.
    let per_request = LoadConfig {
        concurrency: 5,
        requests: Some(300),
        connection: ConnectionMode::PerRequest,
        max_time: Some(Duration::from_secs(20)),
        ..LoadConfig::new(get("/index.html"))
    };
    let closed = load::run(loopback(port), &per_request).unwrap();
    assert_eq!((closed.requests, closed.errors), (300, 0), "{:?}", closed.first_error);
    // Every request answered 404: each an error of its kind, on connections that stay open.
    let missing = run(loopback(port), get("/nothing-here"), 10, 1000);
    assert_eq!(missing.requests, 0);
    assert_eq!(missing.error_counts.http_status, 1000, "{:?}", missing.error_counts);
    assert_eq!(missing.errors, 1000);
    assert!(missing.first_error.as_deref().unwrap().contains("HTTP 404"));
    assert_eq!(missing.connections_opened, 10, "404s keep their connections");
}

/// `tcpprof bench --protocol http` and `--protocol resp` from the command line, and a flag given
/// to the wrong protocol named in the error.
#[test]
fn the_cli_loads_nginx_and_redis_by_protocol() {
    let (_nginx, http_port, _dir) = common::nginx();
    let (_redis, redis_port) = common::redis();
    let bench = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcpprof"))
            .args(["bench", "-n", "500", "-c", "5", "--json"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok();
        (out.status.success(), json, stderr)
    };
    let nginx = format!("127.0.0.1:{http_port}");
    let (ok, json, stderr) = bench(&["--target", &nginx, "--protocol", "http", "--path", "/index.html"]);
    assert!(ok, "{stderr}");
    let json = json.unwrap();
    assert_eq!(
        (json["requests"].as_u64(), json["errors"].as_u64()),
        (Some(500), Some(0)),
        "{json}"
    );
    // The table names each kind of error, as wrk's "Non-2xx or 3xx responses" line does.
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tcpprof"))
        .args([
            "bench",
            "-n",
            "300",
            "-c",
            "3",
            "--target",
            &nginx,
            "--protocol",
            "http",
        ])
        .args(["--path", "/missing"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    assert!(stdout.contains("errors by kind: http_status 300\n"), "{stdout}");
    assert!(stdout.contains("first error: http_status: HTTP 404"), "{stdout}");
    let redis = format!("127.0.0.1:{redis_port}");
    let (ok, json, stderr) = bench(&[
        "--target",
        &redis,
        "--protocol",
        "resp",
        "--request",
        "SET k:__rand_int__ v",
        "--keyspace",
        "100",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(json.unwrap()["requests"].as_u64(), Some(500));
    let (ok, _, stderr) = bench(&["--target", &nginx, "--protocol", "http", "--keyspace", "5"]);
    assert!(!ok);
    assert!(stderr.contains("--keyspace: only with protocol resp"), "{stderr}");
    let (ok, _, stderr) = bench(&["--protocol", "http"]);
    assert!(!ok);
    assert!(stderr.contains("--protocol: http needs a target"), "{stderr}");
}

#[test]
fn redis_sets_and_gets_and_counts_error_replies() {
    let (_redis, port) = common::redis();
    let resp = |words: &str, keyspace| Command::Resp(RespCommand::parse(words, keyspace).unwrap());
    let set = run(loopback(port), resp("SET key:__rand_int__ value", Some(1000)), 20, 5000);
    assert_eq!((set.requests, set.errors), (5000, 0), "{:?}", set.first_error);
    let get = run(loopback(port), resp("GET key:__rand_int__", Some(1000)), 20, 5000);
    assert_eq!((get.requests, get.errors), (5000, 0), "{:?}", get.first_error);
    // The keys spread over the keyspace: redis holds many of them now.
    let mut redis = TcpStream::connect(loopback(port)).unwrap();
    redis.write_all(b"DBSIZE\r\n").unwrap();
    let mut reply = [0u8; 64];
    let n = redis.read(&mut reply).unwrap();
    let keys: u64 = std::str::from_utf8(&reply[1..n]).unwrap().trim().parse().unwrap();
    assert!((900..=1000).contains(&keys), "{keys} keys");
    // A list read as a string: WRONGTYPE, an error reply, counted as server_error.
    let push = run(loopback(port), resp("RPUSH mylist x", None), 1, 1);
    assert_eq!(push.errors, 0, "{:?}", push.first_error);
    let wrong = run(loopback(port), resp("GET mylist", None), 5, 200);
    assert_eq!(wrong.error_counts.server_error, 200, "{:?}", wrong.error_counts);
    assert!(wrong.first_error.as_deref().unwrap().contains("WRONGTYPE"));
    assert_eq!(wrong.connections_opened, 5, "error replies keep their connections");
}

/// A server that answers every request (a head ending in an empty line) on every connection
/// with `response`, then closes the connection when `close` says so. It serves until the test
/// process ends; each connection has its own thread.
fn scripted_server(response: &'static [u8], close: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, response, close));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, response: &[u8], close: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream.write_all(response).is_err() || close {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn chunked_responses_are_read_to_their_last_chunk() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n";
    let addr = scripted_server(chunked, false);
    let command = Command::Http(HttpRequest {
        expect_body: Some(b"hello, world".to_vec()),
        ..HttpRequest::default()
    });
    let report = run(addr, command, 4, 400);
    assert_eq!((report.requests, report.errors), (400, 0), "{:?}", report.first_error);
    assert_eq!(report.connections_opened, 4, "keep-alive across chunked responses");
}

#[test]
fn a_response_cut_mid_body_is_counted_and_the_run_ends_on_time() {
    let addr = scripted_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", true);
    let started = Instant::now();
    let report = run(addr, get("/"), 4, 200);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(report.error_counts.protocol, 200, "{:?}", report.error_counts);
    assert!(
        report
            .first_error
            .as_deref()
            .unwrap()
            .contains("closed the connection after"),
        "{:?}",
        report.first_error
    );
}

#[test]
fn malformed_responses_are_protocol_errors_and_never_stop_the_run() {
    let huge_head: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n", "a".repeat(70_000))
            .into_bytes()
            .into_boxed_slice(),
    );
    for (response, close) in [
        (&b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"[..], false),
        (b"garbage\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", false),
        (huge_head, false),
        (b"HTTP/1.1 200 OK\r\nConte", true),
    ] {
        let addr = scripted_server(response, close);
        let started = Instant::now();
        let report = run(addr, get("/"), 2, 50);
        let shown = String::from_utf8_lossy(&response[..response.len().min(40)]);
        assert!(started.elapsed() < Duration::from_secs(10), "{shown:?}");
        assert_eq!(report.requests, 0, "{shown:?}");
        assert_eq!(report.error_counts.protocol, 50, "{shown:?}: {:?}", report.error_counts);
    }
}
