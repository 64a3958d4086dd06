//! Saturation signals: what says why a server's throughput stops growing. The server's CPU and
//! the load generator's, how long the server's threads wait for a CPU (run-queue latency), its
//! listener's accept queue, and TCP trouble on its port. [`crate::limit`] turns them into a
//! verdict.
//!
//! A [`Window`] measures them over one run. The run-queue waits and TCP events come from our
//! eBPF programs (the scheduler programs every mode attaches, and the TCP tracepoints); the rest
//! from /proc and sock_diag, which need no privilege. What could not be measured is `null`, with
//! the reason in `signal_errors`.
//!
//! The verdict judges CPU over the loaded part of the window ([`LoadedPart`]): the load's run when
//! our load generator ran one, else the part the server was busy ([`busy`]).
pub mod busy;
pub mod cpu;
pub mod listen;

use crate::attach::{self, Loaded};
use crate::log2_hist::{bucket_bounds, quantile_ns};
use bench::load::LoadReport;
use busy::{Busy, BusyPoller};
use listen::{Diag, ListenCounters};
use profiler_common::{HIST_BUCKETS, RunqTotals, TcpTotals, names};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A run-queue wait this long or more (a bucket bound of the histogram, 65.5 us) is the CPU held
/// by other work; shorter ones are mostly the way back onto an idle core. Measured with
/// `tcpprof bench -d 2` (docs/saturation.md has the table): `--server iterative --command PING
/// -c 1` alone on its core waited 54,267 times (p99 4 us), 7 of them this long; `--server epoll
/// --command PING -c 10` sharing its core with a spinning process had 97% of its wait time in
/// waits this long (946 of 971 ms), and with the load generator on its core (`--client-cpus 0`)
/// 78% (674 of 863 ms).
pub const LONG_WAIT_NS: u64 = 1 << 16;

/// How often the accept queue is looked at: its deepest point is the deepest seen by these polls.
/// A poll costs some 17 us here (two sock_diag dumps, IPv4 and IPv6), so 0.3% of a core.
pub const QUEUE_POLL: Duration = Duration::from_millis(5);

/// Everything measured over a run, `None` (JSON `null`) where it could not be, with the reason
/// under the field's name in `signal_errors`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Signals {
    /// The server's threads' CPU time over the window: 100 is one core busy throughout.
    pub server_cpu_pct: Option<f64>,
    /// CPUs the server may run on.
    pub server_cores: Option<usize>,
    /// The busiest of the server's threads alive at the end, same scale.
    pub server_busiest_thread_pct: Option<f64>,
    /// The load generator's worker threads, same scale.
    pub client_cpu_pct: Option<f64>,
    pub client_cores: Option<usize>,
    pub client_busiest_worker_pct: Option<f64>,
    /// That worker's time waiting for a CPU, same scale: its core was shared.
    pub client_busiest_worker_runq_pct: Option<f64>,
    /// Waits of the server's threads from wakeup or preemption to running, from a log2
    /// histogram (interpolated within a bucket: within a factor of two of the true value).
    pub runq_p50_us: Option<f64>,
    pub runq_p99_us: Option<f64>,
    pub runq_max_us: Option<f64>,
    pub runq_mean_us: Option<f64>,
    pub runq_waits: Option<u64>,
    pub runq_hist: Option<Vec<RunqBucket>>,
    /// All those waits added up (without eBPF: each live thread's total wait from /proc, and
    /// `runq_waits` the times they were given a CPU).
    pub runq_wait_ms: Option<f64>,
    /// The waits of [`LONG_WAIT_NS`] or more, their number and their time: the CPU held by other
    /// work ([`Signals::runq_share_pct`]). The time is `runq_wait_ms` shared out over the
    /// histogram's buckets in proportion to their midpoints.
    pub runq_long_waits: Option<u64>,
    pub runq_long_wait_ms: Option<f64>,
    /// Deepest accept queue seen on the server's listeners (polled every [`QUEUE_POLL`]) and
    /// the queue's limit (the kernel queues one past it before refusing).
    pub accept_queue_max: Option<u32>,
    pub accept_queue_limit: Option<u32>,
    /// Machine-wide (/proc/net/netstat TcpExt): connections refused for a full accept queue,
    /// and all connections dropped by listeners.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    /// On connections to or from the server's ports.
    pub retransmits: Option<u64>,
    pub resets_sent: Option<u64>,
    pub resets_received: Option<u64>,
    /// Socket-buffer pressure: `sock_exceed_buf_limit` and `sock_rcvqueue_full` events.
    pub buffer_limit: Option<u64>,
    pub rcvqueue_full: Option<u64>,
    pub window_ms: f64,
    /// The part of the window the server was busy: from the first to the last [`busy::SLICE`]
    /// in which its threads used at least [`busy::BUSY_FLOOR_PCT`] of a core (0: never).
    pub busy_ms: Option<f64>,
    /// The loaded part of the window, which the verdict judges the CPU over, and what it is.
    pub loaded_ms: f64,
    pub loaded_part: LoadedPart,
    /// The server's CPU time and its busiest thread's over the loaded part, same scale as
    /// `server_cpu_pct`.
    pub loaded_server_cpu_pct: Option<f64>,
    pub loaded_busiest_thread_pct: Option<f64>,
    /// Why each `null` field could not be measured.
    pub signal_errors: BTreeMap<&'static str, String>,
}

