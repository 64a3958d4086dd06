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
//!
//! Sampling mode attaches no syscall hook: `cpu_sample` runs on each CPU's cpu-clock tick and
//! charges the tick's period to where the target thread it interrupted was, read from the
//! registers the thread saved when it entered the kernel (profiler-common's `pt_regs`), and
//! counts its (part, user stack, kernel stack). `sched_switch` finds a switched-out thread's
//! syscall the same way, so blocked and run-queue time keep their classes. The same sampler runs
//! beside the syscall hooks when an exact-mode profile asks for stacks. User stacks are walked by
//! frame pointers, or, for targets built without them, copied for unwinding in user space
//! (`user_stack`).
//!
//! For the saturation signals, every mode also times each run-queue wait of a target thread
//! (wakeup or preemption to running, as BCC's runqlat) into a log2 histogram, and the TCP programs
//! count retransmissions, resets and buffer-limit events on the server's ports. A run that is not
//! profiled attaches only the scheduler and TCP programs.
#![no_std]
#![no_main]

mod user_stack;

use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_task_pt_regs,
    },
    macros::{kprobe, kretprobe, map, perf_event, raw_tracepoint},
    maps::{HashMap, PerCpuArray, PerCpuHashMap, StackTrace},
    programs::{PerfEventContext, ProbeContext, RawTracePointContext, RetProbeContext, tracing::StackIdContext},
};
use profiler_common::{
    CLASS_COUNT, CLASS_OF, CONTEXT_COUNT, CONTEXT_UNKNOWN, CONTEXT_USER, ClassTotals, MAX_MORE_TARGETS, MAX_PORTS,
    MAX_STACK_KEYS, MAX_STACKS, NO_STACK, RunqTotals, SCHED_BLOCKED, SCHED_ONCPU, SCHED_RUNQ, SYSCALL_SLOTS,
    SchedTotals, SockOffsets, StackErrors, StackKey, SyscallClass, SyscallTotals, TaskOffsets, TcpTotals, ThreadState,
    classify, hist_bucket, pt_regs,
};

/// No syscall number: the thread is not in a syscall of the `Other` class, or its number could not
/// be read (kprobe mode reads it only for `Other`; a call entered before attach shows none).
/// Past [`SYSCALL_SLOTS`], so it is never accounted by number.
const NR_UNKNOWN: u32 = u32::MAX;

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

/// Non-zero in sampling mode: no syscall hook keeps each thread's context, so `sched_switch`
/// reads a switched-out thread's from its saved registers.
#[unsafe(no_mangle)]
static SAMPLING: u32 = 0;

#[map]
static CONTEXT_TOTALS: PerCpuArray<ClassTotals> = PerCpuArray::with_max_entries(CONTEXT_COUNT as u32, 0);

/// The `Other` class by syscall number.
#[map]
static SYSCALL_TOTALS: PerCpuArray<SyscallTotals> = PerCpuArray::with_max_entries(SYSCALL_SLOTS as u32, 0);

/// User and kernel stacks of target samples; the loader shrinks it to one entry without stacks.
#[map]
static STACK_TRACES: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

#[map]
static STACK_COUNTS: PerCpuHashMap<StackKey, u64> = PerCpuHashMap::with_max_entries(MAX_STACK_KEYS, 0);

#[map]
static STACK_ERRORS: PerCpuArray<StackErrors> = PerCpuArray::with_max_entries(1, 0);

#[map]
static SCHED_TOTALS: PerCpuArray<SchedTotals> = PerCpuArray::with_max_entries(1, 0);

#[map]
static RUNQ_TOTALS: PerCpuArray<RunqTotals> = PerCpuArray::with_max_entries(1, 0);

#[map]
static TCP_TOTALS: PerCpuArray<TcpTotals> = PerCpuArray::with_max_entries(1, 0);

/// The server's listening ports (port -> 1), for the TCP programs; set by the loader.
#[map]
static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

/// Where the ports sit in this kernel's `struct sock`; set by the loader from BTF.
#[unsafe(no_mangle)]
static SOCK_OFFSETS: SockOffsets = SockOffsets { num: 0, dport: 0 };

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

#[inline(always)]
fn syscall_totals(nr: u32) -> Option<&'static mut SyscallTotals> {
    SYSCALL_TOTALS.get_ptr_mut(nr).map(|p| unsafe { &mut *p })
}

