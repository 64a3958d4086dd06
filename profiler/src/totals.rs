//! Reading the kernel's per-CPU totals and summing them.
use crate::attach::Programs;
use crate::breakdown::ProgramCost;
use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use profiler_common::{
    CONTEXT_COUNT, CONTEXT_USER, ClassTotals, HIST_BUCKETS, SYSCALL_SLOTS, SchedTotals, SyscallClass, SyscallTotals,
    names,
};

/// What the kernel counted for the target since attach, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Indexed by context: the syscall classes, then user space ([`CONTEXT_USER`]).
    pub contexts: [ClassTotals; CONTEXT_COUNT],
    pub sched: SchedTotals,
    /// The `Other` class by syscall number, for the numbers seen.
    pub syscalls: Vec<(u32, SyscallTotals)>,
}

impl Totals {
    pub fn class(&self, class: SyscallClass) -> &ClassTotals {
        &self.contexts[class as usize]
    }

    pub fn user(&self) -> &ClassTotals {
        &self.contexts[CONTEXT_USER as usize]
    }

    /// On-CPU time of the target's threads in every context, as the syscall hooks measured it.
    pub fn oncpu_ns(&self) -> u64 {
        self.contexts.iter().map(|c| c.oncpu_ns).sum()
    }
}

impl Programs {
    /// Sums the per-CPU totals. Can be called while the programs keep counting.
    pub fn read_totals(&self) -> Result<Totals> {
        let mut totals = Totals::default();
        let contexts: PerCpuArray<_, ClassTotals> = PerCpuArray::try_from(self.map(names::CONTEXT_TOTALS)?)?;
        for (i, sum) in totals.contexts.iter_mut().enumerate() {
            let per_cpu = contexts
                .get(&(i as u32), 0)
                .with_context(|| format!("reading CONTEXT_TOTALS[{i}]"))?;
            per_cpu.iter().for_each(|cpu| add(sum, cpu));
        }
        let sched: PerCpuArray<_, SchedTotals> = PerCpuArray::try_from(self.map(names::SCHED_TOTALS)?)?;
        for cpu in sched.get(&0, 0).context("reading SCHED_TOTALS")?.iter() {
            totals.sched.voluntary += cpu.voluntary;
            totals.sched.involuntary += cpu.involuntary;
            totals.sched.exits += cpu.exits;
        }
        let syscalls: PerCpuArray<_, SyscallTotals> = PerCpuArray::try_from(self.map(names::SYSCALL_TOTALS)?)?;
        for nr in 0..SYSCALL_SLOTS as u32 {
            let mut sum = SyscallTotals::default();
            for cpu in syscalls
                .get(&nr, 0)
                .with_context(|| format!("reading SYSCALL_TOTALS[{nr}]"))?
                .iter()
            {
                sum.calls += cpu.calls;
                sum.oncpu_ns += cpu.oncpu_ns;
                sum.blocked_ns += cpu.blocked_ns;
                sum.runq_ns += cpu.runq_ns;
                sum.samples += cpu.samples;
                sum.sample_ns += cpu.sample_ns;
            }
            if sum.calls + sum.samples + sum.oncpu_ns + sum.blocked_ns + sum.runq_ns > 0 {
                totals.syscalls.push((nr, sum));
            }
        }
        Ok(totals)
    }

    /// Run counts and run time of our programs (non-zero only while BPF run-time statistics
    /// are enabled, see [`enable_run_stats`]).
    pub fn program_costs(&self) -> Vec<ProgramCost> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                // Programs of the other modes were never loaded and have no info.
                let info = program.info().ok()?;
                Some(ProgramCost {
                    name: name.to_string(),
                    runs: info.run_count(),
                    run_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }

    pub(crate) fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .with_context(|| format!("map {name} missing from the eBPF object"))
    }
}

fn add(sum: &mut ClassTotals, x: &ClassTotals) {
    sum.calls += x.calls;
    sum.errors += x.errors;
    sum.total_ns += x.total_ns;
    sum.oncpu_ns += x.oncpu_ns;
    sum.blocked_ns += x.blocked_ns;
    sum.runq_ns += x.runq_ns;
    sum.bytes += x.bytes;
    sum.samples += x.samples;
    sum.sample_ns += x.sample_ns;
    for i in 0..HIST_BUCKETS {
        sum.hist[i] += x.hist[i];
    }
}

/// Turns on the kernel's BPF run-time statistics while the returned descriptor is open (they
/// cost two clock reads per program run, so they are off by default).
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")
}
