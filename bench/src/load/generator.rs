//! Splits a run over worker threads, starts them together and merges what they measured.

use super::config::LoadConfig;
use super::report::LoadReport;
use super::worker::{self, Job, Share};
use anyhow::{Context, Result};
use std::ops::Range;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

/// Runs the load described by `config` and reports what it measured.
///
/// Errors only when the run cannot happen at all (invalid config, no persistent connection
/// could be opened, a thread could not start); failed requests are counted in the report.
/// Always returns within `config.effective_max_time()` (plus thread start-up).
pub fn run(config: &LoadConfig) -> Result<LoadReport> {
    run_observed(config, &|| {})
}

/// [`run`], calling `on_start` once every persistent connection is open, just before the clock
/// starts (an observer starts its measurement window there).
pub fn run_observed(config: &LoadConfig, on_start: &(dyn Fn() + Sync)) -> Result<LoadReport> {
    config.validate()?;
    let request = config.command.request_bytes();
    let expected = config.command.expected();
    let threads = config.effective_threads();
    let start = Barrier::new(threads);
    let connected = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let job = Job {
        target: config.target,
        request: &request,
        expected: &expected,
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
    };
    let shares = (0..threads).map(|index| Share {
        index,
        conns: slice(config.concurrency, threads, index),
        budget: config.requests.map(|n| slice(n as usize, threads, index).len() as u64),
        cpu: config.client_cpus.as_ref().map(|cpus| cpus[index % cpus.len()]),
    });
    let results: Vec<Result<Option<worker::Outcome>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
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
    Ok(LoadReport::merge(outcomes, config.rate, config.concurrency))
}

/// Part `index` of `0..total` cut into `parts` contiguous pieces whose sizes differ by at most one.
fn slice(total: usize, parts: usize, index: usize) -> Range<usize> {
    let bound = |k: usize| (total as u128 * k as u128 / parts as u128) as usize;
    bound(index)..bound(index + 1)
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
