//! One load worker: a thread with its own level-triggered epoll set over its share of the
//! connections, each with at most one request in flight.
//!
//! The hot path of a persistent closed-loop connection is one `write` of the pre-built request
//! and, usually, one `read` into the worker's buffer, read in place by the protocol's framing
//! (see [`super::protocols`]): no allocation, no `epoll_ctl`. Level-triggered epoll is what allows the single
//! read: edge-triggered would need a second read to see `EAGAIN` before waiting again.

use super::histogram::LatencyHistogram;
use super::protocols::{ConnectionMode, Reader, RequestBytes, ResponseSpec, Verdict};
use super::stats::{CallTimer, ErrorCounts, ErrorKind};
use crate::sys;
use anyhow::{Context, Result, anyhow};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

const EVENTS_PER_WAIT: usize = 1024;
/// Large enough that a big response arrives in few reads, small enough to stay in L2.
const READ_BUFFER: usize = 64 * 1024;
/// Handshakes a worker has under way at once while it opens its connections: all at once would
/// overflow the server's accept queue (4,096 at most here), and each dropped SYN costs a 1 s, 3 s,
/// 7 s retry.
const CONNECTS_IN_FLIGHT: usize = 512;
/// Once asked to stop, how long requests in flight may take to complete.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How often requests in flight are checked against the request timeout.
const TIMEOUT_SCAN: Duration = Duration::from_millis(100);
/// Pause before reconnecting after a failed connect, so that a dead server costs a few hundred
/// attempts per second per connection rather than a busy loop.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(10);

/// With nothing to read and many requests in flight, a worker naps this long before it sleeps in
/// `epoll_wait`. On loopback the server's write runs the client socket's wakeup on the server's
/// CPU: a worker asleep in `epoll_wait` costs the server a cross-CPU wakeup per response (12% of
/// nginx's CPU, perf shows, against 7% under wrk, which is busier and sleeps less). Napping on a
/// timer instead, the worker finds the responses that came meanwhile without being woken for
/// each: the server answers 10-15% more, and the worker uses less CPU per request (see
/// docs/loadgen.md). A response is read at most this late, behind at least
/// [`NAP_MIN_IN_FLIGHT`] others in flight; with fewer in flight, nothing changes.
const NAP: Duration = Duration::from_micros(20);
const NAP_MIN_IN_FLIGHT: usize = 8;

/// What all workers of a run share.
pub(crate) struct Job<'a> {
    pub target: SocketAddr,
    pub request: &'a RequestBytes,
    pub response: &'a ResponseSpec,
    /// Local addresses to connect from, by connection number; empty: the kernel picks.
    pub sources: &'a [IpAddr],
    pub mode: ConnectionMode,
    pub request_timeout: Duration,
    pub duration: Option<Duration>,
    /// Open loop: requests per second over all `concurrency` connections.
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub hard_deadline: Instant,
    /// Releases the workers together once every one has connected.
    pub start: &'a Barrier,
    /// Called once every worker has connected, before the clock starts: an observer's window
    /// (the run's signals) then covers the measured run and not the connecting.
    pub on_start: &'a (dyn Fn() + Sync),
    pub connected: &'a AtomicUsize,
    /// Set by a worker that could not get ready, so that the others stand down.
    pub failed: &'a AtomicBool,
    pub progress: Option<&'a AtomicU64>,
    /// Set: send nothing more.
    pub stop: Option<&'static AtomicBool>,
}

impl Job<'_> {
    /// Whether the run was asked to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// One worker's part of the run.
pub(crate) struct Share {
    pub index: usize,
    /// Where to send each interval's figures, and the intervals' length, when the run reports
    /// intervals.
    pub intervals: Option<(Sender<IntervalSample>, Duration)>,
    /// Global connection numbers (they fix each connection's place in the open-loop schedule).
    pub conns: Range<usize>,
    /// Requests this worker sends, when the run is bounded by a count.
    pub budget: Option<u64>,
    pub cpu: Option<usize>,
}

