//! tcpprof's kernel side. Every program first checks that the task it is about belongs to the
//! target process, so the rest of the machine pays one helper call and a compare.
//!
//! Each target thread is a small state machine (profiler-common's `ThreadState`): at every
//! syscall enter or exit and every switch, wakeup or exit, the time since its last event is
//! charged to where the thread was (a syscall class or user space; on CPU, blocked, or waiting
//! in the run queue). Totals live in per-CPU maps that the loader sums at the end of the window:
//! no event per syscall crosses to user space.
//!
//! A running thread's state sits in its CPU's `ON_CPU` slot and moves to the `THREADS` hash
//! only while it is switched out: syscalls, which come far more often than switches, then cost
//! an inlined per-CPU array lookup instead of a hash lookup (about 20 ns per event here).
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{kprobe, kretprobe, map, raw_tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext},
};
use profiler_common::{
    CLASS_COUNT, CLASS_OF, CONTEXT_COUNT, CONTEXT_UNKNOWN, CONTEXT_USER, ClassTotals, MAX_MORE_TARGETS, SCHED_BLOCKED,
    SCHED_ONCPU, SCHED_RUNQ, SchedTotals, SyscallClass, TaskOffsets, ThreadState, classify, hist_bucket,
};

/// The process to account; set by the loader before load (0 matches nothing real).
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// Non-zero when MORE_TARGETS holds further processes to account.
#[unsafe(no_mangle)]
static MULTI_TARGET: u32 = 0;

/// Further target processes (tgid -> 1), for servers that serve from several processes.
#[map]
static MORE_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_MORE_TARGETS, 0);

/// Where pid and tgid sit in this kernel's task_struct; set by the loader from BTF.
#[unsafe(no_mangle)]
static TASK_OFFSETS: TaskOffsets = TaskOffsets { pid: 0, tgid: 0 };

#[map]
static CONTEXT_TOTALS: PerCpuArray<ClassTotals> = PerCpuArray::with_max_entries(CONTEXT_COUNT as u32, 0);

#[map]
static SCHED_TOTALS: PerCpuArray<SchedTotals> = PerCpuArray::with_max_entries(1, 0);

/// The target's threads that are switched out, by tid. Sized for a thread-per-connection server
/// holding ten thousand connections; exited threads are removed.
#[map]
static THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(65536, 0);

/// The target thread running on this CPU, if `tid` says so. A slot is only written by programs
/// running on its own CPU, for the task that is current there.
#[map]
static ON_CPU: PerCpuArray<ThreadState> = PerCpuArray::with_max_entries(1, 0);

/// Whether `tgid` is the target: the main process, or one of the processes in MORE_TARGETS (a
/// prefork server's workers). The map is looked up only when the loader filled it, so a single
/// target costs one compare.
#[inline(always)]
fn is_target(tgid: u32) -> bool {
    tgid == unsafe { core::ptr::read_volatile(&TARGET_TGID) }
        || (unsafe { core::ptr::read_volatile(&MULTI_TARGET) } != 0 && unsafe { MORE_TARGETS.get(tgid) }.is_some())
}

/// The tid of the current task when it is one of the target's threads.
#[inline(always)]
fn current_target_tid() -> Option<u32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    is_target((pid_tgid >> 32) as u32).then_some(pid_tgid as u32)
}

/// The tid of `task` (a `struct task_struct *`) when it is one of the target's threads.
#[inline(always)]
fn task_target_tid(task: *const u8) -> Option<u32> {
    let offsets = unsafe { core::ptr::read_volatile(&TASK_OFFSETS) };
    let tgid = unsafe { bpf_probe_read_kernel(task.wrapping_add(offsets.tgid as usize) as *const i32) }.ok()?;
    if !is_target(tgid as u32) {
        return None;
    }
    let pid = unsafe { bpf_probe_read_kernel(task.wrapping_add(offsets.pid as usize) as *const i32) }.ok()?;
    Some(pid as u32)
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn totals(context: u32) -> Option<&'static mut ClassTotals> {
    CONTEXT_TOTALS.get_ptr_mut(context).map(|p| unsafe { &mut *p })
}

/// Adds `ns` spent in `sched` state to `context`'s totals.
#[inline(always)]
fn add_time(context: u32, sched: u32, ns: u64) {
    let Some(t) = totals(context) else { return };
    match sched {
        SCHED_ONCPU => t.oncpu_ns += ns,
        SCHED_BLOCKED => t.blocked_ns += ns,
        _ => t.runq_ns += ns,
    }
}

