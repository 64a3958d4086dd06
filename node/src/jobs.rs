//! bench_run, bench_sweep and bench_profile: checked on the read loop (so a bad field is
//! answered at once), then run one at a time on the benchmark thread, each against a fresh
//! bench-server child process that is stopped when the job ends, however it ends.
use crate::fields::{self, Body};
use crate::message::{Outbox, Request, code};
use anyhow::Context;
use bench::load::{LoadConfig, MAX_HEADERS, MAX_KEYSPACE, RequestFields};
use bench::server::{Model, ServerSpec};
use profiler::benchmark::{Benchmark, ProfileError, Target, default_cpus};
use profiler::{ProfileOptions, Report};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Caps on request fields (DESIGN.md: "payloads above a stated cap" are errors).
pub const MAX_REQUESTS: u64 = 10_000_000;
pub const MAX_PAYLOAD: u64 = 1 << 20;
pub const MAX_DURATION_MS: u64 = 600_000;
pub const MAX_RATE: f64 = 10_000_000.0;
pub const MAX_SWEEP_LEVELS: usize = 32;
/// Descriptors the node keeps for itself beside one per connection.
const RESERVED_FDS: u64 = 64;

pub enum Job {
    Run(Benchmark),
    Sweep(Benchmark, Vec<usize>),
    Profile(Benchmark),
}

impl Job {
    pub fn parse(kind: &str, body: &Body) -> Result<Job, String> {
        let default_requests = if kind == "bench_profile" { 100 } else { 1000 };
        let benchmark = benchmark(body, default_requests)?;
        Ok(match kind {
            "bench_sweep" => {
                let levels = fields::integer_list(body, "concurrency_levels", 1..=max_concurrency(), MAX_SWEEP_LEVELS)?
                    .map_or_else(
                        || vec![1, 5, 10, 50, 100],
                        |l| l.into_iter().map(|c| c as usize).collect(),
                    );
                Job::Sweep(benchmark, levels)
            }
            "bench_profile" => {
                if matches!(benchmark.target, Target::Addr(_)) {
                    return Err("target: bench_profile profiles its own bench-server, not a target".into());
                }
                let mut benchmark = benchmark;
                if let Some(mode) = fields::string_opt(body, "mode")? {
                    benchmark.profiling.mode = mode.parse().map_err(|e| format!("mode: {e}"))?;
                }
                benchmark.profiling.frequency_hz = fields::integer(
                    body,
                    "frequency_hz",
                    u64::from(benchmark.profiling.frequency_hz),
                    1..=u64::from(ProfileOptions::MAX_FREQUENCY_HZ),
                )? as u32;
                benchmark.profiling.stacks = fields::boolean(body, "stacks", false)?;
                Job::Profile(benchmark)
            }
            _ => Job::Run(benchmark),
        })
    }
}

/// The benchmark a bench_* request describes, every field checked.
fn benchmark(body: &Body, default_requests: u64) -> Result<Benchmark, String> {
    let duration_ms = fields::integer_opt(body, "duration_ms", 1..=MAX_DURATION_MS)?;
    let requests = fields::integer_opt(body, "num_requests", 1..=MAX_REQUESTS)?;
    // A duration alone bounds the run by time; otherwise the count (or its default) does.
    let requests = if duration_ms.is_some() {
        requests
    } else {
        Some(requests.unwrap_or(default_requests))
    };
    let target = match fields::string_opt(body, "target")? {
        None => None,
        Some(text) => {
            let addr: SocketAddr = text
                .parse()
                .map_err(|_| format!("target: expected ip:port, got {text:?}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "target: {addr} is not a loopback address; only 127.0.0.0/8 and ::1 may be loaded"
                ));
            }
            Some(addr)
        }
    };
    let command = request_fields(body)?
        .command(target.is_some())
        .map_err(|e| e.to_string())?;
    let model = match fields::string_opt(body, "server")? {
        None => Model::Epoll,
        Some(name) => name.parse().map_err(|e| format!("server: {e}"))?,
    };
    let backlog = fields::integer_opt(body, "backlog", 1..=u64::from(bench::server::MAX_BACKLOG))?.map(|b| b as u32);
    if target.is_some() && backlog.is_some() {
        return Err("backlog: sets our bench-server's listen backlog, not a target's".into());
    }
    let cpus = |name: &str| -> Result<Option<Vec<usize>>, String> {
        let list = fields::integer_list(body, name, 0..=cpu_count() as u64 - 1, 1024)?;
        Ok(list.map(|l| l.into_iter().map(|c| c as usize).collect()))
    };
    let (server_cpus, client_cpus) = default_cpus(cpus("server_cpus")?, cpus("client_cpus")?);
    let target = match target {
        Some(addr) => Target::Addr(addr),
        None => Target::Server(ServerSpec {
            model,
            cpus: server_cpus,
            backlog,
        }),
    };
    let mut benchmark = Benchmark::new(target, command);
    let connection = match fields::string_opt(body, "connection")? {
        None => benchmark.load.connection,
        Some(text) => text.parse().map_err(|e| format!("connection: {e}"))?,
    };
    benchmark.load = LoadConfig {
        concurrency: fields::integer(
            body,
            "concurrency",
            Benchmark::DEFAULT_CONCURRENCY as u64,
            1..=max_concurrency(),
        )? as usize,
        requests,
        duration: duration_ms.map(Duration::from_millis),
        connection,
        rate: fields::number_opt(body, "rate", bench::load::MIN_RATE..=MAX_RATE)?,
        client_cpus,
        ..benchmark.load
    };
    Ok(benchmark)
}

