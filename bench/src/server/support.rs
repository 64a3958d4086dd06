//! Small pieces every model needs: accepting with the errors sorted out, telling a vanished
//! client from a real error, rate-limited complaints, and how many workers "one per core" is.

use super::selftime::{self, Step};
use nix::errno::Errno;
use nix::sys::socket::{SockFlag, accept4};
use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How long to stop accepting after running out of file descriptors (or memory): retrying at
/// once would spin on EMFILE, since the connection stays queued.
pub(super) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What one `accept4` call gave.
pub(super) enum Accepted {
    Conn(TcpStream),
    /// EAGAIN: the queue is empty (non-blocking listeners only).
    Empty,
    /// The connection died in the queue, or a signal interrupted the call: try again.
    Retry,
    /// EMFILE, ENFILE, ENOBUFS or ENOMEM: the server is out of something; pause accepting for
    /// [`ACCEPT_PAUSE`].
    Exhausted(Errno),
}

/// One `accept4`; the connection is non-blocking when `nonblocking`, close-on-exec always.
/// Errors other than those of [`Accepted`] mean the listener itself is broken.
pub(super) fn accept(listener: &TcpListener, nonblocking: bool) -> Result<Accepted, Errno> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    let started = selftime::start();
    let result = accept4(listener.as_raw_fd(), flags);
    selftime::record(Step::Accept, started, &result.as_ref().map(|_| 0));
    match result {
        // SAFETY: accept4 just returned this descriptor and nothing else owns it.
        Ok(fd) => Ok(Accepted::Conn(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))),
        Err(Errno::EAGAIN) => Ok(Accepted::Empty),
        Err(Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => Ok(Accepted::Retry),
        Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => Ok(Accepted::Exhausted(e)),
        Err(e) => Err(e),
    }
}

/// Errors that just mean the client went away; not worth a line on stderr each.
pub(super) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

/// Reports a connection's end on stderr unless the client merely went away.
pub(super) fn report_conn_error(result: io::Result<()>) {
    if let Err(e) = result
        && !is_disconnect(&e)
    {
        eprintln!("connection error: {e}");
    }
}

/// Counts a recurring event (a refused connection, a failed thread start) and says when to
/// print it: the first time and every 1000th, so 10,000 clients do not mean 10,000 lines.
#[derive(Default)]
pub(super) struct Occurrences(u64);

impl Occurrences {
    /// Counts one; `Some(total)` when this one should be reported.
    pub(super) fn note(&mut self) -> Option<u64> {
        self.0 += 1;
        (self.0 == 1 || self.0.is_multiple_of(1000)).then_some(self.0)
    }
}

/// "One per core": the CPUs this process may run on (its affinity mask, so `--cpus 0` means
/// one), at least one.
pub(super) fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The timeout of a `poll`-style call in whole milliseconds, rounded up (never early, so a timer
/// due in 0.3 ms does not turn into a busy loop); -1 waits without limit.
pub(super) fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
    }
}

/// How many descriptors a `poll` or `select` call found ready, from its return value; `None`
/// when a signal interrupted it (the caller waits again).
pub(super) fn ready_count(n: libc::c_int) -> std::io::Result<Option<libc::c_int>> {
    if n >= 0 {
        return Ok(Some(n));
    }
    let err = std::io::Error::last_os_error();
    match err.kind() {
        std::io::ErrorKind::Interrupted => Ok(None),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_report_the_first_and_every_thousandth() {
        let mut seen = Occurrences::default();
        let reported: Vec<u64> = (0..2500).filter_map(|_| seen.note()).collect();
        assert_eq!(reported, [1, 1000, 2000]);
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(300))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(7))), 7);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
    }

    #[test]
    fn accept_on_an_empty_non_blocking_listener_is_empty() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        assert!(matches!(accept(&listener, true), Ok(Accepted::Empty)));
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The handshake completes in the kernel; allow the queue a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match accept(&listener, true) {
                Ok(Accepted::Conn(stream)) => {
                    let mut buf = [0u8; 1];
                    let err = std::io::Read::read(&mut &stream, &mut buf).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::WouldBlock, "non-blocking");
                    break;
                }
                Ok(Accepted::Empty | Accepted::Retry) => {
                    assert!(std::time::Instant::now() < deadline, "never accepted");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(Accepted::Exhausted(e)) | Err(e) => panic!("accept: {e}"),
            }
        }
    }
}
