//! Saturation explained: one run per known cause on the real kernel and real sockets, each
//! checked for the signals that show it and for the verdict. Needs root (eBPF).
mod common;

use bench::load::{Command, ConnectionMode, FixedRequest, LineCommand, LoadConfig};
use bench::server::Model;
use common::{Peer, free_port, require_root, wait_for_port};
use profiler::benchmark::{Benchmark, Target};
use profiler::{LimitKind, Report, printer};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn benchmark(model: Model, command: Command, concurrency: usize, requests: u64) -> Benchmark {
    let mut b = Benchmark::new(Target::server(model), command);
    b.load.concurrency = concurrency;
    b.load.requests = Some(requests);
    b
}

fn run(b: &Benchmark) -> Report {
    let report = b.run().unwrap();
    eprintln!("{}", printer::report_table(&report));
    report
}

#[test]
fn a_full_accept_queue_is_named() {
    require_root();
    // One client served at a time for 5 ms each, a queue of 4, and 100 clients connecting anew
    // for every request: the queue fills and the kernel refuses connections.
    let mut b = benchmark(Model::Iterative, Command::Line(LineCommand::Wait(5)), 100, 300);
    if let Target::Server(spec) = &mut b.target {
        spec.backlog = Some(4);
    }
    b.load.connection = ConnectionMode::PerRequest;
    // Refused SYNs are retried after 1, 3, 7 s: bound the run rather than wait them out.
    b.load.request_timeout = Some(Duration::from_secs(2));
    let r = run(&b);
    let s = &r.signals;
    assert!(s.listen_overflows.unwrap() > 0, "{s:?}");
    assert_eq!(s.accept_queue_limit, Some(4), "{s:?}");
    assert!(s.accept_queue_max.unwrap() >= 4, "{s:?}");
    assert_eq!(r.limit.kind, LimitKind::AcceptQueue, "{:?}", r.limit);
    assert!(r.limit.reason.contains("/4)"), "{}", r.limit.reason);
}

#[test]
fn threads_waiting_for_a_cpu_are_named() {
    require_root();
    // A thread per connection, 1,000 of them on the server's one core.
    let r = run(&benchmark(
        Model::Threads,
        Command::Line(LineCommand::Ping),
        1000,
        50_000,
    ));
    let s = &r.signals;
    assert!(s.runq_p99_us.unwrap() >= 1000.0, "{s:?}");
    assert!(s.runq_max_us.unwrap() >= s.runq_p99_us.unwrap(), "{s:?}");
    let hist = s.runq_hist.as_ref().unwrap();
    assert_eq!(hist.iter().map(|b| b.count).sum::<u64>(), s.runq_waits.unwrap());
    // The server uses its one core fully, so server-cpu comes first (docs/saturation.md); with
    // cores to spare, the waits would be named run-queue.
    assert!(
        matches!(r.limit.kind, LimitKind::ServerCpu | LimitKind::RunQueue),
        "{:?}",
        r.limit
    );
}

#[test]
fn a_busy_server_is_named() {
    require_root();
    let r = run(&benchmark(
        Model::Epoll,
        Command::Line(LineCommand::Burn(20_000)),
        4,
        1500,
    ));
    let s = &r.signals;
    assert!(s.server_cpu_pct.unwrap() >= 90.0, "{s:?}");
    assert_eq!(s.server_cores, Some(1), "pinned to CPU 0 by default");
    assert!(s.client_cpu_pct.unwrap() < 50.0, "{s:?}");
    assert_eq!(r.limit.kind, LimitKind::ServerCpu, "{:?}", r.limit);
    assert_eq!(
        [s.retransmits, s.resets_sent, s.buffer_limit],
        [Some(0); 3],
        "no TCP trouble on a clean run: {s:?}"
    );
}

