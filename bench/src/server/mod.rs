//! The benchmark servers: one module per concurrency model, all speaking [`crate::protocol`]
//! through the same per-connection state machine, [`conn::Conn`]. The models differ only in how
//! they wait:
//!
//! | model | module | threads / processes | waiting |
//! |---|---|---|---|
//! | `iterative` | [`iterative`] | 1 thread | blocking accept, then blocking read/write of one client until it closes |
//! | `threads` | [`threads`] | 1 + 1 per connection (64 KiB stacks) | blocking read/write; `WAIT` sleeps the connection's thread |
//! | `select` | [`select`] | 1 thread | `select(2)`, level-triggered; connections with fd >= 1024 (`FD_SETSIZE`) are closed |
//! | `poll` | [`poll`] | 1 thread | `poll(2)`, level-triggered |
//! | `epoll` | [`epoll`] | 1 thread | `epoll`, level-triggered, interest follows the connection |
//! | `epoll-et` | [`epoll_et`] | 1 thread | `epoll`, edge-triggered; accept, read and write until `EAGAIN` |
//! | `epoll-workers` | [`epoll_workers`] | 1 per core | a `SO_REUSEPORT` listener and a level-triggered epoll loop per thread |
//! | `prefork` | [`prefork`] | 1 parent + 1 process per core | inherited listener, a level-triggered epoll loop per process |
//! | `async` | [`async_tasks`] | tokio multi-thread runtime, 1 worker per core | a task per connection, `AsyncFd` readiness, `WAIT` as `sleep_until` |
//!
//! Every model but `iterative` keeps serving everyone while one client waits (`WAIT`), reads
//! slowly (`STREAM` to a slow reader) or sends slowly (slowloris); in `iterative`, each of these
//! stalls all other clients, which is the point of having it. In every model a line longer than
//! [`crate::protocol::MAX_LINE`] is rejected and per-connection memory stays bounded (see
//! [`conn`]). "Per core" means per CPU the process may run on, so `--cpus 0` gives one worker.
//!
//! The readiness models (`select`, `poll`, `epoll`, `epoll-et`, and the loops inside
//! `epoll-workers` and `prefork`) share one event loop, `reactor`, and supply only a poller;
//! `iterative` and `threads` share one blocking driver, `blocking`.
//!
//! A model is a function that serves a bound listener until the process is killed. To add one:
//! write `server/<name>.rs` with a `serve(TcpListener) -> Result<()>` (a `Poller` for the
//! reactor, or a driver of [`conn::Conn`]), add a variant to [`Model`] and to [`Model::ALL`],
//! [`Model::name`] and [`Model::serve`]; if it needs a special listening socket, to
//! [`Model::bind`] too.

pub mod async_tasks;
mod blocking;
mod child;
pub mod conn;
pub mod epoll;
pub mod epoll_et;
pub mod epoll_workers;
pub mod iterative;
pub mod poll;
pub mod prefork;
mod reactor;
pub mod select;
pub mod selftime;
mod support;
pub mod threads;

pub use child::{ServerChild, ServerSpec, spawn_child, spawn_self_timed};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;

/// Accept queue length asked for by default; the kernel caps it at `net.core.somaxconn` (4096 by
/// default). A short queue would drop SYNs when 10,000 clients connect at once, and each dropped
/// SYN costs the client a one-second retransmission.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Largest listen backlog accepted from a user (the kernel's own cap is usually far below).
pub const MAX_BACKLOG: u32 = 65_535;

/// A concurrency model of the benchmark server; see the [module docs](self) for the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// One thread, blocking sockets, one client at a time: every waiting client stalls all
    /// others.
    Iterative,
    /// A thread per connection (64 KiB stack), blocking I/O, `WAIT` as a sleep of that thread.
    Threads,
    /// One thread, level-triggered `select(2)` loop; at most `FD_SETSIZE` (1024) descriptors,
    /// connections above that are closed with a line on stderr.
    Select,
    /// One thread, level-triggered `poll(2)` loop.
    Poll,
    /// One thread, level-triggered epoll, WAIT as timers in the loop.
    Epoll,
    /// One thread, edge-triggered epoll: accept, read and write until `EAGAIN`.
    EpollEt,
    /// One thread per core, each with its own `SO_REUSEPORT` listener and level-triggered epoll
    /// loop.
    EpollWorkers,
    /// One worker process per core forked after bind, sharing the listener, each with its own
    /// level-triggered epoll loop; the workers have their own tgids (profile them, not the
    /// parent).
    Prefork,
    /// tokio multi-thread runtime (one worker per core), one task per connection.
    Async,
}