/// What the loaded part of a window is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadedPart {
    /// Our load generator's run, from its start to its last response (`bench`, a sweep's level).
    Load,
    /// No load of ours: the part the server was busy (`busy_ms`; `profile`).
    Busy,
    /// The whole window: the server was busy less than [`LoadedPart::MIN_BUSY`], or its CPU
    /// could not be read.
    #[default]
    Window,
}

impl LoadedPart {
    /// The shortest busy part judged on its own. Each end of the busy part is found within a
    /// slice (10 ms: the slice the work began or ended in), so over 200 ms a server busy
    /// throughout reads at least 90% (200 of 220 ms), and over a 3 s load 99%.
    pub const MIN_BUSY: Duration = Duration::from_millis(200);

    /// In words, as in "over the load's run".
    pub fn as_str(self) -> &'static str {
        match self {
            LoadedPart::Load => "load's run",
            LoadedPart::Busy => "busy part",
            LoadedPart::Window => "whole window",
        }
    }
}

impl std::fmt::Display for LoadedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One non-empty bucket of the run-queue histogram: waits in `[from_ns, to_ns)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RunqBucket {
    pub from_ns: u64,
    pub to_ns: u64,
    pub count: u64,
}

/// Why the accept queue and TCP signals are missing for a server without a listener.
const NO_LISTENER: &str = "the server has no listening TCP socket";

const SERVER_CPU: [&str; 3] = ["server_cpu_pct", "server_cores", "server_busiest_thread_pct"];
const CLIENT_CPU: [&str; 4] = [
    "client_cpu_pct",
    "client_cores",
    "client_busiest_worker_pct",
    "client_busiest_worker_runq_pct",
];
const RUNQ_KERNEL: [&str; 6] = [
    "runq_p50_us",
    "runq_p99_us",
    "runq_max_us",
    "runq_hist",
    "runq_long_waits",
    "runq_long_wait_ms",
];
/// Measured by our programs, or from /proc without them.
const RUNQ_TOTALS: [&str; 3] = ["runq_mean_us", "runq_waits", "runq_wait_ms"];
const LOADED_CPU: [&str; 2] = ["loaded_server_cpu_pct", "loaded_busiest_thread_pct"];
const ACCEPT_QUEUE: [&str; 2] = ["accept_queue_max", "accept_queue_limit"];
const LISTEN_COUNTERS: [&str; 2] = ["listen_overflows", "listen_drops"];
const TCP: [&str; 5] = [
    "retransmits",
    "resets_sent",
    "resets_received",
    "buffer_limit",
    "rcvqueue_full",
];

impl Signals {
    /// The server's CPU time over the window, in ms.
    pub fn server_cpu_ms(&self) -> Option<f64> {
        Some(self.server_cpu_pct? * self.window_ms / 100.0)
    }

    /// The server's long run-queue waits (the CPU held by other work) as a share of its runnable
    /// time (on CPU plus every wait), in %: the time it lost to other work on its CPUs. Idle time
    /// counts in neither, so the share is the same over the window and over its loaded part.
    pub fn runq_share_pct(&self) -> Option<f64> {
        let (long, wait, oncpu) = (self.runq_long_wait_ms?, self.runq_wait_ms?, self.server_cpu_ms()?);
        let runnable = wait + oncpu;
        (runnable > 0.0).then(|| long * 100.0 / runnable)
    }

    /// The busy part of the window as a share of it.
    pub fn busy_pct(&self) -> Option<f64> {
        let busy = self.busy_ms?;
        (self.window_ms > 0.0).then(|| busy * 100.0 / self.window_ms)
    }

    fn missing(&mut self, fields: &[&'static str], why: &str) {
        for &field in fields {
            self.signal_errors.insert(field, why.to_string());
        }
    }

    /// Adds the load generator's own CPU use, and makes its run the loaded part: the window is
    /// the load's and a little more (it opens before the first request, closes after the last
    /// response), so the server's CPU time in it is spread over the load's run alone, at most
    /// what its cores and one thread allow.
    pub fn add_client(&mut self, load: &LoadReport) {
        let loaded_ms = round1(load.elapsed.as_secs_f64() * 1e3).min(self.window_ms);
        if loaded_ms > 0.0 {
            let scale = self.window_ms / loaded_ms;
            let cores = self.server_cores.map_or(f64::INFINITY, |n| n as f64);
            self.loaded_ms = loaded_ms;
            self.loaded_part = LoadedPart::Load;
            self.loaded_server_cpu_pct = self.server_cpu_pct.map(|p| round1((p * scale).min(100.0 * cores)));
            self.loaded_busiest_thread_pct = self.server_busiest_thread_pct.map(|p| round1((p * scale).min(100.0)));
        }
        let client = load.client_cpu();
        self.client_cpu_pct = Some(round1(client.pct));
        self.client_cores = Some(client.cores);
        self.client_busiest_worker_pct = Some(round1(client.busiest_worker_pct));
        self.client_busiest_worker_runq_pct = Some(round1(client.busiest_worker_runq_pct));
        for field in CLIENT_CPU {
            self.signal_errors.remove(field);
        }
    }

    pub(crate) fn set_runq(&mut self, r: &RunqTotals) {
        let us = |ns: f64| round1(ns / 1e3);
        self.runq_waits = Some(r.waits);
        self.runq_wait_ms = Some(round1(r.wait_ns as f64 / 1e6));
        let (long_waits, long_ns) = long_waits(r);
        self.runq_long_waits = Some(long_waits);
        self.runq_long_wait_ms = Some(round1(long_ns / 1e6));
        self.runq_hist = Some(
            (0..HIST_BUCKETS)
                .filter(|&b| r.hist[b] > 0)
                .map(|b| {
                    let (from_ns, to_ns) = bucket_bounds(b);
                    RunqBucket {
                        from_ns,
                        to_ns,
                        count: r.hist[b],
                    }
                })
                .collect(),
        );
        if r.waits == 0 {
            self.missing(
                &["runq_p50_us", "runq_p99_us", "runq_max_us", "runq_mean_us"],
                "no thread of the server waited for a CPU in the window",
            );
            return;
        }
        self.runq_p50_us = Some(runq_quantile_us(r, 0.50));
        self.runq_p99_us = Some(runq_quantile_us(r, 0.99));
        self.runq_max_us = Some(us(r.max_ns as f64));
        self.runq_mean_us = Some(us(r.wait_ns as f64 / r.waits as f64));
    }

    /// The busy part of the window from `busy`, and the loaded part: the busy part when it is
    /// long enough to judge, else the whole window. `server_ns` is the server's CPU time over
    /// the window and its busiest thread's, when read.
    fn set_loaded(&mut self, busy: Result<Option<Busy>, String>, server_ns: Option<(u64, Option<u64>)>) {
        let ms = |d: Duration| round1(d.as_secs_f64() * 1e3);
        self.loaded_ms = self.window_ms;
        self.loaded_server_cpu_pct = self.server_cpu_pct;
        self.loaded_busiest_thread_pct = self.server_busiest_thread_pct;
        if let Some(why) = self.signal_errors.get("server_cpu_pct").cloned() {
            self.missing(&LOADED_CPU, &why);
        }
        let busy = match busy {
            Ok(busy) => busy,
            Err(why) => return self.missing(&["busy_ms"], &why),
        };
        // The poller's last reading comes a little after the window's end.
        self.busy_ms = Some(busy.map_or(0.0, |b| ms(b.span).min(self.window_ms)));
        let (Some(busy), Some((server_ns, busiest_ns))) = (busy, server_ns) else {
            return;
        };
        if busy.span < LoadedPart::MIN_BUSY {
            return;
        }
        self.loaded_ms = ms(busy.span).min(self.window_ms);
        self.loaded_part = LoadedPart::Busy;
        // At most what its cores and one thread allow: a clock read between two ticks lags.
        let cores = self.server_cores.map_or(f64::INFINITY, |n| n as f64);
        self.loaded_server_cpu_pct = Some(round1(busy.cpu_pct().min(100.0 * cores)));
        self.loaded_busiest_thread_pct =
            busiest_ns.map(|b| round1(busy::busiest_in_span(b, server_ns, &busy).min(100.0)));
    }

    fn set_tcp(&mut self, t: &TcpTotals) {
        self.retransmits = Some(t.retransmits);
        self.resets_sent = Some(t.resets_sent);
        self.resets_received = Some(t.resets_received);
        self.buffer_limit = Some(t.buffer_limit);
        self.rcvqueue_full = Some(t.rcvqueue_full);
    }
}

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The waits of [`LONG_WAIT_NS`] or more: how many, and their time in ns. The histogram gives
/// each bucket's count, not its time: the exact total of all waits is shared out over the
/// buckets in proportion to their midpoints (the longest bucket's at most the longest wait).
fn long_waits(r: &RunqTotals) -> (u64, f64) {
    let mut weights = [0.0; HIST_BUCKETS];
    for (b, weight) in weights.iter_mut().enumerate() {
        let (from, to) = bucket_bounds(b);
        let mid = ((from + to) as f64 / 2.0).min(r.max_ns.max(from) as f64);
        *weight = r.hist[b] as f64 * mid;
    }
    let all: f64 = weights.iter().sum();
    let first = (0..HIST_BUCKETS)
        .find(|&b| bucket_bounds(b).0 >= LONG_WAIT_NS)
        .unwrap_or(HIST_BUCKETS);
    let count = r.hist[first..].iter().sum();
    let long: f64 = weights[first..].iter().sum();
    let ns = if all > 0.0 { r.wait_ns as f64 * long / all } else { 0.0 };
    (count, ns)
}

/// A quantile of the run-queue waits in us: interpolated in its log2 bucket, never above the
/// longest wait seen.
pub(crate) fn runq_quantile_us(r: &RunqTotals, q: f64) -> f64 {
    round1(quantile_ns(&r.hist, q).min(r.max_ns as f64) / 1e3)
}

/// The signals being measured over one window of a run.
pub struct Window {
    pids: Result<Vec<u32>, String>,
    start: Instant,
    /// Summed process CPU clocks of the server's processes.
    cpu_start: Result<u64, String>,
    threads_start: HashMap<u32, bench::sys::SchedStat>,
    /// The CPUs the server may run on.
    server_cpus: Vec<usize>,
    listen_start: Result<ListenCounters, String>,
    queue: Result<QueuePoller, String>,
    busy: Result<BusyPoller, String>,
    /// Why the kernel signals are missing: run-queue percentiles, TCP events.
    no_runq: Option<String>,
    no_tcp: Option<String>,
}

impl Window {
    /// Starts measuring the server `pids` listening on `ports`. `kernel` holds our programs
    /// (their run-queue and TCP counts start over from here), or why there are none.
    pub fn open(pids: Result<Vec<u32>, String>, ports: &[u16], kernel: Result<&mut Loaded, String>) -> Window {
        let (no_runq, no_tcp) = match kernel {
            Ok(loaded) => {
                let reset = loaded
                    .reset::<RunqTotals>(names::RUNQ_TOTALS)
                    .and_then(|()| loaded.reset::<TcpTotals>(names::TCP_TOTALS))
                    .err()
                    .map(|e| format!("{e:#}"));
                let no_tcp = reset.clone().or_else(|| loaded.tcp_error.clone());
                (reset, no_tcp)
            }
            Err(why) => (Some(why.clone()), Some(why)),
        };
        // Without the server's processes nothing timed their waits (see `attach::load`).
        let no_runq = no_runq.or_else(|| pids.as_ref().err().cloned());
        let no_tcp = no_tcp.or_else(|| ports.is_empty().then(|| NO_LISTENER.into()));
        let threads_start = pids.as_deref().map(cpu::thread_stats).unwrap_or_default();
        let server_cpus = pids.as_deref().map(server_cpus).unwrap_or_default();
        let queue = QueuePoller::start(ports, &server_cpus);
        let busy = pids
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|pids| BusyPoller::start(pids, &server_cpus));
        let listen_start = ListenCounters::read().map_err(|e| format!("{e:#}"));
        // The CPU clocks and the window start together: reading 1,000 threads' schedstat above
        // takes milliseconds, which the server spends on CPU.
        let cpu_start = pids
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|pids| process_cpu_ns(pids));
        Window {
            start: Instant::now(),
            cpu_start,
            threads_start,
            listen_start,
            queue,
            busy,
            server_cpus,
            no_runq,
            no_tcp,
            pids,
        }
    }

    /// Ends the window. `kernel` is the one given to [`Window::open`], if it was there.
    pub fn close(self, kernel: Option<&Loaded>) -> Signals {
        let window = self.start.elapsed();
        let mut s = Signals {
            window_ms: round1(window.as_secs_f64() * 1e3),
            ..Signals::default()
        };
        let pct = |ns: u64| round1(ns as f64 * 100.0 / window.as_nanos().max(1) as f64);
        s.missing(&CLIENT_CPU, "no load generator ran in this window");
        let busy = self.busy.and_then(BusyPoller::finish);

        // The server's CPU time over the window, and its busiest thread's, in ns.
        let mut server_ns = None;
        match (&self.pids, &self.cpu_start) {
            (Ok(pids), Ok(start)) => match process_cpu_ns(pids) {
                Ok(end) => {
                    let ns = end.saturating_sub(*start);
                    s.server_cpu_pct = Some(pct(ns));
                    s.server_cores = Some(self.server_cpus.len()).filter(|&n| n > 0);
                    let end_threads = cpu::thread_stats(pids);
                    let deltas = cpu::thread_deltas(&self.threads_start, &end_threads);
                    let busiest = deltas.iter().map(|t| t.oncpu_ns).max();
                    s.server_busiest_thread_pct = busiest.map(pct);
                    server_ns = Some((ns, busiest));
                    if self.no_runq.is_some() {
                        // What /proc has: the total wait of the live threads, and how many times
                        // they were given a CPU (each after a wait), not each wait.
                        let delay: u64 = deltas.iter().map(|t| t.run_delay_ns).sum();
                        let slices: u64 = deltas.iter().map(|t| t.timeslices).sum();
                        s.runq_wait_ms = Some(round1(delay as f64 / 1e6));
                        s.runq_waits = Some(slices);
                        if slices > 0 {
                            s.runq_mean_us = Some(round1(delay as f64 / slices as f64 / 1e3));
                        }
                    }
                }
                Err(why) => s.missing(&SERVER_CPU, &why),
            },
            (Err(why), _) | (_, Err(why)) => s.missing(&SERVER_CPU, why),
        }
        if self.no_runq.is_some() {
            if s.runq_waits.is_none() {
                s.missing(&RUNQ_TOTALS, "the server's threads could not be read from /proc");
            } else if s.runq_mean_us.is_none() {
                s.missing(&["runq_mean_us"], "no thread of the server ran in the window");
            }
        }
        s.set_loaded(busy, server_ns);

        match (self.no_runq.as_deref(), kernel) {
            (None, Some(loaded)) => match loaded.sum_over_cpus::<RunqTotals>(names::RUNQ_TOTALS) {
                Ok(r) => s.set_runq(&r),
                Err(e) => {
                    s.missing(&RUNQ_KERNEL, &format!("{e:#}"));
                    s.missing(&RUNQ_TOTALS, &format!("{e:#}"));
                }
            },
            (why, _) => {
                if why.is_none() {
                    s.missing(&RUNQ_TOTALS, "the eBPF programs went away");
                }
                let why = why.unwrap_or("the eBPF programs went away");
                // Of a server whose processes are known, /proc still gives something.
                let why = match &self.pids {
                    Ok(_) => format!(
                        "{why}; without eBPF, /proc gives only each thread's total run-queue wait (runq_wait_ms, \
                         runq_mean_us)"
                    ),
                    Err(_) => why.to_string(),
                };
                s.missing(&RUNQ_KERNEL, &why);
            }
        }
        match (self.no_tcp.as_deref(), kernel) {
            (None, Some(loaded)) => match loaded.sum_over_cpus::<TcpTotals>(names::TCP_TOTALS) {
                Ok(t) => s.set_tcp(&t),
                Err(e) => s.missing(&TCP, &format!("{e:#}")),
            },
            (why, _) => s.missing(&TCP, why.unwrap_or("the eBPF programs went away")),
        }

        match self.listen_start.and_then(|start| {
            ListenCounters::read()
                .map(|end| end.since(start))
                .map_err(|e| format!("{e:#}"))
        }) {
            Ok(c) => {
                s.listen_overflows = Some(c.overflows);
                s.listen_drops = Some(c.drops);
            }
            Err(why) => s.missing(&LISTEN_COUNTERS, &why),
        }
        match self.queue.and_then(QueuePoller::finish) {
            Ok(Some((max, limit))) => {
                s.accept_queue_max = Some(max);
                s.accept_queue_limit = Some(limit);
            }
            Ok(None) => s.missing(&ACCEPT_QUEUE, "no listener of the server was seen during the window"),
            Err(why) => s.missing(&ACCEPT_QUEUE, &why),
        }
        s
    }
}

/// The CPUs the server's processes may run on.
pub(crate) fn server_cpus(pids: &[u32]) -> Vec<usize> {
    let mut cpus: Vec<usize> = pids
        .iter()
        .filter_map(|&p| cpu::allowed_cpus(p).ok())
        .flatten()
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// Summed process CPU clocks.
fn process_cpu_ns(pids: &[u32]) -> Result<u64, String> {
    pids.iter()
        .map(|&pid| cpu::process_cpu_ns(pid).map_err(|e| format!("reading the CPU clock of process {pid}: {e}")))
        .sum()
}

/// The deepest accept queue seen and the limit, `None` if no listener showed up.
type Deepest = Option<(u32, u32)>;

/// Polls the server's listeners every [`QUEUE_POLL`] on a thread of its own.
struct QueuePoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Deepest, String>>>,
}

impl QueuePoller {
    /// Polls `ports`' listeners from a CPU outside `server_cpus` when there is one, so that the
    /// polls take nothing from the server.
    fn start(ports: &[u16], server_cpus: &[usize]) -> Result<QueuePoller, String> {
        if ports.is_empty() {
            return Err(NO_LISTENER.into());
        }
        let mut diag = Diag::open().map_err(|e| format!("{e:#}"))?;
        let ports = ports.to_vec();
        let elsewhere = bench::sys::cpus_besides(server_cpus);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("accept-queue".into())
                .spawn(move || {
                    if !elsewhere.is_empty() {
                        // Not fatal: unpinned, the polls only cost a little more.
                        let _ = bench::sys::pin_current_thread(&elsewhere);
                    }
                    let mut deepest: Deepest = None;
                    loop {
                        // One more look after the stop: the queue as the run left it.
                        let last = stop.load(Ordering::Relaxed);
                        let listeners = diag.listeners().map_err(|e| format!("{e:#}"))?;
                        for l in listeners.iter().filter(|l| ports.contains(&l.port)) {
                            let (max, limit) = deepest.get_or_insert((0, 0));
                            *max = (*max).max(l.queued);
                            *limit = (*limit).max(l.limit);
                        }
                        if last {
                            return Ok(deepest);
                        }
                        std::thread::sleep(QUEUE_POLL);
                    }
                })
                .map_err(|e| format!("starting the accept-queue poller: {e}"))?
        };
        Ok(QueuePoller {
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> Result<Deepest, String> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined only here");
        thread
            .join()
            .unwrap_or_else(|_| Err("the accept-queue poller panicked".into()))
    }
}

impl Drop for QueuePoller {
    /// A window dropped unclosed (an error ended the run) must not leave its poller running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Signals over one or more windows of runs that are not profiled: our scheduler and TCP
/// programs attached on their own (no syscall hook, no sampler), or /proc alone when they cannot
/// be. [`Watch::open`] starts a window (called when the load starts), [`Watch::close`] ends it.
pub struct Watch {
    loaded: Result<Loaded, String>,
    pids: Result<Vec<u32>, String>,
    ports: Vec<u16>,
    window: Option<Window>,
}

impl Watch {
    pub fn attach(pids: Result<Vec<u32>, String>, ports: Vec<u16>) -> Watch {
        let targets = pids.as_deref().unwrap_or_default();
        let loaded = attach::load(targets, &ports, false, false, &[]).map_err(|e| format!("no eBPF: {e:#}"));
        Watch {
            loaded,
            pids,
            ports,
            window: None,
        }
    }

    /// Starts a window, ending any window still open.
    pub fn open(&mut self) {
        let kernel = self.loaded.as_mut().map_err(|e| e.clone());
        self.window = Some(Window::open(self.pids.clone(), &self.ports, kernel));
    }

    /// Ends the window (an empty one if none was opened: the run never started).
    pub fn close(&mut self) -> Signals {
        if self.window.is_none() {
            self.open();
        }
        let window = self.window.take().expect("opened above");
        window.close(self.loaded.as_ref().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runq_quantiles_never_exceed_the_longest_wait() {
        let mut r = RunqTotals::ZERO;
        // 100 waits in [1024, 2048) ns, the longest 1500 ns.
        r.hist[10] = 100;
        r.max_ns = 5000;
        assert_eq!(runq_quantile_us(&r, 0.5), 1.5);
        r.max_ns = 1500;
        assert_eq!(runq_quantile_us(&r, 0.99), 1.5);
    }

    #[test]
    fn long_waits_share_out_the_exact_total() {
        let mut r = RunqTotals::ZERO;
        // 1,000 waits of about 1.5 us and 10 of at most 3 ms (in [2.1, 4.2) ms): 31.5 ms in all.
        r.hist[10] = 1000;
        r.hist[21] = 10;
        r.wait_ns = 31_500_000;
        r.max_ns = 3_000_000;
        let (count, ns) = long_waits(&r);
        assert_eq!(count, 10);
        // Weighted 1,000 x 1.536 us short and 10 x 3 ms long (the longest wait caps the 3.1 ms
        // midpoint).
        let expected = 31.5e6 * 30e6 / (30e6 + 1.536e6);
        assert!((ns - expected).abs() < 1.0, "{ns} vs {expected}");
        assert!(ns <= r.wait_ns as f64);
        assert_eq!(long_waits(&RunqTotals::ZERO), (0, 0.0));
    }
}
