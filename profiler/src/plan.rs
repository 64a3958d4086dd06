//! The one rulebook of a benchmark: the fields a front end was given (the node's JSON body,
//! `tcpprof bench`'s flags) checked here, once, into a [`Plan`]: defaults, caps and bounds, each
//! error naming the field at fault by the node's name (the CLI turns it into its flag). The front
//! ends only translate names; where they must differ, [`Policy`] says how and why.
use crate::benchmark::{Benchmark, Target};
use crate::find_max::{self, Search, Slo};
use crate::session::ProfileOptions;
use crate::{Requested, Unwind};
use bench::load::{ConnectionMode, FieldError, LoadConfig, RequestFields, Shard};
use bench::protocol::MAX_ECHO_PAYLOAD;
use bench::server::{MAX_BACKLOG, Model, ServerSpec};
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The most requests one run may be asked for.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// The longest run, and the longest `profile` window: a day's soak.
pub const MAX_SECONDS: f64 = 86_400.0;
/// The highest open-loop rate, requests/s in total.
pub const MAX_RATE: f64 = 10_000_000.0;
/// The most concurrency levels one sweep runs.
pub const MAX_SWEEP_LEVELS: usize = 32;
/// The levels a sweep runs when none are given.
pub const DEFAULT_SWEEP: [usize; 5] = [1, 5, 10, 50, 100];
/// Interval lines (`--interval`), seconds: each reads the kernel's per-CPU maps when profiled,
/// and the window's loop wakes every 50 ms, so a tenth of a second is the finest that means
/// what it says.
pub const INTERVAL_SECONDS: RangeInclusive<f64> = 0.1..=3600.0;

/// What a front end was given, by the node's field names; `None` (or `false`) is "not given".
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// A server already listening (or the one `exec` starts).
    pub target: Option<SocketAddr>,
    /// A command that starts the target's server (the CLI's `--exec`).
    pub exec: Option<Vec<String>>,
    /// Our bench-server's model.
    pub server: Option<Model>,
    pub backlog: Option<u64>,
    pub server_cpus: Option<Vec<u64>>,
    pub client_cpus: Option<Vec<u64>>,
    pub request: RequestFields,
    pub concurrency: Option<u64>,
    pub num_requests: Option<u64>,
    /// Seconds (the node's `duration_ms` / 1000).
    pub duration: Option<f64>,
    pub connection: Option<ConnectionMode>,
    pub rate: Option<f64>,
    pub shard: Option<Shard>,
    pub concurrency_levels: Option<Vec<u64>>,
    /// find_max: the objectives (`p99<5ms,errors<0.1%`) and the search's time bound, seconds.
    pub slo: Option<String>,
    pub max_time: Option<f64>,
    pub profile: ProfileFields,
}

/// How the server is profiled: meaningful in a profiled run only.
#[derive(Clone, Debug, Default)]
pub struct ProfileFields {
    pub mode: Option<Requested>,
    pub frequency_hz: Option<u64>,
    pub stacks: bool,
    pub bpf_stats: bool,
    pub unwind: Option<Unwind>,
    pub children: bool,
}

impl ProfileFields {
    /// The first field given, if any.
    fn first_given(&self) -> Option<&'static str> {
        [
            ("mode", self.mode.is_some()),
            ("frequency_hz", self.frequency_hz.is_some()),
            ("stacks", self.stacks),
            ("bpf_stats", self.bpf_stats),
            ("unwind", self.unwind.is_some()),
            ("children", self.children),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }

    /// The profiler's options, sampling at `default_hz` unless a frequency is given.
    pub fn options(&self, default_hz: u32) -> Result<ProfileOptions, FieldError> {
        let most = u64::from(ProfileOptions::MAX_FREQUENCY_HZ);
        let frequency_hz = within("frequency_hz", self.frequency_hz.unwrap_or(default_hz.into()), 1..=most)?;
        Ok(ProfileOptions {
            mode: self.mode.unwrap_or(Requested::Auto),
            frequency_hz: frequency_hz as u32,
            stacks: self.stacks,
            bpf_stats: self.bpf_stats,
            unwind: self.unwind.unwrap_or_default(),
            children: self.children,
        })
    }
}

/// What a front end asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Run,
    Sweep,
    Profile,
    FindMax,
}

