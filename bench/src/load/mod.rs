//! The load generator: `concurrency` connections spread over one epoll worker thread per core,
//! each request checked byte for byte, every latency in an HdrHistogram.
//!
//! Closed loop by default (each connection sends its next request when the previous response is
//! in); open loop with [`LoadConfig::rate`], where latency counts from each request's scheduled
//! time so that a stalled server cannot hide its stall (coordinated omission, as wrk2 corrects
//! it). Runs are always bounded: by a request count or a duration, a per-request timeout, and a
//! hard limit on the whole run.

mod config;
pub mod framing;
mod generator;
mod histogram;
mod report;
mod request;
mod sources;
mod stats;
mod worker;

pub use config::{
    Command, ConnectionMode, DEFAULT_MAX_RUN, DEFAULT_REQUEST_TIMEOUT, Interval, Intervals, LoadConfig,
    MAX_CONCURRENCY, MIN_RATE, Shard,
};
pub use generator::{OWN_DESCRIPTORS, run, run_observed};
pub use histogram::{Latency, LatencyHistogram};
pub use report::{ClientCpu, LoadReport, WorkerStats};
pub use request::{
    FieldError, HttpRequest, MAX_HEADERS, MAX_KEYSPACE, MAX_REQUEST_PART, Protocol, RequestBytes, RequestFields,
    RespCommand,
};
pub use sources::{MAX_SOURCE_ADDRESSES, most_connections, per_source_address, source_addresses_for};
pub use stats::{CallStats, ErrorCounts, ErrorKind};
