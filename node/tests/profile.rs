//! bench_profile through the node: the reply's shape, forced modes, and that no eBPF program or
//! server outlives the node. Needs root (eBPF).
mod common;
use common::{Node, ms};
use serde_json::json;

const PARTS: [&str; 5] = ["accept", "read", "process", "write", "overhead"];

#[test]
fn seed_profile_breakdown_sums_to_100() {
    let mut node = Node::start();
    node.send_line(r#"{"src":"c1","dest":"n1","body":{"type":"bench_profile","msg_id":2,"num_requests":50}}"#);
    let reply = node.recv(ms(5000));
    let body = &reply["body"];
    assert_eq!(body["type"], "bench_profile_ok", "{body}");
    assert_eq!(body["in_reply_to"], 2);
    let sum: f64 = PARTS
        .iter()
        .map(|p| body["breakdown"][format!("{p}_pct")].as_f64().unwrap())
        .sum();
    assert!((sum - 100.0).abs() <= 0.1, "breakdown sums to {sum}: {body}");
    assert!(PARTS.contains(&body["bottleneck"].as_str().unwrap()), "{body}");
    assert!(
        ["kprobe", "tracepoint"].contains(&body["mode"].as_str().unwrap()),
        "{body}"
    );
    // The exact modes carry no sampling figures unless stacks were asked for.
    assert!(
        body.get("margin_pct").is_none() && body.get("top_functions").is_none(),
        "{body}"
    );
    assert!(body["syscalls"].is_array(), "{body}");
    assert!(
        body["fallback_reasons"].is_array() && body["window_ms"].is_u64(),
        "{body}"
    );
    assert!(body["context_switches"]["voluntary"].is_u64() && body["context_switches"]["involuntary"].is_u64());
    for class in ["accept", "read", "write", "other"] {
        for field in [
            "calls",
            "total_ns",
            "oncpu_ns",
            "blocked_ns",
            "bytes",
            "errors",
            "p50_ns",
            "p99_ns",
        ] {
            assert!(
                body["classes"][class][field].is_u64(),
                "classes.{class}.{field} missing: {body}"
            );
        }
    }
    // The bench_run half of the reply.
    assert_eq!(body["requests"], 50, "{body}");
    assert_eq!(body["errors"], 0, "{body}");
    assert!(body["classes"]["write"]["calls"].as_u64().unwrap() >= 50, "{body}");
}

#[test]
fn forced_modes_run_or_fail_with_error_11_and_the_reason() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_profile", "num_requests": 20, "mode": "userspace"}),
        ms(10_000),
    );
    // userspace is answered by the server itself; until then this must not pretend.
    if reply["type"] == "error" {
        assert_eq!(reply["code"], 11, "{reply}");
    }
    let reply = node.call(
        json!({"type": "bench_profile", "num_requests": 20, "mode": "kprobe"}),
        ms(10_000),
    );
    if profiler::attach::kernel_has_kprobes() {
        assert_eq!(reply["mode"], "kprobe", "{reply}");
    } else {
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["code"], 11, "{reply}");
        assert!(reply["text"].as_str().unwrap().contains("kprobe"), "{reply}");
    }
    for mode in ["tracepoint", "sampling"] {
        let reply = node.call(
            json!({"type": "bench_profile", "num_requests": 20, "mode": mode}),
            ms(10_000),
        );
        assert_eq!(reply["mode"], mode, "{reply}");
        assert_eq!(reply["fallback_reasons"], json!([]), "{reply}");
    }
}

