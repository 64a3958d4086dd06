//! Loads tcpprof's eBPF programs, attaches them to a server's processes, reads back what the
//! kernel counted and sampled, and turns it into a breakdown of where the server's time went and
//! the code behind each part.
//!
//! One path through it: [`ProfileOptions`] -> [`Session::attach`] -> the caller's wait or load
//! -> [`Session::finish`] -> a [`Report`] (the [`Profile`], the saturation [`Signals`] and the
//! [`Limit`] they point to), which [`printer`] writes as a table, JSON, folded stacks or a flame
//! graph. Runs that are not profiled measure the signals alone ([`signals::Watch`]).
pub mod attach;
pub mod benchmark;
pub mod breakdown;
mod btf;
pub mod compare;
mod cpu_clock;
pub mod dashboard;
pub mod find_max;
pub mod hlog;
mod http;
pub mod launch;
pub mod limit;
pub mod live;
mod log2_hist;
pub mod metrics;
pub mod perf_map;
pub mod plan;
pub mod printer;
pub mod procfs;
pub mod report;
pub mod server_stats;
pub mod session;
pub mod signals;
pub mod stacks;
pub mod symbols;
pub mod totals;
pub mod tracing_cost;
pub mod unwind;
pub mod workload;

pub use attach::{AttachError, Mode, Requested};
pub use breakdown::{Breakdown, Part};
pub use limit::{Limit, LimitKind};
pub use report::{Report, Sweep};
pub use session::{Profile, ProfileOptions, Session};
pub use signals::Signals;
pub use totals::Totals;
pub use unwind::Unwind;
