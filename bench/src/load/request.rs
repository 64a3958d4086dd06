//! The bytes a request is made of, for each protocol: HTTP/1.1 requests and Redis commands as
//! RESP arrays (with redis-benchmark's `__rand_int__` keys), beside the line protocol's.

use super::config::Command;
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

impl FromStr for Protocol {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Protocol> {
        Ok(match s {
            "line" => Protocol::Line,
            "fixed" => Protocol::Fixed,
            "http" => Protocol::Http,
            "resp" => Protocol::Resp,
            _ => bail!("unknown protocol {s:?} (line, fixed, http or resp)"),
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Line => "line",
            Protocol::Fixed => "fixed",
            Protocol::Http => "http",
            Protocol::Resp => "resp",
        })
    }
}

/// A run's request as its front end was given it (the CLI's flags, the node's fields), before
/// it is one [`Command`]: [`RequestFields::command`] checks every field against the protocol.
#[derive(Clone, Debug, Default)]
pub struct RequestFields {
    /// Default: `line` against our bench-server, `fixed` against a target.
    pub protocol: Option<Protocol>,
    /// line: `ECHO`, `PING`, `BURN n`, `STREAM n` or `WAIT ms` (default `ECHO`).
    pub command: Option<String>,
    /// line: `ECHO`'s payload size (default 64).
    pub payload_size: Option<usize>,
    /// fixed: the bytes sent; resp: the command's words.
    pub request: Option<String>,
    /// fixed: the exact bytes of a right answer.
    pub response: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    /// `Name: value` each.
    pub headers: Vec<String>,
    pub body: Option<String>,
    pub expect_status: Option<u16>,
    pub expect_body: Option<String>,
    pub keyspace: Option<u64>,
}

/// A field that is wrong, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the node spells it (the CLI's flag with `-` for `_`).
    pub field: &'static str,
    pub why: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

impl std::error::Error for FieldError {}

/// `Ok` when `ok`, else `field` is wrong for `why`.
fn check(ok: bool, field: &'static str, why: String) -> Result<(), FieldError> {
    if ok { Ok(()) } else { Err(FieldError { field, why }) }
}

impl RequestFields {
    /// The one command these fields describe, for a run against a target (`to_target`) or
    /// against our bench-server.
    pub fn command(&self, to_target: bool) -> Result<Command, FieldError> {
        let fail = |field: &'static str, why: String| FieldError { field, why };
        let protocol = self
            .protocol
            .unwrap_or(if to_target { Protocol::Fixed } else { Protocol::Line });
        // Each field belongs to some protocols only: one given to another is a mistake.
        let given: [(&'static str, bool, &[Protocol]); 12] = [
            ("command", self.command.is_some(), &[Protocol::Line]),
            ("payload_size_bytes", self.payload_size.is_some(), &[Protocol::Line]),
            ("request", self.request.is_some(), &[Protocol::Fixed, Protocol::Resp]),
            ("response", self.response.is_some(), &[Protocol::Fixed]),
            ("method", self.method.is_some(), &[Protocol::Http]),
            ("path", self.path.is_some(), &[Protocol::Http]),
            ("headers", !self.headers.is_empty(), &[Protocol::Http]),
            ("body", self.body.is_some(), &[Protocol::Http]),
            ("expect_status", self.expect_status.is_some(), &[Protocol::Http]),
            ("expect_body", self.expect_body.is_some(), &[Protocol::Http]),
            ("keyspace", self.keyspace.is_some(), &[Protocol::Resp]),
            (
                "protocol",
                matches!(protocol, Protocol::Http | Protocol::Resp) && !to_target,
                &[],
            ),
        ];
        for (field, present, protocols) in given {
            if present && !protocols.contains(&protocol) {
                let why = if protocols.is_empty() {
                    format!("{protocol} needs a target (our bench-server speaks the line protocol)")
                } else {
                    let names: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
                    format!("only with protocol {} (this run's is {protocol})", names.join(" or "))
                };
                return Err(fail(field, why));
            }
        }
        Ok(match protocol {
            Protocol::Line => Command::parse(
                self.command.as_deref().unwrap_or("ECHO"),
                self.payload_size.unwrap_or(64),
            )
            .map_err(|e| fail("command", format!("{e:#}")))?,
            Protocol::Fixed => {
                let bytes = |field: &'static str, value: &Option<String>| match value.as_deref() {
                    None => Err(fail(field, "missing (protocol fixed)".into())),
                    Some("") => Err(fail(field, "empty".into())),
                    Some(text) if text.len() > MAX_REQUEST_PART => {
                        Err(fail(field, format!("over {MAX_REQUEST_PART} bytes")))
                    }
                    Some(text) => Ok(text.as_bytes().to_vec()),
                };
                Command::Custom {
                    request: bytes("request", &self.request)?,
                    response: bytes("response", &self.response)?,
                }
            }
            Protocol::Http => {
                let headers = self
                    .headers
                    .iter()
                    .map(|h| HttpRequest::header(h))
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| fail("headers", format!("{e:#}")))?;
                let request = HttpRequest {
                    method: self.method.clone().unwrap_or_else(|| "GET".into()),
                    path: self.path.clone().unwrap_or_else(|| "/".into()),
                    headers,
                    body: self.body.clone().unwrap_or_default().into_bytes(),
                    expect_status: self.expect_status,
                    expect_body: self.expect_body.clone().map(String::into_bytes),
                };
                request.validate_fields()?;
                Command::Http(request)
            }
            Protocol::Resp => {
                let command = RespCommand {
                    words: words(self.request.as_deref().unwrap_or("PING")),
                    keyspace: self.keyspace,
                };
                command.validate_fields()?;
                Command::Resp(command)
            }
        })
    }
}

