//! Every way a result is written out: tables for people, JSON for programs, folded stacks and
//! flame graphs for the stacks.
use crate::breakdown::{Breakdown, ClassReport};
pub mod html;
pub mod plots;

use crate::compare::Comparison;
use crate::find_max::Step;
use crate::limit::Limit;
use crate::live::{self, Sink};
use crate::report::{FindMaxResult, Ran, Report, RunResult, Sweep, SweepResult};
use crate::signals::Signals;
use crate::stacks::{Stacks, TOP_FUNCTIONS};
use crate::{Part, Profile};
use anyhow::{Context, Result};
use bench::load::{ErrorCounts, Interval, LatencyHistogram, LoadReport};
use profiler_common::SyscallClass;
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// How many `other` syscalls the table lists.
pub const TOP_SYSCALLS: usize = 10;

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A profile as tables: per class, the breakdown, the top functions per part, the `other`
/// syscalls, and what went missing.
pub fn profile_table(p: &Profile) -> String {
    let b = &p.breakdown;
    let mut out = String::new();
    match &b.sampling {
        Some(s) => {
            let _ = writeln!(
                out,
                "mode: {} ({} Hz per CPU, {} samples of the target)   window: {} ms",
                b.mode, s.frequency_hz, s.samples, b.window_ms
            );
        }
        None => {
            let _ = writeln!(out, "mode: {}   window: {} ms", b.mode, b.window_ms);
        }
    }
    for reason in &b.fallback_reasons {
        let _ = writeln!(out, "  fell back from {reason}");
    }
    out.push('\n');
    if b.sampling.is_some() {
        sampled_classes(&mut out, b);
    } else {
        exact_classes(&mut out, b);
    }
    let _ = writeln!(
        out,
        "\non-CPU {:.3} ms{}, run-queue wait {:.3} ms; context switches: {} voluntary, {} involuntary",
        ms(b.oncpu_ns),
        if b.sampling.is_some() { " (sampled)" } else { "" },
        ms(b.runq_ns),
        b.context_switches.voluntary,
        b.context_switches.involuntary
    );
    breakdown_bars(&mut out, b);
    match (&b.tracing, &b.tracing_error) {
        (Some(t), _) => {
            let _ = writeln!(
                out,
                "tracing: {:.3} ms ({:.1}% of the target's traced time) taken out of the parts: {:.0} ns per syscall \
                 in process and {:.0} ns in the syscall, measured at attach",
                ms(t.ns),
                t.pct,
                t.per_call.process_ns,
                t.per_call.syscall_ns
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(
                out,
                "tracing: cost unknown ({why}); the parts include it, mostly in process"
            );
        }
        (None, None) => {}
    }
    if let Some(stacks) = &p.stacks {
        top_functions(&mut out, stacks);
    }
    other_syscalls(&mut out, b);
    if let Some(stacks) = &p.stacks {
        let tracing: u64 = stacks.tracing_samples.values().sum();
        let total = stacks.total_stacked_samples();
        if tracing > 0 && total > 0 {
            let _ = writeln!(
                out,
                "\ntracing cost: {tracing} of {total} samples ({:.1}%) caught the target in the kernel's syscall \
                 tracing path or in BPF programs (ours; seccomp, audit or another tool's run there too){}",
                tracing as f64 * 100.0 / total as f64,
                match (b.mode.is_exact(), &b.tracing) {
                    (true, Some(_)) => "; the parts above have the cost measured at attach taken out",
                    (true, None) => "; the shares above count that time as the server's, mostly as process",
                    (false, _) => "",
                }
            );
        }
    }
    if let Some(stacks) = &p.stacks {
        stack_notes(&mut out, stacks);
    }
    if p.partial {
        let _ = writeln!(
            out,
            "\npartial: interrupted after {} ms; the figures cover that much",
            b.window_ms
        );
    }
    for pid in &p.exited {
        let _ = writeln!(
            out,
            "\nprocess {pid} exited during the window: the profile covers what it did until then"
        );
    }
    if let Some(programs) = &p.program_costs {
        let _ = writeln!(
            out,
            "\neBPF programs' own cost (every task's events, filtered in the kernel):"
        );
        for program in programs {
            let _ = writeln!(
                out,
                "  {:<20} {:>10} runs {:>10.3} ms {:>8.1} ns/run",
                program.name,
                program.runs,
                ms(program.run_ns),
                program.ns_per_run()
            );
        }
    }
    out
}

/// How the user stacks were walked, what went missing from the stacks and why, and how to name
/// what could not be named.
fn stack_notes(out: &mut String, stacks: &Stacks) {
    let e = &stacks.errors;
    if !stacks.unwound_cfi.is_empty() {
        let pids: Vec<String> = stacks.unwound_cfi.iter().map(u32::to_string).collect();
        let _ = writeln!(
            out,
            "
user stacks of pid {} unwound from call frame information (built without frame pointers)",
            pids.join(", ")
        );
    }
    let missing: Vec<String> = [
        (
            e.truncated,
            "whose frame-pointer walk stopped early (code built without them)",
        ),
        (e.copy_too_short, "unwound to the end of the copied stack"),
        (e.no_cfi, "stopped at code with no call frame information"),
        (e.unknown_mapping, "stopped at a return address in no mapping"),
        (e.unwind_error, "stopped at a rule that could not be followed"),
    ]
    .iter()
    .filter_map(counted)
    .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "
stacks: {} samples with a user stack cut short: {}",
            e.cut_short(),
            missing.join(", ")
        );
    }
    let lost: Vec<String> = [
        (
            e.ring_full,
            "samples walked by frame pointers for want of room in the ring buffer",
        ),
        (e.collisions, "stack-map collisions"),
        (e.failed, "stacks not walked"),
        (e.lost, "samples lost (count map full)"),
    ]
    .iter()
    .filter_map(counted)
    .collect();
    if !lost.is_empty() {
        let _ = writeln!(out, "stacks: {}", lost.join(", "));
    }
    for hint in &stacks.hints {
        let _ = writeln!(out, "hint: {hint}");
    }
}