/// Adds `ns` spent in `sched` state to `context`'s totals (and to syscall `nr`'s, for `Other`).
#[inline(always)]
fn add_time(context: u32, nr: u32, sched: u32, ns: u64) {
    if let Some(t) = totals(context) {
        match sched {
            SCHED_ONCPU => t.oncpu_ns += ns,
            SCHED_BLOCKED => t.blocked_ns += ns,
            _ => t.runq_ns += ns,
        }
    }
    if context == SyscallClass::Other as u32
        && let Some(s) = syscall_totals(nr)
    {
        match sched {
            SCHED_ONCPU => s.oncpu_ns += ns,
            SCHED_BLOCKED => s.blocked_ns += ns,
            _ => s.runq_ns += ns,
        }
    }
}

/// Charges the time since the thread's last event to where it was, restarts the clock, and
/// returns that time.
#[inline(always)]
fn charge(state: &mut ThreadState, now: u64) -> u64 {
    let ns = now.saturating_sub(state.last_ns);
    state.last_ns = now;
    if state.context == CONTEXT_UNKNOWN {
        if let Some(slot) = state.pending_ns.get_mut(state.sched as usize) {
            *slot += ns;
        }
    } else {
        add_time(state.context, state.nr, state.sched, ns);
    }
    ns
}

