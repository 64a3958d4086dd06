//! The load generator against the real epoll server (and two deliberately bad servers), all on
//! 127.0.0.1. Runs are small: the machine has two cores, shared.

mod support;

use bench::load::{self, Command, ConnectionMode, FixedRequest, LineCommand, LoadConfig, LoadReport};
use bench::protocol;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::start;

fn config(command: Command, concurrency: usize, requests: u64) -> LoadConfig {
    LoadConfig {
        concurrency,
        requests: Some(requests),
        // Tests must end quickly whatever happens.
        max_time: Some(Duration::from_secs(20)),
        ..LoadConfig::new(command)
    }
}

/// A clean run: every request answered correctly, and the counters agree with each other.
fn assert_clean(report: &LoadReport, config: &LoadConfig) {
    let n = config.requests.unwrap();
    assert_eq!(report.errors, 0, "first error: {:?}", report.first_error);
    assert_eq!(report.requests, n);
    assert_eq!(report.histogram.len(), n);
    assert!(!report.stopped_early);
    let (request_len, response_len) = support::exchange_len(&config.command);
    assert_eq!(report.bytes_sent, n * request_len);
    assert_eq!(report.bytes_received, n * response_len);
    let per_worker: u64 = report.workers.iter().map(|w| w.requests).sum();
    assert_eq!(per_worker, n);
    let connections: usize = report.workers.iter().map(|w| w.connections).sum();
    assert_eq!(connections, config.concurrency);
    assert!(report.throughput_rps > 0.0);
    assert!(report.latency_p50_us <= report.latency_p99_us);
    assert!(report.latency_p99_us <= report.latency_max_us);
    for w in &report.workers {
        if w.requests > 0 {
            assert!(w.send.calls >= w.requests && w.recv.calls >= w.requests, "{w:?}");
            assert!(w.send.min_us <= w.send.mean_us && w.send.mean_us <= w.send.max_us);
        }
    }
}

#[test]
fn echo_at_concurrency_1_10_100() {
    let server = start(bench::server::Model::Epoll);
    for (concurrency, requests) in [(1, 300), (10, 1000), (100, 2000)] {
        let config = config(
            Command::Line(LineCommand::Echo { payload_size: 64 }),
            concurrency,
            requests,
        );
        let report = load::run(server.addr(), &config).unwrap();
        assert_clean(&report, &config);
        assert_eq!(report.connections_opened, concurrency as u64);
        assert_eq!(report.latency_uncorrected, None);
    }
}

#[test]
fn large_echo_payloads() {
    let server = start(bench::server::Model::Epoll);
    let config = config(Command::Line(LineCommand::Echo { payload_size: 1 << 20 }), 2, 10);
    assert_clean(&load::run(server.addr(), &config).unwrap(), &config);
}

#[test]
fn ping_burn_stream_wait() {
    let server = start(bench::server::Model::Epoll);
    let addr = server.addr();
    for (command, concurrency, requests) in [
        (Command::Line(LineCommand::Ping), 4, 500),
        (Command::Line(LineCommand::Burn(1000)), 2, 50),
        (Command::Line(LineCommand::Stream(200_000)), 2, 20),
        (Command::Line(LineCommand::Stream(0)), 1, 10),
    ] {
        let config = config(command, concurrency, requests);
        assert_clean(&load::run(addr, &config).unwrap(), &config);
    }
    let config = config(Command::Line(LineCommand::Wait(20)), 5, 25);
    let report = load::run(addr, &config).unwrap();
    assert_clean(&report, &config);
    assert!(
        report.latency_p50_us >= 20_000,
        "WAIT 20 took {} us",
        report.latency_p50_us
    );
    assert!(report.elapsed >= Duration::from_millis(100), "{:?}", report.elapsed);
}

#[test]
fn a_connection_per_request() {
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        connection: ConnectionMode::PerRequest,
        ..config(Command::Line(LineCommand::Ping), 10, 400)
    };
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    assert_eq!(report.connections_opened, 400);
}

#[test]
fn a_duration_bounded_run_stops_on_time() {
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        requests: None,
        duration: Some(Duration::from_millis(300)),
        ..config(Command::Line(LineCommand::Ping), 4, 1)
    };
    let started = Instant::now();
    let report = load::run(server.addr(), &config).unwrap();
    let took = started.elapsed();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    assert!(report.requests > 0);
    assert_eq!(report.histogram.len(), report.requests);
    assert!(report.elapsed >= Duration::from_millis(300), "{:?}", report.elapsed);
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[test]
fn an_open_loop_run_keeps_its_schedule() {
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        rate: Some(1000.0),
        ..config(Command::Line(LineCommand::Ping), 4, 300)
    };
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    // 300 requests at 1000/s: the last one is due at 299 ms.
    assert!(report.elapsed >= Duration::from_millis(290), "{:?}", report.elapsed);
    assert!(report.elapsed < Duration::from_millis(1000), "{:?}", report.elapsed);
    let uncorrected = report.latency_uncorrected.expect("open loop reports both");
    assert_eq!(report.histogram_uncorrected.as_ref().unwrap().len(), 300);
    assert!(report.latency_max_us >= uncorrected.max_us);
    assert_eq!(report.rate, Some(1000.0));
}