/// "N what", unless there are none.
fn counted(&(n, what): &(u64, &str)) -> Option<String> {
    (n > 0).then(|| format!("{n} {what}"))
}

fn class_rows(b: &Breakdown) -> impl Iterator<Item = (&'static str, &ClassReport)> {
    SyscallClass::ALL.into_iter().map(|c| (c.name(), b.classes.get(c)))
}

fn exact_classes(out: &mut String, b: &Breakdown) {
    let us = |ns: u64| ns as f64 / 1e3;
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>12} {:>12} {:>10} {:>10} {:>12} {:>8}",
        "class", "calls", "on-CPU ms", "blocked ms", "p50 us", "p99 us", "bytes", "errors"
    );
    for (name, r) in class_rows(b) {
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
}

fn sampled_classes(out: &mut String, b: &Breakdown) {
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>12} {:>12}",
        "class", "samples", "on-CPU ms", "blocked ms"
    );
    for (name, r) in class_rows(b).chain([("user", &b.classes.user)]) {
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>12.3} {:>12.3}",
            name,
            r.samples,
            ms(r.oncpu_ns),
            ms(r.blocked_ns)
        );
    }
}

fn breakdown_bars(out: &mut String, b: &Breakdown) {
    match &b.sampling {
        Some(_) => {
            let _ = writeln!(out, "\nbreakdown (share of on-CPU + run-queue time, +- 95% margin):");
        }
        None => {
            let _ = writeln!(out, "\nbreakdown (share of on-CPU + run-queue time):");
        }
    }
    for part in Part::ALL {
        let pct = b.percent(part);
        let bar = "#".repeat((pct / 2.0).round() as usize);
        match &b.sampling {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "  {:<9} {pct:>5.1}% +- {:<4.1} {bar}",
                    part.name(),
                    s.margin_pct.get(part)
                );
            }
            None => {
                let _ = writeln!(out, "  {:<9} {pct:>5.1}%  {bar}", part.name());
            }
        }
    }
    let _ = writeln!(out, "bottleneck: {}", b.bottleneck.map_or("none", Part::name));
}

