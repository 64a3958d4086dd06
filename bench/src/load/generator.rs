//! Splits a run over worker threads, starts them together and merges what they measured.

use super::config::{Interval, Intervals};
use super::config::{LoadConfig, slice};
use super::histogram::LatencyHistogram;
use super::report::LoadReport;
use super::stats::ErrorCounts;
use super::worker::{self, IntervalSample, Job, Share};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the load described by `config` against `target` and reports what it measured.
///
/// Errors only when the run cannot happen at all (invalid config, no persistent connection
/// could be opened, a thread could not start); failed requests are counted in the report.
/// Always returns within `config.effective_max_time()` (plus thread start-up).
pub fn run(target: SocketAddr, config: &LoadConfig) -> Result<LoadReport> {
    run_observed(target, config, &|| {})
}

/// [`run`], calling `on_start` once every persistent connection is open, just before the clock
/// starts (an observer starts its measurement window there).
pub fn run_observed(target: SocketAddr, config: &LoadConfig, on_start: &(dyn Fn() + Sync)) -> Result<LoadReport> {
    config.validate()?;
    let request = config.command.request(target, config.connection);
    let response = config.command.response();
    let sources = super::sources::source_addresses(target, config.concurrency)?;
    let mine = config.connections();
    ensure_descriptors(mine.len())?;
    let threads = config.effective_threads();
    let start = Barrier::new(threads);
    let connected = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let job = Job {
        target,
        request: &request,
        response: &response,
        sources: &sources,
        mode: config.connection,
        request_timeout: config.effective_request_timeout(),
        duration: config.duration,
        rate: config.rate,
        concurrency: config.concurrency,
        hard_deadline: Instant::now() + config.effective_max_time(),
        start: &start,
        on_start,
        connected: &connected,
        failed: &failed,
        progress: config.progress.as_deref(),
        stop: config.stop,
    };
    let (interval_tx, interval_rx) = mpsc::channel();
    let shares: Vec<Share> = (0..threads)
        .map(|index| Share {
            index,
            intervals: config.intervals.as_ref().map(|i| (interval_tx.clone(), i.length)),
            conns: {
                let part = slice(mine.len(), threads, index);
                mine.start + part.start..mine.start + part.end
            },
            budget: config
                .own_requests()
                .map(|n| slice(n as usize, threads, index).len() as u64),
            cpu: config.client_cpus.as_ref().map(|cpus| cpus[index % cpus.len()]),
        })
        .collect();
    // The workers hold the only senders: the channel closes when the last one is done.
    drop(interval_tx);
    let results: Vec<Result<Option<worker::Outcome>>> = std::thread::scope(|scope| {
        if let Some(intervals) = &config.intervals {
            scope.spawn(move || collect_intervals(interval_rx, threads, intervals));
        }
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let job = &job;
                std::thread::Builder::new()
                    .name(format!("load-{}", share.index))
                    .spawn_scoped(scope, move || worker::run(job, share))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked"))),
                Err(e) => Err(e).context("starting a load worker thread"),
            })
            .collect()
    });
    let mut outcomes = Vec::with_capacity(threads);
    for result in results {
        if let Some(outcome) = result? {
            outcomes.push(outcome);
        }
    }
    let mut report = LoadReport::merge(outcomes, config.rate, mine.len());
    report.source_addresses = sources.len().max(1);
    report.interrupted = job.stopped();
    Ok(report)
}

/// Descriptors a load generator's process keeps besides one per connection: epoll sets, the
/// binary, logs, /proc readers, the node's pipes.
pub const OWN_DESCRIPTORS: u64 = 64;

/// Raises RLIMIT_NOFILE when `connections` sockets (and the process's own few) need it.
fn ensure_descriptors(connections: usize) -> Result<()> {
    let needed = connections as u64 + OWN_DESCRIPTORS;
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    if needed <= soft {
        return Ok(());
    }
    let raised = crate::raise_nofile_limit()?;
    anyhow::ensure!(
        needed <= raised,
        "{connections} connections need {needed} file descriptors; RLIMIT_NOFILE is {raised} \
         (raise it with `ulimit -n`, or as root)"
    );
    Ok(())
}

/// Merges the workers' interval samples and hands each interval to the sink once every worker
/// has reported it (or stopped before it); what is left goes out, in order, when the workers are
/// done and the channel closes.
fn collect_intervals(samples: mpsc::Receiver<IntervalSample>, workers: usize, intervals: &Intervals) {
    let mut pending: BTreeMap<u64, Interval> = BTreeMap::new();
    // Per worker: the next interval it will report, or None once it has stopped.
    let mut next: Vec<Option<u64>> = vec![Some(0); workers];
    let emit = |i: &Interval| (intervals.sink)(i);
    for sample in samples {
        let interval = pending.entry(sample.index).or_insert_with(|| Interval {
            index: sample.index,
            start: intervals.length * sample.index as u32,
            length: Duration::ZERO,
            requests: 0,
            errors: ErrorCounts::default(),
            latency: LatencyHistogram::new(),
            connections: 0,
        });
        interval.requests += sample.requests;
        interval.connections += sample.connections;
        interval.errors.add(&sample.errors);
        interval.length = interval.length.max(sample.length);
        interval.latency.merge(&sample.latency);
        next[sample.worker] = (!sample.last).then_some(sample.index + 1);
        // Complete: every worker still running has reported past it.
        let done = next.iter().flatten().min().copied().unwrap_or(u64::MAX);
        while let Some(entry) = pending.first_entry() {
            if *entry.key() >= done {
                break;
            }
            emit(&entry.remove());
        }
    }
    for interval in pending.into_values() {
        emit(&interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        for (total, parts) in [(10, 3), (1, 2), (0, 4), (10_000, 2), (7, 7)] {
            let pieces: Vec<_> = (0..parts).map(|i| slice(total, parts, i)).collect();
            assert_eq!(pieces.first().unwrap().start, 0);
            assert_eq!(pieces.last().unwrap().end, total);
            assert!(pieces.windows(2).all(|w| w[0].end == w[1].start));
            let sizes: Vec<_> = pieces.iter().map(|p| p.len()).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }
}
