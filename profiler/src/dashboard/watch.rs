//! What the dashboard reads of the server at each interval's end, from what any process may read
//! about another: CPU time in user and system mode, threads, resident memory, context switches,
//! each thread's CPU, the accept queue (sock_diag), and, over the run so far, the signals the
//! limit verdict judges.
use crate::limit::Limit;
use crate::signals::listen::{Diag, ListenCounters, socket_inodes};
use crate::signals::{LoadedPart, Signals, cpu, round1, runq_quantile_us, server_cpus};
use crate::totals::Totals;
use bench::sys::SchedStat;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Threads beyond this many are not read one by one each interval (a thread per connection
/// would make the reading a load of its own): the totals stay, the per-thread figures go.
pub const MAX_THREADS_READ: usize = 512;
/// The busiest threads an interval lists.
const THREADS_LISTED: usize = 12;

/// The server over one interval.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerInterval {
    /// Percent of one core, in user and in system mode (clock ticks: 1% steps over a second).
    pub cpu_user_pct: Option<f64>,
    pub cpu_system_pct: Option<f64>,
    pub threads: u64,
    pub rss_kb: u64,
    /// Context switches in the interval: each thread's, or past [`MAX_THREADS_READ`] threads the
    /// kernel's count when profiled (else `None`).
    pub voluntary_switches: Option<u64>,
    pub involuntary_switches: Option<u64>,
    /// Connections waiting in the listeners' accept queue at the interval's end, and its limit.
    pub accept_queue: Option<u32>,
    pub accept_queue_limit: Option<u32>,
    /// Waits for a CPU: p99 from the kernel's histogram when profiled, else the mean wait from
    /// each thread's schedstat.
    pub runq_p99_us: Option<f64>,
    pub runq_mean_us: Option<f64>,
    /// The busiest threads, each's CPU in percent of a core.
    pub thread_cpu: Vec<ThreadCpu>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub cpu_pct: f64,
}

/// One reading of the server's processes.
#[derive(Clone, Default)]
struct Reading {
    at: Option<Instant>,
    /// Summed over the processes, from /proc/PID/stat.
    stat: Stat,
    cpu_ns: u64,
    threads: HashMap<u32, Thread>,
    /// Whether every thread was read (not past [`MAX_THREADS_READ`]).
    all_threads: bool,
    /// This process's load generator threads (`load-N`), when it runs the load.
    load_threads: HashMap<u32, SchedStat>,
}

#[derive(Clone, Default)]
struct Thread {
    name: String,
    sched: SchedStat,
    voluntary: u64,
    involuntary: u64,
}

/// The server's processes, read at each interval's end; the first reading starts the run.
pub struct Watch {
    pids: Vec<u32>,
    /// Whether the load generator runs in this process (its threads are read too).
    loading: bool,
    cores: usize,
    ticks_per_second: f64,
    first: Option<Reading>,
    last: Reading,
    diag: Option<Diag>,
    /// The server's listening sockets' inodes, once seen.
    listeners: HashSet<u32>,
    listen_start: Option<ListenCounters>,
    deepest_queue: Option<(u32, u32)>,
    /// The kernel's totals at the latest profile interval's end.
    totals: Option<Totals>,
    /// Their context switches when the last interval was read.
    switches_read: Option<(u64, u64)>,
    /// The run-queue p99 over the latest profile interval.
    runq_p99_us: Option<f64>,
}