#[test]
fn a_server_sharing_its_core_is_named() {
    require_root();
    // A thread of ours spinning on the server's core for the whole run: the server gets half of
    // it, and waits the other half of the time it is runnable.
    let mut b = benchmark(Model::Epoll, Command::Line(LineCommand::Burn(200)), 4, 0);
    b.load.requests = None;
    b.load.duration = Some(Duration::from_secs(2));
    let spin = AtomicBool::new(true);
    let r = std::thread::scope(|scope| {
        scope.spawn(|| {
            bench::sys::pin_current_thread(&[0]).unwrap();
            while spin.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let r = run(&b);
        spin.store(false, Ordering::Relaxed);
        r
    });
    let s = &r.signals;
    let share = s.runq_share_pct().unwrap();
    assert!(share >= profiler::limit::RUNQ_SHARE_PCT, "{share}% {s:?}");
    assert!(s.loaded_server_cpu_pct.unwrap() < 90.0, "{s:?}");
    assert!(s.runq_long_waits.unwrap() >= profiler::limit::RUNQ_MIN_WAITS, "{s:?}");
    assert_eq!(r.limit.kind, LimitKind::RunQueue, "{:?}", r.limit);
    assert!(r.limit.reason.contains("in long waits for a CPU"), "{}", r.limit.reason);
}

#[test]
fn a_busy_load_generator_is_named() {
    require_root();
    // A connection per request costs the client more than the server (a socket, an ephemeral
    // port, the handshake's both ends run in its context): the client's core runs out first.
    let mut b = benchmark(Model::Epoll, Command::Line(LineCommand::Ping), 10, 20_000);
    b.load.connection = ConnectionMode::PerRequest;
    let r = run(&b);
    let s = &r.signals;
    // Running, or runnable and waiting for its core (a kernel thread can take a share of it).
    let busy = s.client_busiest_worker_pct.unwrap() + s.client_busiest_worker_runq_pct.unwrap();
    assert!(busy >= 90.0, "{s:?}");
    assert!(s.server_cpu_pct.unwrap() < 90.0, "{s:?}");
    assert_eq!(r.limit.kind, LimitKind::ClientCpu, "{:?}", r.limit);
    // Every connection ends with our own reset (SO_LINGER 0): counted, but not trouble.
    assert!(s.resets_received.unwrap() >= 20_000, "{s:?}");
}

#[test]
fn a_sweep_names_its_knee_and_why() {
    require_root();
    let b = benchmark(Model::Threads, Command::Line(LineCommand::Ping), 1, 20_000);
    let sweep = b.sweep(&[1, 10, 100, 1000], |_, _| {}).unwrap();
    let table = printer::sweep_table(&sweep);
    eprintln!("{table}");
    assert_eq!(sweep.levels.len(), 4);
    let knee = sweep.saturation.expect("a knee between 1 and 1,000 connections");
    assert!([1, 10, 100].contains(&knee), "{knee}");
    let reason = sweep.saturation_reason.as_deref().unwrap();
    assert!(reason.contains(&format!("from {knee} to")), "{reason}");
    let past = sweep
        .levels
        .iter()
        .find(|l| l.load.as_ref().unwrap().concurrency > knee)
        .unwrap();
    assert_ne!(past.limit.kind, LimitKind::None, "{:?}", past.limit);
    assert!(reason.contains(past.limit.kind.as_str()), "{reason}");
    assert!(table.contains(&format!("knee at {knee} connections")), "{table}");
    for level in &sweep.levels {
        assert!(level.signals.server_cpu_pct.is_some() && level.signals.runq_waits.is_some());
    }
}

#[test]
fn userspace_mode_reports_what_proc_gives() {
    require_root();
    let mut b = benchmark(
        Model::Epoll,
        Command::Line(LineCommand::Echo { payload_size: 64 }),
        4,
        5000,
    );
    b.profiling.mode = profiler::Requested::Only(profiler::Mode::Userspace);
    let r = b.profile().unwrap_or_else(|e| panic!("{e:?}"));
    let s = &r.signals;
    assert!(s.runq_p99_us.is_none());
    let why = &s.signal_errors["runq_p99_us"];
    assert!(why.contains("userspace") && why.contains("/proc"), "{why}");
    assert!(s.runq_mean_us.is_some(), "{s:?}");
    // The total wait is in /proc; which waits were long is not.
    assert!(s.runq_wait_ms.is_some() && s.runq_waits.is_some(), "{s:?}");
    assert!(s.runq_long_wait_ms.is_none() && s.runq_share_pct().is_none(), "{s:?}");
    assert_eq!(s.loaded_part, profiler::signals::LoadedPart::Load, "{s:?}");
    assert!(
        s.server_cpu_pct.is_some() && s.accept_queue_limit == Some(4096),
        "{s:?}"
    );
    assert!(s.retransmits.is_none() && s.signal_errors.contains_key("retransmits"));
}

#[test]
fn a_profiled_server_is_judged_over_the_part_it_was_busy() {
    require_root();
    // Issue 20's case: a single-threaded Python server on CPU 0, loaded for 3 s from CPU 1 inside
    // a 4 s `tcpprof profile` window. Out of CPU throughout its load, it used some 75% of its
    // core over the window; a few waits for a CPU (116 there, 8.6 ms in all) once read
    // run-queue.
    let python = common::python_with_perf();
    let script = common::server_script("checksum_server.py");
    let port = free_port();
    let server = Peer::start(
        "taskset",
        &["-c", "0", &python.to_string_lossy(), &script, &port.to_string()],
    );
    wait_for_port(port);
    let mut profile = common::profile_json(&server.pid().to_string(), "4")
        .args(["--mode", &common::test_mode().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The window opens once the programs are attached, which it says on stderr.
    let mut stderr = BufReader::new(profile.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("profiling pids") {
        line.clear();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(read > 0, "tcpprof profile ended before attaching");
    }
    std::thread::sleep(Duration::from_millis(300));
    let load = LoadConfig {
        concurrency: 4,
        duration: Some(Duration::from_secs(3)),
        client_cpus: Some(vec![1]),
        ..LoadConfig::new(Command::Fixed(FixedRequest {
            request: b"abcdefghij 30\n".to_vec(),
            response: common::checksum_answer(b"abcdefghij", 30),
        }))
    };
    let load = bench::load::run(SocketAddr::from(([127, 0, 0, 1], port)), &load).unwrap();
    assert!(load.requests > 1000 && load.errors == 0, "{load:?}");
    let out = profile.wait_with_output().unwrap();
    assert!(out.status.success(), "tcpprof profile failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the profile, as JSON");
    let (s, limit) = (&report["signals"], &report["limit"]);
    eprintln!("signals: {s}\nlimit: {limit}");
    let f = |field: &str| s[field].as_f64().unwrap_or_else(|| panic!("{field} in {s}"));
    // Busy for the load's 3 s (and a slice either side) of the 4 s window, and judged over them.
    assert_eq!(s["loaded_part"], "busy", "{s}");
    assert!((2900.0..=3300.0).contains(&f("busy_ms")), "{s}");
    assert_eq!(f("loaded_ms"), f("busy_ms"), "{s}");
    assert!(
        f("server_cpu_pct") < 90.0,
        "over the whole window the server was not out of CPU: {s}"
    );
    assert!(f("loaded_busiest_thread_pct") >= 90.0, "{s}");
    assert_eq!(limit["kind"], "server-cpu", "{limit}");
    let reason = limit["reason"].as_str().unwrap();
    assert!(reason.contains("it was busy (of a 4.0 s window)"), "{reason}");
}
