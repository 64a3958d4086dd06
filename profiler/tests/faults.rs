//! Stopping tcpprof mid-run and losing its target: SIGINT or SIGTERM to `bench` and `profile`
//! end the run, print what was measured marked partial, exit with 128 + the signal, and leave
//! no BPF program, link or perf event (counted with bpftool) and no child process behind; a
//! profiled process that exits mid-window is reported as exited, with exit status 0. Needs root.
mod common;

use common::{Peer, profile_json, require_root};
use owned_child::OwnedChild;
use profiler::procfs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TCPPROF: &str = env!("CARGO_BIN_EXE_tcpprof");

/// BPF programs, links and perf events in the kernel now, as bpftool lists them.
fn bpf_objects() -> [usize; 3] {
    ["prog", "link", "perf"].map(|what| {
        let out = Command::new("bpftool")
            .args([what, "show", "--json"])
            .output()
            .expect("running bpftool (`cargo xtask test` installs it)");
        assert!(
            out.status.success(),
            "bpftool {what} show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| serde_json::json!([]));
        list.as_array().map_or(0, Vec::len)
    })
}

/// The counts once they hold still: an earlier test's programs go after an RCU grace period.
fn settled() -> [usize; 3] {
    let mut last = bpf_objects();
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = bpf_objects();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Waits (up to 5 s: the kernel frees programs after an RCU grace period) for the counts to
/// come back to `before` (or below, as what was being freed then is gone).
fn assert_back_to(before: [usize; 3]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let back = |now: [usize; 3]| now.iter().zip(before).all(|(n, b)| *n <= b);
    let mut now = bpf_objects();
    while !back(now) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = bpf_objects();
    }
    assert!(
        back(now),
        "programs, links and perf events left behind: {now:?}, {before:?} before"
    );
}

/// The bench-server children of `pid`.
fn bench_servers_of(pid: u32) -> Vec<u32> {
    procfs::children(pid)
        .into_iter()
        .filter(|&p| procfs::comm(p).as_deref() == Some("bench-server"))
        .collect()
}

/// Sends `signal` once `ready` holds (at most 10 s), then collects the output. SIGINT goes to
/// the child's whole process group, as a terminal's Ctrl-C does (start the child as a group
/// leader): what tcpprof started gets it too.
fn interrupt(child: OwnedChild, signal: i32, ready: impl Fn(u32) -> bool) -> (std::process::Output, Duration) {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(pid) {
        assert!(Instant::now() < deadline, "never ready to be interrupted");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let to = if signal == libc::SIGINT {
        -(pid as i32)
    } else {
        pid as i32
    };
    // SAFETY: signalling our own child (or the group it leads).
    assert_eq!(unsafe { libc::kill(to, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

#[test]
fn sigint_and_sigterm_end_a_profiled_bench_and_leave_nothing_behind() {
    require_root();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let before = settled();
        let bench = OwnedChild::spawn_group(
            Command::new(TCPPROF)
                .args([
                    "bench",
                    "--command",
                    "PING",
                    "-d",
                    "30",
                    "-c",
                    "4",
                    "--profile",
                    "--mode",
                    "tracepoint",
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let servers = std::cell::RefCell::new(Vec::new());
        let (out, took) = interrupt(bench, signal, |pid| {
            *servers.borrow_mut() = bench_servers_of(pid);
            !servers.borrow().is_empty() && bpf_objects()[0] > before[0]
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + signal), "{stderr}");
        assert!(took < Duration::from_secs(5), "stopped {took:?} after the signal");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        assert_eq!(json["interrupted"], true, "{json}");
        assert_eq!(json["partial"], true, "{json}");
        assert!(json["requests"].as_u64().unwrap() > 0, "{json}");
        // The server served to the end: Ctrl-C is the benchmark's to handle, not the server's.
        assert!(json["server_exited"].is_null(), "{json}");
        assert_eq!(json["errors"], 0, "{json}");
        for server in servers.borrow().iter() {
            assert!(!procfs::is_alive(*server), "bench-server {server} outlived tcpprof");
        }
        assert_back_to(before);
    }
}

#[test]
fn sigterm_ends_a_profile_and_leaves_nothing_behind() {
    require_root();
    let before = settled();
    let target = Peer::start("sleep", &["60"]);
    let profile = OwnedChild::spawn(
        profile_json(&target.pid().to_string(), "60")
            .args(["--mode", "sampling"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let (out, took) = interrupt(profile, libc::SIGTERM, |_| bpf_objects()[0] > before[0]);
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["partial"], true, "{json}");
    assert_back_to(before);
}

#[test]
fn a_target_that_exits_mid_window_is_reported_and_the_profile_succeeds() {
    require_root();
    let before = settled();
    // A shell busy for 2 s of a 4 s window.
    let target = Peer::start(
        "sh",
        &[
            "-c",
            "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done",
        ],
    );
    let out = profile_json(&target.pid().to_string(), "4")
        .args(["--mode", "tracepoint"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exited"], serde_json::json!([target.pid()]), "{json}");
    assert_eq!(json["partial"], false, "{json}");
    // The profile covers what the shell did before it exited.
    let oncpu: f64 = json["classes"]["user"]["oncpu_ns"].as_f64().unwrap_or(0.0);
    assert!(oncpu > 0.0, "{json}");
    assert_back_to(before);
}
