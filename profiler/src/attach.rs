//! Loading the embedded eBPF object and attaching it to the target processes, in kprobe,
//! tracepoint or sampling mode, falling back from one to the next and keeping why.
use crate::cpu_clock::CpuClock;
use crate::tracing_cost::{self, TracingCost};
use crate::unwind;
use anyhow::{Context, Result, bail, ensure};
use aya::maps::HashMap;
use aya::programs::{KProbe, PerfEvent, RawTracePoint};
use aya::{Ebpf, EbpfLoader};
use profiler_common::{
    MAX_MORE_TARGETS, MAX_PORTS, MAX_STACK_KEYS, MAX_STACKS, PAGE_SIZE, SyscallClass, USER_STACK_RING_BYTES, names,
};
use serde::Serialize;
use std::fmt;
use std::os::fd::AsFd;
use std::str::FromStr;

/// The eBPF object profiler-ebpf's build produced (see build.rs).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// How the target's time is observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// kprobe/kretprobe on the architecture's syscall entry points (`__x64_sys_*`).
    Kprobe,
    /// The `sys_enter` / `sys_exit` raw tracepoints: every syscall, classified by number.
    Tracepoint,
    /// A cpu-clock sample per CPU, classified by the syscall the thread is in: no syscall hook.
    Sampling,
    /// No eBPF: the server times its own calls (wall clock).
    Userspace,
}

/// What the caller asked for: one mode, or the first that works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    Auto,
    Only(Mode),
}

impl Mode {
    /// The eBPF modes `Auto` tries, in order; userspace comes after them, where the target can
    /// time itself.
    pub const EBPF: [Mode; 3] = [Mode::Kprobe, Mode::Tracepoint, Mode::Sampling];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Kprobe => "kprobe",
            Mode::Tracepoint => "tracepoint",
            Mode::Sampling => "sampling",
            Mode::Userspace => "userspace",
        }
    }

    /// Whether every syscall is seen (call counts, latency histograms), rather than sampled.
    pub fn is_exact(self) -> bool {
        matches!(self, Mode::Kprobe | Mode::Tracepoint)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Requested {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Requested::Auto);
        }
        [Mode::Kprobe, Mode::Tracepoint, Mode::Sampling, Mode::Userspace]
            .into_iter()
            .find(|m| m.as_str() == s)
            .map(Requested::Only)
            .ok_or_else(|| format!("unknown mode {s:?}: expected auto, kprobe, tracepoint, sampling or userspace"))
    }
}

impl Requested {
    /// Whether the caller may fall back to (or asked for) userspace mode.
    pub fn allows_userspace(self) -> bool {
        matches!(self, Requested::Auto | Requested::Only(Mode::Userspace))
    }
}

/// The syscalls kprobe mode probes, per class (`__x64_sys_<name>`). Unlike the raw tracepoints,
/// kprobes see only the calls they are attached to: a syscall outside these lists counts as
/// process time in kprobe mode.
pub const KPROBE_SYSCALLS: [&[&str]; 4] = [
    &["accept", "accept4"],
    &["read", "readv", "recvfrom", "recvmsg", "recvmmsg"],
    &["write", "writev", "sendto", "sendmsg", "sendmmsg", "sendfile64"],
    &[
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "epoll_ctl",
        "poll",
        "ppoll",
        "select",
        "pselect6",
        "futex",
        "nanosleep",
        "clock_nanosleep",
        "sched_yield",
        "close",
        "shutdown",
        "socket",
        "bind",
        "listen",
        "connect",
        "setsockopt",
        "getsockopt",
        "fcntl",
        "ioctl",
        "getrusage",
        "mmap",
        "munmap",
        "mprotect",
        "madvise",
        "brk",
        "rt_sigprocmask",
        "io_uring_enter",
    ],
];

/// Our eBPF object loaded for some target processes and ports, with the scheduler programs and
/// the TCP programs attached: what every eBPF mode starts from, and all that the signals need.
pub struct Loaded {
    pub(crate) ebpf: Ebpf,
    /// Why the TCP programs could not attach (the rest still works without them).
    pub(crate) tcp_error: Option<String>,
}

