//! Where a response ends and whether it is right, for each protocol. A response is read a chunk
//! at a time, as the socket gives it; a whole response in one read (the usual case) is checked
//! in place, with no copy. Pure code over bytes: the fuzz targets drive it directly.

use super::stats::ErrorKind;
use crate::protocol::Expected;
use std::borrow::Cow;

/// Largest HTTP response head (status line and headers).
pub const MAX_HTTP_HEAD: usize = 64 * 1024;
/// Headers one HTTP response may have.
const MAX_HTTP_HEADERS: usize = 100;
/// Longest chunk-size or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest RESP line (a type byte and a simple string or a number).
const MAX_RESP_LINE: usize = 64 * 1024;
/// Deepest nesting of RESP aggregates.
const MAX_RESP_DEPTH: usize = 64;
/// Largest RESP bulk string, as Redis's own `proto-max-bulk-len` default.
const MAX_RESP_BULK: i64 = 512 * 1024 * 1024;
/// Most elements one RESP aggregate may announce.
const MAX_RESP_ELEMENTS: i64 = 1 << 32;

/// What every response of a run must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseSpec {
    /// Exactly these bytes: the line protocol's answers, or `fixed`.
    Exact(Expected),
    Http(HttpExpect),
    /// Any well-formed RESP reply that is not an error.
    Resp,
}

/// What makes an HTTP response right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpExpect {
    /// The request was HEAD: responses have no body whatever their headers say.
    pub head: bool,
    /// Only this status is right (otherwise any 2xx).
    pub status: Option<u16>,
    /// The body must be exactly these bytes.
    pub body: Option<Vec<u8>>,
}

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The response goes on.
    Partial,
    /// A whole, correct response. Without `keep_alive`, the server closes the connection after it.
    Done { keep_alive: bool },
    /// A whole response that says the request failed (a status, an error reply, another body):
    /// counted as `kind`, and the connection is still good when `keep_alive`.
    Failed {
        kind: ErrorKind,
        why: String,
        keep_alive: bool,
    },
    /// Bytes that cannot be the response: counted as `kind`, and the connection reset.
    Broken { kind: ErrorKind, why: String },
}

/// One connection's response in progress.
#[derive(Debug)]
pub enum Reader {
    Exact { received: u64 },
    Http(HttpReader),
    Resp(RespReader),
}

impl Reader {
    pub fn new(spec: &ResponseSpec) -> Reader {
        match spec {
            ResponseSpec::Exact(_) => Reader::Exact { received: 0 },
            ResponseSpec::Http(_) => Reader::Http(HttpReader::default()),
            ResponseSpec::Resp => Reader::Resp(RespReader::default()),
        }
    }

    /// Ready for the next response (allocations are kept).
    pub fn reset(&mut self) {
        match self {
            Reader::Exact { received } => *received = 0,
            Reader::Http(r) => r.reset(),
            Reader::Resp(r) => r.reset(),
        }
    }

    /// Response bytes read so far.
    pub fn received(&self) -> u64 {
        match self {
            Reader::Exact { received } => *received,
            Reader::Http(r) => r.received,
            Reader::Resp(r) => r.received,
        }
    }

    /// Reads the next bytes of the response (`spec` is the one this reader was made for).
    pub fn feed(&mut self, spec: &ResponseSpec, chunk: &[u8]) -> Verdict {
        match (self, spec) {
            (Reader::Exact { received }, ResponseSpec::Exact(expected)) => {
                if !expected.check(*received, chunk) {
                    return Verdict::Broken {
                        kind: ErrorKind::Mismatch,
                        why: mismatch(*received, chunk, expected),
                    };
                }
                *received += chunk.len() as u64;
                if *received == expected.len() {
                    Verdict::Done { keep_alive: true }
                } else {
                    Verdict::Partial
                }
            }
            (Reader::Http(r), ResponseSpec::Http(expect)) => r.feed(expect, chunk),
            (Reader::Resp(r), ResponseSpec::Resp) => r.feed(chunk),
            (reader, spec) => unreachable!("{reader:?} reads {spec:?}"),
        }
    }

