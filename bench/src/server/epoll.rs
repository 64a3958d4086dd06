//! The `epoll` model: one thread, one level-triggered epoll set over the listener and every
//! connection, `WAIT` as timers of the event loop.
//!
//! Level-triggered on purpose: a socket that still has data (or room) is reported again on the
//! next `epoll_wait`, so each turn does at most one read and one write per ready connection and
//! moves on. That keeps a big `STREAM` or a fast pipelining client from starving the others, and
//! saves the `EAGAIN` read that edge-triggered code needs to prove a socket drained. The
//! interest set follows what the connection can use (`EPOLLIN` only with room in its input,
//! `EPOLLOUT` only with output pending), so a level-triggered socket never spins.

use super::conn::Conn;
use crate::sys;
use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{SockFlag, accept4};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const LISTENER: u64 = u64::MAX;
const EVENTS_PER_WAIT: usize = 1024;
/// How long to stop accepting after running out of file descriptors: with a level-triggered
/// listener, retrying at once would spin on EMFILE.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    let mut server = Server::new(listener)?;
    loop {
        server.turn()?;
    }
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    conns: Slab<Entry>,
    /// `WAIT` deadlines: (when, slab key, connection id). Entries of connections that closed
    /// meanwhile are recognised by the id and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    events: Vec<EpollEvent>,
}

struct Entry {
    conn: Conn,
    /// Tells this connection from a later one in the same slab slot.
    id: u64,
    interest: EpollFlags,
    timer: Option<Instant>,
}

/// The epoll token of a connection: slab key in the low half, the low half of its id in the
/// high half, so that an event still queued for a closed connection is not applied to its
/// successor in the same slot.
fn token(key: usize, id: u64) -> u64 {
    (id << 32) | key as u64
}

impl Server {
    fn new(listener: TcpListener) -> Result<Server> {
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .context("adding the listener to epoll")?;
        Ok(Server {
            epoll,
            listener,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            accept_paused_until: None,
            events: vec![EpollEvent::empty(); EVENTS_PER_WAIT],
        })
    }

    /// One `epoll_wait` and everything that became ready or due.
    fn turn(&mut self) -> Result<()> {
        let timeout = self
            .next_deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        let n = sys::wait_ms(&self.epoll, &mut self.events, timeout).context("epoll_wait")?;
        for i in 0..n {
            let event = self.events[i];
            if event.data() == LISTENER {
                self.accept_all()?;
            } else {
                self.on_event(event.data(), event.events())?;
            }
        }
        self.fire_timers()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, ..))| *at);
        match (timer, self.accept_paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Accepts until the queue is empty: with many clients connecting at once, one accept per
    /// wakeup would leave the rest waiting a whole turn each.
    fn accept_all(&mut self) -> Result<()> {
        loop {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match accept4(self.listener.as_raw_fd(), flags) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this descriptor and nothing else owns it.
                    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
                    self.add_conn(stream)?;
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => continue,
                Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                    eprintln!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.epoll
                        .delete(&self.listener)
                        .context("pausing the listener")?;
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return Ok(());
                }
                Err(e) => bail!("accept4: {e}"),
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream) -> Result<()> {
        // Responses are small and latency is what is measured: never let Nagle hold one back
        // waiting for the client's delayed ACK.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let id = self.next_id;
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let interest = EpollFlags::EPOLLIN;
        self.epoll
            .add(&stream, EpollEvent::new(interest, token(entry.key(), id)))
            .context("adding a connection to epoll")?;
        entry.insert(Entry {
            conn: Conn::new(stream),
            id,
            interest,
            timer: None,
        });
        Ok(())
    }

    fn on_event(&mut self, token: u64, flags: EpollFlags) -> Result<()> {
        let key = (token & u32::MAX as u64) as usize;
        match self.conns.get(key) {
            Some(entry) if entry.id & u32::MAX as u64 == token >> 32 => self.service(key, flags),
            _ => Ok(()),
        }
    }

    /// Runs one connection as far as it goes without blocking, then updates what to wait for.
    fn service(&mut self, key: usize, flags: EpollFlags) -> Result<()> {
        let entry = &mut self.conns[key];
        let alive = if flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            // Reset or fully shut down: nothing more can be delivered.
            false
        } else {
            match step(&mut entry.conn, flags) {
                Ok(()) => !entry.conn.is_finished(),
                Err(e) => {
                    if !is_disconnect(&e) {
                        eprintln!("connection error: {e}");
                    }
                    false
                }
            }
        };
        if !alive {
            // Dropping the stream closes it, which also takes it out of the epoll set.
            self.conns.remove(key);
            return Ok(());
        }
        let interest = interest_of(&entry.conn);
        if interest != entry.interest {
            let mut event = EpollEvent::new(interest, token(key, entry.id));
            self.epoll
                .modify(entry.conn.stream(), &mut event)
                .context("epoll_ctl(MOD)")?;
            entry.interest = interest;
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

    fn fire_timers(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|at| at <= now) {
            self.accept_paused_until = None;
            self.epoll
                .add(
                    &self.listener,
                    EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
                )
                .context("resuming the listener")?;
        }
        while let Some(&Reverse((at, key, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let current = self
                .conns
                .get_mut(key)
                .filter(|e| e.id == id && e.timer == Some(at));
            if let Some(entry) = current {
                entry.timer = None;
                self.service(key, EpollFlags::empty())?;
            }
        }
        Ok(())
    }
}

/// At most one read and one write: level-triggered epoll reports the socket again next turn if
/// there is more.
fn step(conn: &mut Conn, flags: EpollFlags) -> io::Result<()> {
    if flags.contains(EpollFlags::EPOLLIN) && conn.wants_read() {
        ignore_would_block(conn.read())?;
    }
    // Output that was already pending is written when EPOLLOUT says there is room; fresh output
    // is tried at once, which for a small response saves a whole turn.
    let had_output = conn.wants_write();
    conn.process();
    if conn.wants_write() && (!had_output || flags.contains(EpollFlags::EPOLLOUT)) {
        ignore_would_block(conn.write())?;
        // Room in the output may let held-back requests (or the next STREAM chunk) run.
        conn.process();
    }
    Ok(())
}

fn interest_of(conn: &Conn) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if conn.wants_read() {
        flags |= EpollFlags::EPOLLIN;
    }
    if conn.wants_write() {
        flags |= EpollFlags::EPOLLOUT;
    }
    flags
}

fn ignore_would_block(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}

/// Errors that just mean the client went away; not worth a line on stderr each.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}
