//! Turns kernel totals into the breakdown DESIGN.md defines: the share of the target's on-CPU
//! and run-queue time spent in accept, read, its own processing, write, and everything else.
use crate::log2_hist::quantile_ns;
use crate::tracing_cost::TracingCost;
use crate::{Mode, Totals};
use profiler_common::{CONTEXT_USER, ClassTotals, HIST_BUCKETS, SyscallClass, SyscallTotals};
use serde::{Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The five parts of the breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Accept,
    Read,
    Process,
    Write,
    Overhead,
}

impl Part {
    /// In declaration order, so that `part as usize` indexes it.
    pub const ALL: [Part; 5] = [Part::Accept, Part::Read, Part::Process, Part::Write, Part::Overhead];

    pub fn name(self) -> &'static str {
        match self {
            Part::Accept => "accept",
            Part::Read => "read",
            Part::Process => "process",
            Part::Write => "write",
            Part::Overhead => "overhead",
        }
    }

    /// The part a kernel context (a syscall class, or user space) falls in.
    pub fn of_context(context: u32) -> Part {
        match context {
            c if c == SyscallClass::Accept as u32 => Part::Accept,
            c if c == SyscallClass::Read as u32 => Part::Read,
            c if c == SyscallClass::Write as u32 => Part::Write,
            CONTEXT_USER => Part::Process,
            _ => Part::Overhead,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub breakdown: Percentages,
    /// The largest of the five, or "none" when the target used no CPU in the window.
    #[serde(serialize_with = "part_or_none")]
    pub bottleneck: Option<Part>,
    pub mode: Mode,
    /// Why the modes tried before `mode` failed.
    pub fallback_reasons: Vec<String>,
    pub window_ms: u64,
    /// On-CPU time of the target's threads in the window, every context (sampled estimate in
    /// sampling mode).
    pub oncpu_ns: u64,
    /// Time runnable but waiting for a CPU (part of overhead).
    pub runq_ns: u64,
    /// Time blocked off CPU (waiting for a connection or data): beside the 100%, not in it.
    pub blocked: Blocked,
    pub context_switches: ContextSwitches,
    pub classes: Classes,
    /// The `other` class by syscall, largest on-CPU + run-queue time first.
    pub syscalls: Vec<SyscallReport>,
    /// How the sampled estimate was made (sampling mode only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// The exact modes' own cost, taken out of the parts above (None in sampling mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Why the tracing cost is unknown, when it is (the parts then include it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing_error: Option<String>,
}

/// What tracing every syscall cost the target over the window, estimated as its syscalls times
/// the cost per call measured at attach ([`TracingCost`]).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Tracing {
    #[serde(rename = "tracing_ns")]
    pub ns: u64,
    /// Of the target's on-CPU and run-queue time as traced.
    #[serde(rename = "tracing_pct")]
    pub pct: f64,
    #[serde(rename = "tracing_ns_per_syscall")]
    pub per_call: TracingCost,
}

fn part_or_none<S: Serializer>(part: &Option<Part>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(part.map_or("none", Part::name))
}

/// The sample behind a sampling-mode breakdown, and how far each share may be off.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sampling {
    /// cpu-clock samples that found a target thread on CPU.
    pub samples: u64,
    pub frequency_hz: u32,
    /// Half-width of each share's 95% confidence interval, in percentage points.
    pub margin_pct: Percentages,
}

/// What one of our eBPF programs cost over the window (kernel BPF run-time statistics). The
/// programs run for every task's events and filter first, so `runs` counts the whole machine's.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgramCost {
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_ns as f64 / self.runs as f64
        }
    }
}

/// One figure per part, in percent (shares, or their margins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentages {
    pub accept_pct: f64,
    pub read_pct: f64,
    pub process_pct: f64,
    pub write_pct: f64,
    pub overhead_pct: f64,
}

impl Percentages {
    fn from_parts(p: [f64; 5]) -> Percentages {
        Percentages {
            accept_pct: p[0],
            read_pct: p[1],
            process_pct: p[2],
            write_pct: p[3],
            overhead_pct: p[4],
        }
    }

    pub fn get(&self, part: Part) -> f64 {
        match part {
            Part::Accept => self.accept_pct,
            Part::Read => self.read_pct,
            Part::Process => self.process_pct,
            Part::Write => self.write_pct,
            Part::Overhead => self.overhead_pct,
        }
    }