/// The largest request body, header value or Redis word a run may send.
pub const MAX_REQUEST_PART: usize = 1 << 20;
/// Most `--header`s.
pub const MAX_HEADERS: usize = 64;
/// Most words in a Redis command.
pub const MAX_WORDS: usize = 1024;

/// One HTTP/1.1 request, sent over and over, and what its responses must be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    /// The request target, e.g. `/index.html?x=1`.
    pub path: String,
    /// `Name: value` headers besides Host, Connection and Content-Length (which the load
    /// generator writes unless given here).
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// Only this status is right (otherwise any 2xx).
    pub expect_status: Option<u16>,
    /// The body must be exactly these bytes.
    #[serde(skip)]
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
}

impl fmt::Display for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// A Redis command, as words (`SET key value`), sent as a RESP array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RespCommand {
    pub words: Vec<String>,
    /// Replace `__rand_int__` in the words with a random key number below this, per request
    /// (redis-benchmark's `-r`).
    pub keyspace: Option<u64>,
}

/// What redis-benchmark replaces with a random key.
pub const RAND_INT: &str = "__rand_int__";
/// The random key's width: zero-padded to 12 digits, as redis-benchmark writes it.
const KEY_DIGITS: usize = 12;
/// The largest keyspace: every key fits in [`KEY_DIGITS`] digits.
pub const MAX_KEYSPACE: u64 = 1_000_000_000_000;

impl RespCommand {
    /// The words of `text`, split at whitespace.
    pub fn parse(text: &str, keyspace: Option<u64>) -> Result<RespCommand> {
        let command = RespCommand {
            words: words(text),
            keyspace,
        };
        command.validate()?;
        Ok(command)
    }

    pub fn validate(&self) -> Result<()> {
        self.validate_fields().map_err(anyhow::Error::from)
    }

    /// [`Self::validate`], naming the field at fault.
    fn validate_fields(&self) -> Result<(), FieldError> {
        check(!self.words.is_empty(), "request", "the Redis command is empty".into())?;
        check(
            self.words.len() <= MAX_WORDS,
            "request",
            format!("more than {MAX_WORDS} words"),
        )?;
        check(
            self.words.iter().all(|w| w.len() <= MAX_REQUEST_PART),
            "request",
            format!("a word over {MAX_REQUEST_PART} bytes"),
        )?;
        if let Some(n) = self.keyspace {
            check(
                (1..=MAX_KEYSPACE).contains(&n),
                "keyspace",
                format!("must be from 1 to {MAX_KEYSPACE}, got {n}"),
            )?;
        }
        Ok(())
    }

    /// The RESP array, with a slot for a key wherever `__rand_int__` was (with a keyspace).
    pub fn bytes(&self) -> RequestBytes {
        let mut out = format!("*{}\r\n", self.words.len()).into_bytes();
        let mut slots = Vec::new();
        for word in &self.words {
            let pieces: Vec<&str> = match self.keyspace {
                Some(_) => word.split(RAND_INT).collect(),
                None => vec![word.as_str()],
            };
            let len = word.len() - (pieces.len() - 1) * (RAND_INT.len() - KEY_DIGITS);
            out.extend_from_slice(format!("${len}\r\n").as_bytes());
            for (k, piece) in pieces.iter().enumerate() {
                if k > 0 {
                    slots.push(out.len());
                    out.extend_from_slice(&[b'0'; KEY_DIGITS]);
                }
                out.extend_from_slice(piece.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        RequestBytes {
            bytes: out,
            slots,
            keyspace: self.keyspace.unwrap_or(1),
        }
    }
}

impl fmt::Display for RespCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words.join(" "))
    }
}

