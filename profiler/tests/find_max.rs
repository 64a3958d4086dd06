//! `bench --find-max`: the highest open-loop rate that holds an SLO, on servers whose limit is
//! known: the epoll server burning CPU (its closed-loop maximum, out of CPU) and the iterative
//! server waiting 10 ms a request (100 requests/s). Needs root (the signals' eBPF).
mod common;

use common::require_root;
use std::process::Command;
use std::time::{Duration, Instant};

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

fn json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(PROFILER).args(args).arg("--json").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tcpprof {args:?} failed: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn find_max_of_a_cpu_bound_server_is_its_closed_loop_maximum() {
    require_root();
    let load = ["bench", "--command", "BURN 20000", "-c", "4"];
    let closed = json(&[&load[..], &["-d", "3"]].concat());
    let most = closed["throughput_rps"].as_f64().unwrap();
    let found = json(
        &[
            &load[..],
            &["--find-max", "--slo", "p99<100ms", "-d", "2", "--max-time", "90"],
        ]
        .concat(),
    );
    let f = &found["find_max"];
    let rate = f["rate"].as_f64().unwrap_or_else(|| panic!("no rate held: {f}"));
    assert!(
        (rate - most).abs() <= most * 0.15,
        "find-max {rate:.0} req/s against {most:.0} closed loop: {f}"
    );
    assert_eq!(f["limit"]["kind"], "server-cpu", "{f}");
    assert_eq!(f["ended"], "converged", "{f}");
    let steps = f["steps"].as_array().unwrap();
    assert!(steps[0]["offered_rps"].is_null(), "the probe first");
    assert!(steps.iter().any(|s| s["holds"] == true) && steps.iter().any(|s| s["holds"] == false));
    let failed = f["failed_rate"].as_f64().unwrap();
    assert!(failed > rate && (failed - rate) / rate <= 0.031, "{f}");
}

#[test]
fn find_max_of_a_server_that_waits_10_ms_a_request_is_100_per_second() {
    require_root();
    let found = json(&[
        "bench",
        "--server",
        "iterative",
        "--command",
        "WAIT 10",
        "-c",
        "1",
        "--find-max",
        "--slo",
        "p99<50ms",
        "-d",
        "2",
    ]);
    let rate = found["find_max"]["rate"].as_f64().unwrap();
    assert!((85.0..=115.0).contains(&rate), "{}", found["find_max"]);
}

/// The table: each step as it ends, then one sentence with the answer and why more failed; the
/// plot of p99 by offered rate and the report.
#[test]
fn find_max_prints_each_step_and_the_answer() {
    require_root();
    let tmp = common::TempDir::new("find-max");
    let report = tmp.0.join("report.html");
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            "BURN 20000",
            "-c",
            "4",
            "--find-max",
            "--slo",
            "p99<100ms,errors<1%",
        ])
        .args(["-d", "1", "--max-time", "8", "--plots"])
        .arg(&tmp.0)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.starts_with("find-max p99<100ms,errors<1% (1 s steps, at most 8 s)\n"),
        "{text}"
    );
    assert!(text.contains("     probe "), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("max ") && last.contains("the search ran out of --max-time"),
        "{text}"
    );
    let svg = std::fs::read_to_string(tmp.0.join("find-max.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("step held") && svg.contains("max "),
        "{svg}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<section id=\"summary\"") && html.contains("<svg"),
        "{html}"
    );
}

/// An SLO that does not parse is refused before any load, naming the part that is wrong.
#[test]
fn a_wrong_slo_is_refused_before_any_load() {
    for (slo, names) in [
        ("p99<", "--slo: \"p99<\": no limit after `<`"),
        ("p101<5ms", "p101: a percentile is above 0 and below 100"),
        ("p99<5parsecs", "unknown unit \"parsecs\""),
        ("p99<5ms,max", "\"max\": no `<` or `<=`"),
    ] {
        let start = Instant::now();
        let out = Command::new(PROFILER)
            .args(["bench", "--find-max", "--slo", slo])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(names), "{slo}: {err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{slo}: a load ran first");
    }
    let out = Command::new(PROFILER)
        .args(["bench", "--find-max", "--slo", "p99<5ms", "-n", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a count is not a search's bound");
}
