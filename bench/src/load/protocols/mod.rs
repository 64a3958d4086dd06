//! The protocols a load can speak, listed: each enum here has one arm per protocol and hands the
//! work to that protocol's module, as mini-redis's `cmd/mod.rs` does for its commands. A new
//! protocol is one new module, an arm in each enum, and the fields it takes in `load/fields.rs`.
//!
//! - `line`: bench-server's line protocol; `fixed`: any request bytes, exactly the given bytes
//!   back. Both answers are exact bytes, read by the exact framing in `fixed`.
//! - `http`: HTTP/1.1; `resp`: Redis's RESP.
//! - `wire`: what they all share (a request's bytes, a field's error, a response's verdict).
//!
//! A response is read a chunk at a time, as the socket gives it; a whole response in one read
//! (the usual case) is checked in place, with no copy. Pure code over bytes: the fuzz targets
//! drive it directly.

mod fixed;
mod http;
mod line;
mod resp;
mod wire;

use fixed::ExactReader;
pub use fixed::FixedRequest;
use http::HttpReader;
pub use http::{HttpExpect, HttpRequest, MAX_HEADERS};
pub use line::LineCommand;
use resp::RespReader;
pub use resp::{MAX_KEYSPACE, RespCommand};
pub use wire::{FieldError, MAX_REQUEST_PART, RequestBytes, Verdict};

use crate::protocol::Expected;
use anyhow::{Result, bail};
use serde::Serialize;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// How requests and responses are framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// bench-server's line protocol: `PING`, `ECHO`, `BURN n`, `STREAM n`, `WAIT ms`.
    #[default]
    Line,
    /// Fixed request bytes, and exactly the given response bytes back.
    Fixed,
    /// HTTP/1.1.
    Http,
    /// Redis's RESP.
    Resp,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 4] = [Protocol::Line, Protocol::Fixed, Protocol::Http, Protocol::Resp];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Line => "line",
            Protocol::Fixed => "fixed",
            Protocol::Http => "http",
            Protocol::Resp => "resp",
        }
    }
}

impl FromStr for Protocol {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Protocol> {
        match Protocol::ALL.into_iter().find(|p| p.name() == s) {
            Some(protocol) => Ok(protocol),
            None => bail!("unknown protocol {s:?} (line, fixed, http or resp)"),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How connections are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// `concurrency` connections opened before the clock starts and reused for every request.
    #[default]
    Persistent,
    /// A new connection for every request (connect, send, read the response, close); its
    /// latency includes the connect.
    PerRequest,
}

impl FromStr for ConnectionMode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<ConnectionMode> {
        match s {
            "persistent" => Ok(ConnectionMode::Persistent),
            "per-request" => Ok(ConnectionMode::PerRequest),
            _ => bail!("unknown connection mode {s:?} (persistent or per-request)"),
        }
    }
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionMode::Persistent => "persistent",
            ConnectionMode::PerRequest => "per-request",
        })
    }
}

/// The request every connection sends, over and over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Line(LineCommand),
    Fixed(FixedRequest),
    Http(HttpRequest),
    Resp(RespCommand),
}

impl Command {
    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Command::Line(command) => command.validate(),
            Command::Fixed(request) => request.validate(),
            Command::Http(request) => request.validate(),
            Command::Resp(command) => command.validate(),
        }
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Command::Line(_) => Protocol::Line,
            Command::Fixed(_) => Protocol::Fixed,
            Command::Http(_) => Protocol::Http,
            Command::Resp(_) => Protocol::Resp,
        }
    }

    /// The bytes sent for one request to `target` (HTTP names it in Host, and asks for the
    /// connection's close when each request has its own).
    pub fn request(&self, target: SocketAddr, connection: ConnectionMode) -> RequestBytes {
        match self {
            Command::Line(command) => command.bytes().into(),
            Command::Fixed(request) => request.request.clone().into(),
            Command::Http(request) => request.bytes(target, connection == ConnectionMode::PerRequest).into(),
            Command::Resp(command) => command.bytes(),
        }
    }

    /// What a correct server answers.
    pub fn response(&self) -> ResponseSpec {
        match self {
            Command::Line(command) => ResponseSpec::Exact(command.expected()),
            Command::Fixed(request) => ResponseSpec::Exact(Expected::Exact(request.response.clone())),
            Command::Http(request) => ResponseSpec::Http(request.expect()),
            Command::Resp(_) => ResponseSpec::Resp,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Line(command) => write!(f, "{command}"),
            Command::Fixed(request) => write!(f, "custom {request}"),
            Command::Http(request) => write!(f, "HTTP {request}"),
            Command::Resp(command) => write!(f, "RESP {command}"),
        }
    }
}

