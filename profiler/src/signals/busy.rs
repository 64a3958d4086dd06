//! How much of a window the server was busy: its process CPU clock read every [`SLICE`] on a
//! thread of its own, and the span from the first to the last slice in which its threads used at
//! least [`BUSY_FLOOR_PCT`] of a core. A `profile` window has no load of ours to say when the
//! server was loaded; this span is the loaded part it is judged over.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the server's CPU clock is read: the busy span's ends are this precise (a thread
/// running without a switch has its clock moved at each 4 ms tick at HZ=250).
pub const SLICE: Duration = Duration::from_millis(10);

/// A slice is busy when the server used at least this share of one core in it (1 ms of 10).
/// Idle, the servers here use none: 0 busy slices in 4 s for the Python checksum server and
/// bench-server epoll (measured with `tcpprof profile --pid` on each, idle; docs/saturation.md).
pub const BUSY_FLOOR_PCT: f64 = 10.0;

/// The busy part of a window, from the start of its first busy slice to the end of its last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Busy {
    pub span: Duration,
    /// The server's CPU time in that span.
    pub cpu: Duration,
}

impl Busy {
    /// The server's CPU time in the span as a share of it (100 = one core busy throughout).
    pub fn cpu_pct(&self) -> f64 {
        self.cpu.as_nanos() as f64 * 100.0 / self.span.as_nanos().max(1) as f64
    }
}

/// The CPU clock's readings so far, folded into the first and last busy slices.
#[derive(Clone, Copy, Debug)]
struct Slices {
    /// The last reading: time since the first, and the clock then.
    last: (Duration, u64),
    /// The readings at the start of the first busy slice and at the end of the last.
    first_busy: Option<(Duration, u64)>,
    last_busy: Option<(Duration, u64)>,
}

impl Slices {
    fn new(cpu_ns: u64) -> Slices {
        Slices {
            last: (Duration::ZERO, cpu_ns),
            first_busy: None,
            last_busy: None,
        }
    }

    /// Adds a reading of the clock, `at` since the first.
    fn add(&mut self, at: Duration, cpu_ns: u64) {
        let (before, before_ns) = self.last;
        let used = cpu_ns.saturating_sub(before_ns) as f64;
        let length = at.saturating_sub(before).as_nanos() as f64;
        if length > 0.0 && used * 100.0 >= BUSY_FLOOR_PCT * length {
            self.first_busy.get_or_insert(self.last);
            self.last_busy = Some((at, cpu_ns));
        }
        self.last = (at, cpu_ns);
    }

    /// The busy span, `None` when no slice was busy.
    fn busy(&self) -> Option<Busy> {
        let ((from, from_ns), (to, to_ns)) = (self.first_busy?, self.last_busy?);
        Some(Busy {
            span: to.saturating_sub(from),
            cpu: Duration::from_nanos(to_ns.saturating_sub(from_ns)),
        })
    }
}

/// Reads the server's CPU clock every [`SLICE`] until [`BusyPoller::finish`].
pub struct BusyPoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Option<Busy>, String>>>,
}

impl BusyPoller {
    /// Reads the clocks of `pids` from a CPU outside `server_cpus` when there is one, so that
    /// the readings take nothing from the server.
    pub fn start(pids: &[u32], server_cpus: &[usize]) -> Result<BusyPoller, String> {
        let pids = pids.to_vec();
        let elsewhere = bench::sys::cpus_besides(server_cpus);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("busy-span".into())
                .spawn(move || {
                    if !elsewhere.is_empty() {
                        // Not fatal: unpinned, the readings only cost a little more.
                        let _ = bench::sys::pin_current_thread(&elsewhere);
                    }
                    let start = Instant::now();
                    let mut slices = Slices::new(super::process_cpu_ns(&pids)?);
                    loop {
                        std::thread::sleep(SLICE);
                        // One more reading after the stop: the slice the window ended in.
                        let last = stop.load(Ordering::Relaxed);
                        slices.add(start.elapsed(), super::process_cpu_ns(&pids)?);
                        if last {
                            return Ok(slices.busy());
                        }
                    }
                })
                .map_err(|e| format!("starting the busy-span poller: {e}"))?
        };
        Ok(BusyPoller {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the readings: the busy span, `None` when the server was never busy.
    pub fn finish(mut self) -> Result<Option<Busy>, String> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined only here");
        thread
            .join()
            .unwrap_or_else(|_| Err("the busy-span poller panicked".into()))
    }
}

impl Drop for BusyPoller {
    /// A window dropped unclosed (an error ended the run) must not leave its poller running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The busiest thread's share of the busy span, at least: its CPU time in the window less all
/// the server's CPU time outside the span (which it may or may not have used), over the span.
pub fn busiest_in_span(busiest_ns: u64, server_ns: u64, busy: &Busy) -> f64 {
    let outside = server_ns.saturating_sub(busy.cpu.as_nanos() as u64);
    busiest_ns.saturating_sub(outside) as f64 * 100.0 / busy.span.as_nanos().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_span_runs_from_the_first_busy_slice_to_the_last() {
        let mut s = Slices::new(0);
        // Idle for 100 ms (0.5 ms of CPU in a slice is under the floor), busy 300 ms with an
        // idle slice inside, idle again.
        let mut cpu = 0;
        for t in (10..=100).step_by(10) {
            cpu += if t == 50 { MS / 2 } else { 0 };
            s.add(ms(t), cpu);
        }
        assert_eq!(s.busy(), None);
        for t in (110..=400).step_by(10) {
            cpu += if t == 200 { 0 } else { 10 * MS };
            s.add(ms(t), cpu);
        }
        let busy_cpu = cpu;
        for t in (410..=600).step_by(10) {
            s.add(ms(t), cpu);
        }
        let busy = s.busy().unwrap();
        assert_eq!(busy.span, ms(300));
        assert_eq!(busy.cpu, Duration::from_nanos(busy_cpu - MS / 2));
        assert!((busy.cpu_pct() - 96.7).abs() < 0.1, "{}", busy.cpu_pct());
    }

    #[test]
    fn the_busiest_thread_is_bounded_below() {
        let busy = Busy {
            span: ms(3000),
            cpu: ms(2970),
        };
        // One thread: all the server's time; 30 ms of it outside the span.
        let pct = busiest_in_span(3000 * MS, 3000 * MS, &busy);
        assert!((pct - 99.0).abs() < 1e-9, "{pct}");
        // More outside the span than the thread used: nothing is claimed.
        assert_eq!(busiest_in_span(10 * MS, 4000 * MS, &busy), 0.0);
    }

    #[test]
    fn polls_a_process_that_burns_cpu() {
        let poller = BusyPoller::start(&[std::process::id()], &[]).unwrap();
        std::thread::sleep(ms(100));
        // 200 ms of this thread's CPU time, however long a shared machine takes to give it.
        let start = bench::sys::thread_cpu_time();
        while bench::sys::thread_cpu_time() - start < ms(200) {
            std::hint::black_box(0u64);
        }
        std::thread::sleep(ms(100));
        let busy = poller.finish().unwrap().expect("busy while it burned");
        // The test harness's other threads may run too, so the span holds at least the burn, less
        // the clock's lag at each end (a tick).
        assert!(busy.span >= ms(180) && busy.cpu >= ms(180), "{busy:?}");
    }
}
