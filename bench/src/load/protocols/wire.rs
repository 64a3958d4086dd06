//! What every protocol shares: the error naming a request field at fault, a request's bytes
//! (with key slots each request fills), and the verdict on the response bytes read so far.

use crate::load::stats::ErrorKind;
use std::fmt;

/// The largest request body, header value or Redis word a run may send.
pub const MAX_REQUEST_PART: usize = 1 << 20;

/// The random key's width: zero-padded to 12 digits, as redis-benchmark writes it.
pub(super) const KEY_DIGITS: usize = 12;

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
pub(super) fn check(ok: bool, field: &'static str, why: String) -> Result<(), FieldError> {
    if ok { Ok(()) } else { Err(FieldError { field, why }) }
}

/// A request's bytes: the same for every request, but for key slots that each request fills
/// with its own key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestBytes {
    pub bytes: Vec<u8>,
    /// Where a key's digits go.
    pub(super) slots: Vec<usize>,
    pub(super) keyspace: u64,
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

pub(super) fn broken(why: String) -> Verdict {
    Verdict::Broken {
        kind: ErrorKind::Protocol,
        why,
    }
}

/// Why a response ended with the connection: `received` bytes in, `length` naming the whole
/// response's length where it is known.
pub(super) fn closed_after(received: u64, length: &str) -> String {
    format!("server closed the connection after {received}{length} response bytes")
}

/// The server closed the connection `received` bytes into a response: one that began and was
/// cut short is malformed; one that never began is a closed connection.
pub(super) fn cut_short(received: u64) -> Verdict {
    let kind = if received == 0 {
        ErrorKind::Closed
    } else {
        ErrorKind::Protocol
    };
    Verdict::Broken {
        kind,
        why: closed_after(received, ""),
    }
}

/// Moves `bytes` up to and including the first `\n` onto `line`: the bytes after it and whether
/// the line is whole; `None` when the line grows past `max`.
pub(super) fn take_line<'b>(line: &mut Vec<u8>, bytes: &'b [u8], max: usize) -> Option<(&'b [u8], bool)> {
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
