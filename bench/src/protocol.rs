//! The benchmark line protocol (from the DUMB server seed), shared by the servers and the load
//! generator so that both sides agree byte for byte.
//!
//! One request per line, terminated by `\n` (an optional `\r` before it is ignored):
//!
//! | request          | response                                   |
//! |------------------|--------------------------------------------|
//! | `PING`           | `PONG\n`                                   |
//! | `ECHO <payload>` | `<payload>\n` (`ECHO` alone echoes an empty line) |
//! | `WAIT <ms>`      | `DONE\n`, ms milliseconds later            |
//! | `BURN <n>`       | `RESULT <burn(n)>\n`                       |
//! | `STREAM <n>`     | n bytes of [`stream_byte`], then `DONE\n`  |
//! | anything else    | `UNKNOWN_COMMAND\n`                        |
//!
//! Numbers are plain ASCII decimal (no sign, no spaces). A number above the command's cap
//! ([`MAX_WAIT_MS`], [`MAX_BURN`]) makes the line unknown, so that one request cannot stall a
//! single-threaded server for hours. A line longer than [`MAX_LINE`] gets [`ERR_LINE_TOO_LONG`]
//! and the connection is closed.

use std::hint::black_box;
use std::io::Write as _;

/// Longest accepted request line, counting its `\n` (and `\r`): a 1 MiB `ECHO` payload fits.
pub const MAX_LINE: usize = (1 << 20) + 16;
/// Largest `ECHO` payload the load generator sends (the server accepts whatever fits a line).
pub const MAX_ECHO_PAYLOAD: usize = 1 << 20;
/// Largest `BURN` argument: about a few seconds of one core.
pub const MAX_BURN: u64 = 100_000_000;
/// Largest `WAIT` argument: one hour.
pub const MAX_WAIT_MS: u64 = 3_600_000;

pub const PONG: &[u8] = b"PONG\n";
pub const DONE: &[u8] = b"DONE\n";
pub const UNKNOWN_COMMAND: &[u8] = b"UNKNOWN_COMMAND\n";
pub const ERR_LINE_TOO_LONG: &[u8] = b"ERR line too long\n";

/// One parsed request line (without its line ending). `Echo` borrows its payload from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Ping,
    Echo(&'a [u8]),
    Wait(u64),
    Burn(u64),
    Stream(u64),
    Unknown,
}

/// Parses one line. The trailing `\n` may or may not be included; one `\r` before it is dropped.
pub fn parse(line: &[u8]) -> Request<'_> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (verb, arg) = match memchr::memchr(b' ', line) {
        Some(space) => (&line[..space], Some(&line[space + 1..])),
        None => (line, None),
    };
    match (verb, arg) {
        (b"PING", None) => Request::Ping,
        (b"ECHO", payload) => Request::Echo(payload.unwrap_or_default()),
        (b"WAIT", Some(ms)) => number(ms, MAX_WAIT_MS).map_or(Request::Unknown, Request::Wait),
        (b"BURN", Some(n)) => number(n, MAX_BURN).map_or(Request::Unknown, Request::Burn),
        (b"STREAM", Some(n)) => number(n, u64::MAX).map_or(Request::Unknown, Request::Stream),
        _ => Request::Unknown,
    }
}

/// Strict decimal: `str::parse` would also accept a leading `+`.
fn number(digits: &[u8], max: u64) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= max)
}

impl Request<'_> {
    /// Appends this request as one `\n`-terminated line. `Unknown` is written as `UNKNOWN`,
    /// which parses back to `Unknown`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            Request::Ping => out.write_all(b"PING\n"),
            Request::Echo(payload) => {
                out.extend_from_slice(b"ECHO ");
                out.extend_from_slice(payload);
                out.write_all(b"\n")
            }
            Request::Wait(ms) => writeln!(out, "WAIT {ms}"),
            Request::Burn(n) => writeln!(out, "BURN {n}"),
            Request::Stream(n) => writeln!(out, "STREAM {n}"),
            Request::Unknown => out.write_all(b"UNKNOWN\n"),
        };
    }
}