/// What the plan runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Work {
    Run,
    /// One run per concurrency level, in order.
    Sweep(Vec<usize>),
    /// One run with the server profiled.
    Profile,
    /// The highest open-loop rate that holds an SLO.
    FindMax(Search),
}

/// A checked benchmark and what to do with it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub benchmark: Benchmark,
    pub work: Work,
}

/// What the machine allows, read once ([`Limits::of_this_machine`]) and passed in, so that
/// planning makes no system call.
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

impl Limits {
    /// This machine's: RLIMIT_NOFILE (raised here, so that ten thousand connections are
    /// possible from the first run) less the process's own descriptors, no more than the load
    /// generator's source addresses hold; and the CPUs.
    pub fn of_this_machine() -> Limits {
        let nofile = bench::raise_nofile_limit().unwrap_or(1024);
        let ports = bench::load::most_connections() as u64;
        Limits {
            max_concurrency: nofile.saturating_sub(bench::load::OWN_DESCRIPTORS).min(ports).max(1),
            per_source_address: bench::load::per_source_address() as u64,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// The most connections a run may open to `target`: past one address's share of ports,
    /// only as many as its source addresses hold (see `bench::load::source_addresses_for`).
    pub fn connections_to(&self, target: &Target) -> u64 {
        match target {
            Target::Addr(addr) | Target::Exec { addr, .. } => {
                let addresses = bench::load::source_addresses_for(addr.ip()) as u64;
                (self.per_source_address * addresses).min(self.max_concurrency)
            }
            Target::Server(_) => self.max_concurrency,
        }
    }
}

/// Where the front ends differ, and why: everything else is the same rule for both.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Requests in a run given neither a count nor a duration, unprofiled and profiled.
    pub default_requests: u64,
    pub default_profiled_requests: u64,
    /// The most one plan may take, its runs' hard time limits added up; a count-bounded run
    /// then stops at its share of it.
    pub budget: Option<Duration>,
}

impl Policy {
    /// `tcpprof bench`: 10,000 requests, a run long enough on loopback (a second or more) for
    /// its percentiles and a profile's samples to mean something; the shell's user bounds the
    /// rest (each run still stops at its hard limit, and Ctrl-C ends it with what it measured).
    pub const SHELL: Policy = Policy {
        default_requests: Benchmark::DEFAULT_REQUESTS,
        default_profiled_requests: Benchmark::DEFAULT_REQUESTS,
        budget: None,
    };
    /// The node: the defaults of DESIGN.md's messages (`bench_run` 1,000, `bench_profile`
    /// 100), and 900 s a job: a job holds the node's one benchmark queue and its caller, who
    /// waits for one reply.
    pub const NODE: Policy = Policy {
        default_requests: 1000,
        default_profiled_requests: 100,
        budget: Some(Duration::from_secs(900)),
    };
}

impl Fields {
    /// The plan these fields make for `kind` on a machine with `limits`, or the first field at
    /// fault.
    pub fn plan(&self, kind: Kind, limits: &Limits, policy: &Policy) -> Result<Plan, FieldError> {
        let target = self.target(limits)?;
        if let Some(size) = self.request.payload_size {
            within("payload_size_bytes", size as u64, 1..=MAX_ECHO_PAYLOAD as u64)?;
        }
        let command = self.request.command(!matches!(target, Target::Server(_)))?;
        let mut benchmark = Benchmark::new(target, command);
        let most = limits.connections_to(&benchmark.target);
        let mut duration = self.duration.map(|s| seconds("duration_ms", s)).transpose()?;
        let search = self.search(kind, duration)?;
        if let Some(search) = &search {
            duration = Some(search.step);
        }
        let requests = match (self.num_requests, duration) {
            (Some(n), _) => Some(within("num_requests", n, 1..=MAX_REQUESTS)?),
            // A duration alone bounds the run by time.
            (None, Some(_)) => None,
            (None, None) if kind == Kind::Profile => Some(policy.default_profiled_requests),
            (None, None) => Some(policy.default_requests),
        };
        let rate = match self.rate {
            Some(r) if !(bench::load::MIN_RATE..=MAX_RATE).contains(&r) => {
                let range = format!("{} to {MAX_RATE}", bench::load::MIN_RATE);
                return Err(wrong(
                    "rate",
                    format!("must be a number of requests/s from {range}, got {r}"),
                ));
            }
            rate => rate,
        };
        benchmark.load = LoadConfig {
            concurrency: self.concurrency(most)?,
            requests,
            duration,
            connection: self.connection.unwrap_or(benchmark.load.connection),
            rate,
            client_cpus: cpus("client_cpus", &self.client_cpus, limits)?,
            shard: self.shard,
            ..benchmark.load
        };
        if let Some(shard) = self.shard {
            let load = &benchmark.load;
            let short = shard.count > load.concurrency || load.requests.is_some_and(|n| (shard.count as u64) > n);
            if short {
                return Err(wrong(
                    "shard",
                    format!(
                        "{} shards need at least one connection and one request each",
                        shard.count
                    ),
                ));
            }
        }
        let work = match (kind, search) {
            (Kind::Run, _) => Work::Run,
            (Kind::Profile, _) => Work::Profile,
            (Kind::Sweep, _) => Work::Sweep(self.levels(most)?),
            (Kind::FindMax, Some(search)) => Work::FindMax(search),
            (Kind::FindMax, None) => unreachable!("a find_max plan has its search"),
        };
        if kind == Kind::Profile {
            benchmark.profiling = self.profile.options(Benchmark::PROFILE_FREQUENCY_HZ)?;
        } else if let Some(field) = self.profile.first_given() {
            return Err(wrong(
                field,
                "profiles the server: ask for a profiled run (bench_profile, bench --profile)".into(),
            ));
        }
        let mut plan = Plan { benchmark, work };
        if let Some(budget) = policy.budget {
            plan.fit(budget)?;
        }
        Ok(plan)
    }

