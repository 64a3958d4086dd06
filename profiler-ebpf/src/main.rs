//! tcpprof's kernel side. Every program first checks that the current task belongs to the target
//! process, so that the cost for the rest of the machine is one helper call and a compare.
//!
//! Totals are kept in per-CPU maps and read by the loader at the end of the window: no event per
//! syscall crosses to user space.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::RawTracePointContext,
};
use profiler_common::{CLASS_COUNT, ClassTotals, InFlight, SyscallClass, classify, hist_bucket};

/// The process to account; set by the loader before load (0 matches nothing real).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

#[map]
static CLASS_TOTALS: PerCpuArray<ClassTotals> =
    PerCpuArray::with_max_entries(CLASS_COUNT as u32, 0);

/// Syscalls the target's threads are inside, by tid. Sized for a thread-per-connection server
/// holding ten thousand connections.
#[map]
static IN_FLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(65536, 0);

/// Returns the tid when the current task is one of the target's threads.
#[inline(always)]
fn target_tid() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let target = unsafe { core::ptr::read_volatile(&TARGET_TGID) };
    if (pid_tgid >> 32) as u32 == target {
        Some(pid_tgid as u32)
    } else {
        None
    }
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let Some(tid) = target_tid() else { return 0 };
    // TP_PROTO(struct pt_regs *regs, long id)
    let nr: i64 = ctx.arg(1);
    let entry = InFlight {
        start_ns: unsafe { bpf_ktime_get_ns() },
        class: classify(nr) as u32,
        _pad: 0,
    };
    let _ = IN_FLIGHT.insert(tid, entry, 0);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let Some(tid) = target_tid() else { return 0 };
    // TP_PROTO(struct pt_regs *regs, long ret)
    let ret: i64 = ctx.arg(1);
    account_exit(tid, ret);
    0
}

/// Closes the syscall `tid` is inside: one call, its duration, its bytes or its error.
#[inline(always)]
fn account_exit(tid: u32, ret: i64) {
    let Some(entry) = (unsafe { IN_FLIGHT.get(tid) }).copied() else {
        // Entered before we attached: its start is unknown, so it is not counted.
        return;
    };
    let _ = IN_FLIGHT.remove(tid);
    let Some(totals) = CLASS_TOTALS.get_ptr_mut(entry.class) else {
        return;
    };
    let totals = unsafe { &mut *totals };
    let now = unsafe { bpf_ktime_get_ns() };
    let dur = now.saturating_sub(entry.start_ns);
    totals.calls += 1;
    totals.total_ns += dur;
    if ret < 0 {
        totals.errors += 1;
    } else if entry.class == SyscallClass::Read as u32 || entry.class == SyscallClass::Write as u32
    {
        // accept returns a descriptor and other calls their own values: only these move bytes.
        totals.bytes += ret as u64;
    }
    let bucket = hist_bucket(dur);
    if let Some(slot) = totals.hist.get_mut(bucket) {
        *slot += 1;
    }
}

// Only for the BPF target: a host check of this crate links std, which has its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
