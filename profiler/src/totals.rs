//! Reading the kernel's per-CPU totals and summing them.
use crate::attach::Programs;
use crate::breakdown::ProgramCost;
use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use profiler_common::{
    CONTEXT_COUNT, CONTEXT_USER, ClassTotals, SYSCALL_SLOTS, SchedTotals, SyscallClass, SyscallTotals, names,
};
use std::ops::AddAssign;

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
        for (i, sum) in totals.contexts.iter_mut().enumerate() {
            *sum = self.sum_over_cpus(names::CONTEXT_TOTALS, i as u32)?;
        }
        totals.sched = self.sum_over_cpus(names::SCHED_TOTALS, 0)?;
        for nr in 0..SYSCALL_SLOTS as u32 {
            let sum: SyscallTotals = self.sum_over_cpus(names::SYSCALL_TOTALS, nr)?;
            if sum.calls + sum.samples + sum.oncpu_ns + sum.blocked_ns + sum.runq_ns > 0 {
                totals.syscalls.push((nr, sum));
            }
        }
        Ok(totals)
    }

    /// Entry `index` of the per-CPU array `name`, summed over the CPUs.
    pub(crate) fn sum_over_cpus<T>(&self, name: &str, index: u32) -> Result<T>
    where
        T: aya::Pod + Default + AddAssign,
    {
        let map: PerCpuArray<_, T> = PerCpuArray::try_from(self.map(name)?)?;
        let per_cpu = map.get(&index, 0).with_context(|| format!("reading {name}[{index}]"))?;
        Ok(per_cpu.iter().fold(T::default(), |mut sum, &cpu| {
            sum += cpu;
            sum
        }))
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

/// Turns on the kernel's BPF run-time statistics while the returned descriptor is open (they
/// cost two clock reads per program run, so they are off by default).
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")
}
