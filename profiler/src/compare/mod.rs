//! `tcpprof compare A B`: one run against another. Each figure side by side with its change,
//! marked significant only beyond the noise: throughput and latency percentiles by the
//! Mann-Whitney U test over the two runs' per-interval values and a change past the run-to-run
//! noise floor ([`LOAD`]), failed requests and each function's stack samples by a binomial test
//! over the counts ([`stats`]), each at [`ALPHA`] (functions with a Bonferroni correction over
//! those tested). `--fail-on` turns chosen changes into exit status 1, for CI.
//!
//! A run is read from what `bench --save FILE` wrote ([`Saved`]: the result, its intervals, its
//! percentile spectrum and folded stacks) or from `bench --json` (the result alone: figures are
//! compared, significance cannot be tested).
pub mod stats;

use crate::breakdown::Part;
use crate::printer::plots::IntervalPoint;
use crate::printer::{flamegraph_of, folded_lines};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A change is significant when the test's p-value is below this.
pub const ALPHA: f64 = 0.01;
/// The version of [`Saved`]'s layout.
pub const SAVED_VERSION: u32 = 1;
/// Functions listed as movers.
const MOVERS: usize = 10;

/// A run as `bench --save` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    /// [`SAVED_VERSION`]: what says this file is one.
    pub tcpprof_saved: u32,
    /// What `bench --json` prints.
    pub result: Value,
    /// Each interval's figures (1 s unless `--interval`).
    pub intervals: Vec<IntervalPoint>,
    /// Latency at percentiles (percentile, us), the spectrum's points.
    pub spectrum: Vec<(f64, u64)>,
    /// The profile's stacks (when sampled), folded: a line and its samples.
    pub folded: Vec<(String, u64)>,
}

/// The percentiles a spectrum keeps: 1/(1-p) doubling from the median to 99.9999%, and 100.
pub fn spectrum_points(histogram: &bench::load::LatencyHistogram) -> Vec<(f64, u64)> {
    let h = histogram.inner();
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, u64)> = (0..=20)
        .map(|i| 100.0 * (1.0 - 0.5f64.powi(i)))
        .map(|pct| (pct, h.value_at_quantile(pct / 100.0)))
        .collect();
    points.push((100.0, h.max()));
    points
}

/// One side of a comparison: a saved run or a bare result.
#[derive(Clone, Debug)]
pub struct Run {
    pub path: String,
    pub result: Value,
    pub intervals: Vec<IntervalPoint>,
    pub spectrum: Vec<(f64, u64)>,
    pub folded: Vec<(String, u64)>,
}

impl Run {
    /// Reads a run from `path`, naming the file and what it lacks when it is not one.
    pub fn read(path: &Path) -> Result<Run> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {shown}"))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("{shown}: not JSON, so not a saved tcpprof result"))?;
        let run = if value.get("tcpprof_saved").is_some() {
            let saved: Saved = serde_json::from_value(value)
                .with_context(|| format!("{shown}: a saved tcpprof result that does not read"))?;
            if saved.tcpprof_saved != SAVED_VERSION {
                bail!(
                    "{shown}: saved by another version of tcpprof (layout {}, this one reads {SAVED_VERSION})",
                    saved.tcpprof_saved
                );
            }
            Run {
                path: shown.clone(),
                result: saved.result,
                intervals: saved.intervals,
                spectrum: saved.spectrum,
                folded: saved.folded,
            }
        } else {
            Run {
                path: shown.clone(),
                result: value,
                intervals: Vec::new(),
                spectrum: Vec::new(),
                folded: Vec::new(),
            }
        };
        let missing: Vec<&str> = ["throughput_rps", "latency_p99_us", "requests", "errors", "concurrency"]
            .into_iter()
            .filter(|k| run.result.get(*k).and_then(Value::as_f64).is_none())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{shown}: not a saved run (no {}): save one with `tcpprof bench --save FILE` or `--json > FILE`",
                missing.join(", ")
            );
        }
        Ok(run)
    }

    /// The intervals as long as the longest: the last, cut short, would skew its figures.
    fn whole_intervals(&self) -> impl Iterator<Item = &IntervalPoint> {
        let longest = self.intervals.iter().map(|i| i.length_s).fold(0.0, f64::max);
        self.intervals.iter().filter(move |i| i.length_s >= longest * 0.9)
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.result.get(key)?.as_f64()
    }

    fn text(&self, key: &str) -> String {
        match self.result.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(v) => v.to_string(),
        }
    }

    /// Self samples by function (a folded line's last frame).
    fn functions(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (line, n) in &self.folded {
            let leaf = line.rsplit(';').next().unwrap_or(line);
            *out.entry(leaf.to_string()).or_default() += n;
        }
        out
    }
}

