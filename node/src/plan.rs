//! A bench_* request turned into a plan, the way BCC's tools fill their `env` before they touch
//! the kernel: every field checked against the protocol and the machine's limits (passed in), no
//! system call. The runner ([`crate::runner`]) runs what this returns.
use crate::fields::{self, Body};
use bench::load::{LoadConfig, MAX_HEADERS, MAX_KEYSPACE, RequestFields};
use bench::server::{Model, ServerSpec};
use profiler::ProfileOptions;
use profiler::benchmark::{Benchmark, Target};
use std::net::SocketAddr;
use std::time::Duration;

/// Caps on request fields (DESIGN.md: "payloads above a stated cap" are errors).
pub const MAX_REQUESTS: u64 = 10_000_000;
pub const MAX_PAYLOAD: u64 = 1 << 20;
pub const MAX_DURATION_MS: u64 = 600_000;
pub const MAX_RATE: f64 = 10_000_000.0;
pub const MAX_SWEEP_LEVELS: usize = 32;
/// The longest a job may hold the benchmark queue: the sum of its runs' hard time limits (each
/// run's duration, or 60 s for a count, plus its request timeout and 5 s to connect and drain).
pub const MAX_JOB_TIME: Duration = Duration::from_secs(900);

/// What the machine allows, read once by the runner.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections one run may open.
    pub max_concurrency: u64,
    /// Connections one source address holds (an IPv6 target has only one address to connect
    /// from; IPv4 loopback has more).
    pub per_source_address: u64,
    /// CPUs `server_cpus` and `client_cpus` may name.
    pub cpus: usize,
}

pub enum Job {
    Run(Benchmark),
    Sweep(Benchmark, Vec<usize>),
    Profile(Benchmark),
}

impl Job {
    pub fn parse(kind: &str, body: &Body, limits: &Limits) -> Result<Job, String> {
        let default_requests = if kind == "bench_profile" { 100 } else { 1000 };
        let benchmark = benchmark(body, default_requests, limits)?;
        let most = most_connections(&benchmark.target, limits);
        let mut job = match kind {
            "bench_sweep" => {
                let levels = fields::integer_list(body, "concurrency_levels", 1..=most, MAX_SWEEP_LEVELS)?.map_or_else(
                    || vec![1, 5, 10, 50, 100],
                    |l| l.into_iter().map(|c| c as usize).collect(),
                );
                Job::Sweep(benchmark, levels)
            }
            "bench_profile" => {
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
                if let Some(unwind) = fields::string_opt(body, "unwind")? {
                    benchmark.profiling.unwind = unwind.parse().map_err(|e| format!("unwind: {e}"))?;
                }
                benchmark.profiling.children = fields::boolean(body, "children", false)?;
                Job::Profile(benchmark)
            }
            _ => Job::Run(benchmark),
        };
        // A count-bounded run stops at its share of the job's time (what it had not answered
        // then counts as timeouts); a duration is the caller's own bound, checked as given.
        let runs = job.runs();
        let load = &mut job.benchmark_mut().load;
        if load.duration.is_none() {
            load.max_time = Some(load.effective_max_time().min(MAX_JOB_TIME / runs));
        }
        let bound = job.time_bound();
        if bound > MAX_JOB_TIME {
            // A WAIT long enough gets the request timeout past the bound by itself.
            let timeout = job.benchmark().load.effective_request_timeout();
            let field = if timeout * runs >= MAX_JOB_TIME {
                "command"
            } else {
                "duration_ms"
            };
            return Err(format!(
                "{field}: {runs} run(s) of up to {} s each (the duration, the request timeout and 5 s) could hold \
                 the benchmark queue {} s, over the {} s a job may",
                (bound / runs).as_secs(),
                bound.as_secs(),
                MAX_JOB_TIME.as_secs()
            ));
        }
        Ok(job)
    }

    fn runs(&self) -> u32 {
        match self {
            Job::Sweep(_, levels) => levels.len() as u32,
            _ => 1,
        }
    }

    fn benchmark(&self) -> &Benchmark {
        match self {
            Job::Run(b) | Job::Profile(b) | Job::Sweep(b, _) => b,
        }
    }

    fn benchmark_mut(&mut self) -> &mut Benchmark {
        match self {
            Job::Run(b) | Job::Profile(b) | Job::Sweep(b, _) => b,
        }
    }

