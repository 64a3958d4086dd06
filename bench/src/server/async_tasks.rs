//! The `async` model: tokio, one task per connection.
//!
//! Runtime: tokio's **multi-thread** runtime with one worker thread per core
//! (`worker_count`; threads named `tokio-worker`), its work-stealing scheduler and one
//! shared epoll reactor (tokio registers sockets edge-triggered and remembers readiness, as
//! [`super::epoll_et`] does). The main thread runs the accept loop (`block_on`): it takes
//! connections until `EAGAIN` whenever the listener is readable and spawns a task for each onto
//! the workers.
//!
//! A connection's task drives the same [`Conn`] as the event loops, so the protocol is not
//! written twice: instead of `tokio::net::TcpStream` (which would need its own request parsing
//! and buffering), the socket is watched through [`AsyncFd`]. The task awaits whichever of
//! "readable" (when the connection wants input), "writable" (when output is pending) and
//! `tokio::time::sleep_until` (the end of a `WAIT`, or of the linger after an error) comes
//! first, then does one non-blocking read or write; `WAIT` thus parks only its own task.
//!
//! `BURN` runs on the worker thread that polls the task and holds it meanwhile; other workers
//! keep serving (and steal its queued tasks), so with one core a long `BURN` still stalls
//! everyone, as in the event loops.

use super::conn::Conn;
use super::support::{ACCEPT_PAUSE, Accepted, accept, report_conn_error, worker_count};
use anyhow::{Context, Result, bail};
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Runs the runtime and serves `listener` until the process is killed.
pub fn serve(listener: TcpListener) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_count())
        .thread_name("tokio-worker")
        .enable_io()
        .enable_time()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(accept_loop(listener))
}

async fn accept_loop(listener: TcpListener) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    // SAFETY: the AsyncFd owns the listener, so its descriptor stays open and the same for
    // the AsyncFd's whole life.
    let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
        .map_err(io::Error::from)
        .context("registering the listener")?;
    loop {
        let mut guard = listener.readable().await.context("waiting to accept")?;
        let exhausted = loop {
            match accept(guard.get_inner(), true) {
                Ok(Accepted::Conn(stream)) => {
                    tokio::spawn(serve_conn(stream));
                }
                Ok(Accepted::Empty) => {
                    guard.clear_ready();
                    break None;
                }
                Ok(Accepted::Retry) => {}
                Ok(Accepted::Exhausted(e)) => break Some(e),
                Err(e) => bail!("accept4: {e}"),
            }
        };
        drop(guard);
        if let Some(e) = exhausted {
            eprintln!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
            tokio::time::sleep(ACCEPT_PAUSE).await;
        }
    }
}

/// The descriptor of a socket owned elsewhere (by the [`Conn`]): registering it does not take
/// ownership, so the [`AsyncFd`] must be dropped (deregistered) before the `Conn` closes it.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

async fn serve_conn(stream: TcpStream) {
    report_conn_error(drive(stream).await);
}

async fn drive(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    let interest = Interest::READABLE | Interest::WRITABLE;
    // SAFETY: `conn` owns the socket and keeps it open until it is dropped, which is after `fd`
    // on every path: explicitly below, and in reverse order of declaration when unwinding.
    let fd = unsafe { AsyncFd::register_with_interest(Borrowed(conn.stream().as_raw_fd()), interest) }
        .map_err(io::Error::from)?;
    let result = run(&fd, &mut conn).await;
    // Deregister while the descriptor is still open (the Conn closes it when dropped).
    drop(fd);
    drop(conn);
    result
}

async fn run(fd: &AsyncFd<Borrowed>, conn: &mut Conn) -> io::Result<()> {
    loop {
        conn.process();
        if conn.is_finished() {
            return Ok(());
        }
        let wants_read = conn.wants_read();
        let wants_write = conn.wants_write();
        let deadline = conn.deadline();
        // Evaluated even when its branch is disabled, so it needs some instant.
        let until = tokio::time::Instant::from_std(deadline.unwrap_or_else(std::time::Instant::now));
        tokio::select! {
            guard = fd.readable(), if wants_read => {
                // A WouldBlock clears tokio's readiness (and we wait again); anything else
                // leaves it, so a socket with more data is read again without waiting.
                if let Ok(result) = guard?.try_io(|_| conn.read()) {
                    ignore_interrupt(result)?;
                }
            }
            guard = fd.writable(), if wants_write => {
                if let Ok(result) = guard?.try_io(|_| conn.write()) {
                    ignore_interrupt(result)?;
                }
            }
            () = tokio::time::sleep_until(until), if deadline.is_some() => {}
            // Nothing to wait for: Conn is finished before that can happen.
            else => return Ok(()),
        }
    }
}

fn ignore_interrupt(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}
