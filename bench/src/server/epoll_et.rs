//! The `epoll-et` model: one thread, one edge-triggered epoll set, `WAIT` as timers of the loop
//! (the shared `reactor` with `Trigger::Edge`).
//!
//! Each connection is registered once, for `EPOLLIN | EPOLLOUT | EPOLLET`, and never modified;
//! an event only says that something changed, so the loop remembers per connection whether it
//! is readable and writable and clears that only on `EAGAIN`. Hence the loops of seed 004,
//! note 1: the loop accepts until `EAGAIN` (a connection left in the queue would never be
//! reported again), and reads and writes go on until `EAGAIN` or until the connection can use
//! no more (input full, nothing to send). When the connection can use more later (a `WAIT`
//! ends, output drains), it resumes from the remembered flag without waiting for a new edge.
//!
//! Draining to `EAGAIN` lets one fast client (a big `STREAM` to a fast reader) hold the loop;
//! so a connection gets `EDGE_BUDGET` (16) read/write rounds per turn, and one
//! that has work left after them is served again next turn, after everyone else's events.
//!
//! Compared with level-triggered [`super::epoll`]: no `epoll_ctl(MOD)` when a connection's
//! needs change, but an extra `EAGAIN` read or write per drained socket.

use super::epoll::EpollPoller;
use super::reactor::{Reactor, Trigger};
use anyhow::Result;
use std::net::TcpListener;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    Reactor::new(listener, EpollPoller::new(Trigger::Edge)?)?.run()
}