fn top_functions(out: &mut String, stacks: &Stacks) {
    if stacks.functions.is_empty() {
        return;
    }
    let _ = writeln!(out, "\ntop functions by self samples (share of the part):");
    for (part, functions) in &stacks.functions {
        let samples = stacks.stacked_samples(*part);
        for (i, f) in functions.iter().take(TOP_FUNCTIONS).enumerate() {
            let label = if i == 0 {
                format!("{part} ({samples})")
            } else {
                String::new()
            };
            // Files in brackets, like the [kernel] and [vdso] pseudo-modules.
            let module = if f.module.starts_with('[') {
                f.module.clone()
            } else {
                format!("[{}]", f.module)
            };
            let _ = writeln!(out, "  {label:<16} {:>5.1}%  {}  {module}", f.pct, f.function);
        }
    }
}

fn other_syscalls(out: &mut String, b: &Breakdown) {
    if b.syscalls.is_empty() {
        return;
    }
    let sampled = b.sampling.is_some();
    let shown = match b.syscalls.len() {
        n if n > TOP_SYSCALLS => format!("top {TOP_SYSCALLS} of {n}"),
        n => format!("all {n}"),
    };
    let _ = writeln!(out, "\nother syscalls, by on-CPU + run-queue time ({shown}):");
    let _ = writeln!(
        out,
        "  {:<20} {:>10} {:>12} {:>12} {:>12}",
        "syscall",
        if sampled { "samples" } else { "calls" },
        "on-CPU ms",
        "run-queue ms",
        "blocked ms"
    );
    for s in b.syscalls.iter().take(TOP_SYSCALLS) {
        let _ = writeln!(
            out,
            "  {:<20} {:>10} {:>12.3} {:>12.3} {:>12.3}",
            s.name,
            if sampled { s.samples } else { s.calls },
            ms(s.oncpu_ns),
            ms(s.runq_ns),
            ms(s.blocked_ns)
        );
    }
}

/// Folded stacks, one line per distinct stack: `part;process;frame;...;frame count`.
pub fn folded(stacks: &Stacks) -> String {
    folded_lines(&stacks.folded)
}

/// Folded lines and their counts as text, a line each.
pub fn folded_lines(lines: &[(String, u64)]) -> String {
    let mut out = String::new();
    for (line, count) in lines {
        let _ = writeln!(out, "{line} {count}");
    }
    out
}

/// An SVG flame graph of the stacks (inferno); the five parts are its first row.
/// `width` in pixels, or `None` for as wide as the window that shows it.
pub fn flamegraph(stacks: &Stacks, title: &str, width: Option<usize>) -> Result<Vec<u8>> {
    flamegraph_of(&folded(stacks), title, width)
}

/// An SVG flame graph (inferno) of folded text: a count per line, or two (a differential
/// graph's before and after).
pub fn flamegraph_of(folded: &str, title: &str, width: Option<usize>) -> Result<Vec<u8>> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.image_width = width;
    options.count_name = "samples".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg).context("drawing the flame graph")?;
    Ok(svg)
}

/// How a command prints, chosen once from its flags: tables for people, or one JSON object per
/// result (a line each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl Format {
    /// `--json` given or not.
    pub fn json_if(json: bool) -> Format {
        if json { Format::Json } else { Format::Table }
    }

    /// `value` as a JSON line, or `table()` for people.
    fn write(self, value: &impl Serialize, table: impl FnOnce() -> String) -> String {
        match self {
            // Our own types, with string keys: serialising cannot fail.
            Format::Json => format!("{}\n", serde_json::to_string(value).expect("results serialise")),
            Format::Table => table(),
        }
    }
}

/// Interval lines (`--interval`) as a sink of the live loop: a line per load interval and per
/// profile interval, as they end.
pub struct Lines(pub Format);

