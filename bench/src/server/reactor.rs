//! The single-threaded event loop shared by the readiness models: `select`, `poll`, `epoll`,
//! `epoll-et`, and the per-core loops of `epoll-workers` and `prefork`. A model supplies only a
//! [`Poller`] (how to wait); the loop owns the connections ([`Conn`]), accepts, runs `WAIT`
//! timers and decides when to read and write.
//!
//! Two disciplines, chosen by [`Poller::trigger`]:
//!
//! - [`Trigger::Level`]: the poller reports a socket for as long as it is ready, and is told to
//!   watch only what the connection can use (read while its input has room, write while output
//!   is pending), so a ready socket never spins. Each report gets at most one read and one
//!   write; a socket with more is reported again next turn, which keeps one big `STREAM` or a
//!   fast pipelining client from starving the others.
//! - `Trigger::Edge`: the poller reports a socket when it *becomes* ready, so the loop has to
//!   remember readiness itself (`readable` / `writable` per connection, cleared only by
//!   `EAGAIN`), must drain reads and writes until `EAGAIN` (or until the connection cannot take
//!   more, in which case it resumes from the remembered flag without a new event), and is
//!   registered once for both directions. For fairness a connection gets [`EDGE_BUDGET`] rounds
//!   per turn; one that used them up with work left goes on a run list served next turn, and
//!   the poller is then asked not to block.
//!
//! Every connection's `WAIT` deadline (and the linger after an error) is a timer in one heap;
//! the poller's timeout is the earliest one.

use super::conn::Conn;
use super::support::{ACCEPT_PAUSE, Accepted, Occurrences, accept, is_disconnect};
use anyhow::{Context, Result, bail};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// The token of the listening socket; connections' tokens never reach it (see [`token`]).
pub(super) const LISTENER: u64 = u64::MAX;
/// Read/write rounds an edge-triggered connection gets per turn before the others' turn.
pub(super) const EDGE_BUDGET: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    Level,
    Edge,
}

/// What to watch a socket for. Edge-triggered pollers ignore it for connections (they watch
/// both directions from the start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
}

/// What a poller reported for one socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up (both directions shut down, or reset): nothing more can be delivered.
    pub hangup: bool,
}

/// How a model waits. Tokens are opaque to the poller: it returns what it was given.
pub(super) trait Poller {
    /// The system call, for messages.
    fn name(&self) -> &'static str;

    fn trigger(&self) -> Trigger;

    /// Descriptors at or above this cannot be watched (`select`'s `FD_SETSIZE`).
    fn fd_limit(&self) -> Option<RawFd> {
        None
    }

    fn add(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()>;

    /// Changes what a registered socket is watched for (level-triggered only).
    fn modify(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()>;

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()>;

    /// The socket is about to be closed. Defaults to [`Poller::remove`]; epoll skips it, since
    /// closing the last descriptor of a socket takes it out of the epoll set anyway.
    fn forget(&mut self, fd: BorrowedFd<'_>) {
        let _ = self.remove(fd);
    }

    /// Waits until something is ready or `timeout` passes (`None`: no limit) and appends what
    /// is ready to `ready`. A signal counts as nothing ready.
    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<(u64, Ready)>) -> io::Result<()>;
}

pub(super) struct Reactor<P: Poller> {
    poller: P,
    listener: TcpListener,
    conns: Slab<Entry>,
    /// `WAIT` deadlines: (when, slab key, connection id). Entries of connections that closed
    /// meanwhile are recognised by the id and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Edge-triggered connections that used up their budget with work left: (key, id).
    runnable: Vec<(usize, u64)>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    ready: Vec<(u64, Ready)>,
    refused: Occurrences,
}

struct Entry {
    conn: Conn,
    /// Tells this connection from a later one in the same slab slot.
    id: u64,
    /// Level-triggered: what the poller watches for now.
    interest: Interest,
    timer: Option<Instant>,
    /// Edge-triggered: ready as far as we know (set by an event, cleared by EAGAIN).
    readable: bool,
    writable: bool,
    /// On the run list already.
    queued: bool,
}

/// The poller token of a connection: slab key in the low half, the low half of its id in the
/// high half, so that an event still queued for a closed connection is not applied to its
/// successor in the same slot.
fn token(key: usize, id: u64) -> u64 {
    (id << 32) | (key as u64 & u32::MAX as u64)
}

impl<P: Poller> Reactor<P> {
    /// Makes `listener` non-blocking and registers it.
    pub(super) fn new(listener: TcpListener, mut poller: P) -> Result<Reactor<P>> {
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        poller
            .add(listener.as_fd(), LISTENER, Interest::READ)
            .with_context(|| format!("adding the listener to {}", poller.name()))?;
        Ok(Reactor {
            poller,
            listener,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            runnable: Vec::new(),
            next_id: 0,
            accept_paused_until: None,
            ready: Vec::new(),
            refused: Occurrences::default(),
        })
    }

