//! Loads the real eBPF programs into this kernel and checks what they count against a child
//! process whose calls are known. Needs root; without it these tests fail, never pass silently.
mod common;

use common::{attaching, counting, options, test_mode};
use profiler::breakdown::Classes;
use profiler::workload::{self, OwnCalls};
use profiler::{ProfileOptions, Session};
use profiler_common::SyscallClass;
use std::path::Path;

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

/// Calls a Rust process makes beside the workload's own (runtime start-up, the go/done handshake
/// on stdin/stdout): a bound on double counting, far below what a leak from another process
/// would add.
const SLACK: u64 = 50;

fn assert_counts(counted: &Classes, expected: OwnCalls) {
    for (class, want) in [
        (SyscallClass::Accept, expected.accept),
        (SyscallClass::Read, expected.read),
        (SyscallClass::Write, expected.write),
    ] {
        let got = counted.get(class).calls;
        assert!(
            (want..=want + SLACK).contains(&got),
            "{}: counted {got} calls, the workload made {want} (+ at most {SLACK} of its runtime)",
            class.name()
        );
    }
}

#[test]
fn counts_a_known_workload() {
    let _turn = attaching();
    let (connections, messages) = (20, 50);
    let profile = workload::profile(Path::new(PROFILER), connections, messages, &options())
        .unwrap()
        .profile
        .unwrap();
    let counted = &profile.breakdown.classes;
    eprintln!("mode {}: {counted:?}", profile.breakdown.mode);
    assert_eq!(profile.breakdown.mode, test_mode());
    assert_counts(counted, workload::own_calls(connections, messages));

    let (read, write) = (&counted.read, &counted.write);
    let payload = connections * messages * 2 * workload::MESSAGE as u64;
    assert!(read.bytes >= payload, "read bytes {} < {payload}", read.bytes);
    assert!(write.bytes >= payload, "write bytes {} < {payload}", write.bytes);
    assert_eq!(counted.accept.bytes, 0, "accept moves no bytes");
    for class in SyscallClass::ALL {
        let t = counted.get(class);
        assert_eq!(
            t.hist_log2_ns.iter().sum::<u64>(),
            t.calls,
            "{}: histogram must hold every call",
            class.name()
        );
    }
    assert!(read.total_ns > 0 && write.total_ns > 0);
    assert!(counted.other.calls > 0, "the runtime makes other calls too");
    // Those other calls, by name: the workload's socket, bind, listen and connect among them.
    let other: Vec<&str> = profile.breakdown.syscalls.iter().map(|s| s.name.as_str()).collect();
    for name in ["socket", "bind", "listen", "connect"] {
        let row = profile.breakdown.syscalls.iter().find(|s| s.name == name);
        assert!(
            row.is_some_and(|s| s.calls >= 1),
            "{name} missing from the other syscalls: {other:?}"
        );
    }
    let by_name: u64 = profile.breakdown.syscalls.iter().map(|s| s.calls).sum();
    assert_eq!(by_name, counted.other.calls, "every other call is in one syscall's row");
}

#[test]
fn ignores_another_busy_process() {
    let _turn = attaching();
    let exe = Path::new(PROFILER);
    let (connections, messages) = (5, 20);
    // A bystander making 20x the target's calls at the same time.
    let mut bystander = workload::Child::spawn(exe, 20, 100).unwrap();
    let mut target = workload::Child::spawn(exe, connections, messages).unwrap();
    let session = Session::attach(&[target.pid()], &options()).unwrap();
    assert_eq!(session.mode(), test_mode());
    let bystander_run = std::thread::spawn(move || {
        bystander.run_to_done().unwrap();
        bystander
    });
    target.run_to_done().unwrap();
    let bystander = bystander_run.join().unwrap();
    let profile = session.finish(None).unwrap().profile.unwrap();
    bystander.finish().unwrap();
    target.finish().unwrap();
    assert_counts(&profile.breakdown.classes, workload::own_calls(connections, messages));
}

#[test]
fn programs_are_gone_after_the_session() {
    let _alone = counting();
    let before = bpf_objects();
    let target = workload::Child::spawn(Path::new(PROFILER), 1, 1).unwrap();
    let session = Session::attach(&[target.pid()], &options()).unwrap();
    assert_eq!(session.mode(), test_mode());
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
    let err = Session::attach(&[0], &ProfileOptions::default())
        .err()
        .expect("pid 0 must be refused");
    // Refused before any mode is tried: no mode could take it.
    assert!(
        matches!(err, profiler::AttachError::Refused(_)) && err.to_string().contains("pid 0"),
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
