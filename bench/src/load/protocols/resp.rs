//! Redis's RESP: a command's words sent as a RESP array (with redis-benchmark's `__rand_int__`
//! keys), and a RESP2/RESP3 reply read to its end, nested aggregates and all.

use super::wire::{
    FieldError, KEY_DIGITS, MAX_REQUEST_PART, RequestBytes, Verdict, broken, check, cut_short, take_line,
};
use crate::load::stats::ErrorKind;
use anyhow::Result;
use std::fmt;

/// Most words in a Redis command.
pub const MAX_WORDS: usize = 1024;
/// Longest RESP line (a type byte and a simple string or a number).
const MAX_RESP_LINE: usize = 64 * 1024;
/// Deepest nesting of RESP aggregates.
const MAX_RESP_DEPTH: usize = 64;
/// Largest RESP bulk string, as Redis's own `proto-max-bulk-len` default.
const MAX_RESP_BULK: i64 = 512 * 1024 * 1024;
/// Most elements one RESP aggregate may announce.
const MAX_RESP_ELEMENTS: i64 = 1 << 32;

/// A Redis command, as words (`SET key value`), sent as a RESP array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespCommand {
    pub words: Vec<String>,
    /// Replace `__rand_int__` in the words with a random key number below this, per request
    /// (redis-benchmark's `-r`).
    pub keyspace: Option<u64>,
}

/// What redis-benchmark replaces with a random key.
pub const RAND_INT: &str = "__rand_int__";
/// The largest keyspace: every key fits in `KEY_DIGITS` digits.
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

    /// The `request` (default `PING`) and `keyspace` fields.
    pub(crate) fn from_fields(request: Option<&str>, keyspace: Option<u64>) -> Result<RespCommand, FieldError> {
        let command = RespCommand {
            words: words(request.unwrap_or("PING")),
            keyspace,
        };
        command.validate_fields()?;
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

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
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
    pub(super) fn reset(&mut self) {
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

    pub(super) fn feed(&mut self, chunk: &[u8]) -> Verdict {
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

    /// The server closed the connection: the reply was cut short.
    pub(super) fn eof(&self) -> Verdict {
        cut_short(self.received)
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
    use super::super::testing::{DONE, protocol_error, verdict};
    use super::super::{Reader, ResponseSpec};
    use super::*;

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
}
