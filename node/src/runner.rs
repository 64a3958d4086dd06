//! The benchmark thread: jobs from the read loop queue here (a stated number at most, so that a
//! flood of requests cannot pile up work and memory), run one at a time, each against a fresh
//! bench-server child process stopped when the job ends however it ends, and are answered from
//! here.
use crate::message::{Outbox, Request, code};
use anyhow::Context;
use profiler::benchmark::ProfileError;
use profiler::plan::{Plan, Work};
use profiler::report::{FindMaxResult, Ran, RunResult, SweepResult};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// Jobs queued or running at once; past this a bench_* request gets error 11.
pub const MAX_JOBS: usize = 16;

/// The benchmark thread and its queue.
pub struct Runner {
    queue: mpsc::Sender<(Request, Plan)>,
    /// Jobs submitted and not yet answered.
    pending: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

/// The queue is full: the request, not taken.
pub struct Full(pub Request);

impl Runner {
    pub fn start(outbox: Arc<Outbox>) -> Runner {
        let (queue, jobs) = mpsc::channel::<(Request, Plan)>();
        let pending = Arc::new(AtomicUsize::new(0));
        let thread = {
            let pending = pending.clone();
            std::thread::spawn(move || {
                for (request, job) in jobs {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job)));
                    // Before the reply: a client that sends its next job on reading it finds room.
                    pending.fetch_sub(1, Ordering::SeqCst);
                    match result {
                        Ok(Ok(body)) => outbox.reply(&request, body),
                        Ok(Err(ProfileError::Unavailable(text))) => {
                            outbox.error(&request, code::TEMPORARILY_UNAVAILABLE, &text)
                        }
                        Ok(Err(ProfileError::Failed(e))) => outbox.error(&request, code::CRASH, &format!("{e:#}")),
                        Err(_) => outbox.error(&request, code::CRASH, "the benchmark panicked; see stderr"),
                    }
                }
            })
        };
        Runner { queue, pending, thread }
    }

    /// Queues `job`, unless [`MAX_JOBS`] are queued or running already.
    pub fn submit(&self, request: Request, job: Plan) -> Result<(), Full> {
        // Only the read loop submits: the check and the increment cannot race with another.
        if self.pending.load(Ordering::SeqCst) >= MAX_JOBS {
            return Err(Full(request));
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.queue
            .send((request, job))
            .expect("the benchmark thread outlives the read loop");
        Ok(())
    }

    /// Waits for every queued job to be answered.
    pub fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

/// Runs `plan` and makes its reply's body: the result `tcpprof bench --json` prints, and its type.
fn run(plan: Plan) -> Result<Value, ProfileError> {
    let Plan { benchmark, work } = plan;
    let ran = Ran::of(&benchmark);
    let (kind, mut body) = match work {
        Work::Sweep(levels) => {
            let sweep = benchmark.sweep(&levels, |_, _| {})?;
            ("bench_sweep_ok", reply(&SweepResult::new(ran, &sweep))?)
        }
        Work::Run => ("bench_run_ok", reply(&RunResult::of(ran, &benchmark.run()?))?),
        Work::Profile => ("bench_profile_ok", reply(&RunResult::of(ran, &benchmark.profile()?))?),
        Work::FindMax(search) => {
            let found = benchmark.find_max(&search, |_| {})?;
            ("bench_find_max_ok", reply(&FindMaxResult { ran, find_max: found })?)
        }
    };
    body["type"] = json!(kind);
    Ok(body)
}

fn reply(result: &impl serde::Serialize) -> anyhow::Result<Value> {
    serde_json::to_value(result).context("serialising the result")
}
