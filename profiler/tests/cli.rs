//! The `tcpprof` command as a user runs it: the stack files it writes, and Ctrl-C during a
//! `profile` window. Needs root (eBPF).
mod common;

use common::{Peer, require_root};
use std::process::Command;
use std::time::Duration;

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

#[test]
fn bench_writes_folded_stacks_and_a_flame_graph() {
    require_root();
    let dir = std::env::temp_dir().join(format!("tcpprof-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (folded, svg) = (dir.join("stacks.folded"), dir.join("flame.svg"));
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "BURN 20000",
            "-c",
            "2",
            "-n",
            "1500",
            "--profile",
            "--mode",
            "sampling",
        ])
        .arg("--folded")
        .arg(&folded)
        .arg("--flamegraph")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("mode: sampling") && stdout.contains("top functions"),
        "{stdout}"
    );
    let folded = std::fs::read_to_string(&folded).unwrap();
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("process;bench-server;") && l.contains("burn ")),
        "{folded}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("bench-server epoll, BURN 20000"),
        "the title names the run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profiling_flags_without_profile_are_refused() {
    let out = Command::new(PROFILER)
        .args(["bench", "-n", "10", "--flamegraph", "never-written.svg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("add --profile"), "{stderr}");
    assert!(!std::path::Path::new("never-written.svg").exists());
}

#[test]
fn ctrl_c_ends_a_profile_early_and_still_prints_it_marked_partial() {
    require_root();
    let target = Peer::start("sleep", &["60"]);
    let child = Command::new(PROFILER)
        .args([
            "profile",
            "--pid",
            &target.pid().to_string(),
            "--duration",
            "60",
            "--json",
        ])
        .args(["--mode", "sampling"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the profile, as JSON");
    assert_eq!(json["partial"], true, "{json}");
    assert_eq!(json["mode"], "sampling", "{json}");
    let window = json["window_ms"].as_u64().unwrap();
    assert!((1000..10_000).contains(&window), "window {window} ms");
}

#[test]
fn a_sweep_prints_its_knee_and_why() {
    require_root();
    let out = Command::new(PROFILER)
        .args(["bench", "--server", "threads", "--command", "PING", "-n", "20000"])
        .args(["--sweep", "1,10,100,1000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let knee = stdout
        .lines()
        .find(|l| l.starts_with("knee at "))
        .unwrap_or_else(|| panic!("no knee line: {stdout}"));
    let kinds = ["server-cpu", "client-cpu", "run-queue", "accept-queue", "network"];
    assert!(kinds.iter().any(|k| knee.contains(k)), "{knee}");
    assert!(knee.contains("throughput changed"), "{knee}");
}

/// A running server profiled by pid while a load generator of its own (another `tcpprof bench
/// --target`) loads it: both report signals, the first without a load generator of its own.
#[test]
fn profile_and_target_runs_report_signals() {
    require_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let server_exe = std::path::Path::new(PROFILER).with_file_name("bench-server");
    let server = Peer::start(server_exe.to_str().unwrap(), &["--model", "epoll", "--addr", &addr]);
    std::thread::sleep(Duration::from_millis(300));
    let hgrm = std::env::temp_dir().join(format!("tcpprof-{}.hgrm", std::process::id()));
    let load = Command::new(PROFILER)
        .args([
            "bench",
            "--target",
            &addr,
            "--request",
            "PING\\n",
            "--response",
            "PONG\\n",
        ])
        .args(["-d", "3", "-c", "4", "--json", "--hgrm"])
        .arg(&hgrm)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let profile = Command::new(PROFILER)
        .args([
            "profile",
            "--pid",
            &server.pid().to_string(),
            "--duration",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(profile.status.success(), "{}", String::from_utf8_lossy(&profile.stderr));
    let json: serde_json::Value = serde_json::from_slice(&profile.stdout).unwrap();
    let s = &json["signals"];
    assert!(s["server_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert_eq!(s["accept_queue_limit"], 4096, "{s}");
    assert!(s["runq_waits"].is_u64() && s["retransmits"].is_u64(), "{s}");
    assert!(s["client_cpu_pct"].is_null(), "{s}");
    assert!(s["signal_errors"]["client_cpu_pct"].is_string(), "{s}");
    assert!(json["limit"]["kind"].is_string(), "{json}");

    let out = load.wait_with_output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["signals"];
    // The target's process was found by its listening socket.
    assert!(s["server_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert!(s["client_cpu_pct"].as_f64().unwrap() > 1.0, "{s}");
    assert!(s["runq_waits"].is_u64(), "{s}");
    // The .hgrm's last row is 100% of the requests.
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let _ = std::fs::remove_file(&hgrm);
    let last = text.lines().rfind(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "1.000000000000", "{text}");
    assert_eq!(fields[2].parse::<u64>().unwrap(), json["requests"].as_u64().unwrap(), "{text}");
}
