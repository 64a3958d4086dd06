//! Across a link: test hosts in network namespaces (`common::hosts`) stand in for machines. A
//! server in one, tcpprof loading it from another; the server profiled in its own namespace
//! meanwhile; targets that cannot be loaded refused or counted. Needs root (namespaces, eBPF).
mod common;

use common::hosts::Hosts;
use common::{Peer, require_root};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

fn bench_server() -> String {
    std::path::Path::new(PROFILER)
        .with_file_name("bench-server")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_run_across_a_link_has_no_errors_and_the_server_is_profiled_on_its_host() {
    require_root();
    let net = Hosts::new(2);
    let (server_host, client) = (&net.hosts[0], &net.hosts[1]);
    let target = format!("{}:7000", server_host.addr);
    let mut server = server_host.command(&bench_server());
    server
        .args(["--model", "epoll", "--addr", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Peer(owned_child::OwnedChild::spawn_group(&mut server).unwrap());
    client.wait_for(server_host.addr, 7000);
    // `ip netns exec` execs the program: the server's pid is the child's.
    let pid = server.pid().to_string();
    let profile = server_host
        .command(PROFILER)
        .args(["profile", "--pid", &pid, "--duration", "2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = client
        .command(PROFILER)
        .args(["bench", "--target", &target, "--protocol", "line", "--command", "ECHO"])
        .args(["-c", "10", "-d", "3", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(run["requests"].as_u64().unwrap() > 1000, "{run}");
    assert_eq!(run["errors"], 0, "{run}");
    // The server's side is not seen from the client's host, and the run says where it is.
    let signals = &run["signals"];
    assert!(signals["server_cpu_pct"].is_null(), "{signals}");
    let why = signals["signal_errors"]["server_cpu_pct"].as_str().unwrap();
    assert!(
        why.contains("is on another host") && why.contains("tcpprof profile"),
        "{why}"
    );
    assert!(signals["client_cpu_pct"].as_f64().is_some(), "{signals}");
    let profiled = profile.wait_with_output().unwrap();
    assert!(
        profiled.status.success(),
        "{}",
        String::from_utf8_lossy(&profiled.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&profiled.stdout).unwrap();
    assert!(p["classes"]["read"]["calls"].as_u64().unwrap() > 1000, "{p}");
    assert!(p["classes"]["write"]["calls"].as_u64().unwrap() > 1000, "{p}");

    // Profiling needs the server's host.
    let out = client
        .command(PROFILER)
        .args([
            "bench",
            "--target",
            &target,
            "--protocol",
            "line",
            "-n",
            "100",
            "--profile",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is on another host"), "{err}");
    drop(server);
}

/// A host that does not answer: with no connection made at all, the run fails at once naming
/// the address and why, never a hang.
#[test]
fn a_host_that_does_not_answer_fails_the_run_naming_it() {
    require_root();
    let net = Hosts::new(1);
    let silent = format!("{}:7000", common::hosts::host_addr(7));
    let start = Instant::now();
    let out = net.hosts[0]
        .command(PROFILER)
        .args(["bench", "--target", &silent, "--protocol", "line"])
        .args(["-c", "4", "-d", "2", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("could not connect to {silent}")), "{err}");
    // Its bound: the duration, the request timeout and 5 s.
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
}

/// Targets that cannot be loaded are refused before any run, naming the flag and the problem.
#[test]
fn unusable_targets_are_refused_naming_the_flag() {
    for (target, why) in [
        ("nosuch.invalid:80", "--target: \"nosuch.invalid\" does not resolve"),
        ("localhost", "--target: \"localhost\": give HOST:PORT"),
        ("127.0.0.1:70000", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
    ] {
        let out = Command::new(PROFILER)
            .args(["bench", "--target", target, "-n", "10"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{target}: {err}");
    }
}
