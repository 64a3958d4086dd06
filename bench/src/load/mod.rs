//! The load generator: `concurrency` connections spread over one epoll worker thread per core,
//! each request checked byte for byte, every latency in an HdrHistogram.
//!
//! Closed loop by default (each connection sends its next request when the previous response is
//! in); open loop with [`LoadConfig::rate`], where latency counts from each request's scheduled
//! time so that a stalled server cannot hide its stall (coordinated omission, as wrk2 corrects
//! it). Runs are always bounded: by a request count or a duration, a per-request timeout, and a
//! hard limit on the whole run.

mod config;
mod fields;
mod generator;
mod histogram;
mod protocols;
mod report;
mod sources;
mod stats;
mod worker;

pub use config::{
    DEFAULT_MAX_RUN, DEFAULT_REQUEST_TIMEOUT, Interval, Intervals, LoadConfig, MAX_CONCURRENCY, MIN_RATE, Shard,
};
pub use fields::RequestFields;
pub use generator::{OWN_DESCRIPTORS, run, run_observed};
pub use histogram::{Latency, LatencyHistogram};
pub use protocols::{
    Command, ConnectionMode, FieldError, FixedRequest, HttpExpect, HttpRequest, LineCommand, MAX_HEADERS, MAX_KEYSPACE,
    MAX_REQUEST_PART, Protocol, Reader, RequestBytes, RespCommand, ResponseSpec, Verdict,
};
pub use report::{ClientCpu, LoadReport, WorkerStats};
pub use sources::{MAX_SOURCE_ADDRESSES, most_connections, per_source_address, source_addresses_for};
pub use stats::{CallStats, ErrorCounts, ErrorKind};
