//! Loading the embedded eBPF object and attaching it to one target process.
use anyhow::{Context, Result, bail};
use aya::{Ebpf, EbpfLoader, programs::RawTracePoint};
use profiler_common::names;
use std::fmt;

/// The eBPF object profiler-ebpf's build produced (see build.rs).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// How the syscalls of the target are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `raw_syscalls` raw tracepoints (`sys_enter` / `sys_exit`): one pair of programs for every
    /// syscall, classified in the kernel by syscall number.
    Tracepoint,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tracepoint => "tracepoint",
        })
    }
}

/// Programs loaded and attached to one process. Dropping it detaches and unloads them: the
/// kernel frees programs and links when their last file descriptor closes, which also happens
/// when this process dies.
pub struct Session {
    pub(crate) ebpf: Ebpf,
    pub tgid: u32,
    pub mode: Mode,
}

impl Session {
    /// Loads the programs with `tgid` as the target and attaches them.
    pub fn attach(tgid: u32) -> Result<Session> {
        if tgid == 0 {
            bail!("pid 0 cannot be profiled");
        }
        raise_memlock_limit();
        let mut ebpf = EbpfLoader::new()
            .override_global(names::TARGET_TGID, &tgid, true)
            .load(EBPF_OBJECT)
            .context(
                "loading the eBPF object into the kernel (needs root or CAP_BPF + CAP_PERFMON)",
            )?;
        for (program, tracepoint) in [
            (names::SYS_ENTER, "sys_enter"),
            (names::SYS_EXIT, "sys_exit"),
        ] {
            let prog: &mut RawTracePoint = ebpf
                .program_mut(program)
                .with_context(|| format!("program {program} missing from the eBPF object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("verifier rejected {program}"))?;
            prog.attach(tracepoint)
                .with_context(|| format!("attaching {program} to raw tracepoint {tracepoint}"))?;
        }
        Ok(Session {
            ebpf,
            tgid,
            mode: Mode::Tracepoint,
        })
    }
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
