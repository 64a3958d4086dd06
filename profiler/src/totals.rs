//! Reading the kernel's per-CPU totals and summing them per class.
use crate::Session;
use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use profiler_common::{CLASS_COUNT, ClassTotals, HIST_BUCKETS, SyscallClass, names};

/// What the kernel counted for the target since attach, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub classes: [ClassTotals; CLASS_COUNT],
}

impl Totals {
    pub fn class(&self, class: SyscallClass) -> &ClassTotals {
        &self.classes[class as usize]
    }
}

impl Session {
    /// Sums the per-CPU totals. Can be called while the programs keep counting.
    pub fn read_totals(&self) -> Result<Totals> {
        let map = self
            .ebpf
            .map(names::CLASS_TOTALS)
            .context("map CLASS_TOTALS missing from the eBPF object")?;
        let array: PerCpuArray<_, ClassTotals> = PerCpuArray::try_from(map)?;
        let mut totals = Totals::default();
        for class in SyscallClass::ALL {
            let per_cpu = array
                .get(&(class as u32), 0)
                .with_context(|| format!("reading CLASS_TOTALS[{}]", class.name()))?;
            let sum = &mut totals.classes[class as usize];
            for cpu in per_cpu.iter() {
                add(sum, cpu);
            }
        }
        Ok(totals)
    }
}

fn add(sum: &mut ClassTotals, x: &ClassTotals) {
    sum.calls += x.calls;
    sum.errors += x.errors;
    sum.total_ns += x.total_ns;
    sum.bytes += x.bytes;
    for i in 0..HIST_BUCKETS {
        sum.hist[i] += x.hist[i];
    }
}
