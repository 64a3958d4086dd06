//! The profiling flags `profile` and `bench --profile` share, and the stack files they write.
use anyhow::{Context, Result, bail};
use clap::Args;
use profiler::{Mode, Profile, ProfileOptions, Requested, Unwind, printer};
use std::path::PathBuf;

#[derive(Args)]
pub struct ProfileArgs {
    /// auto (kprobe, tracepoint, sampling, then userspace where the server times itself),
    /// kprobe, tracepoint, sampling or userspace [default: auto].
    #[arg(long)]
    mode: Option<Requested>,
    /// cpu-clock samples per second on each CPU, in sampling mode or with stacks
    /// [default: 99 for profile, 1999 for bench].
    #[arg(long, value_name = "HZ",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ProfileOptions::MAX_FREQUENCY_HZ)))]
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
    /// Whether any of these flags was given (they mean nothing to an unprofiled run).
    pub fn any_given(&self) -> bool {
        self.mode.is_some()
            || self.frequency.is_some()
            || self.stacks
            || self.folded.is_some()
            || self.flamegraph.is_some()
            || self.bpf_stats
            || self.unwind.is_some()
            || self.children
    }

    /// The plan these flags make, with `default_frequency` when none is given.
    pub fn options(&self, default_frequency: u32) -> ProfileOptions {
        ProfileOptions {
            mode: self.mode.unwrap_or(Requested::Auto),
            frequency_hz: self.frequency.unwrap_or(default_frequency),
            stacks: self.stacks || self.folded.is_some() || self.flamegraph.is_some(),
            bpf_stats: self.bpf_stats,
            unwind: self.unwind.unwrap_or_default(),
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