    /// Serves until a fatal error.
    pub(super) fn run(mut self) -> Result<()> {
        loop {
            self.turn()?;
        }
    }

    /// One wait and everything that became ready or due.
    fn turn(&mut self) -> Result<()> {
        let timeout = if self.runnable.is_empty() {
            self.next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        self.poller
            .wait(timeout, &mut ready)
            .with_context(|| self.poller.name())?;
        for &(token, flags) in &ready {
            if token == LISTENER {
                self.accept_all()?;
            } else {
                self.on_event(token, flags)?;
            }
        }
        self.ready = ready;
        self.run_runnable()?;
        self.fire_timers()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, ..))| *at);
        match (timer, self.accept_paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts until the queue is empty (seed 004, note 1): with many clients connecting at
    /// once, one accept per wakeup would leave the rest waiting a whole turn each, and an
    /// edge-triggered listener would not report them again at all.
    fn accept_all(&mut self) -> Result<()> {
        loop {
            match accept(&self.listener, true) {
                Ok(Accepted::Conn(stream)) => self.add_conn(stream)?,
                Ok(Accepted::Empty) => return Ok(()),
                Ok(Accepted::Retry) => continue,
                Ok(Accepted::Exhausted(e)) => {
                    eprintln!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.poller
                        .remove(self.listener.as_fd())
                        .context("pausing the listener")?;
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return Ok(());
                }
                Err(e) => bail!("accept4: {e}"),
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream) -> Result<()> {
        let fd = stream.as_raw_fd();
        if let Some(limit) = self.poller.fd_limit()
            && fd >= limit
        {
            if let Some(total) = self.refused.note() {
                eprintln!(
                    "{}: closing a new connection: its descriptor {fd} is not below {limit} \
                     (FD_SETSIZE), which {} cannot watch ({total} refused so far)",
                    self.poller.name(),
                    self.poller.name(),
                );
            }
            return Ok(()); // dropping the stream closes it
        }
        // Responses are small and latency is what is measured: never let Nagle hold one back
        // waiting for the client's delayed ACK.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let id = self.next_id;
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let interest = Interest::READ;
        self.poller
            .add(stream.as_fd(), token(entry.key(), id), interest)
            .with_context(|| format!("adding a connection to {}", self.poller.name()))?;
        entry.insert(Entry {
            conn: Conn::new(stream),
            id,
            interest,
            timer: None,
            readable: false,
            writable: false,
            queued: false,
        });
        Ok(())
    }

    fn on_event(&mut self, token: u64, ready: Ready) -> Result<()> {
        let key = (token & u32::MAX as u64) as usize;
        match self.conns.get(key) {
            Some(entry) if entry.id & u32::MAX as u64 == token >> 32 => self.service(key, ready),
            _ => Ok(()),
        }
    }

    /// Runs one connection as far as it goes without blocking (or as its budget allows), then
    /// updates what to wait for.
    fn service(&mut self, key: usize, ready: Ready) -> Result<()> {
        let trigger = self.poller.trigger();
        let entry = &mut self.conns[key];
        let outcome = if ready.hangup {
            // Reset or fully shut down: nothing more can be delivered.
            None
        } else {
            let stepped = match trigger {
                Trigger::Level => step_level(&mut entry.conn, ready).map(|()| false),
                Trigger::Edge => step_edge(entry, ready),
            };
            match stepped {
                Ok(more) if !entry.conn.is_finished() => Some(more),
                Ok(_) => None,
                Err(e) => {
                    if !is_disconnect(&e) {
                        eprintln!("connection error: {e}");
                    }
                    None
                }
            }
        };
        let Some(more) = outcome else {
            let entry = self.conns.remove(key);
            self.poller.forget(entry.conn.stream().as_fd());
            return Ok(());
        };
        if more && !entry.queued {
            entry.queued = true;
            self.runnable.push((key, entry.id));
        }
        if trigger == Trigger::Level {
            let interest = Interest {
                read: entry.conn.wants_read(),
                write: entry.conn.wants_write(),
            };
            if interest != entry.interest {
                self.poller
                    .modify(entry.conn.stream().as_fd(), token(key, entry.id), interest)
                    .with_context(|| format!("changing interest with {}", self.poller.name()))?;
                entry.interest = interest;
            }
        }
        let deadline = entry.conn.deadline();
        if deadline != entry.timer {
            if let Some(at) = deadline {
                self.timers.push(Reverse((at, key, entry.id)));
            }
            entry.timer = deadline;
        }
        Ok(())
    }

    fn run_runnable(&mut self) -> Result<()> {
        let mut list = std::mem::take(&mut self.runnable);
        for &(key, id) in &list {
            if let Some(entry) = self.conns.get_mut(key).filter(|e| e.id == id) {
                entry.queued = false;
                self.service(key, Ready::default())?;
            }
        }
        // Keep whichever list has the capacity; service() may have refilled self.runnable.
        list.clear();
        if self.runnable.is_empty() {
            self.runnable = list;
        }
        Ok(())
    }

    fn fire_timers(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.poller
                .add(self.listener.as_fd(), LISTENER, Interest::READ)
                .context("resuming the listener")?;
        }
        while let Some(&Reverse((at, key, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let current = self.conns.get_mut(key).filter(|e| e.id == id && e.timer == Some(at));
            if let Some(entry) = current {
                entry.timer = None;
                self.service(key, Ready::default())?;
            }
        }
        Ok(())
    }
}

/// Level-triggered: at most one read and one write; the poller reports the socket again next
/// turn if there is more.
fn step_level(conn: &mut Conn, ready: Ready) -> io::Result<()> {
    if ready.readable && conn.wants_read() {
        ignore_would_block(conn.read())?;
    }
    // Output that was already pending is written when the poller says there is room; fresh
    // output is tried at once, which for a small response saves a whole turn.
    let had_output = conn.wants_write();
    conn.process();
    if conn.wants_write() && (!had_output || ready.writable) {
        ignore_would_block(conn.write())?;
        // Room in the output may let held-back requests (or the next STREAM chunk) run.
        conn.process();
    }
    Ok(())
}

/// Edge-triggered: reads and writes until `EAGAIN` or until the connection can use no more,
/// for at most [`EDGE_BUDGET`] rounds. Returns whether the budget ran out with work left.
fn step_edge(entry: &mut Entry, ready: Ready) -> io::Result<bool> {
    entry.readable |= ready.readable;
    entry.writable |= ready.writable;
    let conn = &mut entry.conn;
    for _ in 0..EDGE_BUDGET {
        let mut progress = false;
        if entry.readable && conn.wants_read() {
            match conn.read() {
                // Ok(0) is EOF: the connection stops wanting to read.
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => entry.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(e),
            }
        }
        conn.process();
        if entry.writable && conn.wants_write() {
            match conn.write() {
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => entry.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(e),
            }
            conn.process();
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ignore_would_block(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}
