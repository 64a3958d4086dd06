//! The breakdown against workloads whose answer is known, on the real kernel with a real
//! bench-server child and the real load generator. Needs root (eBPF).
mod common;

use bench::load::{Command, ConnectionMode, LineCommand};
use bench::server::Model;
use common::{options, require_root, test_mode};
use profiler::benchmark::{Benchmark, ProfileError, Target, bench_server_exe};
use profiler::signals::cpu::{thread_deltas, thread_stats};
use profiler::{Breakdown, Mode, Part, ProfileOptions, Requested, Session};
use std::time::Duration;

/// Server on CPU 0 and load on CPU 1, as the node does by default, profiled in the test mode.
fn benchmark(command: Command, requests: u64, concurrency: usize) -> Benchmark {
    let mut b = Benchmark::new(Target::server(Model::Epoll), command);
    b.load.requests = Some(requests);
    b.load.concurrency = concurrency;
    b.profiling = options();
    b
}

fn profile(b: &Benchmark) -> Breakdown {
    let run = b.profile().unwrap_or_else(|e| panic!("{e:?}"));
    let (report, profile) = (run.load.unwrap(), run.profile.unwrap());
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(profile.breakdown.mode, test_mode());
    let sum = profile.breakdown.breakdown.sum();
    assert!(
        (sum - 100.0).abs() <= 0.1,
        "percentages sum to {sum}: {:?}",
        profile.breakdown.breakdown
    );
    eprintln!("{}", profiler::printer::profile_table(&profile));
    profile.breakdown
}

#[test]
fn burn_is_process() {
    require_root();
    let b = profile(&benchmark(Command::Line(LineCommand::Burn(20_000)), 300, 4));
    assert_eq!(b.bottleneck, Some(Part::Process), "{:?}", b.breakdown);
    assert!(b.breakdown.process_pct > 60.0, "{:?}", b.breakdown);
}

#[test]
fn large_stream_is_write() {
    require_root();
    let b = profile(&benchmark(Command::Line(LineCommand::Stream(4 << 20)), 40, 2));
    assert_eq!(b.bottleneck, Some(Part::Write), "{:?}", b.breakdown);
    assert!(b.classes.write.bytes >= 40 * (4 << 20), "{:?}", b.classes.write);
}

#[test]
fn small_echo_is_io_more_than_process() {
    require_root();
    let b = profile(&benchmark(
        Command::Line(LineCommand::Echo { payload_size: 64 }),
        20_000,
        10,
    ));
    let io = b.breakdown.read_pct + b.breakdown.write_pct;
    assert!(
        io > b.breakdown.process_pct,
        "read + write {io} <= process: {:?}",
        b.breakdown
    );
}

/// The exact modes measure what their tracing costs the target per syscall and take it out of
/// the parts: it is there, of a plausible size, and charged for every syscall counted.
#[test]
fn the_exact_modes_take_their_tracing_cost_out() {
    require_root();
    let b = profile(&benchmark(
        Command::Line(LineCommand::Echo { payload_size: 64 }),
        20_000,
        10,
    ));
    assert_eq!(b.tracing_error, None);
    let t = b.tracing.expect("an exact mode measures its tracing cost");
    let per_call = t.per_call.process_ns + t.per_call.syscall_ns;
    // Some 150 to 450 ns on the machines here, some 6 us under the VM test's emulated CPU: a
    // wrong sign or unit would fall below the floor, and a cost larger than the server's own work
    // fails the share below.
    assert!(per_call >= 20.0, "{t:?}");
    let calls = b.classes.accept.calls + b.classes.read.calls + b.classes.write.calls + b.classes.other.calls;
    assert!(calls >= 40_000, "{calls} calls");
    // Every call was charged it (less only where a part had less to give).
    let charged = calls as f64 * per_call;
    assert!(
        t.ns as f64 <= charged + calls as f64 && t.ns as f64 >= charged * 0.5,
        "{t:?}, {calls} calls"
    );
    assert!(t.pct > 0.0 && t.pct < 50.0, "{t:?}");
}

#[test]
fn per_request_connections_push_accept_up() {
    require_root();
    // Long enough that its ten accepts stay a small share even when one stands still for
    // milliseconds: under QEMU's TCG, where the VM test runs, a vCPU can wait while the other
    // runs, and the time goes to whatever it was doing. One accept of 4 ms was seen, 3.1% of a
    // 3,000-request window.
    let persistent = profile(&benchmark(Command::Line(LineCommand::Ping), 12_000, 10));
    let mut per_request = benchmark(Command::Line(LineCommand::Ping), 3000, 10);
    per_request.load.connection = ConnectionMode::PerRequest;
    let per_request = profile(&per_request);
    assert!(
        per_request.classes.accept.calls >= 3000,
        "{:?}",
        per_request.classes.accept
    );
    let (a, b) = (persistent.breakdown.accept_pct, per_request.breakdown.accept_pct);
    assert!(
        b > 1.0 && b > 5.0 * a.max(0.1),
        "accept share: persistent {a}%, per-request {b}%"
    );
}