impl Sink for Lines {
    fn take(&mut self, interval: &live::Interval) {
        match interval {
            live::Interval::Load(i) => print!("{}", self::interval(i, self.0)),
            live::Interval::Profile { end, breakdown, .. } => print!("{}", breakdown_interval(*end, breakdown, self.0)),
        }
    }
}

/// A benchmark's result: the run's tables (and the server's statistics when sampled), or the
/// JSON the node replies with.
pub fn run(r: &RunResult, format: Format) -> String {
    format.write(r, || {
        let mut out = report_table(r.report);
        if let Some(stats) = &r.server_stats {
            let _ = writeln!(
                out,
                "server: RSS up to {} KiB, up to {} threads, {} voluntary and {} involuntary context switches",
                stats.rss_max_kb, stats.threads_max, stats.voluntary_switches, stats.involuntary_switches
            );
        }
        out
    })
}

/// A sweep's result: a row per level and the knee.
pub fn sweep(ran: Ran, sweep: &Sweep, format: Format) -> String {
    format.write(&SweepResult::new(ran, sweep), || sweep_table(sweep))
}

/// A find-max search's result: the answer and its reason (its steps were printed as they ran,
/// [`find_max_step`]), or the whole result as JSON.
pub fn find_max(result: &FindMaxResult, format: Format) -> String {
    format.write(result, || format!("{}\n", result.find_max.sentence()))
}

/// One step of a find-max search, as a line of its table ([`FIND_MAX_HEADER`] above them).
pub fn find_max_step(step: &Step) -> String {
    let offered = step.offered_rps.map_or("probe".to_string(), |r| format!("{r:.0}"));
    let verdict = match (step.offered_rps, step.holds) {
        (None, _) => "closed loop: where to start".to_string(),
        (Some(_), true) => "holds".to_string(),
        (Some(_), false) => format!("fails: {}", step.why_not.join("; ")),
    };
    format!(
        "{offered:>10} {:>10.0} {:>10} {:>10} {:>10}  {verdict}\n",
        step.achieved_rps, step.p50_us, step.p99_us, step.max_us
    )
}

/// The header of [`find_max_step`]'s lines.
pub const FIND_MAX_HEADER: &str = "   offered   achieved     p50 us     p99 us     max us  verdict\n";

/// Two runs compared: a table per kind of figure, each change with its p-value and whether it
/// is significant, the warnings, the movers and the broken `--fail-on` rules.
pub fn comparison(c: &Comparison, format: Format) -> String {
    format.write(c, || {
        let mut out = format!("A: {}\nB: {}\n", c.a, c.b);
        for w in &c.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let p = |p: Option<f64>| match p {
            None => "-".to_string(),
            Some(p) if p < 1e-4 => format!("{p:.0e}"),
            Some(p) => format!("{p:.4}"),
        };
        let mark = |significant: bool| if significant { "significant" } else { "" };
        let _ = writeln!(out, "\n{:<16} {:>14} {:>14} {:>9} {:>9}", "", "A", "B", "change", "p");
        for m in &c.load {
            let change = m.change.map_or("-".to_string(), |x| format!("{x:+.1}%"));
            let _ = writeln!(
                out,
                "{:<16} {:>14.1} {:>14.1} {change:>9} {:>9}  {}",
                m.name,
                m.a,
                m.b,
                p(m.p_value),
                mark(m.significant)
            );
        }
        if !c.breakdown.is_empty() {
            let _ = writeln!(
                out,
                "\nbreakdown (% of the server's time; significant: beyond both 95% margins)"
            );
            for m in &c.breakdown {
                let change = m.change.map_or("-".to_string(), |x| format!("{x:+.1} pts"));
                let _ = writeln!(
                    out,
                    "{:<16} {:>13.1}% {:>13.1}% {change:>9}            {}",
                    m.name,
                    m.a,
                    m.b,
                    mark(m.significant)
                );
            }
        }
        if !c.signals.is_empty() {
            let _ = writeln!(out, "\nsignals");
            for m in &c.signals {
                let change = m.change.map_or("-".to_string(), |x| format!("{x:+.1}%"));
                let _ = writeln!(out, "{:<16} {:>14.1} {:>14.1} {change:>9}", m.name, m.a, m.b);
            }
        }
        if !c.movers.is_empty() {
            let _ = writeln!(out, "\nfunctions whose share of the samples moved most");
            for m in &c.movers {
                let _ = writeln!(
                    out,
                    "{:<40} {:>6.1}% {:>6.1}% {:>+8.1} pts {:>9}  {}",
                    m.function,
                    m.a_pct,
                    m.b_pct,
                    m.change,
                    p(m.p_value),
                    mark(m.significant)
                );
            }
        }
        if !c.failed.is_empty() {
            let _ = writeln!(out, "\nfailed: {}", c.failed.join(", "));
        }
        out
    })
}