#[test]
fn open_loop_latency_counts_from_the_schedule() {
    // One connection asked for 100 WAIT 20 per second can do only 50: each request starts
    // later than scheduled, and the corrected latency must show that delay.
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        rate: Some(100.0),
        ..config(Command::Line(LineCommand::Wait(20)), 1, 20)
    };
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    let uncorrected = report.latency_uncorrected.unwrap();
    assert!(uncorrected.max_us < 100_000, "{uncorrected:?}");
    // The 20th request was due at 190 ms and answered at about 400 ms.
    assert!(report.latency_max_us >= 150_000, "{}", report.latency_max_us);
}

#[test]
fn a_wrong_byte_is_an_error_and_the_run_goes_on() {
    let addr = corrupting_server(4);
    let config = config(Command::Line(LineCommand::Ping), 1, 20);
    let report = load::run(addr, &config).unwrap();
    assert_eq!(report.requests, 19);
    assert_eq!(report.errors, 1);
    assert_eq!(report.error_counts.mismatch, 1);
    assert_eq!(report.histogram.len(), 19);
    assert_eq!(report.connections_opened, 2, "reconnected after the bad response");
    let why = report.first_error.unwrap();
    assert!(why.contains("mismatch") && why.contains("PONX"), "{why}");
}

#[test]
fn a_silent_server_times_out() {
    let addr = silent_server();
    let config = LoadConfig {
        request_timeout: Some(Duration::from_millis(200)),
        ..config(Command::Line(LineCommand::Ping), 2, 4)
    };
    let started = Instant::now();
    let report = load::run(addr, &config).unwrap();
    assert_eq!(report.requests, 0);
    assert_eq!(report.error_counts.timeout, 4);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn the_hard_limit_ends_a_run() {
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        max_time: Some(Duration::from_millis(300)),
        ..config(Command::Line(LineCommand::Wait(5000)), 2, 10)
    };
    let started = Instant::now();
    let report = load::run(server.addr(), &config).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(report.stopped_early);
    assert_eq!(report.requests, 0);
    assert_eq!(report.error_counts.timeout, 2);
}

#[test]
fn nothing_listening() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = load::run(addr, &config(Command::Line(LineCommand::Ping), 2, 10)).unwrap_err();
    assert!(format!("{err:#}").contains("could not connect"), "{err:#}");
    let config = LoadConfig {
        connection: ConnectionMode::PerRequest,
        ..config(Command::Line(LineCommand::Ping), 2, 10)
    };
    let report = load::run(addr, &config).unwrap();
    assert_eq!((report.requests, report.error_counts.connect), (0, 10));
}

#[test]
fn a_long_wait_does_not_slow_pings_on_another_connection() {
    let server = start(bench::server::Model::Epoll);
    let addr = server.addr();
    let waiter = std::thread::spawn(move || load::run(addr, &config(Command::Line(LineCommand::Wait(2000)), 1, 1)));
    std::thread::sleep(Duration::from_millis(100));
    let pings = load::run(addr, &config(Command::Line(LineCommand::Ping), 1, 50)).unwrap();
    assert_eq!(pings.requests, 50);
    assert!(pings.latency_max_us < 100_000, "PING max {} us", pings.latency_max_us);
    let wait = waiter.join().unwrap().unwrap();
    assert_eq!(wait.requests, 1);
    assert!(wait.latency_max_us >= 2_000_000, "{}", wait.latency_max_us);
}

#[test]
fn a_thousand_connections() {
    bench::raise_nofile_limit().unwrap();
    let server = start(bench::server::Model::Epoll);
    let config = config(Command::Line(LineCommand::Ping), 1000, 3000);
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
}

#[test]
fn workers_are_pinned_when_asked() {
    let server = start(bench::server::Model::Epoll);
    let config = LoadConfig {
        client_cpus: Some(vec![0]),
        ..config(Command::Line(LineCommand::Ping), 2, 20)
    };
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    assert_eq!(report.workers.len(), 1);
    assert_eq!(report.workers[0].pinned_cpu, Some(0));
    assert_eq!(report.workers[0].cpu, Some(0));
}