/// Settles time gathered while the context was unknown, now that it is known to be `context`
/// (syscall `state.nr` for `Other`).
#[inline(always)]
fn resolve(state: &mut ThreadState, context: u32) {
    if state.context != CONTEXT_UNKNOWN {
        return;
    }
    for sched in [SCHED_ONCPU, SCHED_BLOCKED, SCHED_RUNQ] {
        let ns = state.pending_ns[sched as usize];
        if ns > 0 {
            add_time(context, state.nr, sched, ns);
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
        nr: NR_UNKNOWN,
    }
}

/// The current task's context, from the user registers it saved on entering the kernel: inside
/// a syscall when `ax` still holds the -ENOSYS the entry code put there and `orig_ax` a syscall
/// number; otherwise (an interrupt or fault taken from user space, or the way back out of a
/// syscall that has returned) user space, as the exact modes count it. Returns the context and
/// the syscall number.
#[inline(always)]
fn current_context() -> (u32, u32) {
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
    // ax, cx, dx, si, di, orig_ax: one read instead of two.
    if let Ok(saved) = unsafe { bpf_probe_read_kernel(regs.wrapping_add(pt_regs::AX) as *const [i64; 6]) }
        && saved[0] == -pt_regs::ENOSYS
        && let Some(&class) = CLASS_OF.get(saved[5] as usize)
    {
        return (class as u32, saved[5] as u32);
    }
    (CONTEXT_USER, NR_UNKNOWN)
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

/// The state of `tid`, the current task, and whether it was there already. Its slot holds another
/// tid only for a thread that has been running since before we attached: it starts afresh in
/// `context`, its clock from `now()` (read only then, so that callers choose when to read it).
#[inline(always)]
fn running(tid: u32, context: u32, now: impl FnOnce() -> u64) -> Option<(&'static mut ThreadState, bool)> {
    let slot = on_cpu_slot()?;
    if slot.tid == tid {
        return Some((slot, true));
    }
    *slot = new_state(tid, now(), context, SCHED_ONCPU);
    Some((slot, false))
}

/// The current target thread enters syscall `nr` of `class`.
#[inline(always)]
fn on_enter(tid: u32, class: u32, nr: u32) {
    let now = now();
    let Some((state, seen)) = running(tid, class, || now) else {
        return;
    };
    if !seen {
        state.nr = nr;
        return;
    }
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
    state.nr = nr;
    state.sys_start_ns = now;
}

/// The current target thread leaves a syscall with `ret`. Its class is the one recorded at
/// enter; for a call entered before we attached, `unseen` tells it (class, syscall number).
#[inline(always)]
fn on_exit(tid: u32, ret: i64, unseen: impl FnOnce() -> (u32, u32)) {
    // Not seen before: entered before we attached, and from here on in user space.
    let Some((state, true)) = running(tid, CONTEXT_USER, now) else {
        return;
    };
    if state.context < CLASS_COUNT as u32 {
        // The common case: one lookup charges the last stretch (on CPU: the thread is running)
        // and closes the call. The lookups come before the clock read: whatever this program
        // spends after it is charged to the user space that follows, and the less the better.
        let class = state.context;
        let Some(t) = totals(class) else { return };
        let per_syscall = if class == SyscallClass::Other as u32 {
            syscall_totals(state.nr)
        } else {
            None
        };
        let now = now();
        let stretch = now.saturating_sub(state.last_ns);
        let ns = now.saturating_sub(state.sys_start_ns);
        t.oncpu_ns += stretch;
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
        if let Some(s) = per_syscall {
            s.calls += 1;
            s.oncpu_ns += stretch;
        }
        state.last_ns = now;
    } else {
        charge(state, now());
        let (class, nr) = unseen();
        state.nr = nr;
        resolve(state, class);
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
    on_enter(tid, class, nr as u32);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let Some(tid) = current_target_tid() else {
        return 0;
    };
    // TP_PROTO(struct pt_regs *regs, long ret). The class of a call entered before we attached
    // comes from the number in regs->orig_ax.
    let ret: i64 = ctx.arg(1);
    on_exit(tid, ret, || {
        let regs: *const u8 = ctx.arg(0);
        let nr = unsafe { bpf_probe_read_kernel(regs.wrapping_add(pt_regs::ORIG_AX) as *const i64) }.unwrap_or(-1);
        (classify(nr) as u32, nr as u32)
    });
    0
}

// ---- kprobe mode: the architecture's syscall entry points, one program pair per class ---------

macro_rules! kprobe_pair {
    ($enter:ident, $exit:ident, $class:expr) => {
        #[kprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            if let Some(tid) = current_target_tid() {
                // Only `Other` is accounted by number; `__x64_sys_*(const struct pt_regs *regs)`
                // gets the caller's registers, with the number in orig_ax.
                let nr = if $class as u32 == SyscallClass::Other as u32 {
                    let regs: *const u8 = ctx.arg(0).unwrap_or(core::ptr::null());
                    unsafe { bpf_probe_read_kernel(regs.wrapping_add(pt_regs::ORIG_AX) as *const i64) }
                        .map_or(NR_UNKNOWN, |nr| nr as u32)
                } else {
                    NR_UNKNOWN
                };
                on_enter(tid, $class as u32, nr);
            }
            0
        }

        #[kretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            if let Some(tid) = current_target_tid() {
                on_exit(tid, ctx.ret::<i64>(), || ($class as u32, NR_UNKNOWN));
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
    let sampling = unsafe { core::ptr::read_volatile(&SAMPLING) } != 0;
    if let Some(tid) = current_target_tid() {
        let preempt: u64 = ctx.arg(0);
        let prev_state: u64 = ctx.arg(3);
        // Preempted, or yielded while runnable (TASK_RUNNING == 0): it waits in the run queue.
        let involuntary = preempt & 1 != 0 || prev_state as u32 == 0;
        let sched = if involuntary { SCHED_RUNQ } else { SCHED_BLOCKED };
        let state = if sampling {
            // The samples charge on-CPU time; from here on the clock runs for the wait, in the
            // context the registers tell.
            let (context, nr) = current_context();
            ThreadState {
                nr,
                ..new_state(tid, now, context, sched)
            }
        } else {
            let mut state = new_state(tid, now, CONTEXT_UNKNOWN, sched);
            if let Some(slot) = on_cpu_slot()
                && slot.tid == tid
            {
                charge(slot, now);
                slot.sched = sched;
                state = *slot;
                slot.tid = 0;
            }
            state
        };
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
    let Some(tid) = task_target_tid(next) else {
        return 0;
    };
    let back = switched_out(tid).map(|state| {
        let waited = charge(state, now);
        if state.sched == SCHED_RUNQ {
            record_runq_wait(waited);
        }
        // The copy left behind is stale until the next switch-out overwrites it; as "on CPU" it
        // is left alone by sched_wakeup.
        state.sched = SCHED_ONCPU;
        *state
    });
    if !sampling && let Some(slot) = on_cpu_slot() {
        *slot = back.unwrap_or_else(|| new_state(tid, now, CONTEXT_UNKNOWN, SCHED_ONCPU));
    }
    0
}

/// One wait in the run queue, from its wakeup or preemption (the state's clock) to running.
#[inline(always)]
fn record_runq_wait(ns: u64) {
    let Some(r) = RUNQ_TOTALS.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else {
        return;
    };
    r.waits += 1;
    r.wait_ns += ns;
    if ns > r.max_ns {
        r.max_ns = ns;
    }
    if let Some(slot) = r.hist.get_mut(hist_bucket(ns)) {
        *slot += 1;
    }
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

// ---- TCP trouble on the server's ports, in every eBPF mode ------------------------------------
//
// These fire on retransmissions, resets and buffer limits anywhere on the machine, which are rare:
// the port lookup comes after the event, not on any per-syscall or per-packet path.

/// Local port (host order) and remote port of `sk`, a `struct sock *` (null for a reset sent
/// without a socket, which is not counted).
#[inline(always)]
fn sock_ports(sk: *const u8) -> Option<(u16, u16)> {
    if sk.is_null() {
        return None;
    }
    let offsets = unsafe { core::ptr::read_volatile(&SOCK_OFFSETS) };
    let local = unsafe { bpf_probe_read_kernel(sk.wrapping_add(offsets.num as usize) as *const u16) }.ok()?;
    let remote = unsafe { bpf_probe_read_kernel(sk.wrapping_add(offsets.dport as usize) as *const u16) }.ok()?;
    Some((local, u16::from_be(remote)))
}

#[inline(always)]
fn is_server_port(port: u16) -> bool {
    unsafe { PORTS.get(port) }.is_some()
}

#[inline(always)]
fn count_tcp(sk: *const u8, local_only: bool, field: impl FnOnce(&mut TcpTotals) -> &mut u64) {
    let Some((local, remote)) = sock_ports(sk) else {
        return;
    };
    if !(is_server_port(local) || (!local_only && is_server_port(remote))) {
        return;
    }
    if let Some(t) = TCP_TOTALS.get_ptr_mut(0) {
        *field(unsafe { &mut *t }) += 1;
    }
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, int err): either end's
    // retransmission (a client's SYN to a full listener included).
    count_tcp(ctx.arg(0), false, |t| &mut t.retransmits);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, enum sk_rst_reason reason)
    count_tcp(ctx.arg(0), true, |t| &mut t.resets_sent);
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk)
    count_tcp(ctx.arg(0), true, |t| &mut t.resets_received);
    0
}

#[raw_tracepoint(tracepoint = "sock_exceed_buf_limit")]
pub fn sock_exceed_buf_limit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk, struct proto *prot, long allocated, int kind)
    count_tcp(ctx.arg(0), false, |t| &mut t.buffer_limit);
    0
}