/// Programs loaded and attached to one process (or a few: a prefork server and its workers).
/// Dropping it detaches and unloads them and closes the perf events: the kernel frees them when
/// their last descriptor closes, which also happens when this process dies.
pub struct Programs {
    /// Closed before the programs are unloaded (fields drop in order).
    _clock: Option<CpuClock>,
    /// Unwinds the samples of the processes built without frame pointers as they come, when
    /// there are any (stopped before the programs are unloaded).
    pub(crate) unwinding: Option<unwind::Reader>,
    pub(crate) loaded: Loaded,
    pub mode: Mode,
    /// The cpu-clock sampler's frequency, when it runs (sampling mode, or stacks): it samples
    /// stacks whenever it runs.
    pub sampler_hz: Option<u32>,
    /// What the exact modes' tracing costs the target per syscall (or why it is unknown).
    pub tracing: Option<Result<TracingCost, String>>,
}

/// Attaches in the requested eBPF mode, or with `Auto` each eBPF mode in turn, and returns the
/// programs with the reason each mode tried before failed. Userspace mode is the caller's to run:
/// asking for it, or `Auto` with every eBPF mode failing, is [`AttachError::NoMode`]. A request
/// no mode could meet (a sampling frequency above the kernel's limit) is refused before any mode
/// is tried, so that it cannot pass for a mode's failure. Whenever the sampler runs, `cfi` says
/// (asked once) which targets' user stacks are unwound from CFI rather than walked by frame
/// pointers.
pub(crate) fn attach(
    tgids: &[u32],
    ports: &[u16],
    requested: Requested,
    frequency_hz: u32,
    stacks: bool,
    cfi: &dyn Fn() -> Vec<u32>,
) -> Result<(Programs, Vec<String>), AttachError> {
    let modes: &[Mode] = match requested {
        Requested::Auto => &Mode::EBPF,
        Requested::Only(Mode::Userspace) => &[],
        Requested::Only(mode) => &[mode][..],
    };
    let refused = |e: anyhow::Error| AttachError::Refused(format!("{e:#}"));
    if tgids.is_empty() {
        return Err(AttachError::Refused("no process to profile".into()));
    }
    check_targets(tgids).map_err(refused)?;
    if stacks || modes.contains(&Mode::Sampling) {
        check_frequency(frequency_hz).map_err(refused)?;
    }
    let mut reasons = Vec::new();
    let mut unwound = None;
    for &mode in modes {
        // Sampling mode is the sampler; the exact modes run it for stacks.
        let sampler_hz = (mode == Mode::Sampling || stacks).then_some(frequency_hz);
        let cfi: &[u32] = match sampler_hz {
            Some(_) => unwound.get_or_insert_with(cfi),
            None => &[],
        };
        // Measured before our programs trace every task's syscalls (which would slow the
        // untraced loop too).
        let tracing = mode.is_exact().then(|| tracing_cost::of(mode));
        match attach_mode(tgids, ports, mode, sampler_hz, cfi) {
            Ok((mut loaded, clock)) => {
                let unwinding = match cfi {
                    [] => None,
                    _ => Some(unwind::Reader::start(
                        loaded.user_stacks().map_err(refused)?,
                        cfi.to_vec(),
                    )),
                };
                let programs = Programs {
                    _clock: clock,
                    unwinding,
                    loaded,
                    mode,
                    sampler_hz,
                    tracing,
                };
                return Ok((programs, reasons));
            }
            Err(e) => reasons.push(format!("{mode}: {e:#}")),
        }
    }
    Err(AttachError::NoMode { reasons })
}

/// Why no eBPF profile could start.
#[derive(Debug)]
pub enum AttachError {
    /// No mode the request allows could attach; why, for each one tried (none: userspace mode was
    /// asked for, which is not an eBPF mode).
    NoMode { reasons: Vec<String> },
    /// The request cannot be met here in any mode.
    Refused(String),
}

