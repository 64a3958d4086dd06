//! Reading the kernel's per-CPU totals and summing them.
use crate::attach::{Loaded, Programs};
use crate::breakdown::ProgramCost;
use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use profiler_common::{
    CONTEXT_COUNT, CONTEXT_USER, ClassTotals, RunqTotals, SchedTotals, SyscallClass, SyscallTotals, names,
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
    /// Run-queue waits since the signals' window opened (at attach, and again when a
    /// benchmark's load starts); `max_ns` is the window's.
    pub runq: RunqTotals,
}

impl Totals {
    pub fn class(&self, class: SyscallClass) -> &ClassTotals {
        &self.contexts[class as usize]
    }

    pub fn user(&self) -> &ClassTotals {
        &self.contexts[CONTEXT_USER as usize]
    }

    /// What was counted since `earlier`, a previous read of the same programs.
    pub fn since(&self, earlier: &Totals) -> Totals {
        let mut delta = self.clone();
        for (now, then) in delta.contexts.iter_mut().zip(&earlier.contexts) {
            *now -= *then;
        }
        delta.sched -= earlier.sched;
        // Both reads are of one signals window: `profile --interval` never reopens it.
        delta.runq -= earlier.runq;
        for (nr, totals) in &mut delta.syscalls {
            if let Some((_, then)) = earlier.syscalls.iter().find(|(n, _)| n == nr) {
                *totals -= *then;
            }
        }
        delta
    }

    /// On-CPU time of the target's threads in every context, as the syscall hooks measured it.
    pub fn oncpu_ns(&self) -> u64 {
        self.contexts.iter().map(|c| c.oncpu_ns).sum()
    }
}

impl Loaded {
    /// Sums the per-CPU totals. Can be called while the programs keep counting.
    pub(crate) fn read_totals(&self) -> Result<Totals> {
        let mut totals = Totals::default();
        let loaded = self;
        let contexts = loaded.sums_over_cpus::<ClassTotals>(names::CONTEXT_TOTALS)?;
        for (sum, read) in totals.contexts.iter_mut().zip(contexts) {
            *sum = read;
        }
        totals.sched = loaded.sum_over_cpus(names::SCHED_TOTALS)?;
        totals.runq = loaded.sum_over_cpus(names::RUNQ_TOTALS)?;
        let syscalls = loaded.sums_over_cpus::<SyscallTotals>(names::SYSCALL_TOTALS)?;
        totals.syscalls = (0..)
            .zip(syscalls)
            .filter(|(_, s)| s.calls + s.samples + s.oncpu_ns + s.blocked_ns + s.runq_ns > 0)
            .collect();
        Ok(totals)
    }
}

impl Programs {
    /// Sums the per-CPU totals. Can be called while the programs keep counting.
    pub fn read_totals(&self) -> Result<Totals> {
        self.loaded.read_totals()
    }

    /// Run counts and run time of our programs (non-zero only while BPF run-time statistics
    /// are enabled, see [`enable_run_stats`]).
    pub fn program_costs(&self) -> Vec<ProgramCost> {
        self.loaded
            .ebpf
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
}

impl Loaded {
    /// Every entry of the per-CPU array `name`, each summed over the CPUs.
    fn sums_over_cpus<T>(&self, name: &str) -> Result<Vec<T>>
    where
        T: aya::Pod + Default + AddAssign,
    {
        let map: PerCpuArray<_, T> = PerCpuArray::try_from(self.map(name)?)?;
        map.iter()
            .map(|per_cpu| {
                let per_cpu = per_cpu.with_context(|| format!("reading {name}"))?;
                Ok(per_cpu.iter().fold(T::default(), |mut sum, &cpu| {
                    sum += cpu;
                    sum
                }))
            })
            .collect()
    }

    /// The one entry of the per-CPU array `name`, summed over the CPUs.
    pub(crate) fn sum_over_cpus<T>(&self, name: &str) -> Result<T>
    where
        T: aya::Pod + Default + AddAssign,
    {
        Ok(self.sums_over_cpus(name)?.into_iter().next().unwrap_or_default())
    }

    pub(crate) fn map(&self, name: &str) -> Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .with_context(|| format!("map {name} missing from the eBPF object"))
    }

    /// Sets every CPU's value of the one entry of per-CPU array `name` back to zero, so that a
    /// new window counts from there.
    pub(crate) fn reset<T: aya::Pod + Default>(&mut self, name: &str) -> Result<()> {
        let mut map: PerCpuArray<_, T> = PerCpuArray::try_from(
            self.ebpf
                .map_mut(name)
                .with_context(|| format!("map {name} missing from the eBPF object"))?,
        )?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("reading {what}: {e}"))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![T::default(); cpus])?;
        map.set(0, zeros, 0).with_context(|| format!("resetting {name}"))
    }
}

/// Turns on the kernel's BPF run-time statistics while the returned descriptor is open (they
/// cost two clock reads per program run, so they are off by default).
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")
}