/// The interval a worker is in.
struct IntervalState {
    sender: Sender<IntervalSample>,
    length: Duration,
    index: u64,
    ends: Instant,
    /// `ok` and errors at the interval's start.
    requests_at: u64,
    errors_at: ErrorCounts,
}

/// One worker's figures for one interval of the run.
pub(crate) struct IntervalSample {
    pub worker: usize,
    pub index: u64,
    pub latency: LatencyHistogram,
    pub requests: u64,
    pub errors: ErrorCounts,
    /// The worker's connections open at the interval's end.
    pub connections: u64,
    /// How much of the interval the worker ran: all of it, but for its last.
    pub length: Duration,
    /// The worker's last interval (it stopped within it).
    pub last: bool,
}

pub(crate) struct Outcome {
    pub index: usize,
    pub ok: u64,
    pub errors: ErrorCounts,
    pub first_error: Option<String>,
    pub latency: LatencyHistogram,
    pub uncorrected: Option<LatencyHistogram>,
    pub send: CallTimer,
    pub recv: CallTimer,
    pub connections: usize,
    pub connections_opened: u64,
    pub started: Instant,
    pub finished: Instant,
    /// CPU time of the worker's thread from `started` to `finished`, and its time waiting for
    /// a CPU.
    pub cpu_time: Duration,
    pub runq_wait: Duration,
    pub stopped_early: bool,
    pub pinned_cpu: Option<usize>,
    pub cpu: Option<usize>,
}

