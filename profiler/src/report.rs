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
    out
}
