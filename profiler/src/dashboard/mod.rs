//! `--live ADDR`: a page in the browser while a run goes. `http://ADDR/` is one self-contained
//! page (`page.html`: inline script, style and SVG, no other URL); it follows `/events`, a
//! server-sent events stream of one event per interval (the load's throughput, errors,
//! connections and latency percentiles from that interval's histogram, the server as /proc shows
//! it, the breakdown when profiled, the limit verdict so far), then the run's result. A viewer
//! that comes late gets every event from the start; `/metrics` answers beside them.
//!
//! Every event is kept once, in the order it was made: a viewer is a thread that writes them out
//! from its own position, and one that stops reading is dropped when the socket's buffer stays
//! full for [`STALL`], so nothing is held per viewer beyond the kernel's buffer.
pub mod watch;

use crate::breakdown::{Breakdown, Part};
use crate::http::{self, Request};
use crate::limit::Limit;
use crate::live::{Interval, Sink};
use crate::metrics::Exporter;
use crate::signals::round1;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use watch::{ServerInterval, Watch};

/// The page, as `GET /` serves it.
const PAGE: &str = include_str!("page.html");
/// Viewers at once; more are answered 503.
pub const MAX_VIEWERS: usize = 200;
/// A viewer whose socket takes nothing for this long is dropped.
pub const STALL: Duration = Duration::from_secs(5);
/// A comment line goes to an idle viewer this often, so that one that went away is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long the end of a run waits for the viewers to have the result.
const FLUSH: Duration = Duration::from_secs(2);

/// The events so far, each as it goes on the wire, and whether the run is over.
#[derive(Default)]
struct Log {
    events: Vec<Arc<str>>,
    over: bool,
}

