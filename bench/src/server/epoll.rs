//! The `epoll` model: one thread, one level-triggered epoll set over the listener and every
//! connection, `WAIT` as timers of the event loop (the shared `reactor`).
//!
//! Level-triggered on purpose: a socket that still has data (or room) is reported again on the
//! next `epoll_wait`, so each turn does at most one read and one write per ready connection and
//! moves on. That keeps a big `STREAM` or a fast pipelining client from starving the others, and
//! saves the `EAGAIN` read that edge-triggered code needs to prove a socket drained (compare
//! [`super::epoll_et`]). The interest set follows what the connection can use (`EPOLLIN` only
//! with room in its input, `EPOLLOUT` only with output pending), so a level-triggered socket
//! never spins.
//!
//! `EpollPoller` is also the poller of `epoll-et` (edge-triggered), `epoll-workers` (one per
//! thread) and `prefork` (one per process, with an exclusive wakeup on the shared listener).

use super::reactor::{Interest, LISTENER, Poller, Reactor, Ready, Trigger};
use crate::sys;
use anyhow::{Context, Result};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::io;
use std::net::TcpListener;
use std::os::fd::BorrowedFd;
use std::time::Duration;

const EVENTS_PER_WAIT: usize = 1024;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    Reactor::new(listener, EpollPoller::new(Trigger::Level)?)?.run()
}

pub(super) struct EpollPoller {
    epoll: Epoll,
    events: Vec<EpollEvent>,
    trigger: Trigger,
    /// Register the listener with `EPOLLEXCLUSIVE`: when several processes' epoll sets watch
    /// one listening socket, a new connection wakes one (or a few) of them, not all.
    exclusive_listener: bool,
}

impl EpollPoller {
    pub(super) fn new(trigger: Trigger) -> Result<EpollPoller> {
        Ok(EpollPoller {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?,
            events: vec![EpollEvent::empty(); EVENTS_PER_WAIT],
            trigger,
            exclusive_listener: false,
        })
    }

    /// See [`EpollPoller::exclusive_listener`](EpollPoller#structfield.exclusive_listener).
    pub(super) fn with_exclusive_listener(mut self) -> EpollPoller {
        self.exclusive_listener = true;
        self
    }

    fn flags(&self, token: u64, interest: Interest) -> EpollFlags {
        let mut flags = EpollFlags::empty();
        if token == LISTENER {
            flags |= EpollFlags::EPOLLIN;
            if self.exclusive_listener {
                flags |= EpollFlags::EPOLLEXCLUSIVE;
            }
        } else if self.trigger == Trigger::Edge {
            // Registered once for everything; readiness is remembered by the reactor.
            flags |= EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT;
        } else {
            if interest.read {
                flags |= EpollFlags::EPOLLIN;
            }
            if interest.write {
                flags |= EpollFlags::EPOLLOUT;
            }
        }
        if self.trigger == Trigger::Edge {
            flags |= EpollFlags::EPOLLET;
        }
        flags
    }
}

impl Poller for EpollPoller {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn trigger(&self) -> Trigger {
        self.trigger
    }

    fn add(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let event = EpollEvent::new(self.flags(token, interest), token);
        Ok(self.epoll.add(fd, event)?)
    }

    fn modify(&mut self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let mut event = EpollEvent::new(self.flags(token, interest), token);
        Ok(self.epoll.modify(fd, &mut event)?)
    }

    fn remove(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Closing the socket (its only descriptor) takes it out of the epoll set: saves a syscall.
    fn forget(&mut self, _fd: BorrowedFd<'_>) {}

    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<(u64, Ready)>) -> io::Result<()> {
        let n = sys::wait_ms(&self.epoll, &mut self.events, timeout)?;
        ready.extend(self.events[..n].iter().map(|event| {
            let flags = event.events();
            let r = Ready {
                readable: flags.contains(EpollFlags::EPOLLIN),
                writable: flags.contains(EpollFlags::EPOLLOUT),
                hangup: flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP),
            };
            (event.data(), r)
        }));
        Ok(())
    }
}
