//! What a benchmark costs the server beside time: its memory and its context switches, sampled
//! from /proc while the load runs (the C10K question: what do 10,000 connections cost?).
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ServerStats {
    /// Largest resident set seen, summed over the server's processes, in KiB.
    pub rss_max_kb: u64,
    /// Most threads seen at once, over the server's processes.
    pub threads_max: u64,
    /// Context switches of the server's threads during the run (a thread that exited between two
    /// samples loses what it did after the first).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Samples the processes until [`Sampler::finish`], as often as stays cheap (see
/// `sample_until`).
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ServerStats>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || sample_until(&pids, &stop))
        };
        Sampler { stop, thread }
    }

    pub fn finish(self) -> ServerStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn sample_until(pids: &[u32], stop: &AtomicBool) -> ServerStats {
    let mut stats = ServerStats::default();
    // Switch counts by tid: at the first sample each thread was seen in, and at the latest.
    let mut first: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut last: HashMap<u32, (u64, u64)> = HashMap::new();
    loop {
        let done = stop.load(Ordering::Relaxed);
        let sampled = std::time::Instant::now();
        let (mut rss, mut threads) = (0, 0);
        for &pid in pids {
            rss += status_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0);
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.filter_map(Result::ok) {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                    continue;
                };
                threads += 1;
                let status = task.path().join("status");
                let path = status.to_string_lossy();
                let counts = (
                    status_field(&path, "voluntary_ctxt_switches:").unwrap_or(0),
                    status_field(&path, "nonvoluntary_ctxt_switches:").unwrap_or(0),
                );
                first.entry(tid).or_insert(counts);
                last.insert(tid, counts);
            }
        }
        stats.rss_max_kb = stats.rss_max_kb.max(rss);
        stats.threads_max = stats.threads_max.max(threads);
        if done {
            break;
        }
        // Every 20 ms, or ten times as long as a sample took: a thread per connection can come and
        // go within a short run, yet reading 10,000 threads' status must stay a small load.
        let pause = (sampled.elapsed() * 10).max(Duration::from_millis(20));
        let resume = std::time::Instant::now() + pause;
        while std::time::Instant::now() < resume && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for (tid, (v, n)) in &last {
        let (v0, n0) = first[tid];
        stats.voluntary_switches += v - v0;
        stats.involuntary_switches += n - n0;
    }
    stats
}

/// Time on CPU of all of `pid`'s threads, in ns: the first field of each thread's schedstat
/// (a thread that exits while they are read is left out).
pub fn oncpu_ns(pid: u32) -> std::io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|task| bench::sys::SchedStat::read(&task.ok()?.path().join("schedstat")))
        .map(|s| s.oncpu_ns)
        .sum())
}

/// A number from a `Name:   value` line of a /proc status file.
fn status_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}
