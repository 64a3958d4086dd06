//! Plain-data types shared by the eBPF programs (`profiler-ebpf`) and the loader (`profiler`),
//! in the way a BCC libbpf-tool shares `tool.h` between `tool.bpf.c` and `tool.c`.
//!
//! Everything here is `#[repr(C)]` and `Copy`: the kernel writes these bytes into maps and the
//! loader reads them back, so both sides must agree on the layout to the byte.
#![no_std]

/// What a syscall is, for the breakdown. Index into [`CLASS_MAP`] entries.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallClass {
    Accept = 0,
    Read = 1,
    Write = 2,
    Other = 3,
}

pub const CLASS_COUNT: usize = 4;

impl SyscallClass {
    pub const ALL: [SyscallClass; CLASS_COUNT] = [
        SyscallClass::Accept,
        SyscallClass::Read,
        SyscallClass::Write,
        SyscallClass::Other,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SyscallClass::Accept => "accept",
            SyscallClass::Read => "read",
            SyscallClass::Write => "write",
            SyscallClass::Other => "other",
        }
    }
}

/// x86_64 syscall numbers of the classes named in DESIGN.md ("The breakdown").
pub mod x86_64 {
    pub const READ: i64 = 0;
    pub const WRITE: i64 = 1;
    pub const READV: i64 = 19;
    pub const WRITEV: i64 = 20;
    pub const SENDFILE: i64 = 40;
    pub const ACCEPT: i64 = 43;
    pub const SENDTO: i64 = 44;
    pub const RECVFROM: i64 = 45;
    pub const SENDMSG: i64 = 46;
    pub const RECVMSG: i64 = 47;
    pub const ACCEPT4: i64 = 288;
    pub const RECVMMSG: i64 = 299;
    pub const SENDMMSG: i64 = 307;
}

/// Classifies an x86_64 syscall number.
#[inline(always)]
pub const fn classify(nr: i64) -> SyscallClass {
    use x86_64::*;
    match nr {
        ACCEPT | ACCEPT4 => SyscallClass::Accept,
        READ | READV | RECVFROM | RECVMSG | RECVMMSG => SyscallClass::Read,
        WRITE | WRITEV | SENDTO | SENDMSG | SENDMMSG | SENDFILE => SyscallClass::Write,
        _ => SyscallClass::Other,
    }
}

/// [`classify`] as a table for the syscall numbers below its length (all of x86_64's): on the
/// syscall enter path one bounded load is cheaper than the comparisons.
pub const CLASS_OF: [u8; 512] = {
    let mut table = [SyscallClass::Other as u8; 512];
    let mut nr = 0;
    while nr < table.len() {
        table[nr] = classify(nr as i64) as u8;
        nr += 1;
    }
    table
};

/// log2 buckets of kernel-side syscall duration in ns: bucket `i` holds durations in
/// `[2^i, 2^(i+1))`, bucket 0 also holds 0 ns; the last bucket holds everything above 2^31 ns (~2 s).
pub const HIST_BUCKETS: usize = 32;

/// Where a thread's time is charged: one of the syscall classes, or user space.
/// Index into the per-CPU `CONTEXT_TOTALS` array.
pub const CONTEXT_USER: u32 = CLASS_COUNT as u32;
pub const CONTEXT_COUNT: usize = CLASS_COUNT + 1;
/// A thread first seen off-CPU or switching in: it is inside a syscall or in user space, and
/// which one shows only at its next syscall enter (it was in user space) or exit (in that class).
pub const CONTEXT_UNKNOWN: u32 = CONTEXT_COUNT as u32;

/// What a thread is doing with the CPU.
pub const SCHED_ONCPU: u32 = 0;
/// Off CPU by its own choice (sleeping, waiting for I/O).
pub const SCHED_BLOCKED: u32 = 1;
/// Runnable but not running: preempted, or woken and waiting for a CPU.
pub const SCHED_RUNQ: u32 = 2;