impl AttachError {
    /// Why each mode tried failed (empty for a refused request).
    pub fn reasons(&self) -> &[String] {
        match self {
            AttachError::NoMode { reasons } => reasons,
            AttachError::Refused(_) => &[],
        }
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::NoMode { reasons } if reasons.is_empty() => f.write_str("no eBPF mode was requested"),
            AttachError::NoMode { reasons } => write!(f, "no eBPF mode could attach: {}", reasons.join("; ")),
            AttachError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for AttachError {}

fn attach_mode(
    tgids: &[u32],
    ports: &[u16],
    mode: Mode,
    sampler_hz: Option<u32>,
    cfi: &[u32],
) -> Result<(Loaded, Option<CpuClock>)> {
    if mode == Mode::Kprobe && !kernel_has_kprobes() {
        // CONFIG_KPROBES unset: nothing below could attach, so say so plainly.
        bail!(
            "this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices, no kprobe_events in tracefs)"
        );
    }
    let mut loaded = load(tgids, ports, mode == Mode::Sampling, sampler_hz.is_some(), cfi)?;
    attach_syscall_hooks(&mut loaded.ebpf, mode)?;
    let clock = sampler_hz.map(|hz| attach_sampler(&mut loaded.ebpf, hz)).transpose()?;
    Ok((loaded, clock))
}

/// Attaches `mode`'s syscall programs (none in sampling mode).
pub(crate) fn attach_syscall_hooks(ebpf: &mut Ebpf, mode: Mode) -> Result<()> {
    match mode {
        Mode::Tracepoint => {
            attach_raw_tracepoint(ebpf, names::SYS_ENTER)?;
            attach_raw_tracepoint(ebpf, names::SYS_EXIT)
        }
        Mode::Kprobe => attach_kprobes(ebpf),
        Mode::Sampling => Ok(()),
        Mode::Userspace => bail!("userspace mode loads no eBPF"),
    }
}

/// Loads the object for `tgids` and attaches the scheduler programs, which time run-queue waits,
/// and the TCP programs, which count for `ports`. With no tgid the scheduler programs stay
/// detached: the target would be tgid 0, the idle task, whose every stretch idle they would time
/// as a wait. With no port the TCP programs stay detached: they would count nothing. `sampling` tells
/// `sched_switch` that no syscall hook keeps the threads' contexts; `stacks` sizes the stack
/// maps for the sampler, and `cfi` (targets among `tgids`) the user-stack ring buffer.
pub(crate) fn load(tgids: &[u32], ports: &[u16], sampling: bool, stacks: bool, cfi: &[u32]) -> Result<Loaded> {
    check_targets(tgids)?;
    let (tgid, more) = tgids.split_first().map_or((0, &[][..]), |(first, more)| (*first, more));
    ensure!(
        ports.len() <= MAX_PORTS as usize,
        "at most {MAX_PORTS} listening ports can be watched, got {}",
        ports.len()
    );
    raise_memlock_limit();
    let btf = crate::btf::KernelBtf::read()?;
    let task_offsets = btf.task_offsets()?;
    let sock_offsets = btf.sock_offsets();
    // Without the sampler the stack maps shrink to one entry: a full stack map is some 34 MB of
    // kernel memory.
    let (stack_entries, key_entries) = if stacks { (MAX_STACKS, MAX_STACK_KEYS) } else { (1, 1) };
    let ring_bytes = if stacks && !cfi.is_empty() {
        USER_STACK_RING_BYTES
    } else {
        PAGE_SIZE as u32
    };
    let mut ebpf = EbpfLoader::new()
        .override_global(names::TARGET_TGID, &tgid, true)
        .override_global(names::MULTI_TARGET, &u32::from(!more.is_empty()), true)
        .override_global(names::TASK_OFFSETS, &task_offsets, true)
        .override_global(
            names::SOCK_OFFSETS,
            &sock_offsets.as_ref().copied().unwrap_or_default(),
            true,
        )
        .override_global(names::SAMPLING, &u32::from(sampling), true)
        .map_max_entries(names::STACK_TRACES, stack_entries)
        .map_max_entries(names::STACK_COUNTS, key_entries)
        .map_max_entries(names::USER_STACKS, ring_bytes)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object into the kernel (needs root, or CAP_BPF and CAP_PERFMON)")?;
    fill_set(&mut ebpf, names::MORE_TARGETS, more, "pid", "the targets")?;
    fill_set(
        &mut ebpf,
        names::CFI_TARGETS,
        cfi,
        "pid",
        "the targets unwound from CFI",
    )?;
    if !tgids.is_empty() {
        for program in [names::SCHED_SWITCH, names::SCHED_WAKEUP, names::SCHED_PROCESS_EXIT] {
            attach_raw_tracepoint(&mut ebpf, program)?;
        }
    }
    let tcp_error = sock_offsets
        .and_then(|_| attach_tcp(&mut ebpf, ports))
        .err()
        .map(|e| format!("{e:#}"));
    Ok(Loaded { ebpf, tcp_error })
}

impl Loaded {
    /// The ring buffer the sampling program sends CFI targets' user stacks through, taken out
    /// for the reader.
    fn user_stacks(&mut self) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
        let map = self
            .ebpf
            .take_map(names::USER_STACKS)
            .context("map USER_STACKS missing")?;
        Ok(aya::maps::RingBuf::try_from(map)?)
    }
}

/// Puts `keys` (each a `noun`) into the set map `name` (key -> 1), which `what` names in errors.
fn fill_set<K: aya::Pod + fmt::Display>(ebpf: &mut Ebpf, name: &str, keys: &[K], noun: &str, what: &str) -> Result<()> {
    let mut set: HashMap<_, K, u8> =
        HashMap::try_from(ebpf.map_mut(name).with_context(|| format!("map {name} missing"))?)?;
    for key in keys {
        set.insert(key, 1, 0)
            .with_context(|| format!("adding {noun} {key} to {what}"))?;
    }
    Ok(())
}

/// Processes our programs can account: none (TCP signals only) up to [`MAX_MORE_TARGETS`] + 1,
/// never pid 0 (the globals' "no target").
fn check_targets(tgids: &[u32]) -> Result<()> {
    ensure!(!tgids.contains(&0), "pid 0 cannot be profiled");
    ensure!(
        tgids.len() <= MAX_MORE_TARGETS as usize + 1,
        "at most {} processes can be profiled together, got {}",
        MAX_MORE_TARGETS + 1,
        tgids.len()
    );
    Ok(())
}

/// The TCP programs, counting for `ports` (none attached for no port: they would count nothing).
fn attach_tcp(ebpf: &mut Ebpf, ports: &[u16]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    fill_set(ebpf, names::PORTS, ports, "port", "the watched ports")?;
    for program in names::TCP_TRACEPOINTS {
        attach_raw_tracepoint(ebpf, program)?;
    }
    Ok(())
}

/// The kernel refuses a sampling frequency above `kernel.perf_event_max_sample_rate`, which it
/// also lowers by itself when sampling interrupts run long: say which limit was hit.
fn check_frequency(hz: u32) -> Result<()> {
    ensure!(hz > 0, "the sampling frequency must be at least 1 Hz");
    let path = "/proc/sys/kernel/perf_event_max_sample_rate";
    if let Some(max) = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        ensure!(
            hz <= max,
            "sampling at {hz} Hz is above this kernel's limit of {max} Hz ({path}; the kernel lowers it when \
             sampling interrupts take too long)"
        );
    }
    Ok(())
}

