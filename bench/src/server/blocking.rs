//! Serving one connection to completion with blocking I/O, shared by `iterative` (one at a
//! time) and `threads` (one thread each). The protocol is [`Conn`]'s, as in the event loops;
//! only the waiting differs: a blocking `write` waits for room, a blocking `read` for data, and
//! a `WAIT` is a `sleep` of the calling thread.

use super::conn::Conn;
use super::support::report_conn_error;
use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Serves `stream` (a blocking socket) until the client is done or gone. Errors of the
/// connection are reported on stderr, not returned: they end only this connection.
pub(super) fn serve_conn(stream: TcpStream) {
    report_conn_error(drive(stream));
}

fn drive(stream: TcpStream) -> io::Result<()> {
    // Responses are small and latency is what is measured: never let Nagle hold one back.
    stream.set_nodelay(true)?;
    let mut conn = Conn::new(stream);
    loop {
        conn.process();
        if conn.is_finished() {
            return Ok(());
        }
        if conn.wants_write() {
            // Blocks until the client has taken some of it: a slow reader holds this thread.
            retry_on_interrupt(conn.write())?;
            continue;
        }
        let now = Instant::now();
        if conn.is_lingering() {
            // After an error reply: read and discard until the client closes or the linger
            // ends, whichever is first (`is_finished` checks the time).
            let left = conn
                .deadline()
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            if left.is_zero() {
                continue;
            }
            conn.stream()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match conn.read() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if let Some(at) = conn.deadline() {
            // A WAIT: the thread sleeps (pipelined requests stay in the socket meanwhile).
            std::thread::sleep(at.saturating_duration_since(now));
            continue;
        }
        if conn.wants_read() {
            // Blocks until the client sends: a slow sender holds this thread.
            retry_on_interrupt(conn.read())?;
            continue;
        }
        // Nothing can make progress; Conn never gets here (it is finished first).
        return Ok(());
    }
}

fn retry_on_interrupt(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(0),
        other => other,
    }
}
