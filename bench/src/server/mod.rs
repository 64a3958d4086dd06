//! The benchmark servers: one module per concurrency model, all speaking [`crate::protocol`].
//!
//! A model is a function that serves a bound listener until the process is killed. Models built
//! on a readiness multiplexer share [`conn::Conn`], so they differ only in how they wait. To add
//! one (iterative, threads, select, poll, epoll-et, ...): write `server/<name>.rs` with a
//! `serve(TcpListener) -> Result<()>`, add a variant to [`Model`] and its name to
//! [`Model::ALL`] / [`Model::name`].

mod child;
pub mod conn;
pub mod epoll;

pub use child::{ServerChild, spawn_child};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;

/// Accept queue length asked for; the kernel caps it at `net.core.somaxconn` (4096 by default).
/// A short queue would drop SYNs when 10,000 clients connect at once, and each dropped SYN costs
/// the client a one-second retransmission.
const BACKLOG: i32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// One thread, level-triggered epoll, WAIT as timers in the loop.
    Epoll,
}

impl Model {
    pub const ALL: &'static [Model] = &[Model::Epoll];

    pub fn name(self) -> &'static str {
        match self {
            Model::Epoll => "epoll",
        }
    }

    /// Serves `listener` until the process is killed; returns only on a fatal error.
    pub fn serve(self, listener: TcpListener) -> Result<()> {
        match self {
            Model::Epoll => epoll::serve(listener),
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
        write!(
            f,
            "unknown server model {:?} (known: {})",
            self.0,
            known.join(", ")
        )
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
/// connections sit in TIME_WAIT) and a long accept queue.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)
        .context("creating the listening socket")?;
    socket
        .set_reuse_address(true)
        .context("setting SO_REUSEADDR")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    socket
        .listen(BACKLOG)
        .with_context(|| format!("listening on {addr}"))?;
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
        assert!(err.to_string().contains("epoll"), "{err}");
    }
}
