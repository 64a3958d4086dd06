//! One client connection's protocol state, shared by the event-loop models: buffers, request
//! parsing, `WAIT` and `STREAM` in progress, back-pressure. It does no waiting of its own; a model
//! calls [`Conn::read`] / [`Conn::write`] when its multiplexer says the socket is ready (or just
//! calls them, with a blocking socket), [`Conn::process`] after each, and asks
//! [`Conn::wants_read`], [`Conn::wants_write`] and [`Conn::deadline`] what to wait for next.
//!
//! Memory stays bounded per connection: the input holds at most [`MAX_LINE`] bytes (more only
//! ever arrives as a too-long line, which closes the connection), and new requests are only
//! executed while less than [`OUTPUT_HIGH_WATER`] bytes wait to be sent, so a client that
//! pipelines without reading stops being read from instead of growing the server.

use super::selftime::{self, Step};
use crate::protocol::{self, DONE, ERR_LINE_TOO_LONG, MAX_LINE, Request};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Unsent output above which no further request is executed.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// How much of a `STREAM` body is generated at a time.
const STREAM_CHUNK: usize = 64 * 1024;
/// Input buffer size once a connection first reads; it grows (up to [`MAX_LINE`]) only for long
/// lines. Small, and not allocated before the first read, so that ten thousand mostly idle
/// connections cost little memory.
const INPUT_INITIAL: usize = 1024;
/// Buffers that grew past this are given back once empty, so that one large request does not
/// pin a megabyte per connection for its lifetime.
const KEEP_CAPACITY: usize = 256 * 1024;
/// After an error reply: how long to keep reading (and discarding) before closing.
const LINGER: Duration = Duration::from_secs(1);

pub struct Conn {
    stream: TcpStream,
    input: Input,
    output: Output,
    busy: Busy,
    /// The peer shut down its sending side (read returned 0).
    read_closed: bool,
    /// An error was queued: execute nothing more, close once it is flushed.
    closing: bool,
    /// The error is flushed and our side shut down; input is read and discarded until the peer
    /// closes or this time passes. Closing with unread input would send an RST, which can make
    /// the client lose the error line; this is the "lingering close" of HTTP servers.
    linger_until: Option<Instant>,
}

/// A request whose response is produced over time; later requests wait for it (responses go out
/// in request order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Busy {
    Idle,
    Waiting { until: Instant },
    Streaming { offset: u64, left: u64 },
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            input: Input::new(),
            output: Output::default(),
            busy: Busy::Idle,
            read_closed: false,
            closing: false,
            linger_until: None,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// One `read` call into the input buffer. `Ok(0)` means the peer shut down its sending
    /// side; the connection still answers what it has received. Call only when
    /// [`Conn::wants_read`].
    pub fn read(&mut self) -> io::Result<usize> {
        let may_grow = self.accepts_requests();
        let spare = self.input.spare(may_grow);
        if spare.is_empty() {
            // Reading into nothing would return 0 and look like EOF.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let started = selftime::start();
        let result = self.stream.read(spare);
        selftime::record(Step::Read, started, &result);
        let n = result?;
        if n == 0 {
            self.read_closed = true;
        }
        self.input.end += n;
        if self.linger_until.is_some() {
            self.input.clear();
        }
        Ok(n)
    }

    /// One `write` call from the output buffer. Call only when [`Conn::wants_write`].
    pub fn write(&mut self) -> io::Result<usize> {
        let started = selftime::start();
        let result = self.stream.write(self.output.pending_bytes());
        selftime::record(Step::Write, started, &result);
        let n = result?;
        self.output.consume(n);
        if self.closing && self.output.pending() == 0 && self.linger_until.is_none() {
            self.stream.shutdown(std::net::Shutdown::Write)?;
            self.linger_until = Some(Instant::now() + LINGER);
        }
        Ok(n)
    }

    /// Executes buffered requests in order until one has to wait (for its `WAIT` timer, or for
    /// room in the output), or the input holds no complete line.
    pub fn process(&mut self) {
        let started = selftime::start();
        self.process_requests();
        selftime::record::<()>(Step::Process, started, &Ok(0));
    }

    fn process_requests(&mut self) {
        loop {
            match self.busy {
                Busy::Waiting { until } => {
                    if Instant::now() < until {
                        return;
                    }
                    self.output.buf.extend_from_slice(DONE);
                    self.busy = Busy::Idle;
                }
                Busy::Streaming { offset, left } => {
                    if self.output.pending() >= OUTPUT_HIGH_WATER {
                        return;
                    }
                    let chunk = left.min(STREAM_CHUNK as u64);
                    self.output.make_room();
                    protocol::extend_stream(&mut self.output.buf, offset, chunk as usize);
                    self.busy = if chunk == left {
                        self.output.buf.extend_from_slice(DONE);
                        Busy::Idle
                    } else {
                        Busy::Streaming {
                            offset: offset + chunk,
                            left: left - chunk,
                        }
                    };
                }
                Busy::Idle => {
                    if !self.accepts_requests() {
                        return;
                    }
                    let Some(line) = self.input.next_line() else {
                        if self.input.is_full() {
                            self.reject_long_line();
                        }
                        return;
                    };
                    self.output.make_room();
                    let request = protocol::parse(line);
                    if !protocol::respond_now(&request, &mut self.output.buf) {
                        self.busy = start_slow(&request);
                    }
                }
            }
        }
    }

    fn reject_long_line(&mut self) {
        self.output.make_room();
        self.output.buf.extend_from_slice(ERR_LINE_TOO_LONG);
        self.input = Input::new();
        self.closing = true;
    }

    /// Idle, not closing, and with room in the output: the next request may run now.
    fn accepts_requests(&self) -> bool {
        self.busy == Busy::Idle && !self.closing && self.output.pending() < OUTPUT_HIGH_WATER
    }

    /// Whether a read would make progress. False while the input is full and the requests in it
    /// wait (back-pressure onto the client), after EOF, and while an error is being flushed.
    pub fn wants_read(&self) -> bool {
        if self.read_closed {
            return false;
        }
        if self.closing {
            return self.linger_until.is_some();
        }
        self.input.has_room(self.accepts_requests())
    }

    pub fn wants_write(&self) -> bool {
        self.output.pending() > 0
    }

    /// When the model should call [`Conn::process`] and [`Conn::is_finished`] even without
    /// socket events: the end of a `WAIT`, or of the linger after an error.
    pub fn deadline(&self) -> Option<Instant> {
        match self.busy {
            Busy::Waiting { until } => Some(until),
            _ => self.linger_until,
        }
    }

    /// The error reply is flushed and the input is being read and discarded until
    /// [`Conn::deadline`]. A blocking driver reads (with a timeout) in this state, where during a
    /// `WAIT` it sleeps.
    pub fn is_lingering(&self) -> bool {
        self.linger_until.is_some()
    }

    /// Nothing left to do: the error was delivered (the peer closed, or the linger ran out), or
    /// the peer finished sending and every complete request it sent has been answered. An
    /// incomplete last line is dropped.
    pub fn is_finished(&self) -> bool {
        if let Some(until) = self.linger_until {
            return self.read_closed || Instant::now() >= until;
        }
        let flushed = self.output.pending() == 0;
        self.read_closed && flushed && self.busy == Busy::Idle && !self.input.has_line()
    }
}

