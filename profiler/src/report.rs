//! The breakdown as a table for people.
use crate::Breakdown;
use crate::breakdown::{ClassReport, PARTS};
use std::fmt::Write;

pub fn table(b: &Breakdown) -> String {
    let mut out = String::new();
    let ms = |ns: u64| ns as f64 / 1e6;
    let us = |ns: u64| ns as f64 / 1e3;
    let _ = writeln!(out, "mode: {}   window: {} ms", b.mode, b.window_ms);
    for reason in &b.fallback_reasons {
        let _ = writeln!(out, "  fell back from {reason}");
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>10} {:>12} {:>12} {:>10} {:>10} {:>12} {:>8}",
        "class", "calls", "on-CPU ms", "blocked ms", "p50 us", "p99 us", "bytes", "errors"
    );
    let c = &b.classes;
    let rows: [(&str, &ClassReport); 4] = [
        ("accept", &c.accept),
        ("read", &c.read),
        ("write", &c.write),
        ("other", &c.other),
    ];
    for (name, r) in rows {
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>12.3} {:>12.3} {:>10.1} {:>10.1} {:>12} {:>8}",
            name,
            r.calls,
            ms(r.oncpu_ns),
            ms(r.blocked_ns),
            us(r.p50_ns),
            us(r.p99_ns),
            r.bytes,
            r.errors
        );
    }
    let _ = writeln!(
        out,
        "\non-CPU {:.3} ms, run-queue wait {:.3} ms; context switches: {} voluntary, {} involuntary",
        ms(b.oncpu_ns),
        ms(b.runq_ns),
        b.context_switches.voluntary,
        b.context_switches.involuntary
    );
    let _ = writeln!(out, "\nbreakdown (share of on-CPU + run-queue time):");
    for part in PARTS {
        let pct = b.percent(part);
        let bar = "#".repeat((pct / 2.0).round() as usize);
        let _ = writeln!(out, "  {part:<9} {pct:>5.1}%  {bar}");
    }
    let _ = writeln!(out, "bottleneck: {}", b.bottleneck);
    if let Some(programs) = &b.programs {
        let _ = writeln!(
            out,
            "\neBPF programs' own cost (every task's events, filtered in the kernel):"
        );
        for p in programs {
            let per_run = if p.runs == 0 {
                0.0
            } else {
                p.run_ns as f64 / p.runs as f64
            };
            let _ = writeln!(
                out,
                "  {:<20} {:>10} runs {:>10.3} ms {:>8.1} ns/run",
                p.name,
                p.runs,
                p.run_ns as f64 / 1e6,
                per_run
            );
        }
    }
    out
}

/// A load run's figures as a table, with the per-worker send/recv statistics seed 002 prints.
pub fn load_table(r: &bench::load::LoadReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} requests, {} errors in {:.3} s: {:.0} requests/s, {} connections opened",
        r.requests,
        r.errors,
        r.elapsed.as_secs_f64(),
        r.throughput_rps,
        r.connections_opened
    );
    if let Some(first) = &r.first_error {
        let _ = writeln!(out, "first error: {first}");
    }
    let corrected = if r.rate.is_some() {
        " (from the intended send time)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "latency us{corrected}: p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
        r.latency_p50_us, r.latency_p95_us, r.latency_p99_us, r.latency_p999_us, r.latency_max_us, r.latency_mean_us
    );
    if let Some(u) = &r.latency_uncorrected {
        let _ = writeln!(
            out,
            "latency us (from the actual send): p50 {}  p95 {}  p99 {}  p99.9 {}  max {}",
            u.p50_us, u.p95_us, u.p99_us, u.p999_us, u.max_us
        );
    }
    let _ = writeln!(out, "bytes: {} sent, {} received", r.bytes_sent, r.bytes_received);
    for w in &r.workers {
        let cpu = w.cpu.map_or("?".into(), |c| c.to_string());
        let _ = writeln!(
            out,
            "worker {} on CPU {cpu}: {} connections, {} requests",
            w.worker, w.connections, w.requests
        );
        for (name, s) in [("send", &w.send), ("recv", &w.recv)] {
            let _ = writeln!(
                out,
                "  {name}: {} calls, mean {:.3} us, min {:.3} us, max {:.3} us, stddev {:.3} us, {} bytes",
                s.calls, s.mean_us, s.min_us, s.max_us, s.stddev_us, s.bytes
            );
        }
    }
    out
}
