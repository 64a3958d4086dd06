//! `bench --find-max --slo 'p99<5ms'`: the highest open-loop rate at which a server holds a
//! service-level objective. A closed-loop probe says roughly what the server does; open-loop
//! steps then grow from half of that until one fails, and bisect between the highest rate that
//! held and the lowest that failed, until they are within [`RESOLUTION`] of each other or the
//! time is up. A step holds when its latency meets the SLO (corrected for coordinated omission:
//! from each request's intended send), it achieves at least [`ACHIEVED`] of the offered rate, and
//! its latency does not grow within it (a queue building up, which a longer step would turn into
//! a broken SLO). The answer comes with the limit verdict of the lowest rate that failed.
use crate::benchmark::{Benchmark, Runner};
use crate::limit::{Limit, LimitKind};
use crate::live::{Interval, Live, Sink};
use anyhow::Result;
use bench::load::{LoadConfig, LoadReport};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// A step holds only when it achieves this share of the offered rate.
pub const ACHIEVED: f64 = 0.99;
/// The search ends once the highest rate that held and the lowest that failed are this close
/// (relative to the first).
pub const RESOLUTION: f64 = 0.03;
/// Each step's rate after a step that held, before one has failed.
const GROWTH: f64 = 1.5;
/// A step's latency grew within it when its second half's median interval p50 exceeds the first
/// half's by this factor and by [`TREND_FLOOR`] (jitter in sub-millisecond latencies is no queue).
const TREND_FACTOR: f64 = 1.5;
const TREND_FLOOR: Duration = Duration::from_micros(500);
/// The longest the search may take unless told (`--max-time`), and each step's length unless
/// told (`--duration`).
pub const DEFAULT_MAX_TIME: Duration = Duration::from_secs(120);
pub const DEFAULT_STEP: Duration = Duration::from_secs(3);

/// One objective of an SLO.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// The `pct` percentile of latency (0 < pct < 100).
    Percentile { pct: f64, limit: Duration, inclusive: bool },
    /// The slowest request.
    Max { limit: Duration, inclusive: bool },
    /// Failed requests, percent of all.
    Errors { pct: f64, inclusive: bool },
}

/// Objectives that must all hold, as given (`p99<5ms,max<50ms,errors<0.1%`).
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub objectives: Vec<Objective>,
    text: String,
}