/// The request's fields as given; which go together is the load generator's to check.
fn request_fields(body: &Body) -> Result<RequestFields, String> {
    let text = |name: &str| Ok::<_, String>(fields::string_opt(body, name)?.map(str::to_string));
    Ok(RequestFields {
        protocol: fields::string_opt(body, "protocol")?
            .map(|p| p.parse().map_err(|e| format!("protocol: {e}")))
            .transpose()?,
        command: text("command")?,
        payload_size: fields::integer(body, "payload_size_bytes", 64, 1..=MAX_PAYLOAD)? as usize,
        request: text("request")?,
        response: text("response")?,
        method: text("method")?,
        path: text("path")?,
        headers: fields::string_list(body, "headers", MAX_HEADERS)?.unwrap_or_default(),
        body: text("body")?,
        expect_status: fields::integer_opt(body, "expect_status", 100..=599)?.map(|s| s as u16),
        expect_body: text("expect_body")?,
        keyspace: fields::integer_opt(body, "keyspace", 1..=MAX_KEYSPACE)?,
    })
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most connections one run may open: what RLIMIT_NOFILE allows (raised at start) less the
/// node's own descriptors, and no more than the load generator's source addresses hold.
pub fn max_concurrency() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| {
        let nofile = bench::raise_nofile_limit().unwrap_or(1024);
        let ports = bench::load::most_connections() as u64;
        nofile.saturating_sub(RESERVED_FDS).min(ports).max(1)
    })
}

/// The benchmark thread and its queue.
pub struct Runner {
    queue: mpsc::Sender<(Request, Job)>,
    thread: JoinHandle<()>,
}

impl Runner {
    pub fn start(outbox: Arc<Outbox>) -> Runner {
        let (queue, jobs) = mpsc::channel::<(Request, Job)>();
        let thread = std::thread::spawn(move || {
            for (request, job) in jobs {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
                match result {
                    Ok(Ok(body)) => outbox.reply(&request, body),
                    Ok(Err(ProfileError::Unavailable(text))) => {
                        outbox.error(&request, code::TEMPORARILY_UNAVAILABLE, &text)
                    }
                    Ok(Err(ProfileError::Failed(e))) => outbox.error(&request, code::CRASH, &format!("{e:#}")),
                    Err(_) => outbox.error(&request, code::CRASH, "the benchmark panicked; see stderr"),
                }
            }
        });
        Runner { queue, thread }
    }

    pub fn submit(&self, request: Request, job: Job) {
        self.queue
            .send((request, job))
            .expect("the benchmark thread outlives the read loop");
    }

    /// Waits for every queued job to be answered.
    pub fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

impl Job {
    fn run(self) -> Result<Value, ProfileError> {
        let (kind, benchmark, report) = match self {
            Job::Run(benchmark) => {
                let report = benchmark.run()?;
                ("bench_run_ok", benchmark, report)
            }
            Job::Profile(benchmark) => {
                let report = benchmark.profile()?;
                ("bench_profile_ok", benchmark, report)
            }
            Job::Sweep(benchmark, levels) => {
                let sweep = benchmark.sweep(&levels, |_, _| {})?;
                let rows: Vec<Value> = sweep.levels.iter().map(sweep_row).collect();
                return Ok(json!({
                    "type": "bench_sweep_ok",
                    "saturation": sweep.saturation,
                    "saturation_reason": sweep.saturation_reason,
                    "results": rows,
                    "server": server_name(&benchmark),
                }));
            }
        };
        let mut body = serde_json::to_value(&report).context("serialising the report")?;
        body["type"] = json!(kind);
        body["server"] = json!(server_name(&benchmark));
        body["command"] = json!(benchmark.load.command.to_string());
        body["protocol"] = json!(benchmark.load.command.protocol());
        body["connection"] = json!(benchmark.load.connection.to_string());
        Ok(body)
    }
}

fn server_name(b: &Benchmark) -> String {
    match &b.target {
        Target::Server(spec) => spec.model.name().to_string(),
        Target::Addr(addr) => addr.to_string(),
    }
}

fn sweep_row(level: &Report) -> Value {
    let mut row = match &level.load {
        Some(r) => json!({
            "concurrency": r.concurrency,
            "throughput_rps": r.throughput_rps,
            "latency_p50_us": r.latency_p50_us,
            "latency_p95_us": r.latency_p95_us,
            "latency_p99_us": r.latency_p99_us,
            "latency_max_us": r.latency_max_us,
            "requests": r.requests,
            "errors": r.errors,
            "error_counts": r.error_counts,
            "first_error": r.first_error,
        }),
        None => json!({}),
    };
    row["signals"] = json!(level.signals);
    row["limit"] = json!(level.limit);
    row
}