/// One figure of both runs.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub name: String,
    pub a: f64,
    pub b: f64,
    /// (b - a) / a in percent (`None` when a is 0); for breakdown parts, in points.
    pub change: Option<f64>,
    /// The test's p-value, when one could be made (both runs saved with their intervals).
    pub p_value: Option<f64>,
    pub significant: bool,
}

/// A function whose share of the samples moved.
#[derive(Clone, Debug, Serialize)]
pub struct Mover {
    pub function: String,
    pub a_pct: f64,
    pub b_pct: f64,
    /// In points of the samples.
    pub change: f64,
    pub p_value: Option<f64>,
    pub significant: bool,
}

/// Two runs compared.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Where the runs differ in what was asked, which makes their figures less comparable.
    pub warnings: Vec<String>,
    /// Throughput, latency percentiles, errors.
    pub load: Vec<Change>,
    /// Each breakdown part (both profiled), in points.
    pub breakdown: Vec<Change>,
    /// Saturation signals, side by side (no test).
    pub signals: Vec<Change>,
    /// Functions whose share of the stack samples moved most (both with stacks).
    pub movers: Vec<Mover>,
    /// The `--fail-on` rules the change broke.
    pub failed: Vec<String>,
}

/// A load figure: its name, its key in the result, its per-interval value, and the smallest
/// change (percent) marked significant. Intervals of one run share its conditions (the other
/// core's load, the CPU's clock), so two runs of one configuration differ by more than their
/// intervals vary: these floors are that run-to-run noise, measured over A/A pairs (`cargo
/// xtask bench compare`, README).
type LoadFigure = (&'static str, &'static str, fn(&IntervalPoint) -> f64, f64);
const LOAD: [LoadFigure; 5] = [
    ("throughput_rps", "throughput_rps", |i| i.throughput_rps, 15.0),
    ("p50_us", "latency_p50_us", |i| i.p50_us as f64, 35.0),
    ("p99_us", "latency_p99_us", |i| i.p99_us as f64, 25.0),
    ("p999_us", "latency_p999_us", |i| i.p999_us as f64, 100.0),
    ("max_us", "latency_max_us", |i| i.max_us as f64, 250.0),
];
/// Failed requests: the smallest change in points of the error rate marked significant.
const ERRORS_FLOOR: f64 = 0.1;

const SIGNALS: [&str; 6] = [
    "server_cpu_pct",
    "client_cpu_pct",
    "runq_p99_us",
    "accept_queue_max",
    "retransmits",
    "listen_overflows",
];

