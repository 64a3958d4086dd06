//! The profiling flags `profile` and `bench --profile` share, and the stack files they write.
use anyhow::{Context, Result, bail};
use bench::load::FieldError;
use clap::Args;
use profiler::plan::ProfileFields;
use profiler::{Mode, Profile, Requested, Unwind, printer};
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfileArgs {
    /// auto (kprobe, tracepoint, sampling, then userspace where the server times itself),
    /// kprobe, tracepoint, sampling or userspace [default: auto].
    #[arg(long)]
    mode: Option<Requested>,
    /// cpu-clock samples per second on each CPU, in sampling mode or with stacks
    /// [default: 99 for profile, 1999 for bench].
    #[arg(long, value_name = "HZ")]
    frequency: Option<u32>,
    /// Also sample stacks in the exact modes (sampling mode always does).
    #[arg(long)]
    stacks: bool,
    /// Write the stacks in folded form (one `part;process;frames... count` line each) to FILE.
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Write an SVG flame graph of the stacks to FILE.
    #[arg(long, value_name = "FILE")]
    flamegraph: Option<PathBuf>,
    /// Also report the eBPF programs' own run time (BPF run-time statistics).
    #[arg(long)]
    bpf_stats: bool,
    /// How sampled user stacks are walked: auto (frame pointers where the process's own code
    /// keeps them, call frame information otherwise), fp, or dwarf (call frame information, from
    /// .eh_frame or .debug_frame, for every target) [default: auto].
    #[arg(long, value_name = "HOW")]
    unwind: Option<Unwind>,
    /// Also profile the target's children (nginx's or a prefork server's workers).
    #[arg(long)]
    pub children: bool,
}

impl ProfileArgs {
    /// The rulebook's fields these flags set (a stack file asks for stacks).
    pub fn fields(&self) -> ProfileFields {
        ProfileFields {
            mode: self.mode,
            frequency_hz: self.frequency.map(u64::from),
            stacks: self.stacks || self.folded.is_some() || self.flamegraph.is_some(),
            bpf_stats: self.bpf_stats,
            unwind: self.unwind,
            children: self.children,
        }
    }

    /// Refuses, before the run, a stack file that could not be written after it.
    pub fn check_outputs(&self) -> Result<()> {
        for (flag, path) in [("--folded", &self.folded), ("--flamegraph", &self.flamegraph)] {
            if let Some(path) = path {
                crate::outputs::check_writable(flag, path)?;
            }
        }
        Ok(())
    }

    /// Writes the stack files asked for. Called after the result is printed, so that a missing
    /// stack never hides the breakdown.
    pub fn write_stacks(&self, profile: &Profile, what: &str) -> Result<()> {
        if self.folded.is_none() && self.flamegraph.is_none() {
            return Ok(());
        }
        let Some(stacks) = &profile.stacks else {
            bail!("no stacks to write: {} mode takes none", profile.breakdown.mode);
        };
        if let Some(path) = &self.folded {
            std::fs::write(path, printer::folded(stacks)).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("folded stacks: {} ({} distinct)", path.display(), stacks.folded.len());
        }
        if let Some(path) = &self.flamegraph {
            let b = &profile.breakdown;
            if stacks.folded.is_empty() {
                bail!(
                    "no flame graph written to {}: no sample caught the target on a CPU in the {} ms window",
                    path.display(),
                    b.window_ms
                );
            }
            let samples = b.classes.samples();
            let how = if b.mode == Mode::Sampling {
                String::from("sampling")
            } else {
                format!("{} + stacks", b.mode)
            };
            let title = format!("tcpprof: {what} ({how}, {samples} samples in {} ms)", b.window_ms);
            let svg = printer::flamegraph(stacks, &title, None)?;
            crate::outputs::write_file(path, svg, "flame graph")?;
        }
        Ok(())
    }
}

/// A rulebook field's error, named by the flag that sets the field.
pub fn wrong_flag(e: FieldError) -> anyhow::Error {
    let flag = match e.field {
        "num_requests" => "requests",
        "duration_ms" => "duration",
        "payload_size_bytes" => "payload",
        "headers" => "header",
        "concurrency_levels" => "sweep",
        "frequency_hz" => "frequency",
        "stacks" => "stacks (or --folded, --flamegraph)",
        field => return anyhow::anyhow!("--{}: {}", field.replace('_', "-"), e.why),
    };
    anyhow::anyhow!("--{flag}: {}", e.why)
}