/// Per-context totals, one value per CPU in a per-CPU array indexed by context
/// ([`SyscallClass`] as u32, or [`CONTEXT_USER`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ClassTotals {
    /// Completed calls (enter and exit both seen). Always 0 for user space.
    pub calls: u64,
    /// Calls that returned a negative errno (EAGAIN included).
    pub errors: u64,
    /// Wall time from syscall enter to exit, summed over completed calls.
    pub total_ns: u64,
    /// Time on CPU in this context.
    pub oncpu_ns: u64,
    /// Time off CPU by choice (sleeping, waiting for data) in this context.
    pub blocked_ns: u64,
    /// Time runnable but waiting for a CPU in this context.
    pub runq_ns: u64,
    /// Bytes moved, from positive return values of read- and write-class calls.
    pub bytes: u64,
    /// cpu-clock samples that found a target thread in this context, and their periods summed:
    /// the sampled estimate of `oncpu_ns` (sampling mode, or any mode with stacks).
    pub samples: u64,
    pub sample_ns: u64,
    pub hist: [u64; HIST_BUCKETS],
}

impl ClassTotals {
    pub const ZERO: ClassTotals = ClassTotals {
        calls: 0,
        errors: 0,
        total_ns: 0,
        oncpu_ns: 0,
        blocked_ns: 0,
        runq_ns: 0,
        bytes: 0,
        samples: 0,
        sample_ns: 0,
        hist: [0; HIST_BUCKETS],
    };
}

impl Default for ClassTotals {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Sums, for adding up the per-CPU values of a map entry on the user side, and differences,
/// for what was counted between two reads (never below zero).
macro_rules! add_fields {
    ($type:ty { $($field:ident),* } $(, $array:ident)?) => {
        impl core::ops::AddAssign for $type {
            fn add_assign(&mut self, other: Self) {
                $(self.$field += other.$field;)*
                $(for (a, b) in self.$array.iter_mut().zip(other.$array) {
                    *a += b;
                })?
            }
        }

        impl core::ops::SubAssign for $type {
            fn sub_assign(&mut self, other: Self) {
                $(self.$field = self.$field.saturating_sub(other.$field);)*
                $(for (a, b) in self.$array.iter_mut().zip(other.$array) {
                    *a = a.saturating_sub(b);
                })?
            }
        }
    };
}

add_fields!(
    ClassTotals {
        calls,
        errors,
        total_ns,
        oncpu_ns,
        blocked_ns,
        runq_ns,
        bytes,
        samples,
        sample_ns
    },
    hist
);
add_fields!(SchedTotals {
    voluntary,
    involuntary,
    exits
});
add_fields!(SyscallTotals {
    calls,
    oncpu_ns,
    blocked_ns,
    runq_ns,
    samples,
    sample_ns
});
add_fields!(StackErrors {
    collisions,
    failed,
    lost,
    ring_full
});

/// Context switches of the target's threads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedTotals {
    /// Switched out by choice (blocked).
    pub voluntary: u64,
    /// Switched out while runnable (preempted or yielded).
    pub involuntary: u64,
    /// Threads that exited while watched.
    pub exits: u64,
}

/// One target thread's state. Each event charges the time since `last_ns` to
/// (`context`, `sched`), then moves the thread to its new state.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadState {
    pub last_ns: u64,
    /// Start of the syscall the thread is inside (context < CLASS_COUNT).
    pub sys_start_ns: u64,
    /// Time gathered while the context was unknown, by sched state, charged once it is known.
    pub pending_ns: [u64; 3],
    pub context: u32,
    pub sched: u32,
    /// Whose state this is: a CPU's running-thread slot is reused by every thread that runs there.
    pub tid: u32,
    /// Number of the syscall the thread is inside, for [`SyscallTotals`] (context `Other`).
    pub nr: u32,
}

/// Run-queue waits of the target's threads: each stretch from a wakeup or a preemption to running
/// again, as BCC's runqlat measures it (per-CPU; the loader sums them and keeps the largest max).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RunqTotals {
    pub waits: u64,
    pub wait_ns: u64,
    pub max_ns: u64,
    /// log2 buckets in ns, as [`hist_bucket`] files them.
    pub hist: [u64; HIST_BUCKETS],
}

