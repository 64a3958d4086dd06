//! The `epoll-workers` model: one thread per core, each with its own listening socket and its
//! own level-triggered epoll loop ([`super::epoll`]'s), sharing nothing.
//!
//! The listeners are bound to one port with `SO_REUSEPORT`, so the kernel spreads incoming
//! connections over them (by a hash of the addresses) and no two threads ever contend for an
//! accept or wake up for the same connection. The first listener is the one the caller bound
//! (with [`super::Model::bind`], which sets `SO_REUSEPORT` for this model) and printed; the
//! others are bound here to its concrete port, so `--addr 127.0.0.1:0` still means one port and
//! one `listening on` line. The threads are named `epoll-worker-<i>`; "per core" is the CPUs
//! the process may run on (`worker_count`).
//!
//! The price of the hash: a connection stays with the thread it landed on, so one thread busy
//! with a long `BURN` delays its own clients while the others idle; and connections that arrive
//! in the moment between the first bind and the others all go to the first thread.

use super::bind;
use super::epoll::EpollPoller;
use super::reactor::{Reactor, Trigger};
use super::support::worker_count;
use anyhow::{Context, Result, anyhow, ensure};
use socket2::SockRef;
use std::net::TcpListener;
use std::sync::mpsc;

/// Serves `listener` (bound with `SO_REUSEPORT`) and one more listener per extra core until the
/// process is killed; returns when a worker fails.
pub fn serve(listener: TcpListener, backlog: u32) -> Result<()> {
    let workers = worker_count();
    let addr = listener.local_addr().context("reading the bound address")?;
    let reuse_port = SockRef::from(&listener).reuse_port().context("reading SO_REUSEPORT")?;
    ensure!(
        reuse_port || workers == 1,
        "epoll-workers needs a listener bound with SO_REUSEPORT (bind it with Model::bind)"
    );
    let mut listeners = vec![listener];
    for i in 1..workers {
        let extra = bind(addr, backlog, true).with_context(|| format!("listener of worker {i}"))?;
        listeners.push(extra);
    }
    let (done, finished) = mpsc::channel();
    for (i, listener) in listeners.into_iter().enumerate() {
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("epoll-worker-{i}"))
            .spawn(move || {
                let result = EpollPoller::new(Trigger::Level)
                    .and_then(|poller| Reactor::new(listener, poller))
                    .and_then(Reactor::run);
                let _ = done.send((i, result));
            })
            .with_context(|| format!("starting worker {i}"))?;
    }
    drop(done);
    // The workers never stop on their own: the first to end takes the server with it.
    let (i, result) = finished.recv().map_err(|_| anyhow!("every worker thread vanished"))?;
    result.with_context(|| format!("worker {i}"))?;
    Err(anyhow!("worker {i} stopped"))
}
