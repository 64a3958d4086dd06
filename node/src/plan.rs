//! A bench_* request turned into a plan: its JSON fields read by type here, then checked by the
//! library's one rulebook ([`profiler::plan`]) with the node's [`Policy::NODE`], no system call.
//! The runner ([`crate::runner`]) runs what this returns.
use crate::fields::{self, Body};
use bench::load::RequestFields;
/// The machine's limits a plan is checked against (the library's).
pub use profiler::plan::Limits;
use profiler::plan::{Fields, Kind, Plan, Policy, ProfileFields};

/// The most entries a list field may hold (CPUs, concurrency levels, headers): the library
/// checks each list's own bound; this one only keeps a request's parse small.
const MAX_LIST: usize = 1024;

/// The plan of a `bench_run`, `bench_sweep`, `bench_profile` or `bench_find_max` request, or what is wrong with it.
pub fn parse(kind: &str, body: &Body, limits: &Limits) -> Result<Plan, String> {
    let kind = match kind {
        "bench_sweep" => Kind::Sweep,
        "bench_profile" => Kind::Profile,
        "bench_find_max" => Kind::FindMax,
        _ => Kind::Run,
    };
    fields(body)?
        .plan(kind, limits, &Policy::NODE)
        .map_err(|e| e.to_string())
}

/// The body's fields, each of the type it must have.
fn fields(body: &Body) -> Result<Fields, String> {
    let text = |name: &str| Ok::<_, String>(fields::string_opt(body, name)?.map(str::to_string));
    let list = |name: &str| fields::unsigned_list(body, name, MAX_LIST);
    let target = match fields::string_opt(body, "target")? {
        None => None,
        Some(text) => Some(profiler::plan::resolve_target(text).map_err(|e| e.to_string())?),
    };
    Ok(Fields {
        target,
        exec: None,
        server: parsed(body, "server")?,
        backlog: fields::unsigned_opt(body, "backlog")?,
        server_cpus: list("server_cpus")?,
        client_cpus: list("client_cpus")?,
        request: RequestFields {
            protocol: parsed(body, "protocol")?,
            command: text("command")?,
            payload_size: fields::unsigned_opt(body, "payload_size_bytes")?.map(|n| n as usize),
            request: text("request")?,
            response: text("response")?,
            method: text("method")?,
            path: text("path")?,
            headers: fields::string_list(body, "headers", MAX_LIST)?.unwrap_or_default(),
            body: text("body")?,
            expect_status: fields::unsigned_opt(body, "expect_status")?
                .map(|s| u16::try_from(s).map_err(|_| format!("expect_status: {s} is not 100..599")))
                .transpose()?,
            expect_body: text("expect_body")?,
            keyspace: fields::unsigned_opt(body, "keyspace")?,
        },
        concurrency: fields::unsigned_opt(body, "concurrency")?,
        num_requests: fields::unsigned_opt(body, "num_requests")?,
        duration: fields::unsigned_opt(body, "duration_ms")?.map(|ms| ms as f64 / 1000.0),
        connection: parsed(body, "connection")?,
        rate: fields::number_opt(body, "rate")?,
        shard: None,
        concurrency_levels: list("concurrency_levels")?,
        slo: text("slo")?,
        max_time: fields::unsigned_opt(body, "max_time_ms")?.map(|ms| ms as f64 / 1000.0),
        profile: ProfileFields {
            mode: parsed(body, "mode")?,
            frequency_hz: fields::unsigned_opt(body, "frequency_hz")?,
            stacks: fields::boolean(body, "stacks", false)?,
            bpf_stats: false,
            unwind: parsed(body, "unwind")?,
            children: fields::boolean(body, "children", false)?,
        },
    })
}

/// A string field parsed into `T`, its error named by the field.
fn parsed<T: std::str::FromStr>(body: &Body, name: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    fields::string_opt(body, name)?
        .map(|text| text.parse().map_err(|e| format!("{name}: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench::load::{Command, LineCommand};
    use bench::server::Model;
    use profiler::benchmark::Target;
    use profiler::plan::Work;
    use serde_json::json;
    use std::time::Duration;

    /// The node's budget for one job.
    const MAX_JOB_TIME: Duration = Duration::from_secs(900);

    const LIMITS: Limits = Limits {
        max_concurrency: 1000,
        per_source_address: 100,
        cpus: 2,
    };

    fn plan(kind: &str, body: serde_json::Value) -> Result<Plan, String> {
        parse(kind, body.as_object().unwrap(), &LIMITS)
    }

    fn wrong(kind: &str, body: serde_json::Value) -> String {
        plan(kind, body.clone())
            .err()
            .unwrap_or_else(|| panic!("{body} was accepted"))
    }

    #[test]
    fn defaults_make_a_bounded_run_of_our_server() {
        let Ok(Plan {
            benchmark: b,
            work: Work::Run,
        }) = plan("bench_run", json!({}))
        else {
            panic!()
        };
        assert!(matches!(&b.target, Target::Server(spec) if spec.model == Model::Epoll && spec.cpus.is_none()));
        assert_eq!(b.load.command, Command::Line(LineCommand::Echo { payload_size: 64 }));
        assert_eq!((b.load.requests, b.load.concurrency), (Some(1000), 10));
        assert_eq!(b.load.client_cpus, None, "placed when it runs");
        let Ok(Plan {
            benchmark: b,
            work: Work::Profile,
        }) = plan("bench_profile", json!({}))
        else {
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
        assert!(plan("bench_run", v4).is_ok());
        let server = json!({"target": "127.0.0.1:80", "request": "x", "response": "y", "server": "threads"});
        assert!(wrong("bench_run", server).starts_with("server:"));
        assert!(
            wrong("bench_run", json!({"server_cpus": [2]})).starts_with("server_cpus: entry 0 must be from 0 to 1")
        );
        let Ok(Plan {
            benchmark: b,
            work: Work::Run,
        }) = plan("bench_run", json!({"client_cpus": [1], "concurrency": 1000}))
        else {
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
            let job = plan(kind, body).unwrap();
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
        let Ok(Plan {
            benchmark: b,
            work: Work::Profile,
        }) = plan("bench_profile", target(json!({"children": true, "unwind": "dwarf"})))
        else {
            panic!()
        };
        assert!(matches!(b.target, Target::Addr(_)));
        assert!(b.profiling.children && b.profiling.unwind == profiler::Unwind::Dwarf);
        assert!(wrong("bench_profile", json!({"unwind": "lbr"})).starts_with("unwind:"));
        // Any host; a target that is not HOST:PORT is refused naming the field.
        assert!(
            plan(
                "bench_run",
                json!({"target": "10.0.0.1:80", "request": "x", "response": "y"})
            )
            .is_ok()
        );
        assert!(wrong("bench_run", json!({"target": "10.0.0.1"})).starts_with("target:"));
        let Ok(Plan {
            benchmark: b,
            work: Work::Run,
        }) = plan("bench_run", target(json!({"path": "/x"})))
        else {
            panic!()
        };
        assert!(matches!(b.target, Target::Addr(_)));
        assert_eq!(b.load.command.protocol(), bench::load::Protocol::Http);
    }
}
