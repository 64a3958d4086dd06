//! The benchmark servers, the line protocol, the load generator and latency histograms.
//!
//! - [`protocol`]: the line protocol both sides speak, and how to check a response.
//! - [`server`]: the servers, one module per concurrency model, and [`server::spawn_child`] to
//!   run one as a child process.
//! - [`load`]: the load generator ([`load::run`]) and its report.

pub mod load;
pub mod protocol;
pub mod server;
pub mod sys;

pub use sys::raise_nofile_limit;
