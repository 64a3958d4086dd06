//! Shared by the eBPF test binaries.
#![allow(dead_code)] // each test binary uses a different subset
use profiler::{Mode, Requested};

/// The eBPF mode the tests profile in: `TCPPROF_TEST_MODE=kprobe|tracepoint`, tracepoint when
/// unset. `cargo xtask vm-test` runs them in kprobe mode on a kernel that has kprobes; asking for
/// kprobe on one without fails the tests rather than falling back.
pub fn test_mode() -> Mode {
    match std::env::var("TCPPROF_TEST_MODE").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("tracepoint") => Mode::Tracepoint,
        Ok("kprobe") => Mode::Kprobe,
        other => panic!("TCPPROF_TEST_MODE={other:?}: expected kprobe or tracepoint"),
    }
}

pub fn requested() -> Requested {
    Requested::Only(test_mode())
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs and need root: run `sudo -E cargo xtask test`"
    );
}