    pub fn sum(&self) -> f64 {
        Part::ALL.iter().map(|&p| self.get(p)).sum()
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Blocked {
    pub accept_ns: u64,
    pub read_ns: u64,
    pub write_ns: u64,
    pub other_ns: u64,
    /// Off CPU outside any syscall (page faults, say).
    pub process_ns: u64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct ContextSwitches {
    pub voluntary: u64,
    pub involuntary: u64,
}

/// Time by context: the four syscall classes, and user space (outside any syscall).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Classes {
    pub accept: ClassReport,
    pub read: ClassReport,
    pub write: ClassReport,
    pub other: ClassReport,
    pub user: ClassReport,
}

impl Classes {
    pub fn get(&self, class: SyscallClass) -> &ClassReport {
        match class {
            SyscallClass::Accept => &self.accept,
            SyscallClass::Read => &self.read,
            SyscallClass::Write => &self.write,
            SyscallClass::Other => &self.other,
        }
    }

    /// cpu-clock samples of the target in every context.
    pub fn samples(&self) -> u64 {
        [&self.accept, &self.read, &self.write, &self.other, &self.user]
            .iter()
            .map(|c| c.samples)
            .sum()
    }
}

/// One syscall class. Sampling mode has no calls, bytes, errors nor latencies: those stay 0.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ClassReport {
    pub calls: u64,
    /// Enter to exit, summed over calls.
    pub total_ns: u64,
    pub oncpu_ns: u64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    pub bytes: u64,
    pub errors: u64,
    /// cpu-clock samples taken in this class (sampling mode, or with stacks).
    pub samples: u64,
    /// Kernel-side duration percentiles, interpolated within the log2 histogram's buckets.
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub hist_log2_ns: [u64; HIST_BUCKETS],
}

/// One syscall of the `other` class: calls in the exact modes, samples in sampling mode.
#[derive(Clone, Debug, Serialize)]
pub struct SyscallReport {
    pub name: String,
    pub calls: u64,
    pub oncpu_ns: u64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    pub samples: u64,
}

impl Breakdown {
    /// `frequency_hz` is the sampler's, when one ran; in sampling mode the on-CPU figures are
    /// the samples' periods summed, in the exact modes what the syscall hooks timed.
    ///
    /// In the exact modes `tracing` is what tracing costs the target per syscall: taken out of
    /// the parts (and every figure here) before they are shared out, and reported apart.
    pub fn new(
        totals: &Totals,
        mode: Mode,
        frequency_hz: Option<u32>,
        fallback_reasons: Vec<String>,
        window: Duration,
        tracing: Option<&Result<TracingCost, String>>,
    ) -> Breakdown {
        let (net, tracing, tracing_error) = match tracing {
            Some(Ok(cost)) => {
                let (net, ns) = cost.subtract(totals);
                let measured: u64 = totals.contexts.iter().map(|c| c.oncpu_ns + c.runq_ns).sum();
                let tracing = Tracing {
                    ns,
                    pct: if measured > 0 {
                        ns as f64 * 100.0 / measured as f64
                    } else {
                        0.0
                    },
                    per_call: *cost,
                };
                (net, Some(tracing), None)
            }
            Some(Err(why)) => (totals.clone(), None, Some(why.clone())),
            None => (totals.clone(), None, None),
        };
        let totals = &net;
        let sampled = mode == Mode::Sampling;
        let oncpu = |t: &ClassTotals| if sampled { t.sample_ns } else { t.oncpu_ns };
        let runq_ns: u64 = totals.contexts.iter().map(|c| c.runq_ns).sum();
        // On-CPU time and samples per part; overhead adds the run-queue time of every context.
        let (mut parts_ns, mut part_samples) = ([0u64; 5], [0u64; 5]);
        for (context, t) in totals.contexts.iter().enumerate() {
            let part = Part::of_context(context as u32) as usize;
            parts_ns[part] += oncpu(t);
            part_samples[part] += t.samples;
        }
        parts_ns[Part::Overhead as usize] += runq_ns;
        let largest = (0..5).max_by_key(|&i| parts_ns[i]).unwrap_or(0);
        let bottleneck = (parts_ns[largest] > 0).then_some(Part::ALL[largest]);
        let class = |c: SyscallClass| ClassReport::new(totals.class(c), sampled);
        let sampling = sampled.then(|| {
            let sample_ns: u64 = totals.contexts.iter().map(|c| c.sample_ns).sum();
            Sampling {
                samples: part_samples.iter().sum(),
                frequency_hz: frequency_hz.unwrap_or(0),
                margin_pct: Percentages::from_parts(margins(part_samples, sample_ns, runq_ns)),
            }
        });
        Breakdown {
            breakdown: Percentages::from_parts(percentages(parts_ns)),
            bottleneck,
            mode,
            fallback_reasons,
            window_ms: window.as_millis() as u64,
            oncpu_ns: totals.contexts.iter().map(oncpu).sum(),
            runq_ns,
            blocked: Blocked {
                accept_ns: totals.class(SyscallClass::Accept).blocked_ns,
                read_ns: totals.class(SyscallClass::Read).blocked_ns,
                write_ns: totals.class(SyscallClass::Write).blocked_ns,
                other_ns: totals.class(SyscallClass::Other).blocked_ns,
                process_ns: totals.user().blocked_ns,
            },
            context_switches: ContextSwitches {
                voluntary: totals.sched.voluntary,
                involuntary: totals.sched.involuntary,
            },
            classes: Classes {
                accept: class(SyscallClass::Accept),
                read: class(SyscallClass::Read),
                write: class(SyscallClass::Write),
                other: class(SyscallClass::Other),
                user: ClassReport::new(totals.user(), sampled),
            },
            syscalls: syscall_reports(&totals.syscalls, sampled),
            sampling,
            tracing,
            tracing_error,
        }
    }