/// A `profile` window's result.
pub fn profile(r: &Report, format: Format) -> String {
    format.write(r, || report_table(r))
}

/// A run as tables: the load, the profile, the signals and the limit, whichever it has.
pub fn report_table(r: &Report) -> String {
    let mut out = String::new();
    if let Some(load) = &r.load {
        out.push_str(&load_table(load));
        out.push('\n');
    }
    if let Some(profile) = &r.profile {
        out.push_str(&profile_table(profile));
        out.push('\n');
    }
    out.push_str(&signals_table(&r.signals, &r.limit));
    if let Some(exit) = &r.server_exited {
        let _ = writeln!(out, "note: {exit}");
    }
    out
}

/// The saturation signals and the verdict.
pub fn signals_table(s: &Signals, limit: &Limit) -> String {
    let mut out = String::new();
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}%"));
    let num = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let us = |v: Option<f64>| v.map_or("-".into(), crate::limit::us);
    let spent = |v: Option<f64>| v.map_or("-".into(), crate::limit::duration);
    let cores = |v: Option<usize>| match v {
        Some(1) => "1 core".to_string(),
        Some(n) => format!("{n} cores"),
        None => "- cores".into(),
    };
    let busy = match (s.busy_ms, s.busy_pct()) {
        (Some(busy), Some(share)) => format!("server busy {busy:.0} ms of it, {share:.0}%"),
        _ => "server busy -".into(),
    };
    let _ = writeln!(
        out,
        "signals over {:.0} ms ({busy}; CPU judged over the {}, {:.0} ms):",
        s.window_ms, s.loaded_part, s.loaded_ms
    );
    let _ = writeln!(
        out,
        "  CPU        server {} of {} (busiest thread {}), over the {} {} (busiest thread {}); load generator {} \
         of {} (busiest worker {}, waiting for a CPU {})",
        pct(s.server_cpu_pct),
        cores(s.server_cores),
        pct(s.server_busiest_thread_pct),
        s.loaded_part,
        pct(s.loaded_server_cpu_pct),
        pct(s.loaded_busiest_thread_pct),
        pct(s.client_cpu_pct),
        cores(s.client_cores),
        pct(s.client_busiest_worker_pct),
        pct(s.client_busiest_worker_runq_pct)
    );
    let _ = writeln!(
        out,
        "  run queue  p50 {}  p99 {}  max {}  mean {}  ({} waits, {}; {} of {} or more, {}: {} of the runnable \
         time)",
        us(s.runq_p50_us),
        us(s.runq_p99_us),
        us(s.runq_max_us),
        us(s.runq_mean_us),
        num(s.runq_waits),
        spent(s.runq_wait_ms),
        num(s.runq_long_waits),
        crate::limit::us(crate::signals::LONG_WAIT_NS as f64 / 1e3),
        spent(s.runq_long_wait_ms),
        s.runq_share_pct().map_or("-".into(), |p| format!("{p:.1}%"))
    );
    let _ = writeln!(
        out,
        "  accept     queue at most {} of {}; listen overflows {}, drops {} (machine-wide)",
        num(s.accept_queue_max.map(u64::from)),
        num(s.accept_queue_limit.map(u64::from)),
        num(s.listen_overflows),
        num(s.listen_drops)
    );
    let _ = writeln!(
        out,
        "  TCP        {} retransmits, {} resets sent, {} resets received, {} buffer-limit events, {} receive-queue drops",
        num(s.retransmits),
        num(s.resets_sent),
        num(s.resets_received),
        num(s.buffer_limit),
        num(s.rcvqueue_full)
    );
    // One line per reason, naming the fields it left unmeasured.
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (field, why) in &s.signal_errors {
        match reasons.iter_mut().find(|(w, _)| w == why) {
            Some((_, fields)) => fields.push(field),
            None => reasons.push((why, vec![field])),
        }
    }
    for (why, fields) in reasons {
        let _ = writeln!(out, "  not measured: {}: {why}", fields.join(", "));
    }
    let _ = writeln!(out, "limit: {}: {}", limit.kind, limit.reason);
    out
}