/// Compares `b` against `a`, checking `fail_on`'s rules.
pub fn compare(a: &Run, b: &Run, fail_on: &[FailOn]) -> Comparison {
    let mut load: Vec<Change> = LOAD
        .iter()
        .filter_map(|&(name, key, per_interval, floor)| {
            let (va, vb) = (a.number(key)?, b.number(key)?);
            let series = |r: &Run| r.whole_intervals().map(per_interval).collect::<Vec<f64>>();
            let p_value = stats::mann_whitney(&series(a), &series(b));
            let mut c = change(name, va, vb, p_value);
            c.significant &= c.change.is_some_and(|pct| pct.abs() >= floor);
            Some(c)
        })
        .collect();
    // Failed requests: of all a run tried, by a binomial test on the counts.
    let tried = |r: &Run| r.number("requests").unwrap_or(0.0) + r.number("errors").unwrap_or(0.0);
    let (ea, eb) = (a.number("errors").unwrap_or(0.0), b.number("errors").unwrap_or(0.0));
    let share = tried(a) / (tried(a) + tried(b)).max(1.0);
    let errors_p = stats::binomial(ea as u64, eb as u64, share);
    let rate = |e: f64, r: &Run| if tried(r) > 0.0 { e * 100.0 / tried(r) } else { 0.0 };
    let mut errors = change("errors_pct", rate(ea, a), rate(eb, b), errors_p);
    errors.significant &= (errors.b - errors.a).abs() >= ERRORS_FLOOR;
    load.push(errors);

    let breakdown = Part::ALL
        .iter()
        .filter_map(|part| {
            let key = format!("{}_pct", part.name());
            let value = |r: &Run| r.result.get("breakdown")?.get(&key)?.as_f64();
            let margin = |r: &Run| r.result.get("margin_pct")?.get(&key)?.as_f64();
            let (va, vb) = (value(a)?, value(b)?);
            // Sampled shares: significant beyond both margins (95% each) combined.
            let significant = match (margin(a), margin(b)) {
                (Some(ma), Some(mb)) => (vb - va).abs() > (ma * ma + mb * mb).sqrt(),
                _ => false,
            };
            Some(Change {
                name: part.name().to_string(),
                a: va,
                b: vb,
                change: Some(vb - va),
                p_value: None,
                significant,
            })
        })
        .collect();
    let signals = SIGNALS
        .iter()
        .filter_map(|key| {
            let value = |r: &Run| r.result.get("signals")?.get(*key)?.as_f64();
            let (va, vb) = (value(a)?, value(b)?);
            Some(Change {
                name: key.to_string(),
                a: va,
                b: vb,
                change: (va != 0.0).then(|| (vb - va) * 100.0 / va),
                p_value: None,
                significant: false,
            })
        })
        .collect();
    let mut comparison = Comparison {
        a: a.path.clone(),
        b: b.path.clone(),
        warnings: warnings(a, b),
        load,
        breakdown,
        signals,
        movers: movers(a, b),
        failed: Vec::new(),
    };
    comparison.failed = fail_on
        .iter()
        .filter(|rule| rule.broken_by(&comparison))
        .map(|rule| rule.text.clone())
        .collect();
    comparison
}

fn change(name: &str, a: f64, b: f64, p_value: Option<f64>) -> Change {
    Change {
        name: name.to_string(),
        a,
        b,
        change: (a != 0.0).then(|| (b - a) * 100.0 / a),
        p_value,
        significant: p_value.is_some_and(|p| p < ALPHA),
    }
}

/// What differs in how the two runs were asked for.
fn warnings(a: &Run, b: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for key in [
        "server",
        "command",
        "protocol",
        "connection",
        "concurrency",
        "rate",
        "mode",
    ] {
        let (va, vb) = (a.text(key), b.text(key));
        if va != vb {
            let what = if key == "rate" { "offered load (rate)" } else { key };
            out.push(format!("the runs differ in {what}: {va} against {vb}"));
        }
    }
    let elapsed = |r: &Run| r.number("elapsed_ms").unwrap_or(0.0);
    let (ea, eb) = (elapsed(a), elapsed(b));
    if ea > 0.0 && eb > 0.0 && (ea / eb).max(eb / ea) > 1.5 {
        out.push(format!(
            "the runs differ in length: {:.1} s against {:.1} s",
            ea / 1e3,
            eb / 1e3
        ));
    }
    for r in [a, b] {
        if r.whole_intervals().count() < 2 {
            out.push(format!(
                "{}: no per-interval values (saved with --json, or shorter than two intervals), so throughput and \
                 latency cannot be tested: save runs with --save",
                r.path
            ));
        }
    }
    out
}

