//! The user's own server, or any command, profiled in one command: `tcpprof bench --exec` on a
//! Python server (the profile's window is the load's; no process is left after a run, after a
//! server that dies at start, after Ctrl-C) and `tcpprof profile -- CMD`. Needs root (eBPF) and a
//! CPython 3.12+ (this machine image has it under pyenv).
mod common;

use common::{free_port, require_root, wait_for_port};
use owned_child::OwnedChild;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tcpprof() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcpprof"))
}

/// `tcpprof bench --exec "PYTHON checksum_server.py PORT" --target 127.0.0.1:PORT` with the
/// checksum request, and `extra` arguments.
fn bench_exec(python: &str, port: u16, extra: &[&str]) -> Command {
    let script = common::server_script("checksum_server.py");
    let answer = String::from_utf8(common::checksum_answer(b"abcdefghij", 30)).unwrap();
    let mut command = tcpprof();
    command
        .args(["bench", "--exec", &format!("{python} {script} {port}")])
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args([
            "--request",
            "abcdefghij 30\\n",
            "--response",
            &answer.replace('\n', "\\n"),
        ])
        .args(extra);
    command
}

/// Processes whose command line holds `needle`, but for this test's own.
fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && profiler::procfs::is_alive(pid))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

/// Waits (at most 10 s) until no process but ours has `needle` in its command line.
fn none_left(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if processes_with(needle).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("left running: {:?} ({needle})", processes_with(needle));
}

#[test]
fn bench_exec_profiles_a_python_server_over_exactly_its_load() {
    require_root();
    let python = common::python_with_perf();
    let port = free_port();
    let out = bench_exec(
        &python.to_string_lossy(),
        port,
        &[
            "-c",
            "4",
            "-d",
            "3",
            "--profile",
            "--mode",
            "sampling",
            "--frequency",
            "999",
            "--json",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (window, load) = (
        report["window_ms"].as_f64().unwrap(),
        report["elapsed_ms"].as_f64().unwrap(),
    );
    assert!(
        (window - load).abs() <= 100.0,
        "profile window {window} ms, load {load} ms"
    );
    assert_eq!(report["errors"], 0, "{}", report["first_error"]);
    // PYTHONPERFSUPPORT set for it: its Python functions are named.
    let process = report["top_functions"]["process"].as_array().unwrap();
    assert!(
        process
            .iter()
            .any(|f| f["function"].as_str().unwrap().starts_with("py::checksum:")),
        "{process:#?}"
    );
    none_left(&format!("checksum_server.py {port}"));
    // The perf map CPython wrote because tcpprof asked it to is gone with it.
    let pid = &report["unwound_cfi"][0];
    assert!(pid.is_u64(), "{}", report["unwound_cfi"]);
    assert!(!std::path::Path::new(&format!("/tmp/perf-{pid}.map")).exists());
}

/// `tcpprof bench --exec EXEC` against a port nothing listens on.
fn bench_exec_nothing(exec: &str) -> (bool, String) {
    let port = free_port();
    let out = tcpprof()
        .args(["bench", "--target", &format!("127.0.0.1:{port}")])
        .args(["--request", "x", "--response", "y", "--exec", exec])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bench_exec_of_a_server_that_dies_at_start_names_it_and_leaves_nothing() {
    let (ok, stderr) = bench_exec_nothing("sh -c 'echo address in use >&2; exit 3' server-that-dies");
    assert!(!ok);
    assert!(
        stderr.contains("exited (exit status: 3) before it listened") && stderr.contains("address in use"),
        "{stderr}"
    );
    none_left("server-that-dies");
    // A command that is not there is named.
    let (ok, stderr) = bench_exec_nothing("no-such-server --port 1");
    assert!(!ok && stderr.contains("command not found: no-such-server"), "{stderr}");
}

#[test]
fn bench_exec_interrupted_stops_its_server_and_prints_what_was_measured() {
    require_root();
    let python = common::python_with_perf();
    let port = free_port();
    let run = OwnedChild::spawn(
        bench_exec(&python.to_string_lossy(), port, &["-c", "2", "-d", "30", "--profile"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    wait_for_port(port);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(stdout.contains("interrupted") && stdout.contains("partial"), "{stdout}");
    none_left(&format!("checksum_server.py {port}"));
}

#[test]
fn profile_runs_a_command_from_its_start_until_it_exits() {
    require_root();
    let python = common::python_with_perf();
    let spin = "import time\n\
                def spin(n):\n    t = 0\n    for i in range(n): t += i * i\n    return t\n\
                end = time.time() + 1.5\n\
                while time.time() < end: spin(10000)\n";
    let started = Instant::now();
    let out = tcpprof()
        .args(["profile", "--mode", "sampling", "--frequency", "999", "--json", "--"])
        .arg(&python)
        .args(["-c", spin])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the command exited (exit status: 0)"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exited"].as_array().unwrap().len(), 1, "{}", report["exited"]);
    let pid = &report["exited"][0];
    assert!(
        !std::path::Path::new(&format!("/tmp/perf-{pid}.map")).exists(),
        "perf map of {pid} left"
    );
    let process = report["top_functions"]["process"].as_array().unwrap();
    assert!(
        process[0]["function"].as_str().unwrap().starts_with("py::spin:"),
        "{process:#?}"
    );

    // --duration ends the window first: the command is stopped, nothing is left.
    let out = tcpprof()
        .args(["profile", "--mode", "sampling", "-d", "1", "--", "sleep", "3600"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stopped at the window's end"), "{stderr}");
    none_left("sleep 3600");
    // A command that is not there is named.
    let out = tcpprof().args(["profile", "--", "no-such-command"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("command not found: no-such-command"));
}