impl RunqTotals {
    pub const ZERO: RunqTotals = RunqTotals {
        waits: 0,
        wait_ns: 0,
        max_ns: 0,
        hist: [0; HIST_BUCKETS],
    };
}

impl Default for RunqTotals {
    fn default() -> Self {
        Self::ZERO
    }
}

/// What was counted since `other`, an earlier read of the same window; `max_ns` stays the
/// window's.
impl core::ops::SubAssign for RunqTotals {
    fn sub_assign(&mut self, other: Self) {
        self.waits = self.waits.saturating_sub(other.waits);
        self.wait_ns = self.wait_ns.saturating_sub(other.wait_ns);
        for (a, b) in self.hist.iter_mut().zip(other.hist) {
            *a = a.saturating_sub(b);
        }
    }
}

impl core::ops::AddAssign for RunqTotals {
    fn add_assign(&mut self, other: Self) {
        self.waits += other.waits;
        self.wait_ns += other.wait_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.hist.iter_mut().zip(other.hist) {
            *a += b;
        }
    }
}

/// TCP trouble on the server's ports (either end of a connection whose local or remote port is
/// one of them), from the kernel's tcp and sock tracepoints.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTotals {
    pub retransmits: u64,
    /// Resets sent by the server's sockets (local port is the server's).
    pub resets_sent: u64,
    /// Resets received by the server's sockets.
    pub resets_received: u64,
    /// `sock_exceed_buf_limit`: a socket went over its memory limits.
    pub buffer_limit: u64,
    /// `sock_rcvqueue_full`: a receive queue was full and a packet dropped.
    pub rcvqueue_full: u64,
}

add_fields!(TcpTotals {
    retransmits,
    resets_sent,
    resets_received,
    buffer_limit,
    rcvqueue_full
});

/// Server ports the TCP programs count (local or remote port of a socket).
pub const MAX_PORTS: u32 = 64;

/// Offsets into `struct sock` for this kernel, read from its BTF by the loader:
/// `__sk_common.skc_num` (local port, host order) and `__sk_common.skc_dport` (remote port,
/// network order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub num: u32,
    pub dport: u32,
}

/// Per syscall number, the time of the `Other` class (epoll_wait, futex, openat, ...), so that
/// "overhead" can be split by syscall. A per-CPU array indexed by number, below [`SYSCALL_SLOTS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallTotals {
    pub calls: u64,
    pub oncpu_ns: u64,
    pub blocked_ns: u64,
    pub runq_ns: u64,
    pub samples: u64,
    pub sample_ns: u64,
}

/// Syscall numbers accounted one by one (every x86_64 syscall is below it).
pub const SYSCALL_SLOTS: usize = 512;

/// Key of the sampled-stack counts: which process, in which context (a syscall class or
/// [`CONTEXT_USER`]), with which user and kernel stacks (ids in the stack trace map, or a
/// negative errno when the stack could not be taken, or [`NO_STACK`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub tgid: u32,
    pub context: u32,
    pub user_stack: i32,
    pub kernel_stack: i32,
}

/// A stack not taken: the kernel stack of a sample taken in user mode.
pub const NO_STACK: i32 = i32::MIN;

/// Why sampled stacks are missing, counted by the sampling program (per-CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StackErrors {
    /// Stacks not stored because their hash bucket held another stack (`-EEXIST`); a sample
    /// can lose its user stack, its kernel stack, or both.
    pub collisions: u64,
    /// The stack could not be walked at all (`-EFAULT` and the like).
    pub failed: u64,
    /// The count map was full: the sample is counted in the totals but not in any stack.
    pub lost: u64,
    /// The user-stack ring buffer was full: the sample's user stack was walked by frame pointers
    /// instead of copied for CFI unwinding.
    pub ring_full: u64,
}

/// Most distinct (process, context, user stack, kernel stack) keys kept per window.
pub const MAX_STACK_KEYS: u32 = 16384;
/// Most distinct stacks in the stack trace map (user and kernel stacks share it). A stack whose
/// hash bucket is taken is lost (counted as a collision): the more buckets, the fewer; each is
/// about 1 KiB of kernel memory (127 frames), held only while stacks are taken.
pub const MAX_STACKS: u32 = 32768;