/// What every response of a run must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseSpec {
    /// Exactly these bytes: the line protocol's answers, or `fixed`.
    Exact(Expected),
    Http(HttpExpect),
    /// Any well-formed RESP reply that is not an error.
    Resp,
}

/// One connection's response in progress.
#[derive(Debug)]
pub enum Reader {
    Exact(ExactReader),
    Http(HttpReader),
    Resp(RespReader),
}

impl Reader {
    pub fn new(spec: &ResponseSpec) -> Reader {
        match spec {
            ResponseSpec::Exact(_) => Reader::Exact(ExactReader::default()),
            ResponseSpec::Http(_) => Reader::Http(HttpReader::default()),
            ResponseSpec::Resp => Reader::Resp(RespReader::default()),
        }
    }

    /// Ready for the next response (allocations are kept).
    #[inline]
    pub fn reset(&mut self) {
        match self {
            Reader::Exact(r) => r.reset(),
            Reader::Http(r) => r.reset(),
            Reader::Resp(r) => r.reset(),
        }
    }

    /// Reads the next bytes of the response (`spec` is the one this reader was made for).
    #[inline]
    pub fn feed(&mut self, spec: &ResponseSpec, chunk: &[u8]) -> Verdict {
        match (self, spec) {
            (Reader::Exact(r), ResponseSpec::Exact(expected)) => r.feed(expected, chunk),
            (Reader::Http(r), ResponseSpec::Http(expect)) => r.feed(expect, chunk),
            (Reader::Resp(r), ResponseSpec::Resp) => r.feed(chunk),
            (reader, spec) => unreachable!("{reader:?} reads {spec:?}"),
        }
    }

    /// The server closed the connection: the end of a body delimited by the close (a verdict
    /// that never keeps the connection alive), or a response cut short.
    pub fn eof(&mut self, spec: &ResponseSpec) -> Verdict {
        match (self, spec) {
            (Reader::Exact(r), ResponseSpec::Exact(expected)) => r.eof(expected),
            (Reader::Http(r), ResponseSpec::Http(expect)) => r.eof(expect),
            (Reader::Resp(r), ResponseSpec::Resp) => r.eof(),
            (reader, spec) => unreachable!("{reader:?} reads {spec:?}"),
        }
    }
}

/// What the readers' tests share.
#[cfg(test)]
mod testing {
    use super::{Reader, ResponseSpec, Verdict};
    use crate::load::stats::ErrorKind;

    /// Feeds `response` whole, then split at every point into two reads, and in single bytes:
    /// every way must give the same verdict (a broken response may be found broken early, and
    /// its message may quote other bytes).
    pub fn verdict(spec: &ResponseSpec, response: &[u8]) -> Verdict {
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

    pub fn protocol_error(v: &Verdict) -> bool {
        matches!(
            v,
            Verdict::Broken {
                kind: ErrorKind::Protocol,
                ..
            }
        )
    }

    pub const DONE: Verdict = Verdict::Done { keep_alive: true };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_build_matching_requests_and_responses() {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let request = |c: &Command, mode| c.request(local, mode).bytes;
        let echo = Command::Line(LineCommand::Echo { payload_size: 3 });
        assert_eq!(request(&echo, ConnectionMode::Persistent), b"ECHO abc\n");
        assert_eq!(echo.response(), ResponseSpec::Exact(Expected::Exact(b"abc\n".to_vec())));
        assert_eq!(echo.protocol(), Protocol::Line);
        let fixed = Command::Fixed(FixedRequest {
            request: b"HI\r\n".to_vec(),
            response: b"HO\r\n".to_vec(),
        });
        assert_eq!(request(&fixed, ConnectionMode::PerRequest), b"HI\r\n");
        assert_eq!(
            fixed.response(),
            ResponseSpec::Exact(Expected::Exact(b"HO\r\n".to_vec()))
        );
        assert_eq!(fixed.protocol(), Protocol::Fixed);
        let head = Command::Http(HttpRequest {
            method: "HEAD".into(),
            ..HttpRequest::default()
        });
        assert!(matches!(
            head.response(),
            ResponseSpec::Http(HttpExpect { head: true, .. })
        ));
        assert_eq!(head.protocol(), Protocol::Http);
        assert!(request(&head, ConnectionMode::PerRequest).ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn connection_modes_parse() {
        assert_eq!(
            "per-request".parse::<ConnectionMode>().unwrap(),
            ConnectionMode::PerRequest
        );
        assert_eq!(ConnectionMode::PerRequest.to_string(), "per-request");
        assert!("sometimes".parse::<ConnectionMode>().is_err());
    }
}