/// Appends the response to a request that is answered at once, and returns true; returns false
/// (appending nothing) for `WAIT` and `STREAM`, whose responses a server produces over time.
pub fn respond_now(request: &Request<'_>, out: &mut Vec<u8>) -> bool {
    match request {
        Request::Ping => out.extend_from_slice(PONG),
        Request::Echo(payload) => {
            out.extend_from_slice(payload);
            out.push(b'\n');
        }
        Request::Burn(n) => write_result(burn(*n), out),
        Request::Unknown => out.extend_from_slice(UNKNOWN_COMMAND),
        Request::Wait(_) | Request::Stream(_) => return false,
    }
    true
}

fn write_result(sum: u64, out: &mut Vec<u8>) {
    let _ = writeln!(out, "RESULT {sum}");
}

/// `n` units of deterministic CPU work, each a chain of dependent multiply/rotate/xor steps
/// (tens of ns). `black_box` on the input keeps the compiler from folding or vectorising the
/// loop, so the server really spends the time and the client can check the sum. Never inlined,
/// so that a profile names the work as `burn` rather than as its caller.
#[inline(never)]
pub fn burn(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let mut x = black_box(i) ^ 0x2545_f491_4f6c_dd1d;
        for _ in 0..16 {
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23) ^ (x >> 29);
        }
        sum = sum.wrapping_add(x);
    }
    sum
}

/// Byte `i` of a `STREAM` body: `a`..`z` repeating, so it never contains `\n`.
pub fn stream_byte(i: u64) -> u8 {
    b'a' + (i % 26) as u8
}

const PATTERN_PERIODS: usize = 160;
/// `a..z` repeated, so that any run of up to [`PATTERN_RUN`] stream bytes is one slice of it.
static PATTERN: [u8; 26 * PATTERN_PERIODS] = {
    let mut p = [0u8; 26 * PATTERN_PERIODS];
    let mut i = 0;
    while i < p.len() {
        p[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    p
};
const PATTERN_RUN: usize = 26 * (PATTERN_PERIODS - 1);

/// The stream bytes `offset..offset + len` as slices of the static pattern, at most
/// [`PATTERN_RUN`] bytes each.
fn pattern_runs(offset: u64, len: usize) -> impl Iterator<Item = &'static [u8]> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done == len {
            return None;
        }
        let phase = ((offset + done as u64) % 26) as usize;
        let run = (len - done).min(PATTERN_RUN);
        done += run;
        Some(&PATTERN[phase..phase + run])
    })
}

/// Appends stream bytes `offset..offset + len`.
pub fn extend_stream(out: &mut Vec<u8>, offset: u64, len: usize) {
    out.reserve(len);
    for run in pattern_runs(offset, len) {
        out.extend_from_slice(run);
    }
}

/// Whether `chunk` equals stream bytes `offset..offset + chunk.len()`.
pub fn stream_matches(offset: u64, chunk: &[u8]) -> bool {
    let mut at = 0;
    pattern_runs(offset, chunk.len()).all(|run| {
        let ok = chunk[at..at + run.len()] == *run;
        at += run.len();
        ok
    })
}

/// What a correct server answers to one request, checked incrementally as bytes arrive so that a
/// 100 MB `STREAM` never has to be held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// `n` bytes of [`stream_byte`] then `DONE\n`.
    Stream(u64),
}

/// The response a correct server sends to `request`.
pub fn expected_response(request: &Request<'_>) -> Expected {
    match request {
        Request::Wait(_) => Expected::Exact(DONE.to_vec()),
        Request::Stream(n) => Expected::Stream(*n),
        other => {
            let mut out = Vec::new();
            respond_now(other, &mut out);
            Expected::Exact(out)
        }
    }
}