impl Model {
    pub const ALL: &'static [Model] = &[
        Model::Iterative,
        Model::Threads,
        Model::Select,
        Model::Poll,
        Model::Epoll,
        Model::EpollEt,
        Model::EpollWorkers,
        Model::Prefork,
        Model::Async,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::Iterative => "iterative",
            Model::Threads => "threads",
            Model::Select => "select",
            Model::Poll => "poll",
            Model::Epoll => "epoll",
            Model::EpollEt => "epoll-et",
            Model::EpollWorkers => "epoll-workers",
            Model::Prefork => "prefork",
            Model::Async => "async",
        }
    }

    /// Whether one client's `WAIT`, slow reading or slow sending holds up the others: true only
    /// for [`Model::Iterative`].
    pub fn stalls_other_clients(self) -> bool {
        self == Model::Iterative
    }

    /// Whether the server's work happens in child processes rather than in the process started
    /// ([`Model::Prefork`]): a profiler must follow them.
    pub fn forks_workers(self) -> bool {
        self == Model::Prefork
    }

    /// The listening socket this model serves: [`bind`], with `SO_REUSEPORT` when `reuse_port`
    /// (several servers sharing a port) and always for [`Model::EpollWorkers`] (whose other
    /// listeners join its port).
    pub fn bind(self, addr: SocketAddr, backlog: u32, reuse_port: bool) -> Result<TcpListener> {
        bind(addr, backlog, reuse_port || self == Model::EpollWorkers)
    }

    /// Serves `listener` (from [`Model::bind`]) until the process is killed; returns only on a
    /// fatal error. `backlog` is for the listeners a model binds itself (epoll-workers' others).
    /// [`Model::Prefork`] forks, so call it from a single-threaded process.
    pub fn serve(self, listener: TcpListener, backlog: u32) -> Result<()> {
        match self {
            Model::Iterative => iterative::serve(listener),
            Model::Threads => threads::serve(listener),
            Model::Select => select::serve(listener),
            Model::Poll => poll::serve(listener),
            Model::Epoll => epoll::serve(listener),
            Model::EpollEt => epoll_et::serve(listener),
            Model::EpollWorkers => epoll_workers::serve(listener, backlog),
            Model::Prefork => prefork::serve(listener),
            Model::Async => async_tasks::serve(listener),
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownModel(pub String);

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
        write!(f, "unknown server model {:?} (known: {})", self.0, known.join(", "))
    }
}

impl std::error::Error for UnknownModel {}

impl FromStr for Model {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        Model::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownModel(s.to_string()))
    }
}

/// A listening socket on `addr` with `SO_REUSEADDR` (so a restarted server can rebind while old
/// connections sit in TIME_WAIT) and an accept queue of `backlog`; with `reuse_port`,
/// `SO_REUSEPORT` as well, so that more listeners (also with `SO_REUSEPORT`, of the same user)
/// can bind the same port and share its connections.
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).context("creating the listening socket")?;
    socket.set_reuse_address(true).context("setting SO_REUSEADDR")?;
    if reuse_port {
        socket.set_reuse_port(true).context("setting SO_REUSEPORT")?;
    }
    socket.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).with_context(|| format!("listening on {addr}"))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_round_trip() {
        for model in Model::ALL {
            assert_eq!(model.name().parse::<Model>(), Ok(*model));
            assert_eq!(model.to_string(), model.name());
        }
        let err = "fork-bomb".parse::<Model>().unwrap_err();
        for model in Model::ALL {
            assert!(err.to_string().contains(model.name()), "{err}");
        }
        let mut names: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 9, "every model once: {names:?}");
    }

    #[test]
    fn only_iterative_stalls_and_only_prefork_forks() {
        let stalls: Vec<_> = Model::ALL.iter().filter(|m| m.stalls_other_clients()).collect();
        assert_eq!(stalls, [&Model::Iterative]);
        let forks: Vec<_> = Model::ALL.iter().filter(|m| m.forks_workers()).collect();
        assert_eq!(forks, [&Model::Prefork]);
    }

    #[test]
    fn reuseport_listeners_share_a_port() {
        let first = Model::EpollWorkers
            .bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG, false)
            .unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(addr, DEFAULT_BACKLOG, true).expect("joins the port");
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without SO_REUSEPORT on the first, the port is taken.
        let plain = Model::Epoll
            .bind("127.0.0.1:0".parse().unwrap(), DEFAULT_BACKLOG, false)
            .unwrap();
        assert!(bind(plain.local_addr().unwrap(), DEFAULT_BACKLOG, true).is_err());
    }
}
