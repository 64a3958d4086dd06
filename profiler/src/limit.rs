//! The verdict: which limit a run reached, from its [`Signals`], in one sentence that quotes the
//! numbers that decided it. The rules are tried in order and the first that holds wins; they are
//! written down for users in docs/saturation.md, with the measurements behind each threshold.
//!
//! The CPU rules weigh time: the server's CPU over the loaded part of the window (the load's run,
//! or the part a profiled server was busy), and the run-queue rule the share of the server's
//! runnable time it spent waiting for a CPU, never a percentile of a few waits.
use crate::signals::{LONG_WAIT_NS, LoadedPart, Signals};
use serde::Serialize;
use std::fmt;

/// A CPU is saturated at this share of what it was given (a thread: of one core), over the
/// loaded part of the window. Servers whose one core ran out read 89-99% over it
/// (`tcpprof bench -d 2`, server on CPU 0 and load on CPU 1: epoll PING -c 10 89-92%, epoll
/// "BURN 200" -c 4 95%, async PING -c 10 97%; the Python checksum server under `tcpprof profile`,
/// over the part it was busy, 94-99%), while the same window read 74% for the Python server.
pub const CPU_BUSY_PCT: f64 = 90.0;
/// The server's threads lose their CPUs to other work when they wait for one, in waits of
/// [`LONG_WAIT_NS`] or more, this share of the time they are runnable (on CPU plus waiting).
/// Measured with `tcpprof bench -d 2` (server on CPU 0, load on CPU 1; docs/saturation.md has the
/// table): alone on its core a server loses 0.0-4.2% (epoll PING -c 10 0.6%, epoll ECHO -c 10
/// --profile 1.1%, async PING -c 10 1.0%, iterative PING -c 1 0.1%, epoll "WAIT 1" -c 10 4.2%);
/// sharing its core with a spinning process 46-50%, with the load generator (`--client-cpus 0`)
/// 37%. A fifth sits well between.
pub const RUNQ_SHARE_PCT: f64 = 20.0;
/// ... in at least this many such waits, so that a handful cannot decide it. The same runs: 1-26
/// long waits in 2 s alone on the core, 104-6,528 sharing it (a 1 s load still has 50).
pub const RUNQ_MIN_WAITS: u64 = 50;
/// ... adding up to at least this share of the loaded part, so that a server that was mostly
/// idle is not named for the waits of its few busy moments. The same runs: 0.0-1.0% alone on the
/// core, 12.6-48% sharing it.
pub const RUNQ_MIN_WAIT_PCT: f64 = 5.0;
/// TCP trouble is the limit when its events reach this share of the requests (and at least
/// [`NETWORK_MIN_EVENTS`]).
pub const NETWORK_SHARE: f64 = 0.01;
pub const NETWORK_MIN_EVENTS: u64 = 10;

/// One rule: the limit it finds in the signals (given the requests), if it holds.
type Rule = fn(&Signals, Option<u64>) -> Option<Limit>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    ServerCpu,
    ClientCpu,
    RunQueue,
    AcceptQueue,
    Network,
    None,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::ServerCpu => "server-cpu",
            LimitKind::ClientCpu => "client-cpu",
            LimitKind::RunQueue => "run-queue",
            LimitKind::AcceptQueue => "accept-queue",
            LimitKind::Network => "network",
            LimitKind::None => "none",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limit {
    pub kind: LimitKind,
    pub reason: String,
}

impl Limit {
    /// Judges a run's signals; `requests` is how many the load generator completed or failed
    /// (`None` without a load generator).
    pub fn judge(s: &Signals, requests: Option<u64>) -> Limit {
        let rules: [Rule; 5] = [accept_queue, network, client_cpu, server_cpu, run_queue];
        rules
            .iter()
            .find_map(|rule| rule(s, requests))
            .unwrap_or_else(|| Limit {
                kind: LimitKind::None,
                reason: format!("no limit reached: {}", summary(s)),
            })
    }
}