impl Slo {
    /// Parses comma-separated objectives `NAME<VALUE` (or `<=`): NAME `pNN` (any percentile
    /// below 100, `p99.9`), `max` or `errors`; a latency in `us`, `ms` or `s`, errors in `%`.
    /// An error names the part that is wrong.
    pub fn parse(text: &str) -> Result<Slo, String> {
        let objectives = text
            .split(',')
            .map(|term| parse_objective(term.trim()).map_err(|why| format!("{:?}: {why}", term.trim())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Slo {
            objectives,
            text: text.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        })
    }

    /// The limit of the `pct` percentile's objective in us, if there is one (for plots).
    pub fn percentile_limit_us(&self, pct: f64) -> Option<f64> {
        self.objectives.iter().find_map(|o| match *o {
            Objective::Percentile { pct: p, limit, .. } if p == pct => Some(limit.as_micros() as f64),
            _ => None,
        })
    }

    /// What a step broke, one line per objective it missed.
    pub fn missed(&self, load: &LoadReport) -> Vec<String> {
        let h = load.histogram.inner();
        let us = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        let beyond = |value: f64, limit: f64, inclusive: bool| if inclusive { value > limit } else { value >= limit };
        let mut missed = Vec::new();
        for o in &self.objectives {
            match *o {
                Objective::Percentile { pct, limit, inclusive } => {
                    let value = us(pct / 100.0);
                    if beyond(value as f64, limit.as_micros() as f64, inclusive) {
                        missed.push(format!(
                            "p{pct} {} over {}",
                            shown(value),
                            shown(limit.as_micros() as u64)
                        ));
                    }
                }
                Objective::Max { limit, inclusive } => {
                    let value = if h.is_empty() { 0 } else { h.max() };
                    if beyond(value as f64, limit.as_micros() as f64, inclusive) {
                        missed.push(format!("max {} over {}", shown(value), shown(limit.as_micros() as u64)));
                    }
                }
                Objective::Errors { pct, inclusive } => {
                    let all = load.requests + load.errors;
                    let share = if all == 0 {
                        0.0
                    } else {
                        load.errors as f64 * 100.0 / all as f64
                    };
                    if beyond(share, pct, inclusive) {
                        missed.push(format!("errors {share:.3}% over {pct}%"));
                    }
                }
            }
        }
        missed
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_objective(term: &str) -> Result<Objective, String> {
    let (name, inclusive, value) = if let Some((name, value)) = term.split_once("<=") {
        (name, true, value)
    } else if let Some((name, value)) = term.split_once('<') {
        (name, false, value)
    } else {
        return Err("no `<` or `<=`: write e.g. p99<5ms, max<100ms or errors<0.1%".into());
    };
    let (name, value) = (name.trim(), value.trim());
    if value.is_empty() {
        return Err(format!("no limit after `{}`", if inclusive { "<=" } else { "<" }));
    }
    match name {
        "errors" => {
            let pct = value
                .strip_suffix('%')
                .ok_or_else(|| format!("{value}: an error rate is a percentage, e.g. 0.1%"))?;
            let pct: f64 = pct.trim().parse().map_err(|_| format!("{value}: not a percentage"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("{value}: a percentage is from 0 to 100"));
            }
            Ok(Objective::Errors { pct, inclusive })
        }
        "max" => Ok(Objective::Max {
            limit: latency(value)?,
            inclusive,
        }),
        _ => {
            let digits = name
                .strip_prefix('p')
                .ok_or_else(|| format!("{name}: not an objective (pNN, max or errors)"))?;
            let pct: f64 = digits
                .parse()
                .map_err(|_| format!("{name}: not a percentile (p50, p99, p99.9)"))?;
            if !(pct > 0.0 && pct < 100.0) {
                return Err(format!(
                    "{name}: a percentile is above 0 and below 100 (p99.9, not p999; max for the slowest)"
                ));
            }
            Ok(Objective::Percentile {
                pct,
                limit: latency(value)?,
                inclusive,
            })
        }
    }
}

/// A latency with its unit: `250us`, `5ms`, `1.5s`.
fn latency(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{value}: a latency needs a unit (us, ms or s)"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value}: not a number before the unit"))?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        other => return Err(format!("{value}: unknown unit {other:?} (us, ms or s)")),
    };
    let seconds = number * scale;
    if !(seconds > 0.0 && seconds <= crate::plan::MAX_SECONDS) {
        return Err(format!("{value}: a latency above 0"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A latency in us as people read it.
fn shown(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} us"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// How the search is bounded.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    pub slo: Slo,
    /// Each step's length.
    pub step: Duration,
    /// The whole search's, probe included.
    pub max_time: Duration,
    /// The first open-loop rate (else half of the probe's throughput).
    pub start_rate: Option<f64>,
}

/// One step of the search.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The open-loop rate asked for; `None` for the closed-loop probe.
    pub offered_rps: Option<f64>,
    pub achieved_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub holds: bool,
    /// Each reason it does not hold.
    pub why_not: Vec<String>,
    pub limit: Limit,
}

/// Why the search ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// The highest rate that held and the lowest that failed are within [`RESOLUTION`].
    Converged,
    /// No rate down to the lowest tried held.
    NothingHeld,
    /// `--max-time` left no room for another step.
    MaxTime,
    /// Ctrl-C.
    Interrupted,
    /// The server died.
    ServerExited,
}

/// What the search found.
#[derive(Clone, Debug, Serialize)]
pub struct FindMax {
    pub slo: String,
    /// The highest rate that held, requests/s.
    pub rate: Option<f64>,
    /// The lowest rate that failed, and the limit verdict there.
    pub failed_rate: Option<f64>,
    pub limit: Option<Limit>,
    pub ended: Ended,
    /// The probe first, then the open-loop steps in the order they ran.
    pub steps: Vec<Step>,
}

impl FindMax {
    /// One sentence: "max 41,200 req/s with p99<5ms; at 45,300 req/s the server is out of CPU: ...".
    pub fn sentence(&self) -> String {
        let ended = match self.ended {
            Ended::Converged | Ended::NothingHeld => String::new(),
            Ended::MaxTime => " (the search ran out of --max-time: best so far)".into(),
            Ended::Interrupted => " (interrupted: best so far)".into(),
            Ended::ServerExited => " (the server exited: best so far)".into(),
        };
        let answer = match self.rate {
            Some(rate) => format!("max {} req/s with {}{ended}", thousands(rate), self.slo),
            None => format!("no rate held {}{ended}", self.slo),
        };
        let failed = self
            .steps
            .iter()
            .find(|s| s.offered_rps == self.failed_rate && !s.holds);
        match (self.failed_rate, &self.limit, failed) {
            (Some(rate), Some(limit), Some(step)) => {
                let why = step.why_not.join(", ");
                let verdict = match limit.kind {
                    LimitKind::None => limit.reason.clone(),
                    _ => format!("{}: {}", limit.kind, limit.reason),
                };
                format!("{answer}; at {} req/s {why}; {verdict}", thousands(rate))
            }
            _ => answer,
        }
    }
}

/// A rate as "41,200".
fn thousands(rate: f64) -> String {
    crate::limit::count(rate.round() as u64)
}

/// The load's intervals within a step: their p50s, to see whether latency grows.
struct Trend {
    length: Duration,
    p50_us: Vec<u64>,
}

impl Sink for Trend {
    fn take(&mut self, interval: &Interval) {
        if let Interval::Load(i) = interval {
            // A sliver at the end (the last worker's) says little.
            let h = i.latency.inner();
            if i.length >= self.length / 2 && !h.is_empty() {
                self.p50_us.push(h.value_at_quantile(0.5));
            }
        }
    }
}

impl Trend {
    /// "latency grew within the step: ..." when the second half's median p50 is well above the
    /// first half's.
    fn growing(&self) -> Option<String> {
        let n = self.p50_us.len();
        if n < 4 {
            return None;
        }
        let median = |v: &[u64]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let (first, second) = (median(&self.p50_us[..n / 2]), median(&self.p50_us[n / 2..]));
        let grew = second as f64 > first as f64 * TREND_FACTOR && second - first > TREND_FLOOR.as_micros() as u64;
        grew.then(|| {
            format!(
                "latency grew within the step (p50 {} in its first half, {} in its second: a queue building up)",
                shown(first),
                shown(second)
            )
        })
    }
}

impl Benchmark {
    /// Searches for the highest rate that holds `search.slo`, against one server; `progress`
    /// gets each step as it ends.
    pub fn find_max(&self, search: &Search, mut progress: impl FnMut(&Step)) -> Result<FindMax> {
        let started = Instant::now();
        self.on_one_server(|runner| {
            let mut steps = Vec::new();
            let (mut held, mut failed): (Option<f64>, Option<(f64, Limit)>) = (None, None);
            let (probe, mut ended) = step(runner, search, None)?;
            progress(&probe);
            let mut rate = search
                .start_rate
                .unwrap_or((probe.achieved_rps / 2.0).max(lowest_rate(search)));
            steps.push(probe);
            while ended.is_none() {
                // Room for one more step (its connections and a margin besides its length).
                if started.elapsed() + search.step + Duration::from_secs(2) > search.max_time {
                    ended = Some(Ended::MaxTime);
                    break;
                }
                let (s, cut_short) = step(runner, search, Some(rate))?;
                progress(&s);
                ended = cut_short;
                // A step cut short says nothing of its rate.
                if ended.is_none() && s.holds {
                    held = Some(held.map_or(rate, |h: f64| h.max(rate)));
                } else if ended.is_none() && failed.as_ref().is_none_or(|(f, _)| rate < *f) {
                    failed = Some((rate, s.limit.clone()));
                }
                steps.push(s);
                if ended.is_some() {
                    break;
                }
                rate = match (held, &failed) {
                    (Some(h), Some((f, _))) if (f - h) / h <= RESOLUTION => {
                        ended = Some(Ended::Converged);
                        break;
                    }
                    (Some(h), Some((f, _))) => (h + f) / 2.0,
                    (Some(h), None) => h * GROWTH,
                    (None, Some((f, _))) if f / 2.0 < lowest_rate(search) => {
                        ended = Some(Ended::NothingHeld);
                        break;
                    }
                    (None, Some((f, _))) => f / 2.0,
                    (None, None) => unreachable!("a step either held or failed"),
                };
            }
            let (failed_rate, limit) = failed.map_or((None, None), |(r, l)| (Some(r), Some(l)));
            Ok(FindMax {
                slo: search.slo.to_string(),
                rate: held,
                failed_rate,
                limit,
                ended: ended.unwrap_or(Ended::Converged),
                steps,
            })
        })
    }
}

/// The lowest rate a step tries: ten requests in it (fewer say nothing of percentiles).
fn lowest_rate(search: &Search) -> f64 {
    (10.0 / search.step.as_secs_f64()).max(bench::load::MIN_RATE)
}

/// One step: open loop at `rate`, or the closed-loop probe; and why it ends the search early, if
/// it was cut short.
fn step(runner: &mut Runner, search: &Search, rate: Option<f64>) -> Result<(Step, Option<Ended>)> {
    let load = LoadConfig {
        rate,
        duration: Some(search.step),
        requests: None,
        ..runner.load.clone()
    };
    let mut trend = Trend {
        length: (search.step / 8).clamp(Duration::from_millis(200), Duration::from_secs(1)),
        p50_us: Vec::new(),
    };
    let mut live = Live::new();
    live.interval = trend.length;
    live.add(&mut trend);
    let report = runner.run(&load, &mut live)?;
    drop(live);
    let l = report.load.as_ref().expect("a load run reports its load");
    let mut why_not = Vec::new();
    if let Some(offered) = rate {
        why_not.extend(search.slo.missed(l));
        if l.throughput_rps < offered * ACHIEVED {
            why_not.push(format!(
                "achieved {:.1}% of the offered rate ({} req/s)",
                l.throughput_rps * 100.0 / offered,
                thousands(l.throughput_rps)
            ));
        }
        why_not.extend(trend.growing());
    }
    let mut cut_short = None;
    if l.interrupted {
        why_not.push("interrupted".into());
        cut_short = Some(Ended::Interrupted);
    }
    if let Some(how) = &report.server_exited {
        why_not.push(format!("the server exited ({how})"));
        cut_short = cut_short.or(Some(Ended::ServerExited));
    }
    let step = Step {
        offered_rps: rate,
        achieved_rps: l.throughput_rps,
        p50_us: l.latency_p50_us,
        p99_us: l.latency_p99_us,
        p999_us: l.latency_p999_us,
        max_us: l.latency_max_us,
        errors: l.errors,
        holds: rate.is_some() && why_not.is_empty(),
        why_not,
        limit: report.limit,
    };
    Ok((step, cut_short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objectives_and_names_what_is_wrong() {
        let slo = Slo::parse("p99<5ms, p99.9<=20ms,max<1s,errors<0.1%").unwrap();
        assert_eq!(slo.to_string(), "p99<5ms,p99.9<=20ms,max<1s,errors<0.1%");
        assert_eq!(
            slo.objectives,
            [
                Objective::Percentile {
                    pct: 99.0,
                    limit: Duration::from_millis(5),
                    inclusive: false
                },
                Objective::Percentile {
                    pct: 99.9,
                    limit: Duration::from_millis(20),
                    inclusive: true
                },
                Objective::Max {
                    limit: Duration::from_secs(1),
                    inclusive: false
                },
                Objective::Errors {
                    pct: 0.1,
                    inclusive: false
                },
            ]
        );
        assert_eq!(
            Slo::parse("p50<250us").unwrap().objectives[0],
            Objective::Percentile {
                pct: 50.0,
                limit: Duration::from_micros(250),
                inclusive: false
            }
        );
        for (bad, names) in [
            ("p99<", "no limit after `<`"),
            ("p101<5ms", "p101: a percentile is above 0 and below 100"),
            ("p999<5ms", "not p999"),
            ("p99<5parsecs", "unknown unit \"parsecs\""),
            ("p99<5", "needs a unit"),
            ("p99=5ms", "no `<` or `<=`"),
            ("latency<5ms", "latency: not an objective"),
            ("errors<5", "a percentage"),
            ("p99<5ms,", "\"\": no `<`"),
        ] {
            let why = Slo::parse(bad).unwrap_err();
            assert!(why.contains(names), "{bad}: {why}");
        }
    }

    #[test]
    fn a_latency_growing_within_a_step_is_a_queue() {
        let trend = |p50_us: Vec<u64>| {
            Trend {
                length: Duration::from_millis(400),
                p50_us,
            }
            .growing()
        };
        assert!(trend(vec![300, 310, 290, 305, 320, 300, 310, 295]).is_none());
        // Sub-millisecond jitter doubling is not a queue.
        assert!(trend(vec![100, 110, 100, 120, 250, 260, 240, 250]).is_none());
        let grew = trend(vec![300, 2_000, 8_000, 20_000, 45_000, 80_000, 120_000, 160_000]).unwrap();
        assert!(grew.contains("a queue building up"), "{grew}");
        assert!(trend(vec![300, 90_000]).is_none(), "too few intervals to tell");
    }

    #[test]
    fn the_sentence_gives_the_answer_and_the_failing_rate_s_verdict() {
        let step = |offered: f64, holds: bool, why_not: Vec<String>| Step {
            offered_rps: Some(offered),
            achieved_rps: offered,
            p50_us: 100,
            p99_us: 900,
            p999_us: 1000,
            max_us: 2000,
            errors: 0,
            holds,
            why_not,
            limit: Limit {
                kind: LimitKind::ServerCpu,
                reason: "the server is out of CPU: 99% of 1 core".into(),
            },
        };
        let found = FindMax {
            slo: "p99<5ms".into(),
            rate: Some(41_200.0),
            failed_rate: Some(45_300.0),
            limit: Some(step(0.0, false, vec![]).limit),
            ended: Ended::Converged,
            steps: vec![
                step(41_200.0, true, vec![]),
                step(45_300.0, false, vec!["p99 8.00 ms over 5.00 ms".into()]),
            ],
        };
        assert_eq!(
            found.sentence(),
            "max 41,200 req/s with p99<5ms; at 45,300 req/s p99 8.00 ms over 5.00 ms; server-cpu: the server is out \
             of CPU: 99% of 1 core"
        );
    }
}