/// A request's bytes: the same for every request, but for key slots that each request fills
/// with its own key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestBytes {
    pub bytes: Vec<u8>,
    /// Where a key's digits go.
    slots: Vec<usize>,
    keyspace: u64,
}

impl From<Vec<u8>> for RequestBytes {
    fn from(bytes: Vec<u8>) -> Self {
        RequestBytes {
            bytes,
            slots: Vec::new(),
            keyspace: 1,
        }
    }
}

impl RequestBytes {
    /// Whether every request is the same bytes.
    pub fn is_fixed(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes request number `seq` of connection `conn` into `out` (a copy of `bytes`): its key,
    /// below the keyspace, is a hash of the two, so that a request's bytes can be written again
    /// after a short write.
    pub fn fill(&self, conn: u64, seq: u64, out: &mut [u8]) {
        let key = splitmix64(conn << 32 ^ seq) % self.keyspace;
        let mut digits = [b'0'; KEY_DIGITS];
        let mut rest = key;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        for &at in &self.slots {
            out[at..at + KEY_DIGITS].copy_from_slice(&digits);
        }
    }
}

/// A well-mixed 64-bit hash of `x` (Steele, Lea and Flood's SplitMix64 finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn fields_become_one_command_or_name_the_field_at_fault() {
        let http = RequestFields {
            protocol: Some(Protocol::Http),
            path: Some("/index.html".into()),
            headers: vec!["Accept: */*".into()],
            expect_status: Some(200),
            ..RequestFields::default()
        };
        let Command::Http(request) = http.command(true).unwrap() else {
            panic!("not HTTP");
        };
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/index.html"));
        assert_eq!(request.headers, [("Accept".to_string(), "*/*".to_string())]);
        let wrong = |fields: RequestFields, to_target: bool| fields.command(to_target).unwrap_err().field;
        assert_eq!(wrong(http.clone(), false), "protocol", "HTTP against bench-server");
        let with = |f: fn(&mut RequestFields)| {
            let mut fields = http.clone();
            f(&mut fields);
            fields
        };
        assert_eq!(wrong(with(|f| f.keyspace = Some(5)), true), "keyspace");
        assert_eq!(wrong(with(|f| f.method = Some("G T".into())), true), "method");
        assert_eq!(wrong(with(|f| f.headers = vec!["nocolon".into()]), true), "headers");
        assert_eq!(wrong(with(|f| f.expect_status = Some(700)), true), "expect_status");
        let fixed = RequestFields {
            request: Some("PING\r\n".into()),
            ..RequestFields::default()
        };
        assert_eq!(wrong(fixed.clone(), true), "response", "fixed needs both");
        let resp = RequestFields {
            protocol: Some(Protocol::Resp),
            request: Some("GET key:__rand_int__".into()),
            keyspace: Some(100),
            ..RequestFields::default()
        };
        assert_eq!(resp.command(true).unwrap().protocol(), Protocol::Resp);
        let line = RequestFields {
            command: Some("PING".into()),
            ..RequestFields::default()
        };
        assert_eq!(line.command(false).unwrap(), Command::Ping);
        assert_eq!(wrong(line, true), "command", "a target's default protocol is fixed");
    }

    #[test]
    fn redis_commands_are_resp_arrays_with_random_keys() {
        let set = RespCommand::parse("SET key:__rand_int__ v", None).unwrap();
        let bytes = set.bytes();
        assert!(bytes.is_fixed());
        assert_eq!(
            bytes.bytes,
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$1\r\nv\r\n"
        );
        let set = RespCommand::parse("SET key:__rand_int__ v", Some(1000)).unwrap();
        let template = set.bytes();
        assert_eq!(
            template.bytes,
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000000\r\n$1\r\nv\r\n"
        );
        let mut keys = std::collections::HashSet::new();
        for seq in 0..200 {
            let mut out = template.bytes.clone();
            template.fill(7, seq, &mut out);
            let text = String::from_utf8(out).unwrap();
            let key: u64 = text[22..34].parse().unwrap();
            assert!(key < 1000, "{text}");
            keys.insert(key);
        }
        assert!(keys.len() > 150, "keys spread over the keyspace: {}", keys.len());
        assert!(RespCommand::parse("  ", None).is_err());
        assert!(RespCommand::parse("GET k", Some(0)).is_err());
    }
}
