//! tcpprof's JSON node: one Maelstrom message per line on stdin, one reply per line on stdout
//! (the binary, `src/main.rs`). The parts: the envelope and the one writer ([`message`]), field
//! checks ([`fields`]), a request turned into a plan without a system call ([`plan`]), the
//! benchmark thread and its bounded queue ([`runner`]), and the node's own handling statistics.
//! A library so that the fuzz targets reach the parsing.
pub mod fields;
pub mod message;
pub mod plan;
pub mod runner;
mod stats;
