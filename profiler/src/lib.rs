//! Loads tcpprof's eBPF programs, attaches them to one process, reads back what the kernel
//! counted and turns it into a breakdown of where the process's time went.
pub mod attach;
pub mod benchmark;
pub mod breakdown;
mod btf;
pub mod report;
pub mod server_stats;
pub mod totals;
pub mod workload;

pub use attach::{AttachError, Mode, Requested, Session};
pub use breakdown::Breakdown;
pub use totals::Totals;
