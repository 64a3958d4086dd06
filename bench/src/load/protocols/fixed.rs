//! `--protocol fixed`: any request sent as is, and exactly the given bytes back; and the exact
//! framing that reads such an answer, which the line protocol's answers use too.

use super::wire::{FieldError, MAX_REQUEST_PART, Verdict, closed_after};
use crate::load::stats::ErrorKind;
use crate::protocol::Expected;
use anyhow::{Result, ensure};
use std::fmt;

/// Any request, for any server that answers it with fixed bytes (`--protocol fixed`):
/// `request` is sent as is and exactly `response` must come back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedRequest {
    pub request: Vec<u8>,
    pub response: Vec<u8>,
}

impl FixedRequest {
    /// The `request` and `response` fields, both needed.
    pub(crate) fn from_fields(request: Option<&str>, response: Option<&str>) -> Result<FixedRequest, FieldError> {
        let fail = |field: &'static str, why: String| FieldError { field, why };
        let bytes = |field: &'static str, value: Option<&str>| match value {
            None => Err(fail(field, "missing (protocol fixed)".into())),
            Some("") => Err(fail(field, "empty".into())),
            Some(text) if text.len() > MAX_REQUEST_PART => Err(fail(field, format!("over {MAX_REQUEST_PART} bytes"))),
            Some(text) => Ok(text.as_bytes().to_vec()),
        };
        Ok(FixedRequest {
            request: bytes("request", request)?,
            response: bytes("response", response)?,
        })
    }

    pub(super) fn validate(&self) -> Result<()> {
        ensure!(!self.request.is_empty(), "the custom request is empty");
        ensure!(!self.response.is_empty(), "the custom response is empty");
        Ok(())
    }
}

impl fmt::Display for FixedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.request))
    }
}

/// A response that must be exactly the [`Expected`] bytes, checked as they come.
#[derive(Debug, Default)]
pub struct ExactReader {
    received: u64,
}

impl ExactReader {
    #[inline]
    pub(super) fn reset(&mut self) {
        self.received = 0;
    }

    #[inline]
    pub(super) fn feed(&mut self, expected: &Expected, chunk: &[u8]) -> Verdict {
        if !expected.check(self.received, chunk) {
            return Verdict::Broken {
                kind: ErrorKind::Mismatch,
                why: mismatch(self.received, chunk, expected),
            };
        }
        self.received += chunk.len() as u64;
        if self.received == expected.len() {
            Verdict::Done { keep_alive: true }
        } else {
            Verdict::Partial
        }
    }

    /// The server closed the connection: a fixed answer short of its bytes is a closed
    /// connection.
    pub(super) fn eof(&self, expected: &Expected) -> Verdict {
        Verdict::Broken {
            kind: ErrorKind::Closed,
            why: closed_after(self.received, &format!(" of {}", expected.len())),
        }
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

#[cfg(test)]
mod tests {
    use super::super::testing::{DONE, verdict};
    use super::super::{Reader, ResponseSpec};
    use super::*;

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
