//! The `threads` model: thread per connection. The main thread accepts (blocking); each client
//! gets its own thread that serves it with blocking I/O (the shared `blocking` driver) and exits
//! when it is done. A `WAIT` sleeps that thread only, a slow reader or sender blocks only its own
//! thread, so nobody waits for anybody, at the price of one thread (stack, scheduler entry,
//! context switches) per client: the c10k problem of seed 003.
//!
//! Threads get [`STACK_SIZE`] = 64 KiB stacks instead of Rust's default 2 MiB (they need
//! little: a [`super::conn::Conn`]'s buffers are on the heap), so 10,000 clients cost 640 MiB of
//! address space, mostly never touched. When a thread cannot be started (out of memory, the
//! `threads-max` or `RLIMIT_NPROC` limits), the connection is closed with a line on stderr (the
//! first, then every 1000th) and accepting pauses briefly.

use super::blocking;
use super::support::{ACCEPT_PAUSE, Accepted, Occurrences, accept};
use anyhow::{Context, Result, bail};
use std::net::{TcpListener, TcpStream};

/// Stack size of a connection's thread.
pub const STACK_SIZE: usize = 64 * 1024;

/// Serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    listener
        .set_nonblocking(false)
        .context("making the listener blocking")?;
    let mut failed = Occurrences::default();
    loop {
        match accept(&listener, false) {
            Ok(Accepted::Conn(stream)) => {
                if let Err(e) = spawn(stream) {
                    if let Some(total) = failed.note() {
                        eprintln!(
                            "threads: cannot start a thread for a connection ({e}); closed it \
                             ({total} so far), pausing accepts for {ACCEPT_PAUSE:?}"
                        );
                    }
                    std::thread::sleep(ACCEPT_PAUSE);
                }
            }
            Ok(Accepted::Empty | Accepted::Retry) => {}
            Ok(Accepted::Exhausted(e)) => {
                eprintln!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                std::thread::sleep(ACCEPT_PAUSE);
            }
            Err(e) => bail!("accept4: {e}"),
        }
    }
}

/// Starts the connection's thread; on failure the stream is dropped (closed) with the closure.
fn spawn(stream: TcpStream) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("conn".into())
        .stack_size(STACK_SIZE)
        .spawn(move || blocking::serve_conn(stream))
        .map(drop)
}