    /// The server closed the connection: the end of a body delimited by the close (a verdict
    /// that never keeps the connection alive), or a response cut short.
    pub fn eof(&mut self, spec: &ResponseSpec) -> Verdict {
        let received = self.received();
        let length = match spec {
            ResponseSpec::Exact(expected) => format!(" of {}", expected.len()),
            _ => String::new(),
        };
        if let (Reader::Http(r), ResponseSpec::Http(expect)) = (&mut *self, spec)
            && matches!(r.state, HttpState::UntilClose)
        {
            return r.finish(expect, &[], false);
        }
        let why = format!("server closed the connection after {received}{length} response bytes");
        // A response that began and was cut short is malformed; one that never began, or a
        // fixed answer short of its bytes, is a closed connection.
        let kind = match self {
            Reader::Exact { .. } => ErrorKind::Closed,
            _ if received == 0 => ErrorKind::Closed,
            _ => ErrorKind::Protocol,
        };
        Verdict::Broken { kind, why }
    }
}

/// Says where a response went wrong, with the bytes around it.
fn mismatch(offset: u64, chunk: &[u8], expected: &Expected) -> String {
    let bad = (0..chunk.len())
        .find(|&k| expected.byte_at(offset + k as u64) != Some(chunk[k]))
        .unwrap_or(chunk.len());
    let at = offset + bad as u64;
    let around = &chunk[bad.saturating_sub(16)..chunk.len().min(bad + 16)];
    let around = String::from_utf8_lossy(around);
    match expected.byte_at(at) {
        Some(want) => format!(
            "response byte {at} of {} is {:?}, expected {:?}, in {around:?}",
            expected.len(),
            chunk.get(bad).map(|b| *b as char).unwrap_or('?'),
            want as char,
        ),
        None => format!(
            "{} bytes past the end of the {}-byte response, in {around:?}",
            chunk.len() - bad,
            expected.len()
        ),
    }
}

/// An HTTP/1.x response: the head (parsed by httparse once it is whole), then the body framed
/// by Content-Length, chunked transfer coding, or the connection's close.
#[derive(Debug, Default)]
pub struct HttpReader {
    /// The head so far, when it came in pieces.
    head: Vec<u8>,
    /// A chunk-size or trailer line so far; kept with its capacity from response to response.
    line: Vec<u8>,
    state: HttpState,
    status: u16,
    keep_alive: bool,
    /// Body bytes so far.
    body_seen: u64,
    /// The first body byte that differed from the expected body.
    body_differs: Option<u64>,
    received: u64,
}

#[derive(Debug, Default)]
enum HttpState {
    #[default]
    Head,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

#[derive(Debug)]
enum Chunked {
    /// A chunk-size line (and its extensions), in `line`.
    Size,
    Data(u64),
    /// The CRLF after a chunk's data: how many of its bytes are still to come.
    DataEnd(usize),
    /// Trailer lines, until an empty one; the current one in `line`.
    Trailers,
}

/// What the head says.
struct Head {
    len: usize,
    status: u16,
    keep_alive: bool,
    body: HttpState,
}

impl HttpReader {
    fn reset(&mut self) {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        *self = HttpReader {
            head,
            line,
            ..HttpReader::default()
        };
    }

    fn feed(&mut self, expect: &HttpExpect, chunk: &[u8]) -> Verdict {
        self.received += chunk.len() as u64;
        let mut input = Cow::Borrowed(chunk);
        // Interim (1xx) heads go round again.
        while let HttpState::Head = self.state {
            let data = if self.head.is_empty() {
                input
            } else {
                let mut buffered = std::mem::take(&mut self.head);
                buffered.extend_from_slice(&input);
                Cow::Owned(buffered)
            };
            let head = match parse_head(&data, expect) {
                Ok(Some(head)) => head,
                Ok(None) if data.len() > MAX_HTTP_HEAD => {
                    return broken(format!("response head over {MAX_HTTP_HEAD} bytes"));
                }
                Ok(None) => {
                    self.head = data.into_owned();
                    return Verdict::Partial;
                }
                Err(why) => return broken(why),
            };
            (self.status, self.keep_alive, self.state) = (head.status, head.keep_alive, head.body);
            input = match data {
                Cow::Borrowed(bytes) => Cow::Borrowed(&bytes[head.len..]),
                Cow::Owned(mut bytes) => {
                    bytes.drain(..head.len);
                    Cow::Owned(bytes)
                }
            };
        }
        self.body(expect, &input)
    }

