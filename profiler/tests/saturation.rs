//! Saturation explained: one run per known cause on the real kernel and real sockets, each
//! checked for the signals that show it and for the verdict. Needs root (eBPF).
mod common;

use bench::load::{Command, ConnectionMode, LineCommand};
use bench::server::Model;
use common::require_root;
use profiler::benchmark::{Benchmark, Target};
use profiler::{LimitKind, Report, printer};
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
    assert!(
        s.server_cpu_pct.is_some() && s.accept_queue_limit == Some(4096),
        "{s:?}"
    );
    assert!(s.retransmits.is_none() && s.signal_errors.contains_key("retransmits"));
}