/// The functions whose share of the samples moved most, each tested.
fn movers(a: &Run, b: &Run) -> Vec<Mover> {
    let (fa, fb) = (a.functions(), b.functions());
    let (na, nb) = (fa.values().sum::<u64>(), fb.values().sum::<u64>());
    if na == 0 || nb == 0 {
        return Vec::new();
    }
    let names: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let tested = names.len() as f64;
    let share = na as f64 / (na + nb) as f64;
    let mut movers: Vec<Mover> = names
        .into_iter()
        .map(|name| {
            let (ca, cb) = (fa.get(name).copied().unwrap_or(0), fb.get(name).copied().unwrap_or(0));
            let (pa, pb) = (ca as f64 * 100.0 / na as f64, cb as f64 * 100.0 / nb as f64);
            let p_value = stats::binomial(ca, cb, share);
            Mover {
                function: name.clone(),
                a_pct: pa,
                b_pct: pb,
                change: pb - pa,
                p_value,
                significant: p_value.is_some_and(|p| p < ALPHA / tested),
            }
        })
        .collect();
    movers.sort_by(|x, y| y.change.abs().total_cmp(&x.change.abs()));
    movers.truncate(MOVERS);
    movers
}

/// A `--fail-on` rule: `throughput-5%` (fails when throughput falls by more than 5%),
/// `p99+10%` (when p99 grows by more than 10%); a change the tests found insignificant breaks
/// no rule, one that could not be tested is taken as it is.
#[derive(Clone, Debug, PartialEq)]
pub struct FailOn {
    text: String,
    metric: &'static str,
    /// Signed percent: the rule breaks past it in its direction.
    limit_pct: f64,
}

impl FailOn {
    pub fn parse(text: &str) -> Result<FailOn, String> {
        let at = text
            .find(['+', '-'])
            .ok_or_else(|| format!("{text:?}: no + or -: write e.g. p99+10% or throughput-5%"))?;
        let (name, amount) = text.split_at(at);
        let metric = match name.trim() {
            "throughput" => "throughput_rps",
            "p50" => "p50_us",
            "p99" => "p99_us",
            "p99.9" | "p999" => "p999_us",
            "max" => "max_us",
            "errors" => "errors_pct",
            other => {
                return Err(format!(
                    "{text:?}: {other:?} is not a figure compare tests (throughput, p50, p99, p99.9, max, errors)"
                ));
            }
        };
        let pct = amount
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("{text:?}: the change is a percentage, e.g. +10%"))?;
        let limit_pct: f64 = pct.parse().map_err(|_| format!("{text:?}: {pct:?} is not a number"))?;
        Ok(FailOn {
            text: text.to_string(),
            metric,
            limit_pct,
        })
    }

    fn broken_by(&self, c: &Comparison) -> bool {
        let Some(change) = c.load.iter().find(|m| m.name == self.metric) else {
            return false;
        };
        let Some(pct) = change.change else { return false };
        let past = if self.limit_pct >= 0.0 {
            pct > self.limit_pct
        } else {
            pct < self.limit_pct
        };
        past && (change.significant || change.p_value.is_none())
    }
}

