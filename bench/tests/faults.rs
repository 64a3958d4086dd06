//! Faults during a run: a server frozen past the request timeout, and targets that refuse,
//! never answer, or close at once. Each run ends by its own deadline with its errors counted by
//! kind. All on 127.0.0.1.

mod support;

use bench::load::{self, Command, ConnectionMode, LineCommand, LoadConfig, LoadReport};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use support::start;

/// PING for `duration` on 4 connections, a request timing out after 300 ms.
fn run(target: SocketAddr, connection: ConnectionMode, duration: Duration) -> (LoadReport, Duration) {
    let config = LoadConfig {
        concurrency: 4,
        duration: Some(duration),
        connection,
        request_timeout: Some(Duration::from_millis(300)),
        ..LoadConfig::new(Command::Line(LineCommand::Ping))
    };
    let started = Instant::now();
    let report = load::run(target, &config).unwrap();
    eprintln!("{:?}, first error {:?}", report.error_counts, report.first_error);
    (report, started.elapsed())
}

/// The deadline of a run of `duration`: its requests in flight then get their timeout, and the
/// threads a moment to stop.
fn deadline(duration: Duration) -> Duration {
    duration + Duration::from_millis(300) + Duration::from_millis(700)
}

#[test]
fn a_server_stopped_past_the_request_timeout_counts_timeouts_and_the_run_ends_on_time() {
    let server = start(bench::server::Model::Epoll);
    let pid = server.pid() as i32;
    let freezer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child server.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(1000));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    let duration = Duration::from_millis(2000);
    let (report, took) = run(server.addr(), ConnectionMode::Persistent, duration);
    freezer.join().unwrap();
    assert!(report.error_counts.timeout >= 4, "{:?}", report.error_counts);
    assert!(report.requests > 0, "answered before and after the freeze");
    assert!(took <= deadline(duration), "{took:?}");
}

#[test]
fn refusing_silent_and_closing_targets_fail_by_kind_within_the_deadline() {
    let duration = Duration::from_millis(800);
    // Nothing listens: each connect is refused.
    let refusing = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (report, took) = run(refusing, ConnectionMode::PerRequest, duration);
    assert!(report.error_counts.connect > 0 && report.errors == report.error_counts.connect);
    assert!(took <= deadline(duration), "{took:?}");
    let persistent = LoadConfig {
        duration: Some(duration),
        ..LoadConfig::new(Command::Line(LineCommand::Ping))
    };
    let err = load::run(refusing, &persistent).unwrap_err();
    assert!(format!("{err:#}").contains("could not connect"), "{err:#}");

    // Accepts (the kernel does, into the backlog) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (report, took) = run(silent.local_addr().unwrap(), ConnectionMode::Persistent, duration);
    assert!(report.error_counts.timeout > 0 && report.errors == report.error_counts.timeout);
    assert_eq!(report.requests, 0);
    assert!(took <= deadline(duration), "{took:?}");

    // Accepts and closes at once.
    let closing = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closing.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in closing.incoming() {
            drop(stream);
        }
    });
    let (report, took) = run(addr, ConnectionMode::Persistent, duration);
    let c = report.error_counts;
    assert!(c.closed + c.io > 0 && c.timeout == 0, "{c:?}");
    assert_eq!(report.requests, 0);
    assert!(took <= deadline(duration), "{took:?}");
}
