//! Per-worker counters: how long each send/recv call took (as request-performance-analytics
//! prints them) and what went wrong.

use serde::Serialize;
use std::time::Duration;

/// Durations of one kind of socket call on one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CallStats {
    pub calls: u64,
    /// Bytes moved by these calls.
    pub bytes: u64,
    pub total_us: f64,
    pub mean_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    pub stddev_us: f64,
}

/// Accumulates [`CallStats`] without storing each sample.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CallTimer {
    calls: u64,
    bytes: u64,
    sum_ns: u128,
    sum_sq_ns: f64,
    min_ns: u64,
    max_ns: u64,
}

impl CallTimer {
    pub(crate) fn record(&mut self, took: Duration, bytes: usize) {
        let ns = took.as_nanos().min(u64::MAX as u128) as u64;
        if self.calls == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        self.max_ns = self.max_ns.max(ns);
        self.calls += 1;
        self.bytes += bytes as u64;
        self.sum_ns += ns as u128;
        self.sum_sq_ns += (ns as f64) * (ns as f64);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn stats(&self) -> CallStats {
        if self.calls == 0 {
            return CallStats::default();
        }
        let n = self.calls as f64;
        let mean_ns = self.sum_ns as f64 / n;
        // Population variance; clamp rounding noise below zero.
        let variance = (self.sum_sq_ns / n - mean_ns * mean_ns).max(0.0);
        CallStats {
            calls: self.calls,
            bytes: self.bytes,
            total_us: self.sum_ns as f64 / 1e3,
            mean_us: mean_ns / 1e3,
            min_us: self.min_ns as f64 / 1e3,
            max_us: self.max_ns as f64 / 1e3,
            stddev_us: variance.sqrt() / 1e3,
        }
    }
}

/// Failed requests by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Connecting failed (refused, reset, no ports left, ...).
    pub connect: u64,
    /// A send or receive failed (e.g. reset by the server).
    pub io: u64,
    /// The server closed the connection before the whole response arrived.
    pub closed: u64,
    /// A response byte differed from what the protocol promises, or extra bytes came.
    pub mismatch: u64,
    /// No complete response within the request timeout (or before the hard limit).
    pub timeout: u64,
    /// Bytes from the server on a connection with no request in flight. Not tied to a request,
    /// so with these `requests + errors` can exceed the configured count.
    pub unsolicited: u64,
    /// An HTTP response whose status was not 2xx (or not the expected one).
    pub http_status: u64,
    /// A response that breaks its protocol's framing (a bad status line or chunk size, a head
    /// over 64 KiB, a body cut short, bytes after the end).
    pub protocol: u64,
    /// A Redis error reply.
    pub server_error: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        ErrorKind::ALL.iter().map(|&k| self.get(k)).sum()
    }

    /// Each kind's name (as `error_counts` names it) and count.
    pub fn by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ErrorKind::ALL.iter().map(|&k| (k.name(), self.get(k)))
    }

    /// What was counted since `earlier`, an earlier copy of the same counts.
    pub fn since(&self, earlier: &ErrorCounts) -> ErrorCounts {
        let mut delta = *self;
        for k in ErrorKind::ALL {
            *delta.get_mut(k) -= earlier.get(k);
        }
        delta
    }

    pub fn add(&mut self, other: &ErrorCounts) {
        for k in ErrorKind::ALL {
            *self.get_mut(k) += other.get(k);
        }
    }

    pub(crate) fn count(&mut self, kind: ErrorKind) {
        *self.get_mut(kind) += 1;
    }

    fn get(&self, kind: ErrorKind) -> u64 {
        let mut copy = *self;
        *copy.get_mut(kind)
    }

    fn get_mut(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Io => &mut self.io,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Unsolicited => &mut self.unsolicited,
            ErrorKind::HttpStatus => &mut self.http_status,
            ErrorKind::Protocol => &mut self.protocol,
            ErrorKind::ServerError => &mut self.server_error,
        }
    }
}

/// Why a request failed (each kind is a field of [`ErrorCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Io,
    Closed,
    Mismatch,
    Timeout,
    Unsolicited,
    HttpStatus,
    Protocol,
    ServerError,
}

impl ErrorKind {
    const ALL: [ErrorKind; 9] = [
        ErrorKind::Connect,
        ErrorKind::Io,
        ErrorKind::Closed,
        ErrorKind::Mismatch,
        ErrorKind::Timeout,
        ErrorKind::Unsolicited,
        ErrorKind::HttpStatus,
        ErrorKind::Protocol,
        ErrorKind::ServerError,
    ];

    /// The kind's name in `error_counts`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Closed => "closed",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unsolicited => "unsolicited",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::ServerError => "server_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_stats_summarise_samples() {
        let mut t = CallTimer::default();
        assert_eq!(t.stats(), CallStats::default());
        for us in [2, 4, 4, 4, 5, 5, 7, 9] {
            t.record(Duration::from_micros(us), 10);
        }
        let s = t.stats();
        assert_eq!((s.calls, s.bytes), (8, 80));
        assert!((s.mean_us - 5.0).abs() < 1e-9);
        assert!((s.stddev_us - 2.0).abs() < 1e-9);
        assert!((s.total_us - 40.0).abs() < 1e-9);
        assert_eq!((s.min_us, s.max_us), (2.0, 9.0));
    }

    #[test]
    fn error_counts_add_up() {
        let mut e = ErrorCounts::default();
        e.count(ErrorKind::Mismatch);
        e.count(ErrorKind::Timeout);
        let mut total = ErrorCounts::default();
        total.add(&e);
        total.add(&e);
        assert_eq!(total.total(), 4);
        assert_eq!(total.mismatch, 2);
        assert_eq!(total.since(&e), e);
        let names: Vec<_> = total.by_kind().filter(|&(_, n)| n > 0).collect();
        assert_eq!(names, [("mismatch", 2), ("timeout", 2)]);
    }
}