#[raw_tracepoint(tracepoint = "sock_rcvqueue_full")]
pub fn sock_rcvqueue_full(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk, struct sk_buff *skb)
    count_tcp(ctx.arg(0), false, |t| &mut t.rcvqueue_full);
    0
}

// ---- sampling: the cpu-clock tick of every CPU, in sampling mode or for stacks --------------

#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    // The registers the tick interrupted, and the period it stands for (ns for cpu-clock).
    let (cs, period) = unsafe { ((*ctx.ctx).regs.cs, (*ctx.ctx).sample_period) };
    let in_user = cs & 3 == 3;
    let (context, nr) = if in_user {
        (CONTEXT_USER, NR_UNKNOWN)
    } else {
        current_context()
    };
    if let Some(t) = totals(context) {
        t.samples += 1;
        t.sample_ns += period;
    }
    if context == SyscallClass::Other as u32
        && let Some(s) = syscall_totals(nr)
    {
        s.samples += 1;
        s.sample_ns += period;
    }
    count_stack(&ctx, tgid, context, in_user);
    0
}

#[inline(always)]
fn count_stack(ctx: &PerfEventContext, tgid: u32, context: u32, in_user: bool) {
    let Some(errors) = STACK_ERRORS.get_ptr_mut(0).map(|p| unsafe { &mut *p }) else {
        return;
    };
    let mut stack_id = |flags: u64| match ctx.get_stackid(&STACK_TRACES, flags) {
        Ok(id) => id as i32,
        Err(e) => {
            if e == -17 {
                errors.collisions += 1; // EEXIST: the bucket holds another stack
            } else {
                errors.failed += 1;
            }
            e
        }
    };
    // A tick in user mode has no kernel stack of the thread's own.
    let kernel_stack = if in_user { NO_STACK } else { stack_id(0) };
    if user_stack::is_cfi_target(tgid) {
        if user_stack::send(ctx, tgid, context, kernel_stack, in_user) {
            return;
        }
        errors.ring_full += 1;
    }
    let key = StackKey {
        tgid,
        context,
        user_stack: stack_id(BPF_F_USER_STACK as u64),
        kernel_stack,
    };
    match STACK_COUNTS.get_ptr_mut(key) {
        Some(count) => unsafe { *count += 1 },
        None => {
            if STACK_COUNTS.insert(key, 1, 0).is_err() {
                errors.lost += 1;
            }
        }
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
