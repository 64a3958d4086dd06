#![no_std]
// The programs live in main.rs (the bin aya-build compiles for bpfel-unknown-none); this library
// target exists so that the profiler crate can name this package as a build dependency.