/// A latency histogram's percentile distribution in HdrHistogram's text format (`.hgrm`, as
/// `outputPercentileDistribution` writes it, five ticks per half-distance), values in
/// microseconds: HdrHistogram's plotter and wrk2's users read it.
pub fn hgrm(latency: &LatencyHistogram) -> String {
    let h = latency.inner();
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let (value, q) = (v.value_iterated_to() as f64, v.quantile_iterated_to());
        if q < 1.0 {
            let _ = writeln!(out, "{value:12.digits$} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:12.digits$} {q:2.12} {total:10}");
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean(), h.stdev())
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.digits$}, StdDeviation   = {stdev:12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.digits$}, Total count    = {:12}]",
        latency.max_us() as f64,
        h.len()
    );
    // HdrHistogram's sub-bucket count: the power of two that holds 2 x 10^digits.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    out
}

/// One interval of a run: a line, as wrk2 and BCC's tools print them, or a JSON object.
pub fn interval(i: &Interval, format: Format) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        interval: u64,
        start_s: f64,
        length_s: f64,
        requests: u64,
        errors: u64,
        error_counts: &'a ErrorCounts,
        throughput_rps: f64,
        latency_p50_us: u64,
        latency_p99_us: u64,
        latency_max_us: u64,
    }
    let l = i.latency.summary();
    let json = Json {
        interval: i.index,
        start_s: i.start.as_secs_f64(),
        length_s: i.length.as_secs_f64(),
        requests: i.requests,
        errors: i.errors.total(),
        error_counts: &i.errors,
        throughput_rps: i.throughput_rps(),
        latency_p50_us: l.p50_us,
        latency_p99_us: l.p99_us,
        latency_max_us: l.max_us,
    };
    format.write(&json, || {
        format!(
            "{:>8.1} s {:>9} requests {:>10.0} req/s {:>6} errors   p50 {:>7} us  p99 {:>7} us  max {:>7} us\n",
            (i.start + i.length).as_secs_f64(),
            i.requests,
            json.throughput_rps,
            json.errors,
            l.p50_us,
            l.p99_us,
            l.max_us
        )
    })
}

/// One interval of a profile window, ending `end` after its start: the five shares and the
/// on-CPU time.
pub fn breakdown_interval(end: Duration, b: &Breakdown, format: Format) -> String {
    #[derive(Serialize)]
    struct Json<'a> {
        t_s: f64,
        breakdown: &'a crate::breakdown::Percentages,
        bottleneck: &'static str,
        oncpu_ns: u64,
        runq_ns: u64,
    }
    let json = Json {
        t_s: end.as_secs_f64(),
        breakdown: &b.breakdown,
        bottleneck: b.bottleneck.map_or("none", Part::name),
        oncpu_ns: b.oncpu_ns,
        runq_ns: b.runq_ns,
    };
    format.write(&json, || {
        let mut line = format!("{:>8.1} s ", end.as_secs_f64());
        for part in Part::ALL {
            let _ = write!(line, " {} {:>5.1}%", part.name(), b.percent(part));
        }
        let _ = writeln!(
            line,
            "   on-CPU {:.1} ms, run-queue {:.1} ms",
            ms(b.oncpu_ns),
            ms(b.runq_ns)
        );
        line
    })
}