#[test]
fn custom_requests_and_the_json_report() {
    let server = start(bench::server::Model::Epoll);
    let command = Command::Fixed(FixedRequest {
        request: b"ECHO custom\n".to_vec(),
        response: b"custom\n".to_vec(),
    });
    let config = config(command, 1, 5);
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    let json = serde_json::to_value(&report).unwrap();
    for field in [
        "latency_p50_us",
        "latency_p95_us",
        "latency_p99_us",
        "latency_p999_us",
        "latency_max_us",
        "latency_mean_us",
        "throughput_rps",
        "elapsed_ms",
        "errors",
        "bytes_sent",
        "bytes_received",
        "workers",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    assert_eq!(json["requests"], 5);
    assert!(json["workers"][0]["send"]["calls"].as_u64().unwrap() >= 5);
}

/// Answers PING lines with PONG, except response number `bad` (counted over all connections),
/// which is `PONX`.
fn corrupting_server(bad: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(stream) = stream else { return };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines().take(100) {
                    let Ok(_) = line else { return };
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let reply: &[u8] = if n == bad { b"PONX\n" } else { protocol::PONG };
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Accepts connections and never answers (for a few seconds).
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(8).collect();
        std::thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    addr
}

#[test]
fn ten_thousand_connections() {
    let limit = bench::raise_nofile_limit().unwrap();
    assert!(
        limit >= 10_500,
        "RLIMIT_NOFILE {limit} is below 10,500 even after raising it (run as root)"
    );
    let server = start(bench::server::Model::Epoll);
    let config = config(Command::Line(LineCommand::Ping), 10_000, 10_000);
    let started = Instant::now();
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    assert_eq!(report.connections_opened, 10_000);
    eprintln!("10,000 connections: {:?}", started.elapsed());
}

/// Past one source address's share of the ephemeral ports, connections come from more loopback
/// addresses. In a network namespace of the test's own with 1,000 ephemeral ports (its sysctl is
/// the namespace's), 3,000 connections need 12 addresses of 250; every one opens and is answered.
/// (This machine's RLIMIT_NOFILE hard limit, 20,000, keeps one process below 30,000 sockets.)
#[test]
fn connections_past_one_address_ports_come_from_more_addresses() {
    support::private_network(40_000..=40_999);
    let server = start(bench::server::Model::Epoll);
    let config = config(Command::Line(LineCommand::Ping), 3000, 6000);
    let report = load::run(server.addr(), &config).unwrap();
    assert_clean(&report, &config);
    assert_eq!(report.connections_opened, 3000);
    assert_eq!(report.source_addresses, 12);
    // Without the spreading the kernel has no port left: one address holds no more than 1,000.
    let sockets: Vec<std::io::Result<std::net::TcpStream>> =
        (0..1100).map(|_| std::net::TcpStream::connect(server.addr())).collect();
    let refused = sockets.iter().filter(|s| s.is_err()).count();
    assert!(refused >= 100, "{refused} of 1,100 connects failed from one address");
}

#[test]
fn intervals_cover_the_run_in_order_and_add_up_to_it() {
    let server = start(bench::server::Model::Epoll);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        Arc::new(move |i: &load::Interval| seen.lock().unwrap().push(i.clone()))
    };
    let cfg = LoadConfig {
        concurrency: 4,
        threads: Some(2),
        duration: Some(Duration::from_millis(550)),
        rate: Some(4000.0),
        intervals: Some(load::Intervals {
            length: Duration::from_millis(100),
            sink,
        }),
        ..config(Command::Line(LineCommand::Ping), 4, 0)
    };
    let cfg = LoadConfig { requests: None, ..cfg };
    let report = load::run(server.addr(), &cfg).unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.first_error);
    let seen = seen.lock().unwrap();
    let indexes: Vec<u64> = seen.iter().map(|i| i.index).collect();
    assert_eq!(
        indexes,
        (0..seen.len() as u64).collect::<Vec<_>>(),
        "in order, none missing"
    );
    assert!((6..=7).contains(&seen.len()), "550 ms in 100 ms intervals: {indexes:?}");
    let requests: u64 = seen.iter().map(|i| i.requests).sum();
    assert_eq!(requests, report.requests);
    let recorded: u64 = seen.iter().map(|i| i.latency.len()).sum();
    assert_eq!(recorded, report.histogram.len());
    // At 4,000 requests/s, a full interval holds about 400.
    let full = &seen[1];
    assert_eq!(full.length, Duration::from_millis(100));
    assert!((300..=500).contains(&full.requests), "{full:?}");
    assert!(seen.last().unwrap().length <= Duration::from_millis(100));
}