    /// The longest this job can take: every run stops by its hard time limit.
    pub fn time_bound(&self) -> Duration {
        self.benchmark().load.effective_max_time() * self.runs()
    }
}

/// The benchmark a bench_* request describes, every field checked.
fn benchmark(body: &Body, default_requests: u64, limits: &Limits) -> Result<Benchmark, String> {
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
        Some(_) if target.is_some() => return Err("server: names our bench-server's model, not a target's".into()),
        Some(name) => name.parse().map_err(|e| format!("server: {e}"))?,
    };
    let backlog = fields::integer_opt(body, "backlog", 1..=u64::from(bench::server::MAX_BACKLOG))?.map(|b| b as u32);
    if target.is_some() && backlog.is_some() {
        return Err("backlog: sets our bench-server's listen backlog, not a target's".into());
    }
    let cpus = |name: &str| -> Result<Option<Vec<usize>>, String> {
        let list = fields::integer_list(body, name, 0..=limits.cpus as u64 - 1, 1024)?;
        Ok(list.map(|l| l.into_iter().map(|c| c as usize).collect()))
    };
    let target = match target {
        Some(addr) => Target::Addr(addr),
        None => Target::Server(ServerSpec {
            model,
            cpus: cpus("server_cpus")?,
            backlog,
        }),
    };
    let mut benchmark = Benchmark::new(target, command);
    let connection = match fields::string_opt(body, "connection")? {
        None => benchmark.load.connection,
        Some(text) => text.parse().map_err(|e| format!("connection: {e}"))?,
    };
    let most = most_connections(&benchmark.target, limits);
    benchmark.load = LoadConfig {
        concurrency: fields::integer(body, "concurrency", Benchmark::DEFAULT_CONCURRENCY as u64, 1..=most)? as usize,
        requests,
        duration: duration_ms.map(Duration::from_millis),
        connection,
        rate: fields::number_opt(body, "rate", bench::load::MIN_RATE..=MAX_RATE)?,
        client_cpus: cpus("client_cpus")?,
        ..benchmark.load
    };
    Ok(benchmark)
}

/// The most connections a run may open to `target`: past one address's share of ports, only
/// as many as its source addresses hold (see `bench::load::source_addresses_for`).
fn most_connections(target: &Target, limits: &Limits) -> u64 {
    match target {
        Target::Addr(addr) | Target::Exec { addr, .. } => {
            let addresses = bench::load::source_addresses_for(addr.ip()) as u64;
            (limits.per_source_address * addresses).min(limits.max_concurrency)
        }
        Target::Server(_) => limits.max_concurrency,
    }
}