    fn body(&mut self, expect: &HttpExpect, mut bytes: &[u8]) -> Verdict {
        loop {
            match &mut self.state {
                HttpState::Head => unreachable!("the head is read first"),
                HttpState::Length(left) => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    *left -= take as u64;
                    let done = *left == 0;
                    self.check_body(expect, &bytes[..take]);
                    if done {
                        return self.finish(expect, &bytes[take..], self.keep_alive);
                    }
                    return Verdict::Partial;
                }
                HttpState::UntilClose => {
                    self.check_body(expect, bytes);
                    return Verdict::Partial;
                }
                HttpState::Chunked(Chunked::Size) => {
                    let Some((rest, whole)) = take_line(&mut self.line, bytes, MAX_CHUNK_LINE) else {
                        return broken(format!("chunk-size line over {MAX_CHUNK_LINE} bytes"));
                    };
                    bytes = rest;
                    if !whole {
                        return Verdict::Partial;
                    }
                    let size = match httparse::parse_chunk_size(&self.line) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return broken(format!("bad chunk size {:?}", String::from_utf8_lossy(&self.line))),
                    };
                    self.line.clear();
                    self.state = HttpState::Chunked(match size {
                        0 => Chunked::Trailers,
                        n => Chunked::Data(n),
                    });
                }
                HttpState::Chunked(Chunked::Data(left)) => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = HttpState::Chunked(Chunked::DataEnd(2));
                    }
                    self.check_body(expect, &bytes[..take]);
                    bytes = &bytes[take..];
                    if bytes.is_empty() {
                        return Verdict::Partial;
                    }
                }
                HttpState::Chunked(Chunked::DataEnd(left)) => {
                    while *left > 0 {
                        let Some((&b, rest)) = bytes.split_first() else {
                            return Verdict::Partial;
                        };
                        if b != b"\r\n"[2 - *left] {
                            return broken("chunk data not followed by CRLF".to_string());
                        }
                        *left -= 1;
                        bytes = rest;
                    }
                    self.state = HttpState::Chunked(Chunked::Size);
                }
                HttpState::Chunked(Chunked::Trailers) => {
                    let Some((rest, whole)) = take_line(&mut self.line, bytes, MAX_CHUNK_LINE) else {
                        return broken(format!("trailer line over {MAX_CHUNK_LINE} bytes"));
                    };
                    bytes = rest;
                    if !whole {
                        return Verdict::Partial;
                    }
                    let last = matches!(self.line.as_slice(), b"\r\n" | b"\n");
                    self.line.clear();
                    if last {
                        return self.finish(expect, bytes, self.keep_alive);
                    }
                }
            }
        }
    }

    fn check_body(&mut self, expect: &HttpExpect, bytes: &[u8]) {
        if let Some(want) = &expect.body
            && self.body_differs.is_none()
        {
            let from = self.body_seen as usize;
            let same = want.get(from..from + bytes.len()).is_some_and(|w| w == bytes);
            if !same {
                let k = (0..bytes.len())
                    .find(|&k| want.get(from + k) != Some(&bytes[k]))
                    .unwrap_or(0);
                self.body_differs = Some((from + k) as u64);
            }
        }
        self.body_seen += bytes.len() as u64;
    }

    /// The response is whole: right, or why not.
    fn finish(&self, expect: &HttpExpect, after: &[u8], keep_alive: bool) -> Verdict {
        if !after.is_empty() {
            return broken(format!("{} bytes after the response", after.len()));
        }
        let status_ok = match expect.status {
            Some(want) => self.status == want,
            None => (200..300).contains(&self.status),
        };
        if !status_ok {
            return Verdict::Failed {
                kind: ErrorKind::HttpStatus,
                why: format!("HTTP {}", self.status),
                keep_alive,
            };
        }
        if let Some(want) = &expect.body {
            let at = self
                .body_differs
                .or((self.body_seen != want.len() as u64).then_some(self.body_seen.min(want.len() as u64)));
            if let Some(at) = at {
                return Verdict::Failed {
                    kind: ErrorKind::Mismatch,
                    why: format!(
                        "the body ({} bytes) differs from the expected one ({} bytes) at byte {at}",
                        self.body_seen,
                        want.len()
                    ),
                    keep_alive,
                };
            }
        }
        Verdict::Done { keep_alive }
    }
}

fn broken(why: String) -> Verdict {
    Verdict::Broken {
        kind: ErrorKind::Protocol,
        why,
    }
}

/// Moves `bytes` up to and including the first `\n` onto `line`: the bytes after it and whether
/// the line is whole; `None` when the line grows past `max`.
fn take_line<'b>(line: &mut Vec<u8>, bytes: &'b [u8], max: usize) -> Option<(&'b [u8], bool)> {
    let (part, rest, whole) = match memchr::memchr(b'\n', bytes) {
        Some(end) => (&bytes[..=end], &bytes[end + 1..], true),
        None => (bytes, &bytes[bytes.len()..], false),
    };
    if line.len() + part.len() > max {
        return None;
    }
    line.extend_from_slice(part);
    Some((rest, whole))
}