impl Watch {
    /// Watches the server `pids`; `loading` when this process loads it.
    pub fn new(pids: &[u32], loading: bool) -> Watch {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let mut watch = Watch {
            pids: pids.to_vec(),
            loading,
            cores: server_cpus(pids).len(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            first: None,
            last: Reading::default(),
            diag: Diag::open().ok(),
            listeners: HashSet::new(),
            listen_start: ListenCounters::read().ok(),
            deepest_queue: None,
            totals: None,
            switches_read: None,
            runq_p99_us: None,
        };
        watch.last = watch.read();
        watch.first = Some(watch.last.clone());
        watch
    }

    /// A profile interval's end: the kernel's totals since attach (its run-queue waits since the
    /// load started).
    pub fn profiled(&mut self, totals: &Totals) {
        let mut waits = totals.runq;
        if let Some(before) = &self.totals {
            waits -= before.runq;
        }
        self.runq_p99_us = (waits.waits > 0).then(|| runq_quantile_us(&waits, 0.99));
        self.totals = Some(totals.clone());
    }

    /// Reads the server now: what it did since the last call.
    pub fn interval(&mut self) -> ServerInterval {
        let now = self.read();
        let last = std::mem::replace(&mut self.last, now);
        let now = &self.last;
        let seconds = match (now.at, last.at) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64(),
            _ => 0.0,
        };
        let pct_ticks =
            |ticks: u64| (seconds > 0.0).then(|| round1(ticks as f64 * 100.0 / self.ticks_per_second / seconds));
        let mut out = ServerInterval {
            cpu_user_pct: pct_ticks(now.stat.user_ticks.saturating_sub(last.stat.user_ticks)),
            cpu_system_pct: pct_ticks(now.stat.system_ticks.saturating_sub(last.stat.system_ticks)),
            threads: now.stat.threads,
            rss_kb: now.stat.rss_pages * page_kb(),
            ..ServerInterval::default()
        };
        if now.all_threads && last.all_threads {
            let deltas: Vec<(u32, &Thread, Thread)> = now
                .threads
                .iter()
                .map(|(&tid, t)| {
                    let before = last.threads.get(&tid).cloned().unwrap_or_default();
                    let delta = Thread {
                        name: String::new(),
                        sched: t.sched.since(before.sched),
                        voluntary: t.voluntary.saturating_sub(before.voluntary),
                        involuntary: t.involuntary.saturating_sub(before.involuntary),
                    };
                    (tid, t, delta)
                })
                .collect();
            out.voluntary_switches = Some(deltas.iter().map(|(_, _, d)| d.voluntary).sum());
            out.involuntary_switches = Some(deltas.iter().map(|(_, _, d)| d.involuntary).sum());
            let (delay, slices) = deltas.iter().fold((0, 0), |(d, s), (_, _, t)| {
                (d + t.sched.run_delay_ns, s + t.sched.timeslices)
            });
            out.runq_mean_us = (slices > 0).then(|| round1(delay as f64 / slices as f64 / 1e3));
            let mut threads: Vec<ThreadCpu> = deltas
                .iter()
                .map(|(tid, t, d)| ThreadCpu {
                    tid: *tid,
                    name: t.name.clone(),
                    cpu_pct: if seconds > 0.0 {
                        round1(d.sched.oncpu_ns as f64 / 1e7 / seconds)
                    } else {
                        0.0
                    },
                })
                .collect();
            threads.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct).then(a.tid.cmp(&b.tid)));
            threads.truncate(THREADS_LISTED);
            out.thread_cpu = threads;
        }
        out.runq_p99_us = self.runq_p99_us;
        // Past MAX_THREADS_READ threads, the kernel's count when profiled (it counts them all).
        let sched = self.totals.as_ref().map(|t| t.sched);
        let before = std::mem::replace(&mut self.switches_read, sched.map(|s| (s.voluntary, s.involuntary)));
        if let (false, Some(now), Some((v, n))) = (now.all_threads && last.all_threads, sched, before) {
            out.voluntary_switches = Some(now.voluntary.saturating_sub(v));
            out.involuntary_switches = Some(now.involuntary.saturating_sub(n));
        }
        if let Some((queued, limit)) = self.accept_queue() {
            out.accept_queue = Some(queued);
            out.accept_queue_limit = Some(limit);
            let deepest = self.deepest_queue.get_or_insert((queued, limit));
            deepest.0 = deepest.0.max(queued);
        }
        out
    }

    /// The deepest of the server's listeners' queues now, and its limit.
    fn accept_queue(&mut self) -> Option<(u32, u32)> {
        if self.listeners.is_empty() {
            self.listeners = self.pids.iter().flat_map(|&p| socket_inodes(p)).collect();
        }
        let listeners = self.diag.as_mut()?.listeners().ok()?;
        listeners
            .into_iter()
            .filter(|l| self.listeners.contains(&l.inode))
            .map(|l| (l.queued, l.limit))
            .max()
    }

    /// The verdict on the run so far, from what was read since the first reading; `requests`
    /// answered or failed so far.
    pub fn limit_so_far(&self, requests: Option<u64>) -> Limit {
        let Some(first) = &self.first else {
            return Limit::judge(&Signals::default(), requests);
        };
        let elapsed = match (self.last.at, first.at) {
            (Some(a), Some(b)) => a.duration_since(b),
            _ => Duration::ZERO,
        };
        let pct = |ns: u64| round1(ns as f64 * 100.0 / elapsed.as_nanos().max(1) as f64);
        let mut s = Signals {
            window_ms: round1(elapsed.as_secs_f64() * 1e3),
            loaded_ms: round1(elapsed.as_secs_f64() * 1e3),
            loaded_part: LoadedPart::Load,
            server_cores: Some(self.cores).filter(|&c| c > 0),
            ..Signals::default()
        };
        let cpu = pct(self.last.cpu_ns.saturating_sub(first.cpu_ns));
        s.server_cpu_pct = Some(cpu);
        s.loaded_server_cpu_pct = Some(cpu);
        if self.last.all_threads {
            let busiest = self
                .last
                .threads
                .iter()
                .map(|(tid, t)| {
                    t.sched
                        .since(first.threads.get(tid).map(|f| f.sched).unwrap_or_default())
                        .oncpu_ns
                })
                .max();
            s.server_busiest_thread_pct = busiest.map(pct);
            s.loaded_busiest_thread_pct = busiest.map(pct);
        }
        if let Some(totals) = &self.totals {
            s.set_runq(&totals.runq);
        }
        if self.loading {
            let workers: Vec<(u32, SchedStat)> = self
                .last
                .load_threads
                .iter()
                .map(|(tid, now)| {
                    (
                        *tid,
                        now.since(first.load_threads.get(tid).copied().unwrap_or_default()),
                    )
                })
                .collect();
            let busiest = workers.iter().max_by_key(|(_, w)| w.oncpu_ns);
            let mut cores: Vec<usize> = workers
                .iter()
                .filter_map(|(tid, _)| cpu::allowed_cpus(*tid).ok())
                .flatten()
                .collect();
            cores.sort_unstable();
            cores.dedup();
            s.client_cpu_pct = Some(pct(workers.iter().map(|(_, w)| w.oncpu_ns).sum()));
            s.client_cores = Some(cores.len()).filter(|&n| n > 0);
            s.client_busiest_worker_pct = Some(busiest.map_or(0.0, |(_, w)| pct(w.oncpu_ns)));
            s.client_busiest_worker_runq_pct = Some(busiest.map_or(0.0, |(_, w)| pct(w.run_delay_ns)));
        }
        if let Some((max, limit)) = self.deepest_queue {
            s.accept_queue_max = Some(max);
            s.accept_queue_limit = Some(limit);
        }
        if let (Some(start), Ok(now)) = (self.listen_start, ListenCounters::read()) {
            let c = now.since(start);
            s.listen_overflows = Some(c.overflows);
            s.listen_drops = Some(c.drops);
        }
        Limit::judge(&s, requests)
    }

    fn read(&self) -> Reading {
        let mut reading = Reading {
            at: Some(Instant::now()),
            all_threads: true,
            ..Reading::default()
        };
        for &pid in &self.pids {
            reading.stat.add(Stat::read(pid));
            reading.cpu_ns += cpu::process_cpu_ns(pid).unwrap_or(0);
        }
        if self.loading {
            reading.load_threads = load_threads();
        }
        if reading.stat.threads as usize > MAX_THREADS_READ {
            reading.all_threads = false;
            return reading;
        }
        for &pid in &self.pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.filter_map(Result::ok) {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let (Some(sched), Ok(status)) = (
                    SchedStat::read(&task.path().join("schedstat")),
                    std::fs::read_to_string(task.path().join("status")),
                ) else {
                    continue;
                };
                let field = |name: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::trim)
                        .unwrap_or_default()
                };
                reading.threads.insert(
                    tid,
                    Thread {
                        name: field("Name:").to_string(),
                        sched,
                        voluntary: field("voluntary_ctxt_switches:").parse().unwrap_or(0),
                        involuntary: field("nonvoluntary_ctxt_switches:").parse().unwrap_or(0),
                    },
                );
            }
        }
        reading
    }
}