/// Merged interval logs: the union's count and percentiles, like a run's summary.
pub fn merged(h: &LatencyHistogram, files: usize, intervals: usize, format: Format) -> String {
    #[derive(Serialize)]
    struct Json {
        files: usize,
        intervals: usize,
        requests: u64,
        latency_p50_us: u64,
        latency_p95_us: u64,
        latency_p99_us: u64,
        latency_p999_us: u64,
        latency_max_us: u64,
        latency_mean_us: f64,
    }
    let l = h.summary();
    let json = Json {
        files,
        intervals,
        requests: h.len(),
        latency_p50_us: l.p50_us,
        latency_p95_us: l.p95_us,
        latency_p99_us: l.p99_us,
        latency_p999_us: l.p999_us,
        latency_max_us: l.max_us,
        latency_mean_us: l.mean_us,
    };
    format.write(&json, || {
        format!(
            "{files} logs, {intervals} intervals: {} requests\nlatency us: p50 {}  p95 {}  p99 {}  p99.9 {}  max {}  mean {:.1}\n",
            h.len(),
            l.p50_us,
            l.p95_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.mean_us
        )
    })
}

/// A load run's figures as a table, with the per-worker send/recv statistics seed 002 prints.
pub fn load_table(r: &LoadReport) -> String {
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
    if r.interrupted {
        let _ = writeln!(
            out,
            "interrupted: these figures cover the run until it was stopped (partial)"
        );
    }
    if r.errors > 0 {
        let kinds: Vec<String> = (r.error_counts.by_kind())
            .filter(|&(_, n)| n > 0)
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(out, "errors by kind: {}", kinds.join(", "));
    }
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

/// A sweep as a table, one row per concurrency level, with each level's limit and the knee.
pub fn sweep_table(sweep: &Sweep) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>11} {:>12} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  limit",
        "concurrency", "requests/s", "p50 us", "p99 us", "max us", "errors", "server", "client"
    );
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}%"));
    for level in &sweep.levels {
        let Some(r) = &level.load else { continue };
        let _ = writeln!(
            out,
            "{:>11} {:>12.0} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  {}",
            r.concurrency,
            r.throughput_rps,
            r.latency_p50_us,
            r.latency_p99_us,
            r.latency_max_us,
            r.errors,
            pct(level.signals.server_cpu_pct),
            pct(level.signals.client_cpu_pct),
            level.limit.kind
        );
    }
    match (sweep.saturation, &sweep.saturation_reason) {
        (Some(level), Some(reason)) => {
            let _ = writeln!(out, "\nknee at {level} connections: {reason}");
        }
        _ => {
            let _ = writeln!(
                out,
                "\nno knee: throughput grew by {:.0}% or more at every step",
                Sweep::FLAT * 100.0
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hgrm_is_hdrhistograms_percentile_distribution() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000 {
            h.record(Duration::from_micros(us));
        }
        let text = hgrm(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let rows: Vec<Vec<f64>> = lines
            .clone()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
            .collect();
        // Value, percentile and count never go down; the last row is 100% of every value.
        assert!(rows.windows(2).all(|w| (0..3).all(|k| w[0][k] <= w[1][k])), "{text}");
        let median = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((median[0] - 5000.0).abs() <= 5.0, "{median:?}");
        assert!((median[3] - 2.0).abs() < 0.01, "1/(1-0.5) is 2: {median:?}");
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2], last.len()), (1.0, 10_000.0, 3), "{text}");
        let footer: Vec<&str> = lines.skip(rows.len()).collect();
        assert!(footer[0].starts_with("#[Mean    =     5000.") && footer[0].contains("StdDeviation"));
        assert_eq!(footer[1], "#[Max     =    10007.000, Total count    =        10000]");
        assert!(footer[2].starts_with("#[Buckets =") && footer[2].ends_with("SubBuckets     =         2048]"));
    }
}