/// The head at the start of `data` if it is whole, `None` if more is to come, or why it is not
/// an HTTP/1.x response head.
fn parse_head(data: &[u8], expect: &HttpExpect) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HTTP_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(data) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            let start = String::from_utf8_lossy(&data[..data.len().min(40)]);
            return Err(format!("bad response head ({e}): {start:?}"));
        }
    };
    let status = response.code.unwrap_or(0);
    // HTTP/1.1 keeps the connection unless told otherwise; 1.0 closes unless told otherwise.
    let mut keep_alive = response.version == Some(1);
    let (mut length, mut chunked) = (None, false);
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| format!("header {} is not text", h.name))?;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Length headers".to_string());
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let body = match status {
        // Interim responses: the final one follows.
        100 | 102..=199 => HttpState::Head,
        101 | 204 | 304 => HttpState::Length(0),
        _ if expect.head => HttpState::Length(0),
        _ if chunked => HttpState::Chunked(Chunked::Size),
        _ => match length {
            Some(n) => HttpState::Length(n),
            None => {
                keep_alive = false;
                HttpState::UntilClose
            }
        },
    };
    Ok(Some(Head {
        len,
        status,
        keep_alive,
        body,
    }))
}

/// A RESP2/RESP3 reply: simple types end at their line, bulk types after their length, and
/// aggregates after their elements, nested.
#[derive(Debug, Default)]
pub struct RespReader {
    /// A line that came in pieces.
    line: Vec<u8>,
    /// Elements still to read in each open aggregate, innermost last.
    open: Vec<u64>,
    /// Bytes of a bulk string still to come, its CRLF included.
    bulk_left: u64,
    /// The first error reply in the reply.
    error: Option<String>,
    received: u64,
}

/// Whether a line ends the reply, or opens more of it.
enum Step {
    /// An element is whole.
    Element,
    /// Bulk data or elements follow.
    More,
}

impl RespReader {
    fn reset(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        *self = RespReader {
            line,
            open,
            ..RespReader::default()
        };
    }

    fn feed(&mut self, chunk: &[u8]) -> Verdict {
        self.received += chunk.len() as u64;
        let mut bytes = chunk;
        while !bytes.is_empty() {
            if self.bulk_left > 0 {
                let take = self.bulk_left.min(bytes.len() as u64) as usize;
                // The last two bytes of the bulk region are its CRLF: only those are looked at,
                // so a large value costs no work per byte.
                let crlf_from = self.bulk_left.saturating_sub(2).min(take as u64) as usize;
                for (k, &b) in bytes[..take].iter().enumerate().skip(crlf_from) {
                    let from_end = self.bulk_left - k as u64;
                    if b != b"\r\n"[2 - from_end as usize] {
                        return broken("bulk string not followed by CRLF".to_string());
                    }
                }
                self.bulk_left -= take as u64;
                bytes = &bytes[take..];
                if self.bulk_left == 0 && self.element_done() {
                    return self.finish(bytes);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            let Some((rest, whole)) = take_line(&mut line, bytes, MAX_RESP_LINE) else {
                return broken(format!("RESP line over {MAX_RESP_LINE} bytes"));
            };
            bytes = rest;
            if !whole {
                self.line = line;
                return Verdict::Partial;
            }
            let step = self.line_read(&line);
            line.clear();
            self.line = line;
            match step {
                Err(why) => return broken(why),
                Ok(Step::Element) if self.element_done() => return self.finish(bytes),
                Ok(_) => {}
            }
        }
        Verdict::Partial
    }

    /// One whole line: a simple value, or the header of a bulk string or an aggregate.
    fn line_read(&mut self, line: &[u8]) -> Result<Step, String> {
        let Some(text) = line.strip_suffix(b"\r\n") else {
            return Err("RESP line not ended by CRLF".to_string());
        };
        let Some((&kind, value)) = text.split_first() else {
            return Err("empty RESP line".to_string());
        };
        let number = || -> Result<i64, String> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("bad RESP length {:?}", String::from_utf8_lossy(value)))
        };
        match kind {
            b'-' => {
                self.error
                    .get_or_insert_with(|| String::from_utf8_lossy(&value[..value.len().min(200)]).into_owned());
                Ok(Step::Element)
            }
            b'+' | b':' | b',' | b'#' | b'(' | b'_' => Ok(Step::Element),
            b'$' | b'=' | b'!' => match number()? {
                -1 if kind == b'$' => Ok(Step::Element),
                n if (0..=MAX_RESP_BULK).contains(&n) => {
                    if kind == b'!' {
                        self.error.get_or_insert_with(|| "bulk error reply".to_string());
                    }
                    self.bulk_left = n as u64 + 2;
                    Ok(Step::More)
                }
                n => Err(format!("bad RESP bulk length {n}")),
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = match number()? {
                    -1 if kind == b'*' => return Ok(Step::Element),
                    n if (0..=MAX_RESP_ELEMENTS).contains(&n) => n as u64,
                    n => return Err(format!("bad RESP aggregate length {n}")),
                };
                // A map holds pairs; an attribute's pairs come before the element they annotate.
                let elements = match kind {
                    b'%' => 2 * n,
                    b'|' => 2 * n + 1,
                    _ => n,
                };
                if elements == 0 {
                    return Ok(Step::Element);
                }
                if self.open.len() >= MAX_RESP_DEPTH {
                    return Err(format!("RESP nested over {MAX_RESP_DEPTH} deep"));
                }
                self.open.push(elements);
                Ok(Step::More)
            }
            other => Err(format!("unknown RESP type byte {:?}", other as char)),
        }
    }