fn accept_queue(s: &Signals, _: Option<u64>) -> Option<Limit> {
    let overflows = s.listen_overflows.unwrap_or(0);
    let refused = if overflows > 0 {
        format!(", {} connections refused machine-wide", count(overflows))
    } else {
        String::new()
    };
    let reason = match (s.accept_queue_max, s.accept_queue_limit) {
        (Some(max), Some(limit)) if limit > 0 && max >= limit => {
            format!("accept queue full ({max}/{limit}){refused}: the server accepts too slowly")
        }
        (None, _) if overflows > 0 => format!(
            "{} connections refused for a full accept queue (machine-wide; the server's queue could not be \
             watched): a server accepts too slowly",
            count(overflows)
        ),
        _ => return None,
    };
    Some(Limit {
        kind: LimitKind::AcceptQueue,
        reason,
    })
}

/// Loss and buffer pressure on the server's connections. Resets are reported but decide nothing:
/// our load generator ends per-request connections with one on purpose (SO_LINGER 0, so that
/// they leave no TIME_WAIT behind), and a reset ends a connection rather than slowing the rest.
fn network(s: &Signals, requests: Option<u64>) -> Option<Limit> {
    let parts = [
        (s.retransmits, "retransmits"),
        (s.buffer_limit, "socket-buffer limit events"),
        (s.rcvqueue_full, "receive-queue drops"),
    ];
    let events: u64 = parts.iter().filter_map(|(n, _)| *n).sum();
    let share = requests.map_or(0.0, |r| r as f64 * NETWORK_SHARE);
    if events < NETWORK_MIN_EVENTS || (events as f64) < share {
        return None;
    }
    let listed: Vec<String> = parts
        .iter()
        .filter_map(|(n, name)| n.filter(|&n| n > 0).map(|n| format!("{} {name}", count(n))))
        .collect();
    let per_request = match requests {
        Some(r) if r > 0 => format!(" ({:.1} per 100 requests)", events as f64 * 100.0 / r as f64),
        _ => String::new(),
    };
    Some(Limit {
        kind: LimitKind::Network,
        reason: format!(
            "TCP trouble on the server's port: {}{per_request}: segments are lost or sockets run out of buffer",
            listed.join(", ")
        ),
    })
}

/// The load generator out of CPU while the server is not (both out of CPU is `server-cpu`). A
/// worker whose core is shared is out of CPU when it runs or waits to run nearly all the time.
fn client_cpu(s: &Signals, _: Option<u64>) -> Option<Limit> {
    let (pct, cores, busiest) = (s.client_cpu_pct?, s.client_cores?, s.client_busiest_worker_pct?);
    let waiting = s.client_busiest_worker_runq_pct.unwrap_or(0.0);
    if !client_saturated(s) || server_saturated(s) {
        return None;
    }
    let shared = if waiting >= 5.0 {
        format!(" and waiting for it {waiting:.0}% of the time (its core is shared)")
    } else {
        String::new()
    };
    Some(Limit {
        kind: LimitKind::ClientCpu,
        reason: format!(
            "the load generator is out of CPU: {}, busiest worker {busiest:.0}% of a core{shared}; the server \
             used {}: these figures are the load generator's limit, not the server's",
            of_cores(pct, cores),
            server_use(s)
        ),
    })
}

fn server_cpu(s: &Signals, _: Option<u64>) -> Option<Limit> {
    if !server_saturated(s) {
        return None;
    }
    let busiest = s.loaded_busiest_thread_pct.unwrap_or(0.0);
    let waits = match (s.runq_share_pct(), s.runq_p99_us) {
        (Some(share), Some(p99)) => format!(
            "; its threads spent {share:.1}% of the time they were runnable in long waits for a CPU (run-queue p99 {})",
            us(p99)
        ),
        _ => String::new(),
    };
    let client = match (s.client_cpu_pct, s.client_cores) {
        (Some(pct), Some(cores)) if client_saturated(s) => format!(
            "; the load generator was out of CPU too ({}): more of either alone would not help",
            of_cores(pct, cores)
        ),
        _ => String::new(),
    };
    Some(Limit {
        kind: LimitKind::ServerCpu,
        reason: format!(
            "the server is out of CPU: {}, busiest thread {busiest:.0}% of a core{waits}{client}",
            server_use(s)
        ),
    })
}