impl Expected {
    /// Total length of the response in bytes; `u64::MAX` for a `STREAM` within `DONE\n` of it,
    /// whose length does not fit (no connection gets that far).
    pub fn len(&self) -> u64 {
        match self {
            Expected::Exact(bytes) => bytes.len() as u64,
            Expected::Stream(n) => n.saturating_add(DONE.len() as u64),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Response byte `offset`, or `None` past the end.
    pub fn byte_at(&self, offset: u64) -> Option<u8> {
        match self {
            Expected::Exact(bytes) => usize::try_from(offset).ok().and_then(|i| bytes.get(i).copied()),
            Expected::Stream(n) if offset < *n => Some(stream_byte(offset)),
            Expected::Stream(n) => DONE.get((offset - n) as usize).copied(),
        }
    }

    /// Whether `chunk` equals response bytes `offset..offset + chunk.len()`. False as well when
    /// the chunk runs past the end of the response (the server sent too much).
    pub fn check(&self, offset: u64, chunk: &[u8]) -> bool {
        let Some(end) = offset.checked_add(chunk.len() as u64).filter(|&end| end <= self.len()) else {
            return false;
        };
        match self {
            Expected::Exact(bytes) => bytes[offset as usize..end as usize] == *chunk,
            Expected::Stream(n) => {
                let body = (n.saturating_sub(offset).min(chunk.len() as u64)) as usize;
                let (head, tail) = chunk.split_at(body);
                let done_at = (offset + body as u64).saturating_sub(*n) as usize;
                stream_matches(offset, head) && DONE[done_at..done_at + tail.len()] == *tail
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command() {
        assert_eq!(parse(b"PING\n"), Request::Ping);
        assert_eq!(parse(b"PING"), Request::Ping);
        assert_eq!(parse(b"PING\r\n"), Request::Ping);
        assert_eq!(parse(b"ECHO hello world\n"), Request::Echo(b"hello world"));
        assert_eq!(parse(b"ECHO \n"), Request::Echo(b""));
        assert_eq!(parse(b"ECHO\n"), Request::Echo(b""));
        assert_eq!(parse(b"ECHO  two\r\n"), Request::Echo(b" two"));
        assert_eq!(parse(b"WAIT 250\n"), Request::Wait(250));
        assert_eq!(parse(b"BURN 0"), Request::Burn(0));
        assert_eq!(parse(b"STREAM 18446744073709551615"), Request::Stream(u64::MAX));
    }

    #[test]
    fn rejects_malformed_lines() {
        for line in [
            &b""[..],
            b"\n",
            b"\r\n",
            b"ping",
            b"PING ",
            b"PING x",
            b" PING",
            b"PINGX",
            b"WAIT",
            b"WAIT ",
            b"WAIT -1",
            b"WAIT +1",
            b"WAIT 1 ",
            b"WAIT 1x",
            b"BURN 100000001",
            b"WAIT 3600001",
            b"STREAM 18446744073709551616",
            b"STREAM 1\r\r",
            b"HELLO",
        ] {
            assert_eq!(parse(line), Request::Unknown, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn only_one_carriage_return_is_dropped() {
        assert_eq!(parse(b"ECHO a\r\r\n"), Request::Echo(b"a\r"));
    }

    #[test]
    fn encode_round_trips() {
        for request in [
            Request::Ping,
            Request::Echo(b"x y"),
            Request::Echo(b""),
            Request::Wait(7),
            Request::Burn(MAX_BURN),
            Request::Stream(0),
            Request::Unknown,
        ] {
            let mut line = Vec::new();
            request.encode(&mut line);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(parse(&line), request);
        }
    }

    #[test]
    fn immediate_responses() {
        let mut out = Vec::new();
        assert!(respond_now(&Request::Ping, &mut out));
        assert!(respond_now(&Request::Echo(b"abc"), &mut out));
        assert!(respond_now(&Request::Unknown, &mut out));
        assert!(respond_now(&Request::Burn(0), &mut out));
        assert!(!respond_now(&Request::Wait(1), &mut out));
        assert!(!respond_now(&Request::Stream(1), &mut out));
        assert_eq!(out, b"PONG\nabc\nUNKNOWN_COMMAND\nRESULT 0\n");
    }

    #[test]
    fn burn_is_deterministic_and_depends_on_n() {
        assert_eq!(burn(0), 0);
        assert_eq!(burn(1000), burn(1000));
        assert_ne!(burn(1000), burn(1001));
        let expected = expected_response(&Request::Burn(1000));
        assert_eq!(
            expected,
            Expected::Exact(format!("RESULT {}\n", burn(1000)).into_bytes())
        );
    }

    #[test]
    fn stream_bytes_repeat_the_alphabet() {
        let mut out = Vec::new();
        extend_stream(&mut out, 24, 5);
        assert_eq!(out, b"yzabc");
        let mut long = Vec::new();
        extend_stream(&mut long, 3, 100_000);
        assert!(long.iter().enumerate().all(|(i, b)| *b == stream_byte(3 + i as u64)));
        assert!(!long.contains(&b'\n'));
        assert!(stream_matches(3, &long));
        assert!(!stream_matches(4, &long));
        long[77_777] = b'!';
        assert!(!stream_matches(3, &long));
    }

    #[test]
    fn exact_check_is_incremental_and_strict() {
        let expected = expected_response(&Request::Echo(b"hello"));
        assert_eq!(expected.len(), 6);
        assert!(expected.check(0, b"hel"));
        assert!(expected.check(3, b"lo\n"));
        assert!(!expected.check(3, b"lo\nX"), "extra bytes are an error");
        assert!(!expected.check(0, b"help"));
        assert!(expected_response(&Request::Wait(5)).check(0, b"DONE\n"));
        assert_eq!(expected.byte_at(5), Some(b'\n'));
        assert_eq!(expected.byte_at(6), None);
        assert_eq!(Expected::Stream(2).byte_at(1), Some(b'b'));
        assert_eq!(Expected::Stream(2).byte_at(6), Some(b'\n'));
        assert_eq!(Expected::Stream(2).byte_at(7), None);
    }

    #[test]
    fn stream_check_covers_body_and_trailer() {
        let expected = Expected::Stream(30);
        assert_eq!(expected.len(), 35);
        let mut whole = Vec::new();
        extend_stream(&mut whole, 0, 30);
        whole.extend_from_slice(DONE);
        for split in 0..whole.len() {
            assert!(expected.check(0, &whole[..split]));
            assert!(expected.check(split as u64, &whole[split..]), "split at {split}");
        }
        assert!(!expected.check(28, b"cdDONX"));
        assert!(!expected.check(28, b"cdDONE\n\n"));
        assert!(!expected.check(0, b"b"));
        assert!(Expected::Stream(0).check(0, b"DONE\n"));
    }

    /// Found by the `exact_response` fuzz target (input `ff ff` then `STREAM`'s length as 8
    /// bytes of `ff`): `STREAM 18446744073709551615` parses, and the length of its response
    /// overflowed, a panic in the first `check` (a wrong length without overflow checks).
    #[test]
    fn stream_length_saturates_at_u64_max() {
        let expected = expected_response(&parse(b"STREAM 18446744073709551615\n"));
        assert_eq!(expected, Expected::Stream(u64::MAX));
        assert_eq!(expected.len(), u64::MAX);
        assert!(expected.check(0, b""));
        assert!(expected.check(0, b"abcdef"));
        assert!(!expected.check(0, b"abcdeX"));
        let last = [stream_byte(u64::MAX - 1)];
        assert!(expected.check(u64::MAX - 1, &last));
        assert!(!expected.check(u64::MAX - 1, &[last[0], last[0]]), "past u64::MAX");
        assert_eq!(Expected::Stream(u64::MAX - 5).len(), u64::MAX);
        assert!(Expected::Stream(u64::MAX - 5).check(u64::MAX - 5, b"DONE\n"));
        assert_eq!(Expected::Stream(u64::MAX - 3).len(), u64::MAX);
        assert!(Expected::Stream(u64::MAX - 3).check(u64::MAX - 3, b"DO"));
    }
}