    /// An element is whole: closes the aggregates it completes. True when the reply is whole.
    fn element_done(&mut self) -> bool {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return false;
            }
            self.open.pop();
        }
        true
    }

    fn finish(&self, after: &[u8]) -> Verdict {
        if !after.is_empty() {
            return broken(format!("{} bytes after the reply", after.len()));
        }
        match &self.error {
            Some(why) => Verdict::Failed {
                kind: ErrorKind::ServerError,
                why: why.clone(),
                keep_alive: true,
            },
            None => Verdict::Done { keep_alive: true },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `response` whole, then split at every point into two reads, and in single bytes:
    /// every way must give the same verdict (a broken response may be found broken early, and
    /// its message may quote other bytes).
    fn verdict(spec: &ResponseSpec, response: &[u8]) -> Verdict {
        let mut reader = Reader::new(spec);
        let whole = reader.feed(spec, response);
        let same = |a: &Verdict, b: &Verdict| match (a, b) {
            (Verdict::Broken { kind: x, .. }, Verdict::Broken { kind: y, .. }) => x == y,
            _ => a == b,
        };
        let splits = (1..response.len()).map(|at| vec![&response[..at], &response[at..]]);
        let bytes = std::iter::once(response.chunks(1).collect::<Vec<_>>());
        for pieces in splits.chain(bytes) {
            reader.reset();
            let count = pieces.len();
            let mut last = Verdict::Partial;
            for (k, piece) in pieces.into_iter().enumerate() {
                last = reader.feed(spec, piece);
                if matches!(last, Verdict::Broken { .. }) {
                    break;
                }
                if k + 1 < count {
                    assert_eq!(last, Verdict::Partial, "a verdict before the end of {response:?}");
                }
            }
            assert!(
                same(&last, &whole),
                "{response:?} in pieces: {last:?}, whole: {whole:?}"
            );
        }
        whole
    }

    fn protocol_error(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Broken {
                kind: ErrorKind::Protocol,
                ..
            }
        )
    }

    fn http() -> ResponseSpec {
        ResponseSpec::Http(HttpExpect::default())
    }

    const DONE: Verdict = Verdict::Done { keep_alive: true };

    #[test]
    fn http_bodies_end_by_length_chunks_or_close() {
        let spec = http();
        assert_eq!(
            verdict(&spec, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            DONE
        );
        assert_eq!(verdict(&spec, b"HTTP/1.1 204 No Content\r\n\r\n"), DONE);
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(verdict(&spec, chunked), DONE);
        assert_eq!(
            verdict(
                &spec,
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            ),
            DONE
        );
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(verdict(&spec, closing), Verdict::Done { keep_alive: false });
        // No length: the body runs to the close.
        let mut reader = Reader::new(&spec);
        assert_eq!(
            reader.feed(&spec, b"HTTP/1.0 200 OK\r\n\r\nsome body"),
            Verdict::Partial
        );
        assert_eq!(reader.eof(&spec), Verdict::Done { keep_alive: false });
        let head = ResponseSpec::Http(HttpExpect {
            head: true,
            ..HttpExpect::default()
        });
        assert_eq!(verdict(&head, b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n"), DONE);
    }

    #[test]
    fn http_statuses_and_bodies_are_checked() {
        let failed = |why: &str, kind| Verdict::Failed {
            kind,
            why: why.to_string(),
            keep_alive: true,
        };
        assert_eq!(
            verdict(&http(), b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!"),
            failed("HTTP 404", ErrorKind::HttpStatus)
        );
        let spec = ResponseSpec::Http(HttpExpect {
            status: Some(404),
            body: Some(b"no!".to_vec()),
            head: false,
        });
        assert_eq!(
            verdict(&spec, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!"),
            DONE
        );
        assert_eq!(
            verdict(&spec, b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nyes"),
            failed(
                "the body (3 bytes) differs from the expected one (3 bytes) at byte 0",
                ErrorKind::Mismatch
            )
        );
        assert_eq!(
            verdict(&spec, b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
            failed(
                "the body (2 bytes) differs from the expected one (3 bytes) at byte 2",
                ErrorKind::Mismatch
            )
        );
    }

    #[test]
    fn malformed_http_is_a_protocol_error() {
        let spec = http();
        for bad in [
            &b"HTTX/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        ] {
            let v = verdict(&spec, bad);
            assert!(protocol_error(&v), "{:?}: {v:?}", String::from_utf8_lossy(bad));
        }
        // Bytes past the end in the same read (in a later read, the worker finds them
        // unsolicited).
        let mut reader = Reader::new(&spec);
        let extra = reader.feed(&spec, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab");
        assert!(protocol_error(&extra), "{extra:?}");
        let mut reader = Reader::new(&spec);
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HTTP_HEAD));
        assert!(matches!(reader.feed(&spec, huge.as_bytes()), Verdict::Broken { .. }));
        // Cut mid-body.
        let mut reader = Reader::new(&spec);
        let cut = reader.feed(&spec, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
        assert_eq!(cut, Verdict::Partial);
        assert!(protocol_error(&reader.eof(&spec)));
        // Closed before any byte.
        let mut reader = Reader::new(&spec);
        assert!(matches!(
            reader.eof(&spec),
            Verdict::Broken {
                kind: ErrorKind::Closed,
                ..
            }
        ));
    }

    #[test]
    fn resp_replies_end_by_type() {
        let spec = ResponseSpec::Resp;
        for reply in [
            &b"+OK\r\n"[..],
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*2\r\n$3\r\nfoo\r\n*2\r\n:1\r\n+x\r\n",
            b"*0\r\n",
            b"*-1\r\n",
            b"%1\r\n+k\r\n*1\r\n_\r\n",
            b"|1\r\n+a\r\n+b\r\n:7\r\n",
        ] {
            assert_eq!(verdict(&spec, reply), DONE, "{:?}", String::from_utf8_lossy(reply));
        }
        assert_eq!(
            verdict(&spec, b"-WRONGTYPE Operation against a key\r\n"),
            Verdict::Failed {
                kind: ErrorKind::ServerError,
                why: "WRONGTYPE Operation against a key".to_string(),
                keep_alive: true
            }
        );
        for bad in [&b"?x\r\n"[..], b"$3\r\nabcd\r\n", b"$x\r\n", b"+OK\n", b"*-2\r\n"] {
            assert!(
                matches!(
                    verdict(&spec, bad),
                    Verdict::Broken {
                        kind: ErrorKind::Protocol,
                        ..
                    }
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let extra = Reader::new(&spec).feed(&spec, b"+OK\r\n+OK\r\n");
        assert!(protocol_error(&extra), "{extra:?}");
        let deep = "*1\r\n".repeat(MAX_RESP_DEPTH + 1);
        assert!(matches!(
            Reader::new(&spec).feed(&spec, deep.as_bytes()),
            Verdict::Broken { .. }
        ));
    }

    #[test]
    fn exact_responses_match_byte_for_byte() {
        let spec = ResponseSpec::Exact(Expected::Exact(b"PONG\n".to_vec()));
        assert_eq!(verdict(&spec, b"PONG\n"), DONE);
        let v = verdict(&spec, b"PANG\n");
        assert!(
            matches!(v, Verdict::Broken { kind: ErrorKind::Mismatch, ref why } if why.contains("byte 1")),
            "{v:?}"
        );
        let mut reader = Reader::new(&spec);
        reader.feed(&spec, b"PO");
        assert!(matches!(
            reader.eof(&spec),
            Verdict::Broken {
                kind: ErrorKind::Closed,
                ..
            }
        ));
    }
}