/// The request's fields as given; which go together is the load generator's to check.
fn request_fields(body: &Body) -> Result<RequestFields, String> {
    let text = |name: &str| Ok::<_, String>(fields::string_opt(body, name)?.map(str::to_string));
    Ok(RequestFields {
        protocol: fields::string_opt(body, "protocol")?
            .map(|p| p.parse().map_err(|e| format!("protocol: {e}")))
            .transpose()?,
        command: text("command")?,
        payload_size: fields::integer_opt(body, "payload_size_bytes", 1..=MAX_PAYLOAD)?.map(|n| n as usize),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bench::load::{Command, LineCommand};
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_concurrency: 1000,
        per_source_address: 100,
        cpus: 2,
    };

    fn parse(kind: &str, body: serde_json::Value) -> Result<Job, String> {
        Job::parse(kind, body.as_object().unwrap(), &LIMITS)
    }

    fn wrong(kind: &str, body: serde_json::Value) -> String {
        parse(kind, body.clone())
            .err()
            .unwrap_or_else(|| panic!("{body} was accepted"))
    }

    #[test]
    fn defaults_make_a_bounded_run_of_our_server() {
        let Ok(Job::Run(b)) = parse("bench_run", json!({})) else {
            panic!()
        };
        assert!(matches!(&b.target, Target::Server(spec) if spec.model == Model::Epoll && spec.cpus.is_none()));
        assert_eq!(b.load.command, Command::Line(LineCommand::Echo { payload_size: 64 }));
        assert_eq!((b.load.requests, b.load.concurrency), (Some(1000), 10));
        assert_eq!(b.load.client_cpus, None, "placed when it runs");
        let Ok(Job::Profile(b)) = parse("bench_profile", json!({})) else {
            panic!()
        };
        assert_eq!(b.load.requests, Some(100));
    }

    #[test]
    fn fields_are_checked_against_the_limits_passed_in() {
        assert!(wrong("bench_run", json!({"concurrency": 1001})).starts_with("concurrency:"));
        // An IPv6 target has one source address.
        let v6 = json!({"target": "[::1]:80", "request": "x", "response": "y", "concurrency": 101});
        assert!(wrong("bench_run", v6).starts_with("concurrency:"));
        let v4 = json!({"target": "127.0.0.1:80", "request": "x", "response": "y", "concurrency": 101});
        assert!(parse("bench_run", v4).is_ok());
        let server = json!({"target": "127.0.0.1:80", "request": "x", "response": "y", "server": "threads"});
        assert!(wrong("bench_run", server).starts_with("server:"));
        assert!(wrong("bench_run", json!({"server_cpus": [2]})).starts_with("server_cpus[0]:"));
        let Ok(Job::Run(b)) = parse("bench_run", json!({"client_cpus": [1], "concurrency": 1000})) else {
            panic!()
        };
        assert_eq!(b.load.client_cpus, Some(vec![1]));
    }

    #[test]
    fn every_amount_of_work_is_capped() {
        let stream = wrong("bench_run", json!({"command": "STREAM 99999999999999"}));
        assert!(
            stream.starts_with("command:") && stream.contains("1073741824"),
            "{stream}"
        );
        assert!(wrong("bench_run", json!({"command": "BURN 100000001"})).starts_with("command:"));
        assert!(wrong("bench_run", json!({"num_requests": 10_000_001})).starts_with("num_requests:"));
        assert!(wrong("bench_run", json!({"payload_size_bytes": 2_000_000})).starts_with("payload_size_bytes:"));
        let levels: Vec<u64> = (1..=33).collect();
        assert!(wrong("bench_sweep", json!({"concurrency_levels": levels})).starts_with("concurrency_levels:"));
        // Durations are the caller's bound: two of 10 minutes are over what a job may take.
        let long = wrong(
            "bench_sweep",
            json!({"duration_ms": 600_000, "concurrency_levels": [1, 2]}),
        );
        assert!(long.starts_with("duration_ms:") && long.contains("900 s"), "{long}");
        let wait = wrong("bench_run", json!({"duration_ms": 1000, "command": "WAIT 1000000"}));
        assert!(wait.starts_with("command:"), "{wait}");
        // A count-bounded job stops within its share of the job's time, however slow each
        // request: an hour's WAIT, or 32 levels.
        for (kind, body) in [
            ("bench_run", json!({"command": "WAIT 3600000", "num_requests": 1})),
            (
                "bench_sweep",
                json!({"concurrency_levels": (1..=32).collect::<Vec<u64>>()}),
            ),
        ] {
            let job = parse(kind, body).unwrap();
            assert!(job.time_bound() <= MAX_JOB_TIME, "{:?}", job.time_bound());
        }
    }

    #[test]
    fn protocol_fields_name_the_one_at_fault() {
        let target = |extra: serde_json::Value| {
            let mut body = json!({"target": "127.0.0.1:8080", "protocol": "http"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        assert!(wrong("bench_run", target(json!({"keyspace": 5}))).starts_with("keyspace:"));
        assert!(wrong("bench_run", target(json!({"headers": ["x"]}))).starts_with("headers:"));
        assert!(wrong("bench_run", target(json!({"backlog": 5}))).starts_with("backlog:"));
        // A target is profiled as the processes that listen there (and their children).
        let Ok(Job::Profile(b)) = parse("bench_profile", target(json!({"children": true, "unwind": "dwarf"}))) else {
            panic!()
        };
        assert!(matches!(b.target, Target::Addr(_)));
        assert!(b.profiling.children && b.profiling.unwind == profiler::Unwind::Dwarf);
        assert!(wrong("bench_profile", json!({"unwind": "lbr"})).starts_with("unwind:"));
        assert!(wrong("bench_run", json!({"target": "10.0.0.1:80"})).starts_with("target:"));
        let Ok(Job::Run(b)) = parse("bench_run", target(json!({"path": "/x"}))) else {
            panic!()
        };
        assert!(matches!(b.target, Target::Addr(_)));
        assert_eq!(b.load.command.protocol(), bench::load::Protocol::Http);
    }
}