    /// find_max's search: the SLO (required), the steps' length and the time bound; the fields
    /// only it takes are refused elsewhere.
    fn search(&self, kind: Kind, duration: Option<Duration>) -> Result<Option<Search>, FieldError> {
        if kind != Kind::FindMax {
            let given = [("slo", self.slo.is_some()), ("max_time", self.max_time.is_some())];
            return match given.into_iter().find(|(_, given)| *given) {
                Some((field, _)) => Err(wrong(field, "belongs to a find_max search".into())),
                None => Ok(None),
            };
        }
        if self.num_requests.is_some() {
            return Err(wrong(
                "num_requests",
                "find_max runs each step for a duration (duration_ms), not a count".into(),
            ));
        }
        let slo = self
            .slo
            .as_deref()
            .ok_or_else(|| wrong("slo", "find_max needs one, e.g. p99<5ms".into()))?;
        let slo = Slo::parse(slo).map_err(|why| wrong("slo", why))?;
        let max_time = match self.max_time {
            Some(s) => seconds("max_time", s)?,
            None => find_max::DEFAULT_MAX_TIME,
        };
        Ok(Some(Search {
            slo,
            step: duration.unwrap_or(find_max::DEFAULT_STEP),
            max_time,
            start_rate: self.rate,
        }))
    }

    /// What the run loads: a running server, one `exec` starts, or our bench-server.
    fn target(&self, limits: &Limits) -> Result<Target, FieldError> {
        let server_cpus = cpus("server_cpus", &self.server_cpus, limits)?;
        let Some(addr) = self.target else {
            if self.exec.is_some() {
                return Err(wrong(
                    "exec",
                    "starts the server at a target address: give the target".into(),
                ));
            }
            let backlog = self
                .backlog
                .map(|b| within("backlog", b, 1..=u64::from(MAX_BACKLOG)))
                .transpose()?;
            return Ok(Target::Server(ServerSpec {
                model: self.server.unwrap_or(Model::Epoll),
                cpus: server_cpus,
                backlog: backlog.map(|b| b as u32),
            }));
        };
        if self.server.is_some() {
            return Err(wrong("server", "names our bench-server's model, not a target's".into()));
        }
        if self.backlog.is_some() {
            return Err(wrong(
                "backlog",
                "sets our bench-server's listen backlog, not a target's".into(),
            ));
        }
        match &self.exec {
            None if self.server_cpus.is_some() => Err(wrong(
                "server_cpus",
                "places a server this run starts, not one already running".into(),
            )),
            None => Ok(Target::Addr(addr)),
            Some(command) if command.is_empty() => Err(wrong("exec", "no command given".into())),
            Some(command) => Ok(Target::Exec {
                command: command.clone(),
                addr,
                cpus: server_cpus,
            }),
        }
    }