/// A process is out of CPU when it uses [`CPU_BUSY_PCT`] of its cores, or one of its threads
/// does of one core (a thread cannot use more).
fn saturated(pct: f64, cores: usize, busiest_thread_pct: f64) -> bool {
    busiest_thread_pct >= CPU_BUSY_PCT || pct >= CPU_BUSY_PCT * cores as f64
}

fn client_saturated(s: &Signals) -> bool {
    match (s.client_cpu_pct, s.client_cores, s.client_busiest_worker_pct) {
        (Some(pct), Some(cores), Some(busiest)) => {
            saturated(pct, cores, busiest + s.client_busiest_worker_runq_pct.unwrap_or(0.0))
        }
        _ => false,
    }
}

/// Over the loaded part of the window.
fn server_saturated(s: &Signals) -> bool {
    match (s.loaded_server_cpu_pct, s.server_cores) {
        (Some(pct), Some(cores)) => saturated(pct, cores, s.loaded_busiest_thread_pct.unwrap_or(0.0)),
        _ => false,
    }
}

/// The server's threads waited for a CPU held by other work (waits of [`LONG_WAIT_NS`] or more)
/// [`RUNQ_SHARE_PCT`] of their runnable time or more, in [`RUNQ_MIN_WAITS`] waits or more that
/// add up to [`RUNQ_MIN_WAIT_PCT`] of the loaded part.
fn run_queue(s: &Signals, _: Option<u64>) -> Option<Limit> {
    let share = s.runq_share_pct().filter(|&p| p >= RUNQ_SHARE_PCT)?;
    let (waits, wait_ms) = (s.runq_long_waits?, s.runq_long_wait_ms?);
    if waits < RUNQ_MIN_WAITS || wait_ms * 100.0 < RUNQ_MIN_WAIT_PCT * s.loaded_ms {
        return None;
    }
    let tail = match (s.runq_p99_us, s.runq_max_us) {
        (Some(p99), Some(max)) => format!(", p99 {}, max {}", us(p99), us(max)),
        _ => String::new(),
    };
    let client = match (s.client_cpu_pct, s.client_cores) {
        (Some(pct), Some(cores)) => format!(", the load generator {}", of_cores(pct, cores)),
        _ => String::new(),
    };
    Some(Limit {
        kind: LimitKind::RunQueue,
        reason: format!(
            "the server's threads spent {share:.0}% of the time they were runnable in long waits for a CPU ({} in {} \
             waits of {} or more{tail}), though the server used {}{client}: other work holds its CPUs",
            duration(wait_ms),
            count(waits),
            us(LONG_WAIT_NS as f64 / 1e3),
            server_use(s)
        ),
    })
}

/// What was measured, for the `none` verdict.
fn summary(s: &Signals) -> String {
    let mut parts = vec![format!("server {}", server_use(s))];
    if let (Some(pct), Some(cores)) = (s.client_cpu_pct, s.client_cores) {
        parts.push(format!("load generator {}", of_cores(pct, cores)));
    }
    if let Some(share) = s.runq_share_pct() {
        parts.push(format!("long waits for a CPU {share:.1}% of the runnable time"));
    }
    if let (Some(max), Some(limit)) = (s.accept_queue_max, s.accept_queue_limit) {
        parts.push(format!("accept queue at most {max}/{limit}"));
    }
    if s.retransmits.is_some() {
        let events: u64 = [
            s.retransmits,
            s.resets_sent,
            s.resets_received,
            s.buffer_limit,
            s.rcvqueue_full,
        ]
        .iter()
        .flatten()
        .sum();
        parts.push(format!("{} TCP trouble events", count(events)));
    }
    parts.join(", ")
}

/// The server's CPU over the loaded part, and what that part is.
fn server_use(s: &Signals) -> String {
    match (s.loaded_server_cpu_pct, s.server_cores) {
        (Some(pct), Some(cores)) => format!("{} {}", of_cores(pct, cores), over(s)),
        _ => "an unknown share of its CPUs".into(),
    }
}