    pub fn percent(&self, part: Part) -> f64 {
        self.breakdown.get(part)
    }
}

impl ClassReport {
    fn new(t: &ClassTotals, sampled: bool) -> ClassReport {
        ClassReport {
            calls: t.calls,
            total_ns: t.total_ns,
            oncpu_ns: if sampled { t.sample_ns } else { t.oncpu_ns },
            blocked_ns: t.blocked_ns,
            runq_ns: t.runq_ns,
            bytes: t.bytes,
            errors: t.errors,
            samples: t.samples,
            p50_ns: quantile_ns(&t.hist, 0.50) as u64,
            p99_ns: quantile_ns(&t.hist, 0.99) as u64,
            hist_log2_ns: t.hist,
        }
    }
}

fn syscall_reports(syscalls: &[(u32, SyscallTotals)], sampled: bool) -> Vec<SyscallReport> {
    let mut rows: Vec<SyscallReport> = syscalls
        .iter()
        .map(|&(nr, s)| SyscallReport {
            name: syscall_name(nr),
            calls: s.calls,
            oncpu_ns: if sampled { s.sample_ns } else { s.oncpu_ns },
            blocked_ns: s.blocked_ns,
            runq_ns: s.runq_ns,
            samples: s.samples,
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse((r.oncpu_ns + r.runq_ns, r.blocked_ns, r.calls)));
    rows
}

/// x86_64's name for syscall `nr`, or `syscall_<nr>` for a number it does not know.
pub fn syscall_name(nr: u32) -> String {
    syscalls::Sysno::new(nr as usize).map_or_else(|| format!("syscall_{nr}"), |s| s.name().to_string())
}

/// Percent of the total per part, in tenths, by largest remainder so that they sum to exactly
/// 100.0 (or are all 0 when the total is 0).
fn percentages(parts: [u64; 5]) -> [f64; 5] {
    let total: u128 = parts.iter().map(|&p| p as u128).sum();
    if total == 0 {
        return [0.0; 5];
    }
    let exact = parts.map(|p| p as u128 * 1000);
    let mut tenths = exact.map(|e| e / total);
    let mut left = 1000 - tenths.iter().sum::<u128>();
    let mut order: Vec<usize> = (0..5).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % total));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        tenths[i] += 1;
        left -= 1;
    }
    tenths.map(|t| t as f64 / 10.0)
}

