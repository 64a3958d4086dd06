//! The `iterative` model: one thread, blocking sockets; accept a client, serve it until it
//! closes (the shared `blocking` driver), then accept the next.
//!
//! Everything that waits holds up everyone: a `WAIT`, a slow reader of a `STREAM`, a client that
//! sends its request a byte at a time, or just a client that keeps its connection open. The
//! others sit in the accept queue (their `connect` succeeds; nobody answers). That is the
//! point: it is the baseline of seed 003, "the server is completely paralyzed".

use super::blocking;
use super::support::{ACCEPT_PAUSE, Accepted, accept};
use anyhow::{Context, Result, bail};
use std::net::TcpListener;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    listener
        .set_nonblocking(false)
        .context("making the listener blocking")?;
    loop {
        match accept(&listener, false) {
            Ok(Accepted::Conn(stream)) => blocking::serve_conn(stream),
            Ok(Accepted::Empty | Accepted::Retry) => {}
            Ok(Accepted::Exhausted(e)) => {
                eprintln!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                std::thread::sleep(ACCEPT_PAUSE);
            }
            Err(e) => bail!("accept4: {e}"),
        }
    }
}