/// The loaded part of the window, in words.
fn over(s: &Signals) -> String {
    let loaded = duration(s.loaded_ms);
    match s.loaded_part {
        LoadedPart::Load => format!("over the {loaded} load"),
        LoadedPart::Busy => format!("over the {loaded} it was busy (of a {} window)", duration(s.window_ms)),
        LoadedPart::Window => format!("over the {loaded} window"),
    }
}

/// A duration given in ms, in the unit that reads best.
pub(crate) fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn of_cores(pct: f64, cores: usize) -> String {
    let plural = if cores == 1 { "" } else { "s" };
    format!("{pct:.0}% of {cores} core{plural}")
}

/// A duration given in us, in the unit that reads best.
pub(crate) fn us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.0} us")
    } else {
        format!("{us:.1} us")
    }
}

/// 3412 as "3,412".
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2 s load that reached no limit: the server 30% of a core, its threads waiting for one
    /// 2% of the time they were runnable, never long.
    fn idle() -> Signals {
        Signals {
            server_cpu_pct: Some(30.0),
            server_cores: Some(1),
            server_busiest_thread_pct: Some(30.0),
            client_cpu_pct: Some(20.0),
            client_cores: Some(1),
            client_busiest_worker_pct: Some(20.0),
            runq_p99_us: Some(12.0),
            runq_max_us: Some(40.0),
            runq_waits: Some(5000),
            runq_wait_ms: Some(12.2),
            runq_long_waits: Some(0),
            runq_long_wait_ms: Some(0.0),
            window_ms: 2000.0,
            busy_ms: Some(2000.0),
            accept_queue_max: Some(1),
            accept_queue_limit: Some(4096),
            listen_overflows: Some(0),
            retransmits: Some(0),
            resets_sent: Some(0),
            resets_received: Some(0),
            buffer_limit: Some(0),
            rcvqueue_full: Some(0),
            ..Signals::default()
        }
    }

    /// `s` as a load's window: its CPU over the load's run is its CPU over the window, as
    /// [`Signals::add_client`] finds it when the load ran the whole window.
    fn load(s: &Signals) -> Signals {
        Signals {
            loaded_part: LoadedPart::Load,
            loaded_ms: s.window_ms,
            loaded_server_cpu_pct: s.server_cpu_pct,
            loaded_busiest_thread_pct: s.server_busiest_thread_pct,
            ..s.clone()
        }
    }

    fn judge(s: &Signals, requests: Option<u64>) -> Limit {
        Limit::judge(&load(s), requests)
    }

    fn kind(s: &Signals) -> LimitKind {
        judge(s, Some(100_000)).kind
    }

    #[test]
    fn each_rule_and_its_order() {
        let none = judge(&idle(), Some(100_000));
        assert_eq!(none.kind, LimitKind::None);
        assert!(none.reason.contains("server 30% of 1 core"), "{}", none.reason);

        let full = Signals {
            accept_queue_max: Some(5),
            accept_queue_limit: Some(4),
            listen_overflows: Some(3412),
            // Also out of CPU: the accept queue still comes first.
            server_cpu_pct: Some(99.0),
            ..idle()
        };
        let limit = judge(&full, Some(100));
        assert_eq!(limit.kind, LimitKind::AcceptQueue);
        assert!(
            limit.reason.contains("(5/4), 3,412 connections refused"),
            "{}",
            limit.reason
        );

        let lossy = Signals {
            retransmits: Some(2000),
            ..idle()
        };
        assert_eq!(kind(&lossy), LimitKind::Network);
        // Resets (our own per-request closes among them) decide nothing.
        let reset = Signals {
            resets_received: Some(100_000),
            ..idle()
        };
        assert_eq!(kind(&reset), LimitKind::None);
        // A few events in many requests are not the limit.
        let few = Signals {
            retransmits: Some(20),
            ..idle()
        };
        assert_eq!(kind(&few), LimitKind::None);

        let client = Signals {
            client_busiest_worker_pct: Some(97.0),
            client_cpu_pct: Some(97.0),
            server_cpu_pct: Some(60.0),
            server_busiest_thread_pct: Some(60.0),
            runq_p99_us: Some(5000.0),
            ..idle()
        };
        assert_eq!(kind(&client), LimitKind::ClientCpu, "before run-queue");
        // A worker on a shared core: running 81% and waiting for it 15% of the time.
        let shared = Signals {
            client_busiest_worker_pct: Some(81.0),
            client_busiest_worker_runq_pct: Some(15.0),
            client_cpu_pct: Some(81.0),
            ..idle()
        };
        let limit = judge(&shared, Some(1));
        assert_eq!(limit.kind, LimitKind::ClientCpu);
        assert!(limit.reason.contains("waiting for it 15%"), "{}", limit.reason);
        // Both out of CPU: the server's limit, and the reason says the client was too.
        let both = Signals {
            server_cpu_pct: Some(98.0),
            server_busiest_thread_pct: Some(98.0),
            ..client.clone()
        };
        let limit = judge(&both, Some(1));
        assert_eq!(limit.kind, LimitKind::ServerCpu);
        assert!(
            limit.reason.contains("load generator was out of CPU too"),
            "{}",
            limit.reason
        );

        let server = Signals {
            server_cpu_pct: Some(99.0),
            server_busiest_thread_pct: Some(99.0),
            runq_p99_us: Some(5000.0),
            ..idle()
        };
        let limit = judge(&server, Some(1));
        assert_eq!(limit.kind, LimitKind::ServerCpu, "before run-queue");
        assert!(limit.reason.contains("99% of 1 core"), "{}", limit.reason);
        // A single-threaded server on two cores is out of CPU when its thread is.
        let one_thread = Signals {
            server_cpu_pct: Some(100.0),
            server_cores: Some(2),
            server_busiest_thread_pct: Some(99.0),
            ..idle()
        };
        assert_eq!(kind(&one_thread), LimitKind::ServerCpu);

        // 800 ms of waits beside 1.2 s on CPU, 700 ms of them long: 35% of the runnable time.
        let waiting = Signals {
            server_cpu_pct: Some(60.0),
            server_cores: Some(2),
            server_busiest_thread_pct: Some(5.0),
            runq_p99_us: Some(4100.0),
            runq_max_us: Some(21000.0),
            runq_waits: Some(20_000),
            runq_wait_ms: Some(800.0),
            runq_long_waits: Some(2000),
            runq_long_wait_ms: Some(700.0),
            ..idle()
        };
        let limit = judge(&waiting, Some(1));
        assert_eq!(limit.kind, LimitKind::RunQueue);
        assert!(
            limit.reason.contains(
                "35% of the time they were runnable in long waits for a CPU (700 ms in 2,000 waits of 66 us or more, p99 4.1 ms, max"
            ),
            "{}",
            limit.reason
        );
        assert!(
            limit.reason.contains("60% of 2 cores over the 2.0 s load"),
            "{}",
            limit.reason
        );
    }

    #[test]
    fn a_tail_of_few_waits_is_no_run_queue_limit() {
        // The Python server of issue 20: 116 waits, 8.6 ms in all, p99 2.1 ms, beside 2.2 s on
        // CPU: 0.3% of its runnable time in its 4 long waits.
        let python = Signals {
            server_cpu_pct: Some(55.0),
            server_busiest_thread_pct: Some(55.0),
            window_ms: 4000.0,
            runq_waits: Some(116),
            runq_wait_ms: Some(8.6),
            runq_long_waits: Some(4),
            runq_long_wait_ms: Some(7.5),
            runq_p99_us: Some(2100.0),
            runq_max_us: Some(3300.0),
            ..idle()
        };
        let limit = judge(&python, None);
        assert_eq!(limit.kind, LimitKind::None, "{}", limit.reason);
        assert!(
            limit.reason.contains("long waits for a CPU 0.3% of the runnable time"),
            "{}",
            limit.reason
        );
        // A few long waits on a server that was mostly idle: half its runnable time, but 20
        // waits.
        let few = Signals {
            server_cpu_pct: Some(1.0),
            server_busiest_thread_pct: Some(1.0),
            runq_waits: Some(20),
            runq_wait_ms: Some(20.0),
            runq_long_waits: Some(20),
            runq_long_wait_ms: Some(20.0),
            ..idle()
        };
        assert!(load(&few).runq_share_pct().unwrap() >= 49.0);
        assert_eq!(kind(&few), LimitKind::None);
        // Many long waits, a large share of a little work, but 1% of the load's run in all.
        let little = Signals {
            server_cpu_pct: Some(4.0),
            server_busiest_thread_pct: Some(4.0),
            runq_waits: Some(5000),
            runq_wait_ms: Some(20.0),
            runq_long_waits: Some(200),
            runq_long_wait_ms: Some(20.0),
            ..idle()
        };
        assert!(load(&little).runq_share_pct().unwrap() >= 20.0);
        assert_eq!(kind(&little), LimitKind::None);
        // The same waits over more time lost: the limit.
        let lost = Signals {
            runq_wait_ms: Some(200.0),
            runq_long_wait_ms: Some(200.0),
            ..little.clone()
        };
        assert_eq!(kind(&lost), LimitKind::RunQueue);
        // Short waits are the way back onto an idle core, however many and however much of the
        // runnable time (an iterative server answering PING: 25%).
        let short = Signals {
            server_cpu_pct: Some(40.0),
            server_busiest_thread_pct: Some(40.0),
            runq_waits: Some(52_000),
            runq_wait_ms: Some(262.0),
            runq_long_waits: Some(3),
            runq_long_wait_ms: Some(0.5),
            ..idle()
        };
        assert_eq!(kind(&short), LimitKind::None);
    }

    #[test]
    fn a_profiled_server_is_judged_over_the_part_it_was_busy() {
        // The Python server of issue 20 again: one thread on CPU 3.0 s of a 4.0 s window, out
        // of CPU throughout its load.
        let python = Signals {
            server_cpu_pct: Some(74.0),
            server_busiest_thread_pct: Some(74.0),
            client_cpu_pct: None,
            client_cores: None,
            client_busiest_worker_pct: None,
            window_ms: 4000.0,
            busy_ms: Some(3010.0),
            loaded_part: LoadedPart::Busy,
            loaded_ms: 3010.0,
            loaded_server_cpu_pct: Some(98.4),
            loaded_busiest_thread_pct: Some(98.4),
            runq_waits: Some(116),
            runq_wait_ms: Some(8.6),
            runq_long_waits: Some(4),
            runq_long_wait_ms: Some(7.5),
            runq_p99_us: Some(2100.0),
            ..idle()
        };
        let limit = Limit::judge(&python, None);
        assert_eq!(limit.kind, LimitKind::ServerCpu, "{}", limit.reason);
        assert!(
            limit
                .reason
                .contains("98% of 1 core over the 3.0 s it was busy (of a 4.0 s window)"),
            "{}",
            limit.reason
        );
        assert!(
            limit
                .reason
                .contains("spent 0.3% of the time they were runnable in long waits"),
            "{}",
            limit.reason
        );
        // Judged over the whole window, the same server reads 74%: no limit.
        let whole = Signals {
            loaded_part: LoadedPart::Window,
            loaded_ms: 4000.0,
            loaded_server_cpu_pct: Some(74.0),
            loaded_busiest_thread_pct: Some(74.0),
            ..python
        };
        assert_eq!(Limit::judge(&whole, None).kind, LimitKind::None);
    }

    #[test]
    fn unmeasured_signals_decide_nothing() {
        let s = Signals::default();
        assert_eq!(Limit::judge(&s, None).kind, LimitKind::None);
        let overflow_only = Signals {
            listen_overflows: Some(7),
            ..Signals::default()
        };
        assert_eq!(Limit::judge(&overflow_only, None).kind, LimitKind::AcceptQueue);
    }

    #[test]
    fn counts_read_with_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(3412), "3,412");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}