/// 95% margins, in points, of shares estimated from `samples` per part (the other-syscall samples
/// in the last) that together stand for `sample_ns`, beside `runq_ns` measured exactly (added to
/// the last part). Each part's count is binomial given the total; the Wilson score interval
/// keeps the margin honest for small counts and shares near 0 or 100%, where the normal
/// approximation claims certainty it does not have.
fn margins(samples: [u64; 5], sample_ns: u64, runq_ns: u64) -> [f64; 5] {
    const Z: f64 = 1.96;
    let n: u64 = samples.iter().sum();
    if n == 0 {
        // No sample: how on-CPU time split is unknown, whatever the shares read.
        return [100.0; 5];
    }
    let n = n as f64;
    let sampled_share = sample_ns as f64 / (sample_ns as f64 + runq_ns as f64);
    samples.map(|k| {
        let p = k as f64 / n;
        let half_width = Z / (1.0 + Z * Z / n) * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt();
        // Rounded up to the tenth the shares are given in.
        (half_width * sampled_share * 1000.0).ceil() / 10.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_sum_to_exactly_100() {
        for parts in [
            [1, 1, 1, 0, 0],
            [3, 3, 3, 3, 3],
            [1, 0, 0, 0, 0],
            [999_999, 1, 1, 1, 7],
            [5, 10, 20, 40, 80],
        ] {
            let p = percentages(parts);
            let sum: f64 = p.iter().sum();
            assert!((sum - 100.0).abs() < 1e-9, "{parts:?} -> {p:?} sums to {sum}");
        }
        assert_eq!(percentages([0; 5]), [0.0; 5]);
        assert_eq!(percentages([1, 1, 0, 0, 2]), [25.0, 25.0, 0.0, 0.0, 50.0]);
    }

    #[test]
    fn bottleneck_is_the_largest_part() {
        let mut totals = Totals::default();
        totals.contexts[SyscallClass::Write as usize].oncpu_ns = 50;
        totals.contexts[CONTEXT_USER as usize].oncpu_ns = 30;
        totals.contexts[SyscallClass::Read as usize].runq_ns = 40; // overhead, not read
        let b = Breakdown::new(&totals, Mode::Tracepoint, None, vec![], Duration::from_millis(5), None);
        assert_eq!(b.bottleneck, Some(Part::Write));
        assert_eq!(b.breakdown.read_pct, 0.0);
        assert!((b.breakdown.overhead_pct - 33.3).abs() < 0.051, "{:?}", b.breakdown);
        assert!(b.sampling.is_none());
        let idle = Breakdown::new(&Totals::default(), Mode::Tracepoint, None, vec![], Duration::ZERO, None);
        assert_eq!(idle.bottleneck, None);
        let unsampled = Breakdown::new(
            &Totals::default(),
            Mode::Sampling,
            Some(99),
            vec![],
            Duration::ZERO,
            None,
        );
        assert_eq!(
            unsampled.sampling.unwrap().margin_pct.process_pct,
            100.0,
            "no sample, no certainty"
        );
        assert_eq!(serde_json::to_value(&idle).unwrap()["bottleneck"], "none");
    }

    #[test]
    fn sampling_mode_counts_samples_and_states_margins() {
        let mut totals = Totals::default();
        let period = 10_101_010; // 99 Hz
        for (context, samples) in [(SyscallClass::Write as usize, 300), (CONTEXT_USER as usize, 100)] {
            totals.contexts[context].samples = samples;
            totals.contexts[context].sample_ns = samples * period;
            // What a syscall hook would have timed is ignored in sampling mode.
            totals.contexts[context].oncpu_ns = 1;
        }
        let b = Breakdown::new(&totals, Mode::Sampling, Some(99), vec![], Duration::from_secs(5), None);
        assert_eq!((b.breakdown.write_pct, b.breakdown.process_pct), (75.0, 25.0));
        assert_eq!(b.bottleneck, Some(Part::Write));
        let s = b.sampling.unwrap();
        assert_eq!((s.samples, s.frequency_hz), (400, 99));
        // Wilson: 1.96 / (1 + 1.96^2/400) * sqrt(0.75 * 0.25 / 400 + 1.96^2 / (4 * 400^2)) = 4.23
        // points, rounded up to a tenth.
        assert_eq!(s.margin_pct.write_pct, 4.3);
        assert_eq!(s.margin_pct.process_pct, 4.3);
        // No accept sample in 400 still leaves room for a little under 1%.
        assert_eq!(s.margin_pct.accept_pct, 0.5);
        assert_eq!(b.classes.write.oncpu_ns, 300 * period);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["samples"], 400);
        assert_eq!(json["mode"], "sampling");
        assert_eq!(json["margin_pct"]["write_pct"], 4.3);
    }

    #[test]
    fn other_syscalls_are_named_and_ordered() {
        let totals = Totals {
            syscalls: vec![
                (
                    232,
                    SyscallTotals {
                        calls: 10,
                        oncpu_ns: 5,
                        blocked_ns: 1000,
                        ..Default::default()
                    },
                ),
                (
                    257,
                    SyscallTotals {
                        calls: 3,
                        oncpu_ns: 50,
                        ..Default::default()
                    },
                ),
                (
                    499,
                    SyscallTotals {
                        calls: 1,
                        oncpu_ns: 1,
                        ..Default::default()
                    },
                ),
            ],
            ..Totals::default()
        };
        let b = Breakdown::new(&totals, Mode::Tracepoint, None, vec![], Duration::from_secs(1), None);
        let names: Vec<&str> = b.syscalls.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["openat", "epoll_wait", "syscall_499"]);
    }
}