    /// The plan's connections, when this load generator may open `most`: with a shard, it opens
    /// only its share (the shares differ by one at most), so the whole plan may hold that many
    /// per shard.
    fn concurrency(&self, most: u64) -> Result<usize, FieldError> {
        let shards = self.shard.map_or(1, |s| s.count as u64);
        let most = most.saturating_mul(shards).min(bench::load::MAX_CONCURRENCY as u64);
        let concurrency = self.concurrency.unwrap_or(Benchmark::DEFAULT_CONCURRENCY as u64);
        Ok(within("concurrency", concurrency, 1..=most)? as usize)
    }

    /// A sweep's concurrency levels, each a run's connections.
    fn levels(&self, most: u64) -> Result<Vec<usize>, FieldError> {
        let Some(levels) = &self.concurrency_levels else {
            return Ok(DEFAULT_SWEEP.to_vec());
        };
        if levels.is_empty() || levels.len() > MAX_SWEEP_LEVELS {
            let why = format!("must hold 1 to {MAX_SWEEP_LEVELS} levels, got {}", levels.len());
            return Err(wrong("concurrency_levels", why));
        }
        levels
            .iter()
            .map(|&c| within("concurrency_levels", c, 1..=most).map(|c| c as usize))
            .collect()
    }
}

impl Plan {
    /// The runs this plan makes.
    pub fn runs(&self) -> u32 {
        match &self.work {
            Work::Sweep(levels) => levels.len() as u32,
            Work::Run | Work::Profile | Work::FindMax(_) => 1,
        }
    }

    /// The longest this plan can take: every run stops by its hard time limit; a search starts
    /// no step past its own.
    pub fn time_bound(&self) -> Duration {
        let each = self.benchmark.load.effective_max_time();
        match &self.work {
            Work::FindMax(search) => search.max_time + each,
            _ => each * self.runs(),
        }
    }

    /// Bounds the plan by `budget`: a count-bounded run stops at its share of it (what it had
    /// not answered then counts as timeouts); a duration is the caller's own bound, checked as
    /// given.
    fn fit(&mut self, budget: Duration) -> Result<(), FieldError> {
        let runs = self.runs();
        let load = &mut self.benchmark.load;
        if load.duration.is_none() {
            load.max_time = Some(load.effective_max_time().min(budget / runs));
        }
        let bound = self.time_bound();
        if bound <= budget {
            return Ok(());
        }
        // A WAIT long enough gets the request timeout past the bound by itself.
        let timeout = self.benchmark.load.effective_request_timeout();
        let field = if timeout * runs >= budget {
            "command"
        } else {
            "duration_ms"
        };
        Err(wrong(
            field,
            format!(
                "{runs} run(s) of up to {} s each (the duration, the request timeout and 5 s) could take {} s, over \
                 the {} s a job may",
                (bound / runs).as_secs(),
                bound.as_secs(),
                budget.as_secs()
            ),
        ))
    }
}

/// A target given as `HOST:PORT` (a name, an IPv4 address, or an IPv6 one in brackets), its
/// name resolved (the first address the resolver gives). The front ends call this before
/// planning: it is the one lookup a plan needs, and a name that does not resolve is refused
/// before any run, named.
pub fn resolve_target(text: &str) -> Result<SocketAddr, FieldError> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return port_given(addr, text);
    }
    let Some((host, port)) = text.rsplit_once(':').filter(|(host, _)| !host.is_empty()) else {
        return Err(wrong("target", format!("{text:?}: give HOST:PORT")));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| wrong("target", format!("{text:?}: the port must be a number from 1 to 65535")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|e| wrong("target", format!("{host:?} does not resolve: {e}")))?
        .next()
        .ok_or_else(|| wrong("target", format!("{host:?} resolves to no address")))?;
    port_given(found, text)
}

fn port_given(addr: SocketAddr, text: &str) -> Result<SocketAddr, FieldError> {
    if addr.port() == 0 {
        return Err(wrong(
            "target",
            format!("{text:?}: the port must be a number from 1 to 65535"),
        ));
    }
    Ok(addr)
}

/// A length of time given in seconds as `field`, within (0, [`MAX_SECONDS`]].
pub fn seconds(field: &'static str, s: f64) -> Result<Duration, FieldError> {
    if s.is_finite() && s > 0.0 && s <= MAX_SECONDS {
        return Ok(Duration::from_secs_f64(s));
    }
    Err(wrong(
        field,
        format!("must be above 0 and at most {MAX_SECONDS} seconds, got {s}"),
    ))
}