fn start_slow(request: &Request<'_>) -> Busy {
    match *request {
        Request::Wait(ms) => Busy::Waiting {
            // WAIT is capped at an hour, so this cannot overflow.
            until: Instant::now() + Duration::from_millis(ms),
        },
        Request::Stream(n) => Busy::Streaming { offset: 0, left: n },
        _ => unreachable!("respond_now answers every other request"),
    }
}

/// Received bytes not yet executed: `buf[start..end]`, of which `buf[start..scanned]` is known
/// to hold no `\n` (so a long line arriving in pieces is not rescanned from its beginning).
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scanned: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
        }
    }

    /// The free space to read into, compacting first and, when `may_grow`, growing up to
    /// [`MAX_LINE`].
    fn spare(&mut self, may_grow: bool) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; INPUT_INITIAL];
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() && may_grow && self.buf.len() < MAX_LINE {
            self.buf.resize((self.buf.len() * 2).min(MAX_LINE), 0);
        }
        &mut self.buf[self.end..]
    }

    fn has_room(&self, may_grow: bool) -> bool {
        self.buf.is_empty() || self.end < self.buf.len() || self.start > 0 || (may_grow && self.buf.len() < MAX_LINE)
    }

    /// A partial line of [`MAX_LINE`] bytes: it can never complete within the limit.
    fn is_full(&self) -> bool {
        self.end - self.start >= MAX_LINE
    }

    fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.buf[self.scanned..self.end]).is_some()
    }

    /// Takes the next complete line (without its `\n`) out of the buffer.
    fn next_line(&mut self) -> Option<&[u8]> {
        let Some(at) = memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) else {
            self.scanned = self.end;
            self.shrink_if_empty();
            return None;
        };
        let line = self.start..self.scanned + at;
        self.start = line.end + 1;
        self.scanned = self.start;
        Some(&self.buf[line])
    }

    fn clear(&mut self) {
        self.start = self.end;
        self.shrink_if_empty();
    }

    fn shrink_if_empty(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            if self.buf.len() > KEEP_CAPACITY {
                self.buf = vec![0; INPUT_INITIAL];
            }
        }
    }
}

/// Responses not yet written: `buf[pos..]`.
#[derive(Default)]
struct Output {
    buf: Vec<u8>,
    pos: usize,
}