struct Shared {
    log: Mutex<Log>,
    grew: Condvar,
    viewers: AtomicUsize,
    metrics: Exporter,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What paces the events: a load's intervals (`bench`), or the profile's (`profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    Load,
    Profile,
}

/// The page and its event stream, served from threads of their own until the process ends; a
/// sink of the live loop (the metrics it answers are another sink's, which keeps them).
pub struct Dashboard {
    shared: Arc<Shared>,
    addr: SocketAddr,
    pace: Pace,
    watch: Option<Watch>,
    /// The latest profile interval's breakdown, shown with the next event.
    breakdown: Option<BreakdownView>,
    requests: u64,
    errors: u64,
}

/// One event of the stream (`kind` "interval").
#[derive(Serialize)]
struct IntervalEvent<'a> {
    kind: &'static str,
    /// Seconds from the start to the interval's end.
    t: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    load: Option<LoadView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerInterval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'a BreakdownView>,
    limit: Option<Limit>,
}

/// The load over one interval: its percentiles come from its own histogram.
#[derive(Serialize)]
struct LoadView {
    requests: u64,
    errors: u64,
    throughput_rps: f64,
    connections: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// The run's so far.
    total_requests: u64,
    total_errors: u64,
}

#[derive(Clone, Serialize)]
struct BreakdownView {
    parts: BTreeMap<Part, f64>,
    bottleneck: Option<Part>,
    oncpu_pct: f64,
}

impl BreakdownView {
    fn of(b: &Breakdown) -> BreakdownView {
        BreakdownView {
            parts: Part::ALL.iter().map(|&p| (p, b.breakdown.get(p))).collect(),
            bottleneck: b.bottleneck,
            oncpu_pct: round1(b.oncpu_ns as f64 * 100.0 / (b.window_ms.max(1) as f64 * 1e6)),
        }
    }
}

impl Dashboard {
    /// Listens on `addr` now (a port in use fails here, before any run) and serves from then.
    pub fn serve(addr: SocketAddr, pace: Pace, metrics: Exporter) -> Result<Dashboard> {
        let listener = TcpListener::bind(addr).with_context(|| format!("--live {addr}: cannot listen there"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Mutex::default(),
            grew: Condvar::new(),
            viewers: AtomicUsize::new(0),
            metrics,
        });
        let served = shared.clone();
        std::thread::Builder::new()
            .name("live".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let shared = served.clone();
                    // A thread per connection: a viewer holds its own for the run.
                    let _ = std::thread::Builder::new()
                        .name("live-viewer".into())
                        .spawn(move || answer(stream, &shared));
                }
            })
            .context("starting the --live thread")?;
        Ok(Dashboard {
            shared,
            addr,
            pace,
            watch: None,
            breakdown: None,
            requests: 0,
            errors: 0,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The run's result (what `--json` prints) as the last event; waits a moment for the
    /// viewers to have it.
    pub fn finish(&self, result: &impl Serialize) {
        let event = serde_json::json!({"kind": "result", "result": result});
        self.push(&event);
        self.shared.log().over = true;
        self.shared.grew.notify_all();
        let deadline = Instant::now() + FLUSH;
        while self.shared.viewers.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps the page up for `linger` after the run, saying so, or until `ended` (asked every
    /// 50 ms) says to stop.
    pub fn linger(&self, linger: Duration, ended: impl Fn() -> bool) {
        if linger.is_zero() || ended() {
            return;
        }
        eprintln!(
            "live: the result stays at http://{}/ for {} s (Ctrl-C ends it)",
            self.addr,
            linger.as_secs_f64()
        );
        let until = Instant::now() + linger;
        while Instant::now() < until && !ended() {
            std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn push(&self, event: &impl Serialize) {
        let mut log = self.shared.log();
        let id = log.events.len();
        let data = serde_json::to_string(event).unwrap_or_else(|e| format!("{{\"kind\":\"error\",\"error\":\"{e}\"}}"));
        log.events.push(format!("id: {id}\ndata: {data}\n\n").into());
        drop(log);
        self.shared.grew.notify_all();
    }

    /// An interval's event, `end` after the load's or the window's start.
    fn event(&mut self, end: Duration, load: Option<LoadView>) {
        let server = self.watch.as_mut().map(Watch::interval);
        let requests = load.as_ref().map(|l| l.total_requests + l.total_errors);
        let limit = self.watch.as_ref().map(|w| w.limit_so_far(requests));
        let event = IntervalEvent {
            kind: "interval",
            t: round1(end.as_secs_f64()),
            load,
            server,
            profile: self.breakdown.as_ref(),
            limit,
        };
        self.push(&event);
    }
}

impl Sink for Dashboard {
    fn watch(&mut self, pids: &[u32]) {
        self.watch = Some(Watch::new(pids, self.pace == Pace::Load));
    }

    fn take(&mut self, interval: &Interval) {
        match interval {
            Interval::Load(i) => {
                self.requests += i.requests;
                self.errors += i.errors.total();
                let l = &i.latency;
                let load = LoadView {
                    requests: i.requests,
                    errors: i.errors.total(),
                    throughput_rps: round1(i.throughput_rps()),
                    connections: i.connections,
                    p50_us: l.p50_us(),
                    p99_us: l.p99_us(),
                    p999_us: l.p999_us(),
                    max_us: l.max_us(),
                    total_requests: self.requests,
                    total_errors: self.errors,
                };
                self.event(i.start + i.length, Some(load));
            }
            Interval::Profile { breakdown, totals, end } => {
                self.breakdown = Some(BreakdownView::of(breakdown));
                if let Some(watch) = &mut self.watch {
                    watch.profiled(totals);
                }
                if self.pace == Pace::Profile {
                    self.event(*end, None);
                }
            }
        }
    }
}

/// Answers one connection: the page, the event stream, the metrics, or 404.
fn answer(mut stream: TcpStream, shared: &Shared) {
    let request = match http::read_request(&mut stream) {
        Ok(Some(r)) => r,
        _ => return,
    };
    let _ = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => http::respond(&mut stream, "200 OK", "text/html; charset=utf-8", PAGE.as_bytes()),
        ("GET", "/events") => events(stream, &request, shared),
        ("GET", "/metrics") => shared.metrics.answer(&mut stream),
        ("GET", path) => http::respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            format!("no page {path} here: the dashboard is at /, its events at /events, the metrics at /metrics\n")
                .as_bytes(),
        ),
        _ => http::respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET\n"),
    };
}

/// Streams the events to one viewer, from the one after `Last-Event-ID` (a reconnection) or
/// from the first, until the run is over and the viewer has them all.
fn events(mut stream: TcpStream, request: &Request, shared: &Shared) -> std::io::Result<()> {
    if shared.viewers.fetch_add(1, Ordering::SeqCst) >= MAX_VIEWERS {
        shared.viewers.fetch_sub(1, Ordering::SeqCst);
        return http::respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            b"too many viewers\n",
        );
    }
    let result = stream_events(&mut stream, request, shared);
    shared.viewers.fetch_sub(1, Ordering::SeqCst);
    result
}

fn stream_events(stream: &mut TcpStream, request: &Request, shared: &Shared) -> std::io::Result<()> {
    write_within(
        stream,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        STALL,
    )?;
    let mut next = request
        .header("Last-Event-ID")
        .and_then(|id| id.parse::<usize>().ok())
        .map_or(0, |id| id + 1);
    loop {
        let (batch, over) = {
            let log = shared.log();
            let (log, _) = shared
                .grew
                .wait_timeout_while(log, KEEPALIVE, |log| log.events.len() <= next && !log.over)
                .unwrap_or_else(PoisonError::into_inner);
            (log.events.get(next..).unwrap_or_default().to_vec(), log.over)
        };
        if batch.is_empty() && !over {
            write_within(stream, b": still running\n\n", STALL)?;
        }
        for event in &batch {
            write_within(stream, event.as_bytes(), STALL)?;
        }
        next += batch.len();
        if over {
            return Ok(());
        }
    }
}

/// Writes all of `bytes` within `limit`, or fails: a socket timeout alone starts over at each
/// write that moves a byte, and a reader that takes a little now and then would hold it forever.
fn write_within(stream: &mut TcpStream, mut bytes: &[u8], limit: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + limit;
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A viewer that stops reading is dropped once its socket stays full for [`STALL`]; one that
    /// reads gets every event meanwhile.
    #[test]
    fn a_viewer_that_stops_reading_is_dropped() {
        let dashboard = Dashboard::serve("127.0.0.1:0".parse().unwrap(), Pace::Load, Exporter::new()).unwrap();
        let padding = "x".repeat(8 * 1024);
        // 16 MiB of events: more than a socket holds.
        for i in 0..2000 {
            dashboard.push(&serde_json::json!({"kind": "interval", "i": i, "padding": padding}));
        }
        let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        stalled.set_recv_buffer_size(4096).unwrap();
        stalled.connect(&dashboard.addr().into()).unwrap();
        let mut stalled = TcpStream::from(stalled);
        stalled.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
        let addr = dashboard.addr();
        let reader = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.write_all(b"GET /events HTTP/1.1\r\n\r\n").unwrap();
            let mut all = String::new();
            stream.read_to_string(&mut all).unwrap();
            all.matches("\ndata: ").count()
        });
        let start = Instant::now();
        while dashboard.shared.viewers.load(Ordering::SeqCst) < 2 {
            assert!(start.elapsed() < Duration::from_secs(5), "the viewers never came");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The reader finishes once the run is over; the stalled one is dropped by then.
        while dashboard.shared.viewers.load(Ordering::SeqCst) > 1 {
            assert!(start.elapsed() < STALL * 3, "a stalled viewer was kept");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(start.elapsed() >= STALL, "dropped before its stall");
        dashboard.finish(&serde_json::json!({"requests": 0}));
        assert_eq!(reader.join().unwrap(), 2001);
        assert_eq!(dashboard.shared.viewers.load(Ordering::SeqCst), 0);
        drop(stalled);
    }
}
