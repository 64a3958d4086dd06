//! Turns kernel totals into the breakdown DESIGN.md defines: the share of the target's on-CPU
//! and run-queue time spent in accept, read, its own processing, write, and everything else.
use crate::{Mode, Totals};
use profiler_common::{ClassTotals, HIST_BUCKETS, SyscallClass};
use serde::Serialize;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub breakdown: Percentages,
    /// The largest of the five, or "none" when the target used no CPU in the window.
    pub bottleneck: &'static str,
    pub mode: &'static str,
    /// Why the modes tried before `mode` failed.
    pub fallback_reasons: Vec<String>,
    pub window_ms: u64,
    /// On-CPU time of the target's threads in the window, every context.
    pub oncpu_ns: u64,
    /// Time runnable but waiting for a CPU (part of overhead).
    pub runq_ns: u64,
    /// Time blocked off CPU (waiting for a connection or data): beside the 100%, not in it.
    pub blocked: Blocked,
    pub context_switches: ContextSwitches,
    pub classes: Classes,
    /// The eBPF programs' own cost, when run-time statistics were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub programs: Option<Vec<ProgramCost>>,
}

/// What one of our eBPF programs cost over the window (kernel BPF run-time statistics). The
/// programs run for every task's events and filter first, so `runs` counts the whole machine's.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramCost {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

/// Shares of on-CPU plus run-queue time, in percent, rounded to 0.1 so that they sum to 100.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentages {
    pub accept_pct: f64,
    pub read_pct: f64,
    pub process_pct: f64,
    pub write_pct: f64,
    pub overhead_pct: f64,
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

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Classes {
    pub accept: ClassReport,
    pub read: ClassReport,
    pub write: ClassReport,
    pub other: ClassReport,
}

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
    /// Kernel-side duration percentiles, interpolated within the log2 histogram's buckets.
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub hist_log2_ns: [u64; HIST_BUCKETS],
}

pub const PARTS: [&str; 5] = ["accept", "read", "process", "write", "overhead"];

impl Breakdown {
    pub fn new(totals: &Totals, mode: Mode, fallback_reasons: Vec<String>, window: Duration) -> Breakdown {
        let oncpu = |class: SyscallClass| totals.class(class).oncpu_ns;
        let runq_ns: u64 = totals.contexts.iter().map(|c| c.runq_ns).sum();
        let parts_ns = [
            oncpu(SyscallClass::Accept),
            oncpu(SyscallClass::Read),
            totals.user().oncpu_ns,
            oncpu(SyscallClass::Write),
            oncpu(SyscallClass::Other) + runq_ns,
        ];
        let pct = percentages(parts_ns);
        let bottleneck = if parts_ns.iter().all(|&ns| ns == 0) {
            "none"
        } else {
            let largest = (0..5).max_by_key(|&i| parts_ns[i]).unwrap_or(0);
            PARTS[largest]
        };
        let class = |c: SyscallClass| ClassReport::new(totals.class(c));
        Breakdown {
            breakdown: Percentages {
                accept_pct: pct[0],
                read_pct: pct[1],
                process_pct: pct[2],
                write_pct: pct[3],
                overhead_pct: pct[4],
            },
            bottleneck,
            mode: mode.as_str(),
            fallback_reasons,
            window_ms: window.as_millis() as u64,
            oncpu_ns: totals.oncpu_ns(),
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
            },
            programs: None,
        }
    }

    pub fn percent(&self, part: &str) -> f64 {
        let p = &self.breakdown;
        match part {
            "accept" => p.accept_pct,
            "read" => p.read_pct,
            "process" => p.process_pct,
            "write" => p.write_pct,
            "overhead" => p.overhead_pct,
            _ => 0.0,
        }
    }
}

impl ClassReport {
    fn new(t: &ClassTotals) -> ClassReport {
        ClassReport {
            calls: t.calls,
            total_ns: t.total_ns,
            oncpu_ns: t.oncpu_ns,
            blocked_ns: t.blocked_ns,
            runq_ns: t.runq_ns,
            bytes: t.bytes,
            errors: t.errors,
            p50_ns: hist_quantile(&t.hist, 0.50),
            p99_ns: hist_quantile(&t.hist, 0.99),
            hist_log2_ns: t.hist,
        }
    }
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

/// The `q` quantile of a log2 histogram (bucket i = [2^i, 2^(i+1)) ns), interpolated linearly
/// inside its bucket.
fn hist_quantile(hist: &[u64; HIST_BUCKETS], q: f64) -> u64 {
    let count: u64 = hist.iter().sum();
    if count == 0 {
        return 0;
    }
    let rank = (q * count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        if seen + n >= rank {
            let low = if i == 0 { 0 } else { 1u64 << i };
            let high = 1u64 << (i + 1);
            let within = (rank - seen) as f64 / n as f64;
            return low + ((high - low) as f64 * within) as u64;
        }
        seen += n;
    }
    1u64 << HIST_BUCKETS
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
    fn quantiles_fall_in_their_bucket() {
        let mut hist = [0; HIST_BUCKETS];
        hist[10] = 99; // [1024, 2048)
        hist[20] = 1; // [1 Mi, 2 Mi)
        let p50 = hist_quantile(&hist, 0.5);
        assert!((1024..2048).contains(&p50), "{p50}");
        let p99 = hist_quantile(&hist, 0.99);
        assert!((1024..=2048).contains(&p99), "{p99}");
        assert!(hist_quantile(&hist, 1.0) >= 1 << 20);
    }

    #[test]
    fn bottleneck_is_the_largest_part() {
        let mut totals = Totals::default();
        totals.contexts[SyscallClass::Write as usize].oncpu_ns = 50;
        totals.contexts[profiler_common::CONTEXT_USER as usize].oncpu_ns = 30;
        totals.contexts[SyscallClass::Read as usize].runq_ns = 40; // overhead, not read
        let b = Breakdown::new(&totals, Mode::Tracepoint, vec![], Duration::from_millis(5));
        assert_eq!(b.bottleneck, "write");
        assert_eq!(b.breakdown.read_pct, 0.0);
        assert!((b.breakdown.overhead_pct - 33.3).abs() < 0.051, "{:?}", b.breakdown);
        let idle = Breakdown::new(&Totals::default(), Mode::Tracepoint, vec![], Duration::ZERO);
        assert_eq!(idle.bottleneck, "none");
    }
}