/// Runs one worker on the calling thread. `Ok(None)`: another worker failed to get ready, and
/// its error is the one to report.
pub(crate) fn run(job: &Job<'_>, share: Share) -> Result<Option<Outcome>> {
    let prepared = Worker::new(job, &share).and_then(|mut worker| {
        if job.mode == ConnectionMode::Persistent {
            worker.connect_all()?;
        }
        Ok(worker)
    });
    // Every worker must reach the barrier whatever happened, or the others would wait forever.
    match &prepared {
        Ok(worker) => {
            job.connected.fetch_add(worker.open_count(), Ordering::SeqCst);
        }
        Err(_) => job.failed.store(true, Ordering::SeqCst),
    }
    job.start.wait();
    if share.index == 0 && !job.failed.load(Ordering::SeqCst) {
        (job.on_start)();
    }
    // Once more, so that nobody starts before the observer is ready (a Barrier is reusable).
    job.start.wait();
    let mut worker = prepared?;
    if job.failed.load(Ordering::SeqCst) {
        return Ok(None);
    }
    if job.mode == ConnectionMode::Persistent && job.connected.load(Ordering::SeqCst) == 0 && !job.stopped() {
        let why = worker.setup_error.take().unwrap_or_else(|| "timed out".into());
        return Err(anyhow!("could not connect to {}: {why}", job.target));
    }
    worker.run_loop();
    Ok(Some(worker.into_outcome(&share)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No request in flight (connected or not).
    Idle,
    /// Connecting in order to send a request.
    Connecting,
    InFlight,
}

struct Conn {
    stream: Option<TcpStream>,
    /// Bumped on every close, so that events still queued for a closed socket are ignored.
    generation: u32,
    /// What the socket is registered for in the epoll set.
    registered: EpollFlags,
    state: State,
    /// When the request was due: the start of the corrected latency.
    intended: Instant,
    /// When the request actually started (connect or first write): the start of the
    /// uncorrected latency and of the request timeout.
    started: Instant,
    written: usize,
    /// The response so far.
    reader: Reader,
    /// Requests this connection has begun: with the connection's number, it picks a request's
    /// key (see [`RequestBytes::fill`]).
    seq: u64,
    /// Open loop: when this connection's next request is due.
    next_due: Instant,
}

struct Worker<'a> {
    job: &'a Job<'a>,
    epoll: Epoll,
    events: Vec<EpollEvent>,
    conns: Vec<Conn>,
    /// Global number of `conns[0]`.
    first_conn: usize,
    buf: Vec<u8>,
    /// A request with keys, filled in for the connection sending it (empty for a fixed request).
    keyed: Vec<u8>,
    budget: Option<u64>,
    stop_at: Option<Instant>,
    /// Open loop: time between two requests of one connection.
    interval: Option<Duration>,
    /// Connections to (re)start at a time: open-loop schedule and retries after errors.
    wake: BinaryHeap<Reverse<(Instant, usize)>>,
    due_now: Vec<usize>,
    /// Connections with a request connecting or in flight.
    active: usize,
    next_scan: Instant,

    /// Why the first connection failed to open before the start (not a request error).
    setup_error: Option<String>,
    ok: u64,
    /// Of `ok` and the errors, how many were added to `job.progress`.
    reported: u64,
    errors: ErrorCounts,
    first_error: Option<String>,
    latency: LatencyHistogram,
    uncorrected: Option<LatencyHistogram>,
    send: CallTimer,
    recv: CallTimer,
    connections_opened: u64,
    started: Instant,
    /// This worker's number, for its interval samples.
    share_index: usize,
    /// With intervals: `latency` holds the current interval's, and this the earlier ones'.
    latency_before: LatencyHistogram,
    /// The current interval's number and end, and the counts at its start.
    report_interval: Option<IntervalState>,
    /// The thread's CPU time and run-queue wait at `started`.
    cpu_at_start: Duration,
    runq_at_start: Duration,
    stopped_early: bool,
}

fn token(index: usize, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

impl<'a> Worker<'a> {
    fn new(job: &'a Job<'a>, share: &Share) -> Result<Worker<'a>> {
        if let Some(cpu) = share.cpu {
            sys::pin_current_thread(&[cpu])?;
        }
        // Open-loop schedules and the nap need timers to the microsecond, not the 50 us default
        // slack.
        sys::precise_timers()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        let now = Instant::now();
        let conns = share
            .conns
            .clone()
            .map(|_| Conn {
                stream: None,
                generation: 0,
                registered: EpollFlags::empty(),
                state: State::Idle,
                intended: now,
                started: now,
                written: 0,
                reader: Reader::new(job.response),
                seq: 0,
                next_due: now,
            })
            .collect();
        let interval = job
            .rate
            .map(|rate| Duration::from_secs_f64(job.concurrency as f64 / rate));
        Ok(Worker {
            job,
            epoll,
            events: vec![EpollEvent::empty(); EVENTS_PER_WAIT],
            conns,
            first_conn: share.conns.start,
            buf: vec![0; READ_BUFFER],
            // Only a request with keys to fill needs a copy of its own.
            keyed: if job.request.is_fixed() {
                Vec::new()
            } else {
                job.request.bytes.clone()
            },
            budget: share.budget,
            stop_at: None,
            interval,
            wake: BinaryHeap::new(),
            due_now: Vec::new(),
            active: 0,
            next_scan: now,
            setup_error: None,
            ok: 0,
            reported: 0,
            errors: ErrorCounts::default(),
            first_error: None,
            latency: LatencyHistogram::new(),
            uncorrected: job.rate.map(|_| LatencyHistogram::new()),
            send: CallTimer::default(),
            recv: CallTimer::default(),
            connections_opened: 0,
            started: now,
            share_index: share.index,
            latency_before: LatencyHistogram::new(),
            report_interval: share.intervals.clone().map(|(sender, length)| IntervalState {
                sender,
                length,
                index: 0,
                ends: now + length,
                requests_at: 0,
                errors_at: ErrorCounts::default(),
            }),
            cpu_at_start: Duration::ZERO,
            runq_at_start: Duration::ZERO,
            stopped_early: false,
        })
    }

    fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.stream.is_some()).count()
    }

    /// Opens every persistent connection before the clock starts, at most
    /// [`CONNECTS_IN_FLIGHT`] handshakes at a time, each given the request timeout. Failures are
    /// not counted as errors (no request was lost): the connection retries when it has a request
    /// to send.
    fn connect_all(&mut self) -> Result<()> {
        let (mut next, mut pending) = (0, 0);
        let mut next_scan = Instant::now() + TIMEOUT_SCAN;
        loop {
            while pending < CONNECTS_IN_FLIGHT && next < self.conns.len() {
                match self.open(next) {
                    Ok(()) => {
                        self.conns[next].state = State::Connecting;
                        self.conns[next].started = Instant::now();
                        pending += 1;
                    }
                    Err(e) => self.note_setup_error(e),
                }
                next += 1;
            }
            let now = Instant::now();
            if pending == 0 || now >= self.job.hard_deadline || self.job.stopped() {
                break;
            }
            // A connect slower than a request may be is given up here and retried in the run;
            // looked for every TIMEOUT_SCAN, as in the run (a pass reads every connection).
            if now >= next_scan {
                for i in 0..self.conns.len() {
                    if self.conns[i].state == State::Connecting
                        && now.duration_since(self.conns[i].started) >= self.job.request_timeout
                    {
                        self.give_up_connect(i, format!("connect took over {:?}", self.job.request_timeout));
                        pending -= 1;
                    }
                }
                next_scan = now + TIMEOUT_SCAN;
            }
            let timeout = Some(next_scan.min(self.job.hard_deadline).saturating_duration_since(now));
            let n = sys::wait_precise(&self.epoll, &mut self.events, timeout).context("epoll_wait while connecting")?;
            for e in 0..n {
                let event = self.events[e];
                let Some(i) = self.conn_of(event.data()) else {
                    continue;
                };
                if self.conns[i].state != State::Connecting {
                    continue;
                }
                pending -= 1;
                self.conns[i].state = State::Idle;
                if let Err(e) = self.finish_connect(i) {
                    self.note_setup_error(e);
                    self.close(i, true);
                }
            }
        }
        let why = if self.job.stopped() {
            "asked to stop while connecting"
        } else {
            "still connecting at the run's hard time limit"
        };
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Connecting {
                self.give_up_connect(i, why);
            }
        }
        Ok(())
    }

    fn run_loop(&mut self) {
        self.started = Instant::now();
        self.cpu_at_start = sys::thread_cpu_time();
        if let Some(interval) = &mut self.report_interval {
            interval.ends = self.started + interval.length;
        }
        self.runq_at_start = sys::thread_run_delay();
        let start = self.started;
        self.stop_at = self.job.duration.map(|d| start + d);
        self.next_scan = start + TIMEOUT_SCAN;
        if let Some(rate) = self.job.rate {
            // Connection g sends at start + g/rate, then every concurrency/rate: together an
            // evenly spaced schedule at `rate`.
            for (i, conn) in self.conns.iter_mut().enumerate() {
                let phase = (self.first_conn + i) as f64 / rate;
                conn.next_due = start + Duration::from_secs_f64(phase);
            }
        }
        for i in 0..self.conns.len() {
            self.begin(i, start);
        }
        let mut stopped_at = None;
        loop {
            let now = Instant::now();
            self.end_intervals(now);
            if now >= self.job.hard_deadline {
                self.abandon(true);
                break;
            }
            if self.job.stopped() && now.duration_since(*stopped_at.get_or_insert(now)) >= STOP_GRACE {
                self.abandon(false);
                break;
            }
            self.start_due(now);
            if self.active > 0 && now >= self.next_scan {
                self.expire(now);
                self.next_scan = now + TIMEOUT_SCAN;
            }
            if self.active == 0 && (self.wake.is_empty() || !self.may_issue(now)) {
                break;
            }
            let mut until = self.job.hard_deadline;
            if let Some(Reverse((due, _))) = self.wake.peek() {
                until = until.min(*due);
            }
            if self.active > 0 {
                until = until.min(self.next_scan);
            }
            if let Some(interval) = &self.report_interval {
                until = until.min(interval.ends);
            }
            // A stop is asked for from a signal handler on another thread: look again soon.
            if self.job.stop.is_some() {
                until = until.min(now + TIMEOUT_SCAN);
            }
            let timeout = Some(until.saturating_duration_since(now));
            let n = match self.wait(now, timeout) {
                Ok(n) => n,
                Err(e) => {
                    // Cannot happen with a valid epoll fd and buffer; end the run rather than
                    // spin, and say why.
                    self.note_error(ErrorKind::Io, format!("epoll_wait: {e}"));
                    self.abandon(true);
                    break;
                }
            };
            for e in 0..n {
                let event = self.events[e];
                if let Some(i) = self.conn_of(event.data()) {
                    self.on_event(i, event.events());
                }
            }
        }
        // Persistent connections close here, with a FIN: the run is over and nothing is unread.
        for conn in &mut self.conns {
            conn.stream = None;
        }
    }

    /// Waits for events until `timeout`; with [`NAP_MIN_IN_FLIGHT`] requests in flight, it naps
    /// first (see [`NAP`]).
    fn wait(&mut self, now: Instant, timeout: Option<Duration>) -> io::Result<usize> {
        if self.active >= NAP_MIN_IN_FLIGHT {
            let n = sys::wait_precise(&self.epoll, &mut self.events, Some(Duration::ZERO))?;
            if n > 0 {
                return Ok(n);
            }
            let nap = timeout.map_or(NAP, |t| t.min(NAP));
            std::thread::sleep(nap);
            let left = timeout.map(|t| t.saturating_sub(now.elapsed()));
            return sys::wait_precise(&self.epoll, &mut self.events, left);
        }
        sys::wait_precise(&self.epoll, &mut self.events, timeout)
    }

    fn conn_of(&self, token: u64) -> Option<usize> {
        let i = (token & u32::MAX as u64) as usize;
        let generation = (token >> 32) as u32;
        self.conns
            .get(i)
            .filter(|c| c.generation == generation && c.stream.is_some())
            .map(|_| i)
    }

    fn may_issue(&self, now: Instant) -> bool {
        self.budget != Some(0) && self.stop_at.is_none_or(|stop| now < stop) && !self.job.stopped()
    }

    /// Starts connection `i`'s next request, now or (open loop) when it is due.
    fn begin(&mut self, i: usize, now: Instant) {
        if !self.may_issue(now) {
            return;
        }
        let intended = match self.interval {
            None => now,
            Some(interval) => {
                let due = self.conns[i].next_due;
                if due > now {
                    if self.stop_at.is_none_or(|stop| due < stop) {
                        self.wake.push(Reverse((due, i)));
                    }
                    return;
                }
                self.conns[i].next_due = due + interval;
                due
            }
        };
        if let Some(budget) = &mut self.budget {
            *budget -= 1;
        }
        self.active += 1;
        let conn = &mut self.conns[i];
        conn.intended = intended;
        conn.started = now;
        conn.written = 0;
        conn.reader.reset();
        conn.seq += 1;
        if conn.stream.is_some() {
            conn.state = State::InFlight;
            self.send(i);
        } else {
            conn.state = State::Connecting;
            if let Err(e) = self.open(i) {
                self.fail(i, ErrorKind::Connect, e);
            }
        }
    }

    fn start_due(&mut self, now: Instant) {
        // Collected first: a connection that fails again goes back on the heap, possibly due
        // at once, and must wait for the next turn rather than loop here.
        let mut due_now = std::mem::take(&mut self.due_now);
        while let Some(&Reverse((due, i))) = self.wake.peek() {
            if due > now {
                break;
            }
            self.wake.pop();
            due_now.push(i);
        }
        for i in due_now.drain(..) {
            if self.conns[i].state == State::Idle {
                self.begin(i, now);
            }
        }
        self.due_now = due_now;
    }

    /// Starts a non-blocking connect; the socket reports writable when it completes.
    fn open(&mut self, i: usize) -> io::Result<()> {
        let target = self.job.target;
        let socket = Socket::new(
            Domain::for_address(target),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        socket.set_tcp_nodelay(true)?;
        if !self.job.sources.is_empty() {
            let source = self.job.sources[(self.first_conn + i) % self.job.sources.len()];
            // The port is picked at connect, by the whole 4-tuple: otherwise bind reserves a
            // port for every destination, and one source address holds no more connections
            // than without the bind.
            setsockopt(&socket, sockopt::IpBindAddressNoPort, &true)?;
            socket.bind(&SocketAddr::new(source, 0).into())?;
        }
        if self.job.mode == ConnectionMode::PerRequest {
            // Close with RST rather than FIN: a connection per request would otherwise leave
            // one TIME_WAIT socket per request and run out of ephemeral ports within seconds.
            socket.set_linger(Some(Duration::ZERO))?;
        }
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        self.connections_opened += 1;
        let conn = &mut self.conns[i];
        let interest = EpollFlags::EPOLLOUT;
        self.epoll
            .add(&socket, EpollEvent::new(interest, token(i, conn.generation)))?;
        conn.registered = interest;
        conn.stream = Some(socket.into());
        Ok(())
    }

    /// Checks the outcome of a connect that reported writable, and waits for responses from now on.
    fn finish_connect(&mut self, i: usize) -> io::Result<()> {
        let stream = self.conns[i].stream.as_ref().expect("connecting socket");
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        self.set_interest(i, EpollFlags::EPOLLIN)
    }

    fn set_interest(&mut self, i: usize, interest: EpollFlags) -> io::Result<()> {
        let conn = &mut self.conns[i];
        if conn.registered != interest {
            let stream = conn.stream.as_ref().expect("open socket");
            let mut event = EpollEvent::new(interest, token(i, conn.generation));
            self.epoll.modify(stream, &mut event)?;
            conn.registered = interest;
        }
        Ok(())
    }

    fn on_event(&mut self, i: usize, flags: EpollFlags) {
        match self.conns[i].state {
            State::Connecting => match self.finish_connect(i) {
                Ok(()) => {
                    self.conns[i].state = State::InFlight;
                    self.send(i);
                }
                Err(e) => self.fail(i, ErrorKind::Connect, e),
            },
            State::InFlight => {
                let unsent = self.conns[i].written < self.job.request.len();
                if unsent && flags.contains(EpollFlags::EPOLLOUT) {
                    self.send(i);
                }
                let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
                if self.conns[i].state == State::InFlight && flags.intersects(readable) {
                    self.receive(i);
                }
            }
            State::Idle => self.on_idle_event(i),
        }
    }

    /// One `write` of the rest of the request; the rest waits for EPOLLOUT.
    fn send(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let stream = conn.stream.as_ref().expect("open socket");
        let request = if self.job.request.is_fixed() {
            &self.job.request.bytes
        } else {
            let number = (self.first_conn + i) as u64;
            self.job.request.fill(number, conn.seq, &mut self.keyed);
            &self.keyed
        };
        let begun = Instant::now();
        let result = (&*stream).write(&request[conn.written..]);
        self.send.record(begun.elapsed(), *result.as_ref().unwrap_or(&0));
        match result {
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return self.fail(i, ErrorKind::Io, format!("send: {e}")),
        }
        let mut interest = EpollFlags::EPOLLIN;
        if conn.written < self.job.request.len() {
            interest |= EpollFlags::EPOLLOUT;
        }
        if let Err(e) = self.set_interest(i, interest) {
            self.fail(i, ErrorKind::Io, format!("epoll_ctl: {e}"));
        }
    }

    /// One `read`, read by the protocol's framing as it arrives.
    fn receive(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let stream = conn.stream.as_ref().expect("open socket");
        let begun = Instant::now();
        let result = (&*stream).read(&mut self.buf);
        let done = Instant::now();
        self.recv.record(done - begun, *result.as_ref().unwrap_or(&0));
        let verdict = match result {
            Ok(0) => conn.reader.eof(self.job.response),
            Ok(n) => conn.reader.feed(self.job.response, &self.buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return self.fail(i, ErrorKind::Io, format!("recv: {e}")),
        };
        let (failure, keep_alive) = match verdict {
            Verdict::Partial => return,
            Verdict::Broken { kind, why } => return self.fail(i, kind, why),
            Verdict::Done { keep_alive } => (None, keep_alive),
            Verdict::Failed { kind, why, keep_alive } => (Some((kind, why)), keep_alive),
        };
        if self.conns[i].written < self.job.request.len() {
            let why = "the whole response came before the request was sent".to_string();
            return self.fail(i, ErrorKind::Mismatch, why);
        }
        self.answered(i, done, failure, keep_alive);
    }

    /// A whole response: correct, or one that says the request failed. The connection stays
    /// open for the next request when `keep_alive` (and each request does not have its own).
    fn answered(&mut self, i: usize, done: Instant, failure: Option<(ErrorKind, String)>, keep_alive: bool) {
        let conn = &mut self.conns[i];
        match failure {
            None => {
                self.latency.record(done - conn.intended);
                if let Some(uncorrected) = &mut self.uncorrected {
                    uncorrected.record(done - conn.started);
                }
                self.ok += 1;
            }
            Some((kind, why)) => {
                self.errors.count(kind);
                self.note_error(kind, why);
            }
        }
        let conn = &mut self.conns[i];
        conn.state = State::Idle;
        self.active -= 1;
        self.report_progress(false);
        if self.job.mode == ConnectionMode::PerRequest || !keep_alive {
            self.close(i, false);
        }
        self.begin(i, done);
    }

    /// Data or EOF on a connection with no request in flight (open loop between requests, or
    /// after this worker's last request).
    fn on_idle_event(&mut self, i: usize) {
        let stream = self.conns[i].stream.as_ref().expect("open socket");
        match (&*stream).read(&mut self.buf) {
            Ok(0) => self.close(i, false),
            Ok(n) => {
                let why = format!("{n} bytes with no request in flight");
                self.note_error(ErrorKind::Unsolicited, why);
                self.errors.count(ErrorKind::Unsolicited);
                self.close(i, true);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.close(i, true),
        }
    }

    /// Adds finished requests to the shared progress counter, every 256 (one shared cache line
    /// touched per request would cost more than the request's own bookkeeping; per 256 it is
    /// fine-grained enough to read throughput over one-second windows).
    fn report_progress(&mut self, flush: bool) {
        let Some(progress) = self.job.progress else {
            return;
        };
        let finished = self.ok + self.errors.total();
        if flush || finished - self.reported >= 256 {
            progress.fetch_add(finished - self.reported, Ordering::Relaxed);
            self.reported = finished;
        }
    }

    /// Counts a failed request, resets its connection and schedules the connection's next one.
    fn fail(&mut self, i: usize, kind: ErrorKind, why: impl Display) {
        self.errors.count(kind);
        self.report_progress(false);
        self.note_error(kind, why);
        if self.conns[i].state != State::Idle {
            self.conns[i].state = State::Idle;
            self.active -= 1;
        }
        self.close(i, true);
        let delay = match kind {
            ErrorKind::Connect => CONNECT_RETRY_DELAY,
            _ => Duration::ZERO,
        };
        self.wake.push(Reverse((Instant::now() + delay, i)));
    }

    /// A connect that is not waited for any longer: its socket reset, `why` noted.
    fn give_up_connect(&mut self, i: usize, why: impl Display) {
        self.note_setup_error(why);
        self.conns[i].state = State::Idle;
        self.close(i, true);
    }

    fn note_setup_error(&mut self, why: impl Display) {
        if self.setup_error.is_none() {
            self.setup_error = Some(why.to_string());
        }
    }

    fn note_error(&mut self, kind: ErrorKind, why: impl Display) {
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {why}", kind.name()));
        }
    }

    /// Closes connection `i`, with `reset` by RST so that a half-read response cannot confuse
    /// anything (and no TIME_WAIT is left behind). Closing also removes it from the epoll set.
    fn close(&mut self, i: usize, reset: bool) {
        let conn = &mut self.conns[i];
        if let Some(stream) = conn.stream.take()
            && reset
        {
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        conn.generation = conn.generation.wrapping_add(1);
        conn.registered = EpollFlags::empty();
    }

    /// Fails requests that have been in flight (or connecting) longer than the timeout.
    fn expire(&mut self, now: Instant) {
        let timeout = self.job.request_timeout;
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.state != State::Idle && now.duration_since(conn.started) >= timeout {
                let why = format!("no complete response within {timeout:?}");
                self.fail(i, ErrorKind::Timeout, why);
            }
        }
    }

    /// Ends the run now: nothing restarts, and what is still in flight is closed. At the hard
    /// limit (`timed_out`) each is a timeout; asked to stop, after the grace, it is neither
    /// answered nor failed and goes uncounted (the report says the run was interrupted).
    fn abandon(&mut self, timed_out: bool) {
        self.stopped_early |= timed_out;
        for i in 0..self.conns.len() {
            if self.conns[i].state != State::Idle {
                self.conns[i].state = State::Idle;
                self.active -= 1;
                if timed_out {
                    self.errors.count(ErrorKind::Timeout);
                    self.note_error(ErrorKind::Timeout, "still in flight at the run's hard time limit");
                }
                self.close(i, true);
            }
        }
        self.wake.clear();
    }

    /// Sends the figures of every interval that has ended by `now`.
    fn end_intervals(&mut self, now: Instant) {
        while self.report_interval.as_ref().is_some_and(|i| now >= i.ends) {
            self.send_interval(false);
        }
    }

    /// Sends the current interval's figures and starts the next interval.
    fn send_interval(&mut self, last: bool) {
        let (ok, errors, connections) = (self.ok, self.errors, self.open_count() as u64);
        let Some(interval) = &mut self.report_interval else {
            return;
        };
        let length = if last {
            interval
                .length
                .saturating_sub(interval.ends.saturating_duration_since(Instant::now()))
        } else {
            interval.length
        };
        let sample = IntervalSample {
            length,
            worker: self.share_index,
            index: interval.index,
            latency: self.latency.clone(),
            requests: ok - interval.requests_at,
            errors: errors.since(&interval.errors_at),
            connections,
            last,
        };
        // The collector outlives the workers; a send can only fail once it is gone.
        let _ = interval.sender.send(sample);
        interval.index += 1;
        interval.ends += interval.length;
        (interval.requests_at, interval.errors_at) = (ok, errors);
        self.latency_before.merge(&self.latency);
        self.latency.reset();
    }

    fn into_outcome(mut self, share: &Share) -> Outcome {
        self.report_progress(true);
        if self.report_interval.is_some() {
            self.send_interval(true);
            self.latency = std::mem::take(&mut self.latency_before);
        }
        Outcome {
            index: share.index,
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error,
            latency: self.latency,
            uncorrected: self.uncorrected,
            send: self.send,
            recv: self.recv,
            connections: self.conns.len(),
            connections_opened: self.connections_opened,
            started: self.started,
            finished: Instant::now(),
            cpu_time: sys::thread_cpu_time().saturating_sub(self.cpu_at_start),
            runq_wait: sys::thread_run_delay().saturating_sub(self.runq_at_start),
            stopped_early: self.stopped_early,
            pinned_cpu: share.cpu,
            cpu: sys::current_cpu(),
        }
    }
}