/// Charges the time since the thread's last event to where it was, and restarts the clock.
#[inline(always)]
fn charge(state: &mut ThreadState, now: u64) {
    let ns = now.saturating_sub(state.last_ns);
    state.last_ns = now;
    if state.context == CONTEXT_UNKNOWN {
        if let Some(slot) = state.pending_ns.get_mut(state.sched as usize) {
            *slot += ns;
        }
    } else {
        add_time(state.context, state.sched, ns);
    }
}

/// Settles time gathered while the context was unknown, now that it is known to be `context`.
#[inline(always)]
fn resolve(state: &mut ThreadState, context: u32) {
    if state.context != CONTEXT_UNKNOWN {
        return;
    }
    for sched in [SCHED_ONCPU, SCHED_BLOCKED, SCHED_RUNQ] {
        let ns = state.pending_ns[sched as usize];
        if ns > 0 {
            add_time(context, sched, ns);
        }
    }
    state.pending_ns = [0; 3];
    state.context = context;
}

#[inline(always)]
fn new_state(tid: u32, now: u64, context: u32, sched: u32) -> ThreadState {
    ThreadState {
        last_ns: now,
        sys_start_ns: now,
        pending_ns: [0; 3],
        context,
        sched,
        tid,
        _pad: 0,
    }
}

/// A switched-out thread's state.
#[inline(always)]
fn switched_out(tid: u32) -> Option<&'static mut ThreadState> {
    THREADS.get_ptr_mut(tid).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn on_cpu_slot() -> Option<&'static mut ThreadState> {
    ON_CPU.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// The state of `tid`, the current task. Its slot holds another tid only for a thread that has
/// been running since before we attached: it starts afresh in `context`.
#[inline(always)]
fn running(tid: u32, now: u64, context: u32) -> Option<(&'static mut ThreadState, bool)> {
    let slot = on_cpu_slot()?;
    if slot.tid == tid {
        return Some((slot, true));
    }
    *slot = new_state(tid, now, context, SCHED_ONCPU);
    Some((slot, false))
}

/// The current target thread enters a syscall of `class`.
#[inline(always)]
fn on_enter(tid: u32, class: u32) {
    let now = now();
    let Some((state, true)) = running(tid, now, class) else {
        return;
    };
    if state.context == CONTEXT_USER {
        // The common case. The thread is running, so its last stretch was on CPU.
        if let Some(t) = totals(CONTEXT_USER) {
            t.oncpu_ns += now.saturating_sub(state.last_ns);
        }
        state.last_ns = now;
    } else {
        charge(state, now);
        // No syscall nests in another: whatever came before was user space.
        resolve(state, CONTEXT_USER);
    }
    state.context = class;
    state.sys_start_ns = now;
}

/// The current target thread leaves a syscall with `ret`. Its class is the one recorded at
/// enter; for a call entered before we attached, `class_unseen` tells it.
#[inline(always)]
fn on_exit(tid: u32, ret: i64, class_unseen: impl FnOnce() -> u32) {
    let now = now();
    // Not seen before: entered before we attached, and from here on in user space.
    let Some((state, true)) = running(tid, now, CONTEXT_USER) else {
        return;
    };
    if state.context < CLASS_COUNT as u32 {
        // The common case: one lookup charges the last stretch (on CPU: the thread is running)
        // and closes the call.
        let class = state.context;
        let Some(t) = totals(class) else { return };
        t.oncpu_ns += now.saturating_sub(state.last_ns);
        let ns = now.saturating_sub(state.sys_start_ns);
        t.calls += 1;
        t.total_ns += ns;
        if ret < 0 {
            t.errors += 1;
        } else if class == SyscallClass::Read as u32 || class == SyscallClass::Write as u32 {
            // accept returns a descriptor and other calls their own values: only these move bytes.
            t.bytes += ret as u64;
        }
        if let Some(slot) = t.hist.get_mut(hist_bucket(ns)) {
            *slot += 1;
        }
        state.last_ns = now;
    } else {
        charge(state, now);
        resolve(state, class_unseen());
    }
    state.context = CONTEXT_USER;
}