/// One software cpu-clock event per online CPU, every task, each running the sampling program
/// (which filters by target first); see [`CpuClock`] for why they are not aya's.
fn attach_sampler(ebpf: &mut Ebpf, hz: u32) -> Result<CpuClock> {
    let cpus = aya::util::online_cpus().map_err(|(what, e)| anyhow::anyhow!("reading {what}: {e}"))?;
    let prog: &mut PerfEvent = program(ebpf, names::CPU_SAMPLE)?.try_into()?;
    prog.load()
        .with_context(|| format!("verifier rejected {}", names::CPU_SAMPLE))?;
    let fd = prog.fd().context("the sampling program has no descriptor")?;
    CpuClock::start(fd.as_fd(), &cpus, hz)
}

/// Whether this kernel can attach kprobes at all (CONFIG_KPROBES).
pub fn kernel_has_kprobes() -> bool {
    [
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// Program names equal their raw tracepoint's name.
fn attach_raw_tracepoint(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let prog: &mut RawTracePoint = program(ebpf, name)?.try_into()?;
    prog.load().with_context(|| format!("verifier rejected {name}"))?;
    prog.attach(name)
        .with_context(|| format!("attaching {name} to raw tracepoint {name}"))?;
    Ok(())
}

fn attach_kprobes(ebpf: &mut Ebpf) -> Result<()> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    // One pass over the ~150,000 symbols, not one per probe.
    let symbols: std::collections::HashSet<&str> = kallsyms
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .filter(|s| s.starts_with("__x64_sys_"))
        .collect();
    let present = |symbol: &str| symbols.contains(symbol);
    for class in SyscallClass::ALL {
        let (enter, exit) = names::KPROBES[class as usize];
        for (name, is_return) in [(enter, false), (exit, true)] {
            let prog: &mut KProbe = program(ebpf, name)?.try_into()?;
            prog.load().with_context(|| format!("verifier rejected {name}"))?;
            for syscall in KPROBE_SYSCALLS[class as usize] {
                let symbol = format!("__x64_sys_{syscall}");
                if !present(&symbol) {
                    continue; // e.g. io_uring_enter on a kernel without io_uring
                }
                let what = if is_return { "kretprobe" } else { "kprobe" };
                prog.attach(&symbol, 0)
                    .with_context(|| format!("attaching {what} {name} to {symbol}"))?;
            }
        }
    }
    Ok(())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it so loading does not fail there.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a valid struct; failure only matters on old kernels and shows up
    // as a load error there.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}
