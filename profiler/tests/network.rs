//! Across a link: test hosts in network namespaces (`common::hosts`) stand in for machines. A
//! server in one, tcpprof loading it from another; the server profiled in its own namespace
//! meanwhile; targets that cannot be loaded refused or counted. Needs root (namespaces, eBPF).
mod common;

use common::hosts::{Host, Hosts};
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

/// bench-server's epoll model on `host`, port 7000, once `client` can reach it: the server and
/// its address.
fn serve(host: &Host, client: &Host) -> (Peer, String) {
    let target = format!("{}:7000", host.addr);
    let mut server = host.command(&bench_server());
    server
        .args(["--model", "epoll", "--addr", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Peer(owned_child::OwnedChild::spawn_group(&mut server).unwrap());
    client.wait_for(host.addr, 7000);
    (server, target)
}

/// 64-byte ECHO over 10 connections for 3 s from `client` to `target`, while `tcpprof profile`
/// (with `profile_args`) watches the server on its own host: both results.
fn profiled_load(
    host: &Host,
    client: &Host,
    server: &Peer,
    target: &str,
    profile_args: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    // `ip netns exec` execs the program: the server's pid is the child's.
    let pid = server.pid().to_string();
    let profile = host
        .command(PROFILER)
        .args(["profile", "--pid", &pid, "--json"])
        .args(profile_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = client
        .command(PROFILER)
        .args(["bench", "--target", target, "--protocol", "line", "--command", "ECHO"])
        .args(["-c", "10", "-d", "3", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profiled = profile.wait_with_output().unwrap();
    assert!(
        profiled.status.success(),
        "{}",
        String::from_utf8_lossy(&profiled.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        serde_json::from_slice(&profiled.stdout).unwrap(),
    )
}

#[test]
fn a_run_across_a_link_has_no_errors_and_the_server_is_profiled_on_its_host() {
    require_root();
    let net = Hosts::new(2);
    let (server_host, client) = (&net.hosts[0], &net.hosts[1]);
    let (server, target) = serve(server_host, client);
    let (run, p) = profiled_load(server_host, client, &server, &target, &["--duration", "2"]);
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

/// 2% of the segments to the server's port dropped on its host (iptables' statistic match, in
/// its namespace): retransmits seen by the client's run and by a profile on the server's host,
/// and the run's limit is the network, the retransmits in its reason.
#[test]
fn loss_on_the_link_is_the_network_limit() {
    require_root();
    let net = Hosts::new(2);
    let (server_host, client) = (&net.hosts[0], &net.hosts[1]);
    let (server, target) = serve(server_host, client);
    let rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "7000",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.02",
        "-j",
        "DROP",
    ];
    let out = server_host
        .command("iptables")
        .arg("-A")
        .args(rule)
        .output()
        .unwrap_or_else(|e| panic!("iptables ({e}): `cargo xtask test` installs it"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (run, p) = profiled_load(
        server_host,
        client,
        &server,
        &target,
        &["--duration", "3", "--mode", "sampling"],
    );
    let client_side = run["signals"]["retransmits"].as_u64().unwrap();
    assert!(client_side > 0, "{}", run["signals"]);
    assert_eq!(run["limit"]["kind"], "network", "{}", run["limit"]);
    assert!(
        run["limit"]["reason"].as_str().unwrap().contains("retransmits"),
        "{}",
        run["limit"]
    );
    assert!(p["signals"]["retransmits"].as_u64().unwrap() > 0, "{}", p["signals"]);
    drop(server);
}

/// A partition of 3 s mid-run (every segment into the server's host dropped): the intervals
/// inside it answer nothing, the connections recover after it (TCP's retransmissions get
/// through), retransmits are counted, and the run ends on time.
#[test]
fn a_partition_mid_run_stalls_then_recovers_and_ends_on_time() {
    require_root();
    let net = Hosts::new(2);
    let (server_host, client) = (&net.hosts[0], &net.hosts[1]);
    let (server, target) = serve(server_host, client);
    let start = Instant::now();
    let run = client
        .command(PROFILER)
        .args(["bench", "--target", &target, "--protocol", "line", "--command", "ECHO"])
        .args(["-c", "4", "-d", "14", "--interval", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let iptables = |action: &str| {
        let out = server_host
            .command("iptables")
            .args([action, "INPUT", "-j", "DROP"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    std::thread::sleep(Duration::from_millis(3000));
    iptables("-I");
    std::thread::sleep(Duration::from_millis(3000));
    iptables("-D");
    let out = run.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The duration, the request timeout (10 s) and 5 s.
    assert!(took < Duration::from_secs(14 + 10 + 5 + 2), "{took:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (result, intervals) = lines.split_last().unwrap();
    let answered: Vec<u64> = intervals.iter().map(|i| i["requests"].as_u64().unwrap()).collect();
    assert!(answered.contains(&0), "no interval stalled: {answered:?}");
    let last_whole = &answered[answered.len().saturating_sub(3)..answered.len() - 1];
    assert!(last_whole.iter().all(|&n| n > 100), "no recovery: {answered:?}");
    assert!(
        result["signals"]["retransmits"].as_u64().unwrap() > 0,
        "{}",
        result["signals"]
    );
    // What failed, if anything, failed by a kind a cut link makes.
    for (kind, n) in result["error_counts"].as_object().unwrap() {
        if n.as_u64().unwrap() > 0 {
            assert!(
                ["timeout", "closed", "io", "connect"].contains(&kind.as_str()),
                "{result}"
            );
        }
    }
    drop(server);
}
