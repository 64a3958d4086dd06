//! Userspace profiling mode: the server times its own accept, read, process and write steps on
//! the wall clock, for machines where the eBPF programs cannot load. Off unless
//! `bench-server --self-timing`; then one relaxed atomic load per step decides.
//!
//! Wall-clock, not on-CPU: a blocking read (iterative, threads) counts its wait as read time.
//! The parent asks for the totals over the server's stdin (see [`serve_control`]).
use profiler_common::{HIST_BUCKETS, hist_bucket};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Accept = 0,
    Read = 1,
    Write = 2,
    Process = 3,
}

/// log2 buckets of step duration in ns, the same as the eBPF side keeps.
const BUCKETS: usize = HIST_BUCKETS;

static ENABLED: AtomicBool = AtomicBool::new(false);

struct Counter {
    calls: AtomicU64,
    errors: AtomicU64,
    ns: AtomicU64,
    bytes: AtomicU64,
    hist: [AtomicU64; BUCKETS],
}

impl Counter {
    const fn new() -> Counter {
        Counter {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ns: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            hist: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }
}

static STEPS: [Counter; 4] = [const { Counter::new() }; 4];
static SINCE: Mutex<Option<(Instant, Rusage)>> = Mutex::new(None);

/// One step's totals.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct StepTotals {
    pub calls: u64,
    pub errors: u64,
    pub ns: u64,
    pub bytes: u64,
    pub hist: [u64; BUCKETS],
}

/// What the server measured of itself since timing was (re)started.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SelfTimes {
    pub window_ns: u64,
    pub accept: StepTotals,
    pub read: StepTotals,
    pub write: StepTotals,
    pub process: StepTotals,
    /// CPU time of the whole process (getrusage), user + system.
    pub cpu_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Rusage {
    cpu_ns: u64,
    nvcsw: u64,
    nivcsw: u64,
}

fn rusage() -> Rusage {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF covers every thread.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    Rusage {
        cpu_ns: ns(r.ru_utime) + ns(r.ru_stime),
        nvcsw: r.ru_nvcsw as u64,
        nivcsw: r.ru_nivcsw as u64,
    }
}

/// Starts (or restarts from zero) timing.
pub fn reset() {
    for step in &STEPS {
        for c in [&step.calls, &step.errors, &step.ns, &step.bytes]
            .into_iter()
            .chain(&step.hist)
        {
            c.store(0, Relaxed);
        }
    }
    *SINCE.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), rusage()));
    ENABLED.store(true, Relaxed);
}

/// Stops timing (the totals stay as they are until the next reset).
pub fn stop() {
    ENABLED.store(false, Relaxed);
}

/// The start of a step, when timing is on.
#[inline]
pub fn start() -> Option<Instant> {
    ENABLED.load(Relaxed).then(Instant::now)
}

/// Ends a step begun at `start`: `Ok(bytes)` or an error (would-block included).
#[inline]
pub fn record<E>(step: Step, start: Option<Instant>, result: &Result<usize, E>) {
    let Some(start) = start else { return };
    let ns = start.elapsed().as_nanos() as u64;
    let c = &STEPS[step as usize];
    c.calls.fetch_add(1, Relaxed);
    c.ns.fetch_add(ns, Relaxed);
    match result {
        Ok(bytes) => c.bytes.fetch_add(*bytes as u64, Relaxed),
        Err(_) => c.errors.fetch_add(1, Relaxed),
    };
    c.hist[hist_bucket(ns)].fetch_add(1, Relaxed);
}

pub fn snapshot() -> SelfTimes {
    let (since, before) = SINCE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or((Instant::now(), rusage()));
    let now = rusage();
    let step = |s: Step| {
        let c = &STEPS[s as usize];
        StepTotals {
            calls: c.calls.load(Relaxed),
            errors: c.errors.load(Relaxed),
            ns: c.ns.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            hist: std::array::from_fn(|i| c.hist[i].load(Relaxed)),
        }
    };
    SelfTimes {
        window_ns: since.elapsed().as_nanos() as u64,
        accept: step(Step::Accept),
        read: step(Step::Read),
        write: step(Step::Write),
        process: step(Step::Process),
        cpu_ns: now.cpu_ns.saturating_sub(before.cpu_ns),
        voluntary_switches: now.nvcsw.saturating_sub(before.nvcsw),
        involuntary_switches: now.nivcsw.saturating_sub(before.nivcsw),
    }
}

/// Answers the parent on stdin/stdout: `reset` restarts timing and `stop` stops it (answer
/// `ok`), `stats` prints the totals as one JSON line. Runs on its own thread until stdin closes.
pub fn serve_control() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let answer = match line.trim() {
            "reset" => {
                reset();
                "ok".to_string()
            }
            "stop" => {
                stop();
                "ok".to_string()
            }
            "stats" => serde_json::to_string(&snapshot()).unwrap_or_else(|e| format!("error {e}")),
            other => format!("error unknown control command {other:?}"),
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{answer}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
