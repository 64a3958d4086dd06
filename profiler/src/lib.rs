//! Loads tcpprof's eBPF programs, attaches them to one process, and reads back what the kernel
//! counted.
pub mod attach;
pub mod totals;
pub mod workload;

pub use attach::{Mode, Session};
pub use totals::Totals;