impl Output {
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn pending_bytes(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
    }

    /// Drops the written prefix before appending, so the buffer holds at most
    /// [`OUTPUT_HIGH_WATER`] plus one response.
    fn make_room(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server-side Conn (blocking socket) and the client end of a loopback connection.
    fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Conn::new(server), client)
    }

    /// Drives a blocking conn until it wants to read again or is finished.
    fn serve_available(conn: &mut Conn) {
        conn.process();
        while conn.wants_write() {
            conn.write().unwrap();
            conn.process();
        }
    }

    fn read_exact(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        client.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (mut conn, mut client) = pair();
        client
            .write_all(b"PING\nECHO hi\r\nWAIT 0\nSTREAM 3\nNOPE\nBURN 0\n")
            .unwrap();
        let expected = b"PONG\nhi\nDONE\nabcDONE\nUNKNOWN_COMMAND\nRESULT 0\n";
        let mut got = Vec::new();
        while got.len() < expected.len() {
            conn.read().unwrap();
            serve_available(&mut conn);
            let mut buf = [0; 256];
            let n = client.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn wait_holds_back_later_requests_until_its_deadline() {
        let (mut conn, mut client) = pair();
        client.write_all(b"WAIT 30\nPING\n").unwrap();
        while !conn.input.has_line() {
            conn.read().unwrap();
        }
        conn.process();
        assert!(!conn.wants_write(), "nothing before the WAIT is done");
        let deadline = conn.deadline().expect("waiting");
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        serve_available(&mut conn);
        assert_eq!(read_exact(&mut client, 10), b"DONE\nPONG\n");
        assert_eq!(conn.deadline(), None);
    }

    #[test]
    fn stream_output_stays_bounded() {
        let (mut conn, mut client) = pair();
        client.write_all(b"STREAM 10000000\n").unwrap();
        conn.read().unwrap();
        conn.process();
        assert!(conn.output.pending() <= OUTPUT_HIGH_WATER + STREAM_CHUNK);
        assert!(conn.output.buf.capacity() <= 2 * (OUTPUT_HIGH_WATER + STREAM_CHUNK));
    }

    #[test]
    fn too_long_line_is_rejected_and_closes() {
        let (mut conn, mut client) = pair();
        let writer = std::thread::spawn(move || {
            let junk = vec![b'x'; MAX_LINE + 100];
            let _ = client.write_all(&junk);
            client
        });
        while !conn.closing {
            assert!(conn.wants_read());
            assert!(conn.read().unwrap() > 0);
            conn.process();
        }
        assert!(!conn.wants_read());
        assert!(conn.input.buf.len() <= MAX_LINE);
        serve_available(&mut conn);
        assert!(!conn.is_finished(), "lingers for the client to see the error");
        assert!(conn.wants_read() && conn.deadline().is_some());
        let mut client = writer.join().unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        while conn.read().unwrap() > 0 {}
        assert!(conn.is_finished());
        drop(conn);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, ERR_LINE_TOO_LONG);
    }

    #[test]
    fn longest_line_fits() {
        let (mut conn, mut client) = pair();
        let payload = vec![b'p'; MAX_LINE - "ECHO \n".len()];
        let writer = std::thread::spawn(move || {
            let mut line = b"ECHO ".to_vec();
            line.extend_from_slice(&payload);
            line.push(b'\n');
            client.write_all(&line).unwrap();
            let mut echoed = vec![0; line.len() - 5];
            client.read_exact(&mut echoed).unwrap();
            echoed
        });
        while !conn.wants_write() {
            assert!(conn.read().unwrap() > 0);
            conn.process();
        }
        serve_available(&mut conn);
        let echoed = writer.join().unwrap();
        assert_eq!(echoed.len(), MAX_LINE - 5);
        assert!(echoed[..echoed.len() - 1].iter().all(|b| *b == b'p'));
        assert!(!conn.closing);
    }

    #[test]
    fn pipelining_without_reading_stops_input() {
        let (mut conn, mut client) = pair();
        // Far more responses than the high-water mark, never read by the client.
        let requests = b"STREAM 100000\n".repeat(2000);
        client.write_all(&requests).unwrap();
        conn.read().unwrap();
        conn.process();
        while conn.wants_read() {
            conn.read().unwrap();
            conn.process();
        }
        assert!(conn.input.buf.len() <= INPUT_INITIAL, "input did not grow");
        assert!(conn.output.pending() <= OUTPUT_HIGH_WATER + STREAM_CHUNK);
    }

    #[test]
    fn half_closed_peer_still_gets_answers() {
        let (mut conn, mut client) = pair();
        client.write_all(b"PING\nPING").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        while conn.read().unwrap() > 0 {}
        serve_available(&mut conn);
        assert!(conn.is_finished());
        assert_eq!(read_exact(&mut client, 5), b"PONG\n");
    }
}
