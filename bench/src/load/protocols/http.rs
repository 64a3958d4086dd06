//! HTTP/1.1: the request built from its method, path, headers and body (Host, Connection and
//! Content-Length written unless given), and the response read by its head (httparse), then its
//! body framed by Content-Length, chunked transfer coding, or the connection's close.

use super::wire::{FieldError, MAX_REQUEST_PART, Verdict, broken, check, cut_short, take_line};
use crate::load::stats::ErrorKind;
use anyhow::{Result, bail};
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

/// Most `--header`s.
pub const MAX_HEADERS: usize = 64;
/// Largest HTTP response head (status line and headers).
pub const MAX_HTTP_HEAD: usize = 64 * 1024;
/// Headers one HTTP response may have.
const MAX_HTTP_HEADERS: usize = 100;
/// Longest chunk-size or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// One HTTP/1.1 request, sent over and over, and what its responses must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The request target, e.g. `/index.html?x=1`.
    pub path: String,
    /// `Name: value` headers besides Host, Connection and Content-Length (which the load
    /// generator writes unless given here).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Only this status is right (otherwise any 2xx).
    pub expect_status: Option<u16>,
    /// The body must be exactly these bytes.
    pub expect_body: Option<Vec<u8>>,
}

impl Default for HttpRequest {
    fn default() -> Self {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect_status: None,
            expect_body: None,
        }
    }
}

impl HttpRequest {
    /// The `method`, `path`, `headers`, `body`, `expect_status` and `expect_body` fields
    /// (default `GET /`).
    pub(crate) fn from_fields(
        method: Option<&str>,
        path: Option<&str>,
        headers: &[String],
        body: Option<&str>,
        expect_status: Option<u16>,
        expect_body: Option<&str>,
    ) -> Result<HttpRequest, FieldError> {
        let headers = headers
            .iter()
            .map(|h| HttpRequest::header(h))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| FieldError {
                field: "headers",
                why: format!("{e:#}"),
            })?;
        let request = HttpRequest {
            method: method.unwrap_or("GET").into(),
            path: path.unwrap_or("/").into(),
            headers,
            body: body.unwrap_or_default().as_bytes().to_vec(),
            expect_status,
            expect_body: expect_body.map(|b| b.as_bytes().to_vec()),
        };
        request.validate_fields()?;
        Ok(request)
    }

    /// Parses a `--header` value, `Name: value`.
    pub fn header(text: &str) -> Result<(String, String)> {
        let Some((name, value)) = text.split_once(':') else {
            bail!("header {text:?} is not `Name: value`");
        };
        Ok((name.trim().to_string(), value.trim().to_string()))
    }

    pub fn validate(&self) -> Result<()> {
        self.validate_fields().map_err(anyhow::Error::from)
    }

    /// [`Self::validate`], naming the field at fault.
    fn validate_fields(&self) -> Result<(), FieldError> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        };
        check(
            token(&self.method),
            "method",
            format!("{:?} is not an HTTP token", self.method),
        )?;
        check(
            !self.path.is_empty()
                && self.path.len() <= MAX_REQUEST_PART
                && self.path.bytes().all(|b| b.is_ascii_graphic()),
            "path",
            format!(
                "{:?} must be visible ASCII with no spaces, 1 to {MAX_REQUEST_PART} bytes",
                self.path
            ),
        )?;
        check(
            self.headers.len() <= MAX_HEADERS,
            "headers",
            format!("more than {MAX_HEADERS} headers"),
        )?;
        for (name, value) in &self.headers {
            check(token(name), "headers", format!("name {name:?} is not an HTTP token"))?;
            check(
                value.len() <= MAX_REQUEST_PART && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
                "headers",
                format!("{name}'s value must be one line of at most {MAX_REQUEST_PART} bytes"),
            )?;
        }
        check(
            self.body.len() <= MAX_REQUEST_PART,
            "body",
            format!("over {MAX_REQUEST_PART} bytes"),
        )?;
        if let Some(status) = self.expect_status {
            check(
                (100..=599).contains(&status),
                "expect_status",
                format!("{status} is not 100..599"),
            )?;
        }
        if let Some(body) = &self.expect_body {
            check(
                body.len() <= MAX_REQUEST_PART,
                "expect_body",
                format!("over {MAX_REQUEST_PART} bytes"),
            )?;
        }
        Ok(())
    }

    /// The request's bytes for `target`; with `close`, it asks the server to close the
    /// connection after answering.
    pub fn bytes(&self, target: SocketAddr, close: bool) -> Vec<u8> {
        let given = |name: &str| self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !given("host") {
            out += &format!("Host: {target}\r\n");
        }
        if close && !given("connection") {
            out += "Connection: close\r\n";
        }
        for (name, value) in &self.headers {
            out += &format!("{name}: {value}\r\n");
        }
        let sends_body = !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_body && !given("content-length") && !given("transfer-encoding") {
            out += &format!("Content-Length: {}\r\n", self.body.len());
        }
        out += "\r\n";
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// What makes a response to it right.
    pub(super) fn expect(&self) -> HttpExpect {
        HttpExpect {
            head: self.method.eq_ignore_ascii_case("HEAD"),
            status: self.expect_status,
            body: self.expect_body.clone(),
        }
    }
}

impl fmt::Display for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
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
    pub(super) fn reset(&mut self) {
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

    pub(super) fn feed(&mut self, expect: &HttpExpect, chunk: &[u8]) -> Verdict {
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

    /// The server closed the connection: the end of a body delimited by the close (a verdict
    /// that never keeps the connection alive), or a response cut short.
    pub(super) fn eof(&self, expect: &HttpExpect) -> Verdict {
        match self.state {
            HttpState::UntilClose => self.finish(expect, &[], false),
            _ => cut_short(self.received),
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

#[cfg(test)]
mod tests {
    use super::super::testing::{DONE, protocol_error, verdict};
    use super::super::{Reader, ResponseSpec};
    use super::*;
    use crate::load::stats::ErrorKind;
    use std::net::SocketAddr;

    fn http() -> ResponseSpec {
        ResponseSpec::Http(HttpExpect::default())
    }

    #[test]
    fn http_requests_carry_host_connection_and_length() {
        let target: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let get = HttpRequest::default();
        assert_eq!(
            get.bytes(target, false),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(
            get.bytes(target, true),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"
        );
        let post = HttpRequest {
            method: "POST".into(),
            path: "/api".into(),
            headers: vec![HttpRequest::header("Host: example").unwrap()],
            body: b"{}".to_vec(),
            ..HttpRequest::default()
        };
        assert_eq!(
            post.bytes(target, false),
            b"POST /api HTTP/1.1\r\nHost: example\r\nContent-Length: 2\r\n\r\n{}"
        );
        for bad in [
            HttpRequest {
                method: "GE T".into(),
                ..HttpRequest::default()
            },
            HttpRequest {
                path: "/a b".into(),
                ..HttpRequest::default()
            },
            HttpRequest {
                headers: vec![("X".into(), "a\r\nEvil: 1".into())],
                ..HttpRequest::default()
            },
            HttpRequest {
                expect_status: Some(99),
                ..HttpRequest::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

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
}
