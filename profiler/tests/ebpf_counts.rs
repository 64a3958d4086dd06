//! Loads the real eBPF programs into this kernel and checks what they count against a child
//! process whose calls are known. Needs root; without it these tests fail, never pass silently.
mod common;

use common::{requested, require_root, test_mode};
use profiler::workload::{self, Expected};
use profiler::{Requested, Session};
use profiler_common::SyscallClass;
use std::path::Path;

const PROFILER: &str = env!("CARGO_BIN_EXE_profiler");

/// Calls a Rust process makes beside the workload's own (runtime start-up, the go/done handshake
/// on stdin/stdout): a bound on double counting, far below what a leak from another process
/// would add.
const SLACK: u64 = 50;

fn assert_counts(counted: &profiler::Totals, expected: Expected) {
    for (class, want) in [
        (SyscallClass::Accept, expected.accept),
        (SyscallClass::Read, expected.read),
        (SyscallClass::Write, expected.write),
    ] {
        let got = counted.class(class).calls;
        assert!(
            (want..=want + SLACK).contains(&got),
            "{}: counted {got} calls, the workload made {want} (+ at most {SLACK} of its runtime)",
            class.name()
        );
    }
}

#[test]
fn counts_a_known_workload() {
    require_root();
    let (connections, messages) = (20, 50);
    let (totals, session) = workload::profile(Path::new(PROFILER), connections, messages, requested()).unwrap();
    eprintln!("mode {}: {totals:?}", session.mode);
    assert_eq!(session.mode, test_mode());
    assert_counts(&totals, workload::expected(connections, messages));

    let read = totals.class(SyscallClass::Read);
    let write = totals.class(SyscallClass::Write);
    let payload = connections * messages * 2 * workload::MESSAGE as u64;
    assert!(read.bytes >= payload, "read bytes {} < {payload}", read.bytes);
    assert!(write.bytes >= payload, "write bytes {} < {payload}", write.bytes);
    assert_eq!(totals.class(SyscallClass::Accept).bytes, 0, "accept moves no bytes");
    for class in SyscallClass::ALL {
        let t = totals.class(class);
        assert_eq!(
            t.hist.iter().sum::<u64>(),
            t.calls,
            "{}: histogram must hold every call",
            class.name()
        );
    }
    assert!(read.total_ns > 0 && write.total_ns > 0);
    assert!(
        totals.class(SyscallClass::Other).calls > 0,
        "the runtime makes other calls too"
    );
}

#[test]
fn ignores_another_busy_process() {
    require_root();
    let exe = Path::new(PROFILER);
    let (connections, messages) = (5, 20);
    // A bystander making 20x the target's calls at the same time.
    let mut bystander = workload::Child::spawn(exe, 20, 100).unwrap();
    let mut target = workload::Child::spawn(exe, connections, messages).unwrap();
    let session = Session::attach(target.pid(), requested()).unwrap();
    assert_eq!(session.mode, test_mode());
    let bystander_run = std::thread::spawn(move || {
        bystander.run_to_done().unwrap();
        bystander
    });
    target.run_to_done().unwrap();
    let bystander = bystander_run.join().unwrap();
    let totals = session.read_totals().unwrap();
    bystander.finish().unwrap();
    target.finish().unwrap();
    assert_counts(&totals, workload::expected(connections, messages));
}

#[test]
fn programs_are_gone_after_the_session() {
    require_root();
    let before = bpf_objects();
    let target = workload::Child::spawn(Path::new(PROFILER), 1, 1).unwrap();
    let session = Session::attach(target.pid(), requested()).unwrap();
    assert_eq!(session.mode, test_mode());
    assert!(bpf_objects() > before, "attached programs hold bpf descriptors");
    drop(session);
    assert_eq!(
        bpf_objects(),
        before,
        "programs, maps and links must be closed with the session"
    );
    drop(target);
}

#[test]
fn refuses_pid_zero() {
    let err = Session::attach(0, Requested::Auto)
        .err()
        .expect("pid 0 must be refused");
    assert!(
        !err.reasons.is_empty() && err.reasons.iter().all(|r| r.contains("pid 0")),
        "{err}"
    );
}

/// bpf-prog, bpf-map and bpf-link descriptors this process holds.
fn bpf_objects() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("anon_inode:bpf"))
        .count()
}