/// This process's load generator threads (named `load-N`), by tid.
fn load_threads() -> HashMap<u32, SchedStat> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return HashMap::new();
    };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if !name.starts_with("load-") {
                return None;
            }
            let tid = task.file_name().to_str()?.parse().ok()?;
            Some((tid, SchedStat::read(&task.path().join("schedstat"))?))
        })
        .collect()
}

/// What a process's /proc/PID/stat says of it (zeros for a process that is gone).
#[derive(Clone, Copy, Default)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    threads: u64,
    rss_pages: u64,
}

impl Stat {
    fn read(pid: u32) -> Stat {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return Stat::default();
        };
        // The command name, field 2, is in parentheses and may hold spaces: count after its end,
        // from field 3.
        let Some((_, rest)) = text.rsplit_once(')') else {
            return Stat::default();
        };
        let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        // Fields as proc(5) counts them, from 1.
        let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
        Stat {
            user_ticks: field(14),
            system_ticks: field(15),
            threads: field(20),
            rss_pages: field(24),
        }
    }

    fn add(&mut self, other: Stat) {
        self.user_ticks += other.user_ticks;
        self.system_ticks += other.system_ticks;
        self.threads += other.threads;
        self.rss_pages += other.rss_pages;
    }
}

fn page_kb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 / 1024 } else { 4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_busy_process_cpu_threads_and_memory() {
        let mut watch = Watch::new(&[std::process::id()], false);
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(0u64);
        }
        let i = watch.interval();
        let cpu = i.cpu_user_pct.unwrap() + i.cpu_system_pct.unwrap();
        assert!(cpu >= 50.0, "{i:?}");
        assert!(i.threads >= 1 && i.rss_kb > 0, "{i:?}");
        let busiest = &i.thread_cpu[0];
        assert!(busiest.cpu_pct >= 50.0 && !busiest.name.is_empty(), "{i:?}");
        assert!(i.voluntary_switches.is_some(), "{i:?}");
        let limit = watch.limit_so_far(Some(0));
        assert_eq!(limit.kind, crate::LimitKind::ServerCpu, "{limit:?}");
    }
}