/// An interval's length in seconds, within [`INTERVAL_SECONDS`].
pub fn interval(s: f64) -> Result<Duration, FieldError> {
    if INTERVAL_SECONDS.contains(&s) {
        return Ok(Duration::from_secs_f64(s));
    }
    let (min, max) = (INTERVAL_SECONDS.start(), INTERVAL_SECONDS.end());
    Err(wrong(
        "interval",
        format!("must be between {min} and {max} seconds, got {s}"),
    ))
}

fn wrong(field: &'static str, why: String) -> FieldError {
    FieldError { field, why }
}

fn within<T: PartialOrd + Display + Copy>(
    field: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, FieldError> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(wrong(
        field,
        format!("must be from {} to {}, got {value}", range.start(), range.end()),
    ))
}

/// CPUs named by `field`, each one of the machine's.
fn cpus(field: &'static str, list: &Option<Vec<u64>>, limits: &Limits) -> Result<Option<Vec<usize>>, FieldError> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err(wrong(field, "names no CPU".into()));
    }
    let last = limits.cpus.saturating_sub(1) as u64;
    let entry = |(i, &c): (usize, &u64)| {
        within(field, c, 0..=last)
            .map(|c| c as usize)
            .map_err(|e| wrong(field, format!("entry {i} {}", e.why)))
    };
    list.iter().enumerate().map(entry).collect::<Result<_, _>>().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_concurrency: 1000,
        per_source_address: 100,
        cpus: 2,
    };

    fn plan(fields: Fields, kind: Kind, policy: &Policy) -> Result<Plan, FieldError> {
        fields.plan(kind, &LIMITS, policy)
    }

    fn field(fields: Fields) -> &'static str {
        plan(fields, Kind::Run, &Policy::SHELL).unwrap_err().field
    }

    #[test]
    fn the_front_ends_differ_only_where_the_policy_says() {
        for policy in [Policy::SHELL, Policy::NODE] {
            for (kind, default) in [
                (Kind::Run, policy.default_requests),
                (Kind::Profile, policy.default_profiled_requests),
            ] {
                let p = plan(Fields::default(), kind, &policy).unwrap();
                assert_eq!(p.benchmark.load.requests, Some(default));
                assert_eq!(p.benchmark.load.concurrency, Benchmark::DEFAULT_CONCURRENCY);
            }
            // The caps are the same for both.
            let long = Fields {
                duration: Some(MAX_SECONDS + 1.0),
                ..Fields::default()
            };
            assert_eq!(plan(long, Kind::Run, &policy).unwrap_err().field, "duration_ms");
            let fast = Fields {
                rate: Some(MAX_RATE * 2.0),
                ..Fields::default()
            };
            assert_eq!(plan(fast, Kind::Run, &policy).unwrap_err().field, "rate");
        }
        // A day's run is the shell's to ask for; the node's queue takes 900 s a job.
        let day = Fields {
            duration: Some(MAX_SECONDS),
            ..Fields::default()
        };
        assert!(plan(day.clone(), Kind::Run, &Policy::SHELL).is_ok());
        let refused = plan(day, Kind::Run, &Policy::NODE).unwrap_err();
        assert!(refused.why.contains("900 s a job may"), "{refused}");
        // A count-bounded node job stops at its share of the budget.
        let sweep = plan(Fields::default(), Kind::Sweep, &Policy::NODE).unwrap();
        assert_eq!(sweep.work, Work::Sweep(DEFAULT_SWEEP.to_vec()));
        assert!(sweep.time_bound() <= Duration::from_secs(900));
    }

    #[test]
    fn each_field_is_bounded_and_named() {
        let f = Fields::default;
        assert_eq!(
            field(Fields {
                concurrency: Some(0),
                ..f()
            }),
            "concurrency"
        );
        assert_eq!(
            field(Fields {
                concurrency: Some(1001),
                ..f()
            }),
            "concurrency"
        );
        assert_eq!(
            field(Fields {
                num_requests: Some(MAX_REQUESTS + 1),
                ..f()
            }),
            "num_requests"
        );
        assert_eq!(
            field(Fields {
                duration: Some(f64::NAN),
                ..f()
            }),
            "duration_ms"
        );
        assert_eq!(
            field(Fields {
                duration: Some(-1.0),
                ..f()
            }),
            "duration_ms"
        );
        assert_eq!(field(Fields { rate: Some(0.0), ..f() }), "rate");
        assert_eq!(
            field(Fields {
                backlog: Some(0),
                ..f()
            }),
            "backlog"
        );
        assert_eq!(
            field(Fields {
                client_cpus: Some(vec![2]),
                ..f()
            }),
            "client_cpus"
        );
        assert_eq!(
            field(Fields {
                client_cpus: Some(vec![]),
                ..f()
            }),
            "client_cpus"
        );
        let levels = Some((1..=33).collect());
        let sweep = plan(
            Fields {
                concurrency_levels: levels,
                ..f()
            },
            Kind::Sweep,
            &Policy::SHELL,
        );
        assert_eq!(sweep.unwrap_err().field, "concurrency_levels");
        let stacks = ProfileFields {
            stacks: true,
            ..ProfileFields::default()
        };
        assert_eq!(
            field(Fields {
                profile: stacks.clone(),
                ..f()
            }),
            "stacks"
        );
        assert!(plan(Fields { profile: stacks, ..f() }, Kind::Profile, &Policy::SHELL).is_ok());
        let fast = ProfileFields {
            frequency_hz: Some(u64::from(ProfileOptions::MAX_FREQUENCY_HZ) + 1),
            ..ProfileFields::default()
        };
        let refused = plan(Fields { profile: fast, ..f() }, Kind::Profile, &Policy::SHELL);
        assert_eq!(refused.unwrap_err().field, "frequency_hz");
    }

    #[test]
    fn targets_take_only_what_belongs_to_them() {
        let target = |extra: Fields| Fields {
            target: Some("127.0.0.1:8080".parse().unwrap()),
            request: RequestFields {
                request: Some("x".into()),
                response: Some("y".into()),
                ..RequestFields::default()
            },
            ..extra
        };
        let f = Fields::default;
        assert_eq!(
            field(target(Fields {
                server: Some(Model::Threads),
                ..f()
            })),
            "server"
        );
        assert_eq!(
            field(target(Fields {
                backlog: Some(5),
                ..f()
            })),
            "backlog"
        );
        assert_eq!(
            field(target(Fields {
                server_cpus: Some(vec![0]),
                ..f()
            })),
            "server_cpus"
        );
        assert_eq!(
            field(Fields {
                exec: Some(vec!["x".into()]),
                ..f()
            }),
            "exec"
        );
        assert_eq!(
            field(target(Fields {
                exec: Some(vec![]),
                ..f()
            })),
            "exec"
        );
        // Any host may be loaded; a target given as text is resolved, its errors named.
        let remote = Fields {
            target: Some("10.0.0.1:80".parse().unwrap()),
            ..target(f())
        };
        assert!(plan(remote, Kind::Run, &Policy::SHELL).is_ok());
        assert_eq!(resolve_target("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert_eq!(resolve_target("localhost:80").unwrap().port(), 80);
        for bad in ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", ":80", "nosuch.invalid:80"] {
            assert_eq!(resolve_target(bad).unwrap_err().field, "target", "{bad}");
        }
        // A shard opens its share: two of them hold twice what one process may.
        let shard = |count: usize| Fields {
            concurrency: Some(1500),
            shard: Some(Shard { index: 0, count }),
            ..target(f())
        };
        assert!(plan(shard(2), Kind::Run, &Policy::SHELL).is_ok());
        assert_eq!(field(shard(1)), "concurrency");
        // An IPv6 target has one source address.
        let v6 = Fields {
            target: Some("[::1]:80".parse().unwrap()),
            concurrency: Some(101),
            ..target(f())
        };
        assert_eq!(field(v6), "concurrency");
    }

    #[test]
    fn intervals_and_windows() {
        assert_eq!(interval(0.1), Ok(Duration::from_millis(100)));
        assert_eq!(interval(0.05).unwrap_err().field, "interval");
        assert_eq!(interval(f64::INFINITY).unwrap_err().field, "interval");
        assert_eq!(seconds("duration_ms", 2.5), Ok(Duration::from_millis(2500)));
        assert!(seconds("duration_ms", 0.0).is_err());
    }
}