// ---- tracepoint mode: every syscall, classified by number -------------------------------------

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let Some(tid) = current_target_tid() else {
        return 0;
    };
    // TP_PROTO(struct pt_regs *regs, long id)
    let nr: i64 = ctx.arg(1);
    let class = match CLASS_OF.get(nr as usize) {
        Some(&class) => class as u32,
        None => SyscallClass::Other as u32,
    };
    on_enter(tid, class);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let Some(tid) = current_target_tid() else {
        return 0;
    };
    // TP_PROTO(struct pt_regs *regs, long ret). The class of a call entered before we attached
    // comes from regs->orig_ax (offset 120 in x86_64's pt_regs).
    let ret: i64 = ctx.arg(1);
    on_exit(tid, ret, || {
        let regs: *const u8 = ctx.arg(0);
        let nr = unsafe { bpf_probe_read_kernel(regs.wrapping_add(120) as *const i64) }.unwrap_or(-1);
        classify(nr) as u32
    });
    0
}

// ---- kprobe mode: the architecture's syscall entry points, one program pair per class ---------

macro_rules! kprobe_pair {
    ($enter:ident, $exit:ident, $class:expr) => {
        #[kprobe]
        pub fn $enter(_ctx: ProbeContext) -> u32 {
            if let Some(tid) = current_target_tid() {
                on_enter(tid, $class as u32);
            }
            0
        }

        #[kretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            if let Some(tid) = current_target_tid() {
                on_exit(tid, ctx.ret::<i64>(), || $class as u32);
            }
            0
        }
    };
}

kprobe_pair!(kprobe_accept, kretprobe_accept, SyscallClass::Accept);
kprobe_pair!(kprobe_read, kretprobe_read, SyscallClass::Read);
kprobe_pair!(kprobe_write, kretprobe_write, SyscallClass::Write);
kprobe_pair!(kprobe_other, kretprobe_other, SyscallClass::Other);

// ---- the scheduler, in every eBPF mode ---------------------------------------------------------

#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
    //          unsigned int prev_state); prev is the current task.
    let now = now();
    if let Some(tid) = current_target_tid() {
        let preempt: u64 = ctx.arg(0);
        let prev_state: u64 = ctx.arg(3);
        // Preempted, or yielded while runnable (TASK_RUNNING == 0): it waits in the run queue.
        let involuntary = preempt & 1 != 0 || prev_state as u32 == 0;
        let sched = if involuntary { SCHED_RUNQ } else { SCHED_BLOCKED };
        let mut state = new_state(tid, now, CONTEXT_UNKNOWN, sched);
        if let Some(slot) = on_cpu_slot()
            && slot.tid == tid
        {
            charge(slot, now);
            slot.sched = sched;
            state = *slot;
            slot.tid = 0;
        }
        // In place when the thread has switched out before: cheaper than a fresh hash element.
        match switched_out(tid) {
            Some(entry) => *entry = state,
            None => {
                let _ = THREADS.insert(tid, state, 0);
            }
        }
        if let Some(s) = SCHED_TOTALS.get_ptr_mut(0) {
            let s = unsafe { &mut *s };
            if involuntary {
                s.involuntary += 1;
            } else {
                s.voluntary += 1;
            }
        }
    }
    let next: *const u8 = ctx.arg(2);
    if let Some(tid) = task_target_tid(next)
        && let Some(slot) = on_cpu_slot()
    {
        *slot = match switched_out(tid) {
            Some(state) => {
                charge(state, now);
                // The copy left behind is stale until the next switch-out overwrites it; as
                // "on CPU" it is left alone by sched_wakeup.
                state.sched = SCHED_ONCPU;
                *state
            }
            None => new_state(tid, now, CONTEXT_UNKNOWN, SCHED_ONCPU),
        };
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn sched_wakeup(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct task_struct *p): p is runnable from now on, though not yet running.
    let task: *const u8 = ctx.arg(0);
    if let Some(tid) = task_target_tid(task)
        && let Some(state) = switched_out(tid)
        && state.sched == SCHED_BLOCKED
    {
        charge(state, now());
        state.sched = SCHED_RUNQ;
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    // The exiting thread is the current task.
    let Some(tid) = current_target_tid() else {
        return 0;
    };
    if let Some(slot) = on_cpu_slot()
        && slot.tid == tid
    {
        charge(slot, now());
        slot.tid = 0;
    }
    let _ = THREADS.remove(tid);
    if let Some(s) = SCHED_TOTALS.get_ptr_mut(0) {
        unsafe { (*s).exits += 1 };
    }
    0
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