/// Bytes of user stack a sample copies for unwinding from call frame information, in whole pages
/// from the page that holds the stack pointer: 12 to 16 KiB above it. perf's `--call-graph dwarf`
/// copies 8 KiB. Measured here from sp to the outermost frame: Debian's redis-server 3 KiB
/// (12 frames), the tests' CPython 3.12 server 4.1 KiB (31 frames, five Python functions of
/// about 500 bytes each through its perf trampolines); a stack deeper than the copy is counted
/// as cut short, never passed off as whole (docs/unwinding.md).
pub const USER_STACK_PAGES: usize = 4;
pub const PAGE_SIZE: usize = 4096;
pub const USER_STACK_BYTES: usize = USER_STACK_PAGES * PAGE_SIZE;

/// One sample of a process unwound from call frame information (`.eh_frame`) in user space: the
/// user registers an unwinder starts from and the top of the user stack, copied by the sampling
/// program into a BPF ring buffer, since no two such samples are alike (the kernel deduplicates
/// only what it walks itself).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UserStackSample {
    pub tgid: u32,
    /// A syscall class or [`CONTEXT_USER`], as in [`StackKey`].
    pub context: u32,
    /// The kernel stack's id in the stack trace map, a negative errno, or [`NO_STACK`].
    pub kernel_stack: i32,
    /// Bytes of `stack` copied, whole pages from `stack_base`: the copy stops at the first page
    /// that cannot be read (the end of the stack's mapping).
    pub stack_len: u32,
    /// The user registers: where the thread was in user space, or where it entered the kernel.
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// The address of `stack[0]`: the start of the page holding `sp`.
    pub stack_base: u64,
    pub stack: [u8; USER_STACK_BYTES],
}

/// Bytes of the user-stack ring buffer while CFI unwinding runs: 8 MiB, about 500 samples, a
/// quarter of a second of two CPUs sampling at 999 Hz (the reader empties it every 10 ms). One
/// page otherwise (the least a ring buffer can be).
pub const USER_STACK_RING_BYTES: u32 = 8 << 20;

/// x86_64 `struct pt_regs`: where the registers saved at kernel entry sit. `orig_ax` holds the
/// syscall number in a syscall (an interrupt vector or fault error code otherwise); the entry
/// code sets `ax` to -ENOSYS until the syscall returns its value there.
pub mod pt_regs {
    pub const BP: usize = 32;
    pub const AX: usize = 80;
    pub const IP: usize = 128;
    pub const SP: usize = 152;
    pub const ORIG_AX: usize = 120;
    pub const ENOSYS: i64 = 38;
}

/// Processes beside the main target a session may account (a prefork server's workers).
pub const MAX_MORE_TARGETS: u32 = 256;

/// Offsets into `struct task_struct` for this kernel, read from its BTF by the loader, so the
/// scheduler programs can tell whose thread `next` or a woken task is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
}

/// Index of the bucket a duration falls into (see [`HIST_BUCKETS`]).
#[inline(always)]
pub fn hist_bucket(ns: u64) -> usize {
    // A binary search rather than `leading_zeros`: BPF has no count-leading-zeros instruction and
    // LLVM's replacement costs some 45 instructions on the syscall exit path.
    if ns >> HIST_BUCKETS != 0 {
        return HIST_BUCKETS - 1;
    }
    let (mut v, mut b) = (ns as u32, 0);
    for shift in [16, 8, 4, 2, 1] {
        if v >> shift != 0 {
            v >>= shift;
            b += shift;
        }
    }
    b as usize
}