/// The differential flame graph of `from` to `to` (inferno's differential mode: red grew, blue
/// shrank, widths of `to`), from both runs' folded stacks.
pub fn differential_flamegraph(from: &Run, to: &Run, title: &str) -> Result<Vec<u8>> {
    let (before, after) = (folded_lines(&from.folded), folded_lines(&to.folded));
    if before.is_empty() || after.is_empty() {
        bail!("a differential flame graph needs both runs' stacks: save them with bench --profile --stacks --save");
    }
    let mut diff = Vec::new();
    let options = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(options, before.as_bytes(), after.as_bytes(), &mut diff)
        .context("diffing the folded stacks")?;
    let diff = String::from_utf8(diff).context("folded stacks that are not UTF-8")?;
    flamegraph_of(&diff, title, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_on_rules_parse_and_name_what_is_wrong() {
        let rule = FailOn::parse("p99+10%").unwrap();
        assert_eq!((rule.metric, rule.limit_pct), ("p99_us", 10.0));
        let rule = FailOn::parse("throughput-5%").unwrap();
        assert_eq!((rule.metric, rule.limit_pct), ("throughput_rps", -5.0));
        for (bad, why) in [
            ("p99", "no + or -"),
            ("latency+5%", "not a figure"),
            ("p99+10", "a percentage"),
            ("p99+x%", "not a number"),
        ] {
            let e = FailOn::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn run(rps: &[f64], p99: u64, errors: u64) -> Run {
        let intervals = rps
            .iter()
            .enumerate()
            .map(|(i, &r)| IntervalPoint {
                t_s: i as f64 + 1.0,
                length_s: 1.0,
                requests: r as u64,
                errors: 0,
                throughput_rps: r,
                p50_us: p99 / 2,
                p99_us: p99 + i as u64,
                p999_us: p99 * 2,
                max_us: p99 * 3,
            })
            .collect();
        let mean = rps.iter().sum::<f64>() / rps.len() as f64;
        Run {
            path: "x".into(),
            result: serde_json::json!({
                "server": "epoll", "command": "PING", "protocol": "line", "connection": "persistent",
                "concurrency": 10, "rate": null, "requests": (mean * rps.len() as f64) as u64, "errors": errors,
                "throughput_rps": mean, "latency_p50_us": p99 / 2, "latency_p99_us": p99,
                "latency_p999_us": p99 * 2, "latency_max_us": p99 * 3, "elapsed_ms": 10_000.0,
            }),
            intervals,
            spectrum: Vec::new(),
            folded: Vec::new(),
        }
    }

    #[test]
    fn a_clear_change_is_significant_and_breaks_its_rule_noise_is_not() {
        let a = run(
            &[100.0, 102.0, 98.0, 101.0, 99.0, 100.0, 103.0, 97.0, 100.0, 101.0],
            1000,
            0,
        );
        let same = run(
            &[101.0, 99.0, 100.0, 98.0, 102.0, 100.0, 97.0, 103.0, 99.0, 100.0],
            1000,
            0,
        );
        let rules = [
            FailOn::parse("throughput-5%").unwrap(),
            FailOn::parse("p99+10%").unwrap(),
        ];
        let c = compare(&a, &same, &rules);
        assert!(c.load.iter().all(|m| !m.significant), "{c:?}");
        assert!(c.failed.is_empty() && c.warnings.is_empty(), "{c:?}");
        let slower = run(&[50.0, 52.0, 48.0, 51.0, 49.0, 50.0, 53.0, 47.0, 50.0, 51.0], 2000, 0);
        let c = compare(&a, &slower, &rules);
        let throughput = &c.load[0];
        assert_eq!(throughput.name, "throughput_rps");
        assert!(throughput.significant && throughput.change.unwrap() < -45.0, "{c:?}");
        assert!(c.load.iter().find(|m| m.name == "p99_us").unwrap().significant);
        assert_eq!(c.failed, ["throughput-5%", "p99+10%"]);
    }

    #[test]
    fn runs_that_differ_in_what_was_asked_are_flagged() {
        let a = run(&[100.0, 100.0], 1000, 0);
        let mut b = run(&[100.0, 100.0], 1000, 0);
        b.result["rate"] = serde_json::json!(5000.0);
        b.result["command"] = serde_json::json!("BURN 10");
        let w = compare(&a, &b, &[]).warnings;
        assert!(w.iter().any(|w| w.contains("offered load")), "{w:?}");
        assert!(w.iter().any(|w| w.contains("command: PING against BURN 10")), "{w:?}");
    }

    #[test]
    fn a_function_that_took_more_samples_is_the_top_mover() {
        let mut a = run(&[100.0, 100.0], 1000, 0);
        let mut b = a.clone();
        a.folded = vec![
            ("process;main;burn".into(), 1000),
            ("write;main;tcp_sendmsg".into(), 3000),
        ];
        b.folded = vec![
            ("process;main;burn".into(), 2000),
            ("write;main;tcp_sendmsg".into(), 2000),
        ];
        let movers = compare(&a, &b, &[]).movers;
        assert_eq!(movers[0].function, "burn");
        assert!(
            movers[0].significant && (movers[0].change - 25.0).abs() < 1e-9,
            "{movers:?}"
        );
    }
}