#[test]
fn load_generator_calls_are_not_counted() {
    require_root();
    // Closed loop on one connection: the server writes exactly one response per request, and
    // the client writes one request per request. Counting the client would double the writes.
    let requests = 5000;
    let b = profile(&benchmark(Command::Line(LineCommand::Ping), requests, 1));
    let writes = b.classes.write.calls;
    assert!(
        (requests..requests + 50).contains(&writes),
        "server write calls {writes} for {requests} requests"
    );
    assert_eq!(b.classes.write.bytes, requests * 5, "PONG\\n per request");
    // The server drains accept until EAGAIN: one connection, one failed call.
    let accept = b.classes.accept;
    assert_eq!(accept.calls - accept.errors, 1, "one persistent connection: {accept:?}");
}

/// eBPF's time on CPU against the kernel's own (schedstat's first field), and its time runnable
/// (on CPU or waiting in the run queue) against schedstat's first two fields together.
///
/// The two draw the line between the run queue and the CPU at different points of `__schedule`:
/// the kernel where it updates the run-queue clock, before it picks the next task; eBPF, as BCC's
/// runqlat does, at the sched_switch tracepoint after the pick (docs/saturation.md). That moves
/// about 1.6 us per switch between on-CPU and waiting on this hardware, but 10-30 us under QEMU's
/// TCG, where the VM test runs: with ten connections the server there switched 3,000 times and
/// 2-8% of its on-CPU time crossed the line. With two hundred connections it drains many per
/// wakeup and switches under 400 times. The time runnable does not depend on where the line
/// falls: it agreed within 0.4% under TCG and mostly within 0.1% here, but in 5 of 80 runs on this
/// machine's kernel (6.18) schedstat counted 1-3.5 ms more run-queue wait (up to 2%) than the
/// programs saw, with on-CPU still within 0.1%; the cause is not known, so it has the same bound.
#[test]
fn oncpu_agrees_with_schedstat() {
    require_root();
    // Placed as a benchmark places them when it runs: server and load on CPUs of their own.
    let (Target::Server(spec), load) =
        benchmark(Command::Line(LineCommand::Echo { payload_size: 64 }), 30_000, 200).placed()
    else {
        unreachable!()
    };
    let server = bench::server::spawn_child(&bench_server_exe().unwrap(), &spec).unwrap();
    let session = Session::attach(&[server.pid()], &options()).unwrap();
    assert_eq!(session.mode(), test_mode());
    let before = thread_stats(&[server.pid()]);
    let report = bench::load::run(server.addr(), &load).unwrap();
    assert_eq!(report.errors, 0);
    // Let the server finish closing the connections before both sides stop counting.
    std::thread::sleep(Duration::from_millis(200));
    let kernel = thread_deltas(&before, &thread_stats(&[server.pid()]));
    let totals = session.totals().unwrap();
    let kernel_oncpu: u64 = kernel.iter().map(|s| s.oncpu_ns).sum();
    let kernel_runnable = kernel_oncpu + kernel.iter().map(|s| s.run_delay_ns).sum::<u64>();
    let (oncpu, runnable) = (totals.oncpu_ns(), totals.oncpu_ns() + totals.runq.wait_ns);
    let apart = |ours: u64, theirs: u64| (ours as f64 - theirs as f64).abs() / theirs as f64;
    eprintln!(
        "on-CPU: eBPF {oncpu} ns, schedstat {kernel_oncpu} ns, {:.2}% apart; runnable: eBPF \
         {runnable} ns, schedstat {kernel_runnable} ns, {:.2}% apart; {} switches",
        apart(oncpu, kernel_oncpu) * 100.0,
        apart(runnable, kernel_runnable) * 100.0,
        totals.sched.voluntary + totals.sched.involuntary,
    );
    assert!(
        kernel_oncpu > 10_000_000,
        "the server should have worked for more than 10 ms, got {kernel_oncpu} ns"
    );
    assert!(
        apart(oncpu, kernel_oncpu) <= 0.05,
        "eBPF on-CPU {oncpu} ns vs schedstat {kernel_oncpu} ns: {:.1}% apart",
        apart(oncpu, kernel_oncpu) * 100.0
    );
    assert!(
        apart(runnable, kernel_runnable) <= 0.05,
        "eBPF runnable {runnable} ns vs schedstat {kernel_runnable} ns: {:.1}% apart",
        apart(runnable, kernel_runnable) * 100.0
    );
}

#[test]
fn kprobe_mode_attaches_or_fails_cleanly_and_auto_falls_back() {
    require_root();
    let mut b = benchmark(Command::Line(LineCommand::Ping), 500, 2);
    let kprobes = profiler::attach::kernel_has_kprobes();
    b.profiling.mode = Requested::Only(Mode::Kprobe);
    match b.profile() {
        Ok(run) => {
            let profile = run.profile.unwrap();
            assert!(kprobes, "kprobe mode attached on a kernel said to have none");
            assert_eq!(profile.breakdown.mode, Mode::Kprobe);
            assert!(profile.breakdown.classes.write.calls >= 500);
        }
        Err(ProfileError::Unavailable(reason)) => {
            assert!(!kprobes, "kprobe mode failed on a kernel with kprobes: {reason}");
            assert!(reason.contains("kprobe"), "{reason}");
            b.profiling = ProfileOptions::default();
            let auto = b.profile().unwrap_or_else(|e| panic!("{e:?}")).profile.unwrap();
            assert_eq!(auto.breakdown.mode, Mode::Tracepoint);
            assert!(
                auto.breakdown
                    .fallback_reasons
                    .first()
                    .is_some_and(|r| r.starts_with("kprobe:")),
                "{:?}",
                auto.breakdown.fallback_reasons
            );
        }
        Err(e) => panic!("{e:?}"),
    }
}