/// Names of the maps and programs, shared so the loader cannot misspell them.
pub mod names {
    pub const CONTEXT_TOTALS: &str = "CONTEXT_TOTALS";
    pub const SCHED_TOTALS: &str = "SCHED_TOTALS";
    pub const THREADS: &str = "THREADS";
    pub const TARGET_TGID: &str = "TARGET_TGID";
    pub const MULTI_TARGET: &str = "MULTI_TARGET";
    pub const MORE_TARGETS: &str = "MORE_TARGETS";
    pub const TASK_OFFSETS: &str = "TASK_OFFSETS";
    pub const SAMPLING: &str = "SAMPLING";
    pub const SYSCALL_TOTALS: &str = "SYSCALL_TOTALS";
    pub const STACK_TRACES: &str = "STACK_TRACES";
    pub const STACK_COUNTS: &str = "STACK_COUNTS";
    pub const STACK_ERRORS: &str = "STACK_ERRORS";
    pub const RUNQ_TOTALS: &str = "RUNQ_TOTALS";
    pub const TCP_TOTALS: &str = "TCP_TOTALS";
    pub const PORTS: &str = "PORTS";
    pub const SOCK_OFFSETS: &str = "SOCK_OFFSETS";
    pub const CFI_TARGETS: &str = "CFI_TARGETS";
    pub const USER_STACKS: &str = "USER_STACKS";
    /// Sampling: the cpu-clock perf event program, one event per CPU.
    pub const CPU_SAMPLE: &str = "cpu_sample";
    /// Tracepoint mode: the raw_syscalls raw tracepoints.
    pub const SYS_ENTER: &str = "sys_enter";
    pub const SYS_EXIT: &str = "sys_exit";
    /// Scheduler raw tracepoints, in every eBPF mode.
    pub const SCHED_SWITCH: &str = "sched_switch";
    pub const SCHED_WAKEUP: &str = "sched_wakeup";
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// TCP trouble: raw tracepoints named as the tracepoints, in every eBPF mode and for signals.
    pub const TCP_TRACEPOINTS: [&str; 5] = [
        "tcp_retransmit_skb",
        "tcp_send_reset",
        "tcp_receive_reset",
        "sock_exceed_buf_limit",
        "sock_rcvqueue_full",
    ];
    /// Kprobe mode: one entry and one return program per class.
    pub const KPROBES: [(&str, &str); super::CLASS_COUNT] = [
        ("kprobe_accept", "kretprobe_accept"),
        ("kprobe_read", "kretprobe_read"),
        ("kprobe_write", "kretprobe_write"),
        ("kprobe_other", "kretprobe_other"),
    ];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), Copy, no padding holes the kernel could leave uninitialised
    // (u64 fields, or u32 fields in pairs).
    unsafe impl aya::Pod for super::ClassTotals {}
    unsafe impl aya::Pod for super::SchedTotals {}
    unsafe impl aya::Pod for super::ThreadState {}
    unsafe impl aya::Pod for super::TaskOffsets {}
    unsafe impl aya::Pod for super::SyscallTotals {}
    unsafe impl aya::Pod for super::StackKey {}
    unsafe impl aya::Pod for super::StackErrors {}
    unsafe impl aya::Pod for super::RunqTotals {}
    unsafe impl aya::Pod for super::TcpTotals {}
    unsafe impl aya::Pod for super::SockOffsets {}
    unsafe impl aya::Pod for super::UserStackSample {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn buckets_are_log2() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(1), 0);
        assert_eq!(hist_bucket(2), 1);
        assert_eq!(hist_bucket(1023), 9);
        assert_eq!(hist_bucket(1024), 10);
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
        for shift in 0..64 {
            for ns in [(1u64 << shift) - 1, 1 << shift, (1 << shift) + 1] {
                let log2 = 63 - ns.max(1).leading_zeros() as usize;
                assert_eq!(hist_bucket(ns), log2.min(HIST_BUCKETS - 1), "{ns} ns");
            }
        }
    }

    #[test]
    fn classes_cover_design_list() {
        assert_eq!(classify(x86_64::ACCEPT4), SyscallClass::Accept);
        assert_eq!(classify(x86_64::RECVMMSG), SyscallClass::Read);
        assert_eq!(classify(x86_64::SENDFILE), SyscallClass::Write);
        assert_eq!(classify(232 /* epoll_wait */), SyscallClass::Other);
    }
}
