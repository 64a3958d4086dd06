//! bench-server's line protocol: `ECHO`, `PING`, `BURN n`, `STREAM n` and `WAIT ms`, their
//! request bytes and the exact answer each must get (read by the exact framing in `fixed.rs`).

use super::wire::FieldError;
use crate::protocol::{self, Expected, MAX_BURN, MAX_ECHO_PAYLOAD, MAX_WAIT_MS, Request};
use anyhow::{Result, bail, ensure};
use std::fmt;

/// The most bytes one `STREAM` request may ask for: 1 GiB, a second or so on loopback; more
/// would hold a run for minutes on one request.
pub const MAX_STREAM: u64 = 1 << 30;

/// A line-protocol request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineCommand {
    /// `ECHO` with a payload of `payload_size` bytes of `a..z`.
    Echo {
        payload_size: usize,
    },
    Ping,
    /// `BURN n`.
    Burn(u64),
    /// `STREAM n`.
    Stream(u64),
    /// `WAIT ms`.
    Wait(u64),
}

impl LineCommand {
    /// Parses `ECHO`, `PING`, `BURN n`, `STREAM n`, `WAIT ms` (case-insensitive); `ECHO` uses
    /// `payload_size`.
    pub fn parse(spec: &str, payload_size: usize) -> Result<LineCommand> {
        let words: Vec<&str> = spec.split_whitespace().collect();
        let number = |name: &str, max: u64| -> Result<u64> {
            let [_, n] = words[..] else {
                bail!("expected `{name} <n>`, got {spec:?}")
            };
            let n: u64 = n.parse().map_err(|_| anyhow::anyhow!("bad number in {spec:?}"))?;
            ensure!(n <= max, "{name} {n} is above the limit of {max}");
            Ok(n)
        };
        let verb = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
        let command = match verb.as_str() {
            "ECHO" if words.len() == 1 => LineCommand::Echo { payload_size },
            "PING" if words.len() == 1 => LineCommand::Ping,
            "BURN" => LineCommand::Burn(number("BURN", MAX_BURN)?),
            "STREAM" => LineCommand::Stream(number("STREAM", MAX_STREAM)?),
            "WAIT" => LineCommand::Wait(number("WAIT", MAX_WAIT_MS)?),
            _ => bail!("unknown command {spec:?} (ECHO, PING, BURN n, STREAM n or WAIT ms)"),
        };
        command.validate()?;
        Ok(command)
    }

    /// The `command` and `payload_size_bytes` fields (default `ECHO` of 64 bytes).
    pub(crate) fn from_fields(command: Option<&str>, payload_size: Option<usize>) -> Result<LineCommand, FieldError> {
        LineCommand::parse(command.unwrap_or("ECHO"), payload_size.unwrap_or(64)).map_err(|e| FieldError {
            field: "command",
            why: format!("{e:#}"),
        })
    }

    pub(super) fn validate(&self) -> Result<()> {
        match self {
            LineCommand::Echo { payload_size } => ensure!(
                *payload_size <= MAX_ECHO_PAYLOAD,
                "payload size {payload_size} is above the limit of {MAX_ECHO_PAYLOAD} bytes"
            ),
            LineCommand::Burn(n) => ensure!(*n <= MAX_BURN, "BURN {n} is above {MAX_BURN}"),
            LineCommand::Stream(n) => ensure!(*n <= MAX_STREAM, "STREAM {n} is above {MAX_STREAM}"),
            LineCommand::Wait(ms) => ensure!(*ms <= MAX_WAIT_MS, "WAIT {ms} is above {MAX_WAIT_MS}"),
            LineCommand::Ping => {}
        }
        Ok(())
    }

    /// The request's line.
    pub(super) fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            LineCommand::Echo { payload_size } => Request::Echo(&echo_payload(*payload_size)).encode(&mut out),
            other => other.request().encode(&mut out),
        }
        out
    }

    /// What bench-server answers.
    pub(super) fn expected(&self) -> Expected {
        match self {
            LineCommand::Echo { payload_size } => {
                protocol::expected_response(&Request::Echo(&echo_payload(*payload_size)))
            }
            other => protocol::expected_response(&other.request()),
        }
    }

    fn request(&self) -> Request<'static> {
        match *self {
            LineCommand::Ping => Request::Ping,
            LineCommand::Burn(n) => Request::Burn(n),
            LineCommand::Stream(n) => Request::Stream(n),
            LineCommand::Wait(ms) => Request::Wait(ms),
            LineCommand::Echo { .. } => unreachable!("{self:?} is not a fixed line request"),
        }
    }
}

/// `ECHO`'s payload: `size` bytes of `a..z`.
fn echo_payload(size: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size);
    protocol::extend_stream(&mut payload, 0, size);
    payload
}

impl fmt::Display for LineCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineCommand::Echo { payload_size } => write!(f, "ECHO ({payload_size} bytes)"),
            LineCommand::Ping => write!(f, "PING"),
            LineCommand::Burn(n) => write!(f, "BURN {n}"),
            LineCommand::Stream(n) => write!(f, "STREAM {n}"),
            LineCommand::Wait(ms) => write!(f, "WAIT {ms}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_build_matching_requests_and_responses() {
        let echo = LineCommand::Echo { payload_size: 3 };
        assert_eq!(echo.bytes(), b"ECHO abc\n");
        assert_eq!(echo.expected(), Expected::Exact(b"abc\n".to_vec()));
        assert_eq!(
            LineCommand::Echo { payload_size: 0 }.expected(),
            Expected::Exact(b"\n".to_vec())
        );
        assert_eq!(LineCommand::Ping.bytes(), b"PING\n");
        assert_eq!(LineCommand::Wait(5).expected(), Expected::Exact(b"DONE\n".to_vec()));
        assert_eq!(LineCommand::Stream(9).bytes(), b"STREAM 9\n");
        assert_eq!(LineCommand::Stream(9).expected(), Expected::Stream(9));
        assert_eq!(
            LineCommand::Burn(10).expected(),
            Expected::Exact(format!("RESULT {}\n", protocol::burn(10)).into_bytes())
        );
    }

    #[test]
    fn parses_command_specs() {
        assert_eq!(
            LineCommand::parse("ECHO", 8).unwrap(),
            LineCommand::Echo { payload_size: 8 }
        );
        assert_eq!(LineCommand::parse("ping", 8).unwrap(), LineCommand::Ping);
        assert_eq!(LineCommand::parse("BURN 100", 8).unwrap(), LineCommand::Burn(100));
        assert_eq!(LineCommand::parse(" STREAM  7 ", 8).unwrap(), LineCommand::Stream(7));
        assert_eq!(LineCommand::parse("WAIT 20", 8).unwrap(), LineCommand::Wait(20));
        for bad in [
            "",
            "BURN",
            "BURN x",
            "BURN -1",
            "WAIT 1 2",
            "PING 1",
            "FOO",
            "WAIT 3600001",
        ] {
            assert!(LineCommand::parse(bad, 8).is_err(), "{bad:?}");
        }
        assert!(LineCommand::parse("ECHO", MAX_ECHO_PAYLOAD + 1).is_err());
    }
}
