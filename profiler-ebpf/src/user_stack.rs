//! The kernel half of unwinding from call frame information: for a target built without frame
//! pointers (CFI_TARGETS, chosen by the loader), a sample's user registers and the top of its user
//! stack go to user space through a BPF ring buffer, where they are unwound with the `.eh_frame`
//! of the code they ran (as `perf record --call-graph dwarf` does, but unwound as the window goes,
//! not written to a file). Every other target's user stack is walked here by frame pointers.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs, generated::bpf_probe_read_user},
    macros::map,
    maps::{HashMap, RingBuf},
    programs::PerfEventContext,
};
use profiler_common::{MAX_MORE_TARGETS, PAGE_SIZE, USER_STACK_PAGES, USER_STACK_RING_BYTES, UserStackSample, pt_regs};

/// The target processes whose user stacks are unwound from CFI (tgid -> 1).
#[map]
static CFI_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_MORE_TARGETS + 1, 0);

/// Samples of those processes, for the loader's reader; sized by the loader (one page when no
/// target needs it).
#[map]
static USER_STACKS: RingBuf = RingBuf::with_byte_size(USER_STACK_RING_BYTES, 0);

#[inline(always)]
pub fn is_cfi_target(tgid: u32) -> bool {
    unsafe { CFI_TARGETS.get(tgid) }.is_some()
}

/// Sends the sample's user registers and stack; false when the ring buffer is full.
#[inline(always)]
pub fn send(ctx: &PerfEventContext, tgid: u32, context: u32, kernel_stack: i32, in_user: bool) -> bool {
    let Some(mut entry) = USER_STACKS.reserve::<UserStackSample>(0) else {
        return false;
    };
    let sample = entry.as_mut_ptr();
    // In user mode the tick interrupted the user registers themselves; in the kernel they are the
    // ones the thread saved on entering it.
    let (ip, sp, bp) = if in_user {
        let regs = unsafe { &(*ctx.ctx).regs };
        (regs.rip, regs.rsp, regs.rbp)
    } else {
        let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8;
        let read =
            |offset: usize| unsafe { bpf_probe_read_kernel(regs.wrapping_add(offset) as *const u64) }.unwrap_or(0);
        (read(pt_regs::IP), read(pt_regs::SP), read(pt_regs::BP))
    };
    // Whole pages from the one holding sp, up to the first that cannot be read: the end of the
    // stack's mapping. A page read fails as a whole, so a copy that straddled the end would lose
    // everything below it too.
    let base = sp & !(PAGE_SIZE as u64 - 1);
    let mut copied = 0u32;
    for page in 0..USER_STACK_PAGES {
        let dst = unsafe { (*sample).stack.as_mut_ptr().add(page * PAGE_SIZE) };
        let src = base + (page * PAGE_SIZE) as u64;
        if unsafe { bpf_probe_read_user(dst.cast(), PAGE_SIZE as u32, src as *const _) } != 0 {
            break;
        }
        copied += PAGE_SIZE as u32;
    }
    unsafe {
        (*sample).tgid = tgid;
        (*sample).context = context;
        (*sample).kernel_stack = kernel_stack;
        (*sample).stack_len = copied;
        (*sample).ip = ip;
        (*sample).sp = sp;
        (*sample).bp = bp;
        (*sample).stack_base = base;
    }
    // The reader polls every few milliseconds: a wakeup per sample would cost more than it gives.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    true
}
