//! The benchmark servers, the line protocol, the load generator and latency histograms.