#[test]
fn sampling_mode_reply_carries_samples_margins_stacks_and_syscalls() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_profile", "mode": "sampling", "command": "BURN 20000", "num_requests": 3000,
               "concurrency": 4, "frequency_hz": 2999}),
        ms(30_000),
    );
    assert_eq!(reply["type"], "bench_profile_ok", "{reply}");
    assert_eq!(reply["mode"], "sampling", "{reply}");
    assert_eq!(reply["frequency_hz"], 2999, "{reply}");
    assert!(reply["samples"].as_u64().unwrap() >= 300, "{reply}");
    for part in PARTS {
        let margin = reply["margin_pct"][format!("{part}_pct")].as_f64().unwrap();
        assert!((0.0..10.0).contains(&margin), "{part}: {reply}");
    }
    assert_eq!(reply["bottleneck"], "process", "{reply}");
    let top = &reply["top_functions"]["process"][0];
    assert!(top["function"].as_str().unwrap().ends_with("burn"), "{top}");
    assert_eq!(top["module"], "bench-server", "{top}");
    assert!(
        top["samples"].as_u64().unwrap() > 0 && top["pct"].as_f64().unwrap() > 50.0,
        "{top}"
    );
    for field in ["collisions", "failed", "lost", "truncated"] {
        assert!(reply["stack_errors"][field].is_u64(), "stack_errors.{field}: {reply}");
    }
    // The server waits in epoll_wait between requests: the other class, by name.
    let syscalls = reply["syscalls"].as_array().unwrap();
    let epoll = syscalls.iter().find(|s| s["name"] == "epoll_wait").expect("epoll_wait");
    for field in ["calls", "oncpu_ns", "blocked_ns", "samples"] {
        assert!(epoll[field].is_u64(), "{field}: {epoll}");
    }
    // Sampling counts no calls.
    assert_eq!(reply["classes"]["write"]["calls"], 0, "{reply}");

    // Stacks in an exact mode, on request.
    let reply = node.call(
        json!({"type": "bench_profile", "mode": "tracepoint", "stacks": true, "num_requests": 2000}),
        ms(30_000),
    );
    assert_eq!(reply["mode"], "tracepoint", "{reply}");
    assert!(reply["top_functions"]["write"].is_array(), "{reply}");
    assert!(reply["classes"]["write"]["calls"].as_u64().unwrap() >= 2000, "{reply}");
}

/// Our programs loaded in the kernel right now, by name (the kernel keeps 15 characters).
fn our_programs() -> usize {
    const OURS: [&str; 11] = [
        "sys_enter",
        "sys_exit",
        "sched_switch",
        "sched_wakeup",
        "sched_process_e",
        "kprobe_",
        "cpu_sample",
        "tcp_retransmit_",
        "tcp_send_reset",
        "tcp_receive_res",
        "sock_",
    ];
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| OURS.iter().any(|o| n.starts_with(o))))
        .count()
}

fn bench_servers() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmd| {
            cmd.split(|&b| b == 0)
                .next()
                .is_some_and(|exe| exe.ends_with(b"bench-server"))
        })
        .count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(ms(50));
    }
    panic!("{what} within 10 s");
}

#[test]
fn programs_and_server_are_gone_after_a_profile_and_after_the_node_is_killed() {
    // The kernel frees programs a little after their last descriptor closes (RCU), so an earlier
    // test's may still be on their way out: start from none.
    wait_until("programs of earlier tests gone", || our_programs() == 0);
    let (programs, servers, perf_before) = (0, bench_servers(), perf_events_anywhere());
    let mut node = Node::start();
    let reply = node.call(json!({"type": "bench_profile", "num_requests": 200}), ms(10_000));
    assert_eq!(reply["type"], "bench_profile_ok", "{reply}");
    wait_until("programs unloaded after the profile", || our_programs() == programs);

    // Sampling mode, killed mid-run: its cpu-clock perf events must go with the programs.
    node.send(json!({"type": "bench_profile", "duration_ms": 5000, "concurrency": 2, "mode": "sampling"}));
    wait_until("programs attached during the profile", || our_programs() > programs);
    wait_until("perf events open during the profile", || {
        perf_events_anywhere() > perf_before
    });
    assert!(bench_servers() > servers, "the profiled server runs");
    let pid = node.pid();
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    drop(node);
    wait_until("programs unloaded after SIGKILL", || our_programs() == programs);
    wait_until("perf events closed after SIGKILL", || {
        perf_events_anywhere() == perf_before
    });
    wait_until("bench-server stopped after SIGKILL", || bench_servers() == servers);
}

/// Perf event descriptors held by any process (the node holds one cpu-clock event per CPU while
/// it samples).
fn perf_events_anywhere() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_dir(e.ok()?.path().join("fd")).ok())
        .flat_map(|fds| fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()))
        .filter(|target| target.to_string_lossy() == "anon_inode:[perf_event]")
        .count()
}

#[test]
fn a_prefork_server_is_profiled_through_its_workers() {
    let mut node = Node::start();
    let reply = node.call(
        json!({"type": "bench_profile", "num_requests": 2000, "server": "prefork"}),
        ms(20_000),
    );
    assert_eq!(reply["type"], "bench_profile_ok", "{reply}");
    // The parent only waits; every response is written by a worker process.
    let writes = reply["classes"]["write"]["calls"].as_u64().unwrap();
    assert!(writes >= 2000, "worker writes were not accounted: {writes}");
}
