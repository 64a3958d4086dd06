//! `tcpprof compare`: two saved runs of bench-server, one configuration twice (nothing
//! significant, exit 0) and with its CPU work doubled (throughput and p99 significant, the gate
//! fails, the burn function moves most), and files that are not saved runs. Needs root (eBPF).
mod common;

use common::{TempDir, require_root};
use std::path::Path;
use std::process::{Command, Output};

const PROFILER: &str = env!("CARGO_BIN_EXE_tcpprof");

fn save(burn: &str, path: &Path) {
    let out = Command::new(PROFILER)
        .args([
            "bench",
            "--command",
            &format!("BURN {burn}"),
            "-c",
            "4",
            "-d",
            "6",
            "--interval",
            "0.5",
        ])
        .args(["--profile", "--mode", "sampling", "--stacks", "--save"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn compare(a: &Path, b: &Path, extra: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(PROFILER)
        .arg("compare")
        .args([a, b])
        .args(["--json", "--fail-on", "throughput-5%", "--fail-on", "p99+10%"])
        .args(extra)
        .output()
        .unwrap();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out, json)
}

#[test]
fn compare_tells_a_real_change_from_noise() {
    require_root();
    let tmp = TempDir::new("compare");
    let (a, same, doubled) = (
        tmp.0.join("a.json"),
        tmp.0.join("same.json"),
        tmp.0.join("doubled.json"),
    );
    // A burn that is about half the server's time: doubled, its share of the samples moves.
    save("2000", &a);
    save("2000", &same);
    save("4000", &doubled);

    let (out, c) = compare(&a, &same, &[]);
    let significant: Vec<&serde_json::Value> = c["load"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["significant"] == true)
        .collect();
    assert!(significant.is_empty(), "the same run twice: {significant:?}");
    assert_eq!(out.status.code(), Some(0), "{c}");
    assert_eq!(c["warnings"], serde_json::json!([]), "{c}");

    let prefix = tmp.0.join("diff");
    let report = tmp.0.join("report.html");
    let (dir, page) = (tmp.0.to_str().unwrap(), report.to_str().unwrap());
    let (out, c) = compare(
        &a,
        &doubled,
        &[
            "--flamegraph-diff",
            prefix.to_str().unwrap(),
            "--plots",
            dir,
            "--report",
            page,
        ],
    );
    let metric = |name: &str| {
        c["load"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    let (throughput, p99) = (metric("throughput_rps"), metric("p99_us"));
    assert!(
        throughput["significant"] == true && throughput["change"].as_f64().unwrap() < -15.0,
        "{c}"
    );
    assert!(
        p99["significant"] == true && p99["change"].as_f64().unwrap() > 15.0,
        "{c}"
    );
    assert_eq!(out.status.code(), Some(1), "the gate fails: {c}");
    assert_eq!(c["failed"], serde_json::json!(["throughput-5%", "p99+10%"]));
    let top = &c["movers"][0];
    assert!(
        top["function"].as_str().unwrap().contains("burn") && top["significant"] == true,
        "{c}"
    );
    assert!(
        c["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("command"))
    );
    let spectra = std::fs::read_to_string(tmp.0.join("spectra.svg")).unwrap();
    assert!(
        spectra.starts_with("<svg") && spectra.matches("<polyline").count() >= 2,
        "{spectra}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("throughput_rps") && html.contains("<svg"), "{html}");
    for direction in ["a-to-b", "b-to-a"] {
        let svg = std::fs::read_to_string(tmp.0.join(format!("diff-{direction}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("burn"), "{direction}");
    }
}

#[test]
fn compare_names_a_file_that_is_not_a_saved_run() {
    let tmp = TempDir::new("compare-bad");
    let (json, text) = (tmp.0.join("other.json"), tmp.0.join("notes.txt"));
    std::fs::write(&json, r#"{"throughput_rps": 5}"#).unwrap();
    std::fs::write(&text, "hello").unwrap();
    for (file, why) in [
        (
            &json,
            "not a saved run (no latency_p99_us, requests, errors, concurrency)",
        ),
        (&text, "not JSON, so not a saved tcpprof result"),
    ] {
        let out = Command::new(PROFILER)
            .arg("compare")
            .args([file, file])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(&file.display().to_string()) && err.contains(why), "{err}");
    }
    let out = Command::new(PROFILER)
        .args(["compare", "a", "b", "--fail-on", "p99*2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no + or -"));
}
