//! What the exact modes' own tracing costs a target per syscall, measured once per process and
//! mode, at the first attach: a child process makes one cheap syscall (a 0-byte read) `CALLS`
//! times untraced, then as the only target of the mode's programs. What the programs then charge
//! to its user space per call is the part of the tracing path outside the two clock reads that
//! bound a call (it would read as the target's `process`); the rest of what tracing added per call
//! is the part inside them (it would read as the syscall's). The breakdown moves both out of the
//! parts into `tracing` (docs: README, "Modes").
use crate::attach::{self, Mode};
use crate::totals::Totals;
use anyhow::{Context, Result, bail, ensure};
use profiler_common::SyscallClass;
use serde::Serialize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The tracing path's cost to a target, per syscall it makes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TracingCost {
    /// Charged to user space (`process`) per call.
    pub process_ns: f64,
    /// Charged to the syscall itself per call.
    pub syscall_ns: f64,
}

/// Calls per measured loop: some 10 ms untraced, 30 ms traced on these machines.
const CALLS: u64 = 50_000;
/// Loops of each kind, the fastest kept: a loop that was interrupted or preempted is slower.
const LOOPS: usize = 3;

/// The cost in `mode` on this machine, measured at the first call and kept for the process's
/// life (the kernel and the programs do not change under it).
pub(crate) fn of(mode: Mode) -> Result<TracingCost, String> {
    static MEASURED: Mutex<Vec<(Mode, Result<TracingCost, String>)>> = Mutex::new(Vec::new());
    let mut measured = MEASURED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, cost)) = measured.iter().find(|(m, _)| *m == mode) {
        return cost.clone();
    }
    let cost = measure(mode).map_err(|e| format!("measuring the tracing cost: {e:#}"));
    measured.push((mode, cost.clone()));
    cost
}

impl TracingCost {
    /// `totals` less this cost for each of its syscalls, and the time taken out.
    pub fn subtract(&self, totals: &Totals) -> (Totals, u64) {
        let mut net = totals.clone();
        let mut removed = 0;
        let mut take = |ns: &mut u64, cost: f64| {
            let cut = (cost.round() as u64).min(*ns);
            *ns -= cut;
            removed += cut;
        };
        let calls: u64 = SyscallClass::ALL.iter().map(|&c| totals.class(c).calls).sum();
        take(
            &mut net.contexts[profiler_common::CONTEXT_USER as usize].oncpu_ns,
            self.process_ns * calls as f64,
        );
        for class in SyscallClass::ALL {
            let t = &mut net.contexts[class as usize];
            take(&mut t.oncpu_ns, self.syscall_ns * t.calls as f64);
        }
        (net, removed)
    }
}

/// Runs the measurement: a forked child loops, this process attaches `mode` to it in between.
fn measure(mode: Mode) -> Result<TracingCost> {
    let go = Pipe::new()?;
    let results = Pipe::new()?;
    let empty = Pipe::new()?;
    // SAFETY: the child only makes raw system calls (read, write, clock_gettime) and `_exit`s: it
    // takes no lock and allocates nothing, as a child of a threaded process must.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        child(&go, &results, &empty);
    }
    let child = Reaped(pid);
    let untraced = results.read_u64().context("the calibration child's untraced loops")?;
    let mut loaded = attach::load(&[pid as u32], &[], false, false, &[])?;
    attach::attach_syscall_hooks(&mut loaded.ebpf, mode)?;
    // Each traced loop apart, the fastest kept: the time the programs charged to its user space
    // per call, and the time the loop took.
    let (mut process_ns, mut traced) = (f64::MAX, u64::MAX);
    for _ in 0..LOOPS {
        let before = loaded.read_totals()?;
        go.write_u64(1)?;
        traced = traced.min(results.read_u64().context("the calibration child's traced loop")?);
        let after = loaded.read_totals()?.since(&before);
        let calls = after.class(SyscallClass::Read).calls;
        ensure!(calls >= CALLS, "the programs saw {calls} of its {CALLS} reads");
        process_ns = process_ns.min(after.user().oncpu_ns as f64 / calls as f64);
    }
    drop(child);
    let added = (traced as f64 - untraced as f64) / CALLS as f64;
    Ok(TracingCost {
        process_ns,
        syscall_ns: (added - process_ns).max(0.0),
    })
}

/// The calibration child: the fastest of its untraced loops, then each traced loop when told.
fn child(go: &Pipe, results: &Pipe, empty: &Pipe) -> ! {
    let fastest = (0..LOOPS).map(|_| time_reads(empty.read)).min().unwrap_or(u64::MAX);
    let _ = results.write_u64(fastest);
    for _ in 0..LOOPS {
        if go.read_u64().is_err() {
            break;
        }
        let _ = results.write_u64(time_reads(empty.read));
    }
    // SAFETY: ends the child without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(0) }
}

/// Nanoseconds taken by [`CALLS`] 0-byte reads of `fd`.
fn time_reads(fd: i32) -> u64 {
    let now = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes the current time into `ts`.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let mut byte = 0u8;
    let start = now();
    for _ in 0..CALLS {
        // SAFETY: a read of 0 bytes into a valid buffer; a pipe answers it at once.
        unsafe { libc::read(fd, (&raw mut byte).cast(), 0) };
    }
    (now() - start).as_nanos() as u64
}

/// A pipe, both ends closed when dropped.
struct Pipe {
    read: i32,
    write: i32,
}

impl Pipe {
    fn new() -> Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: fills `fds` with two new descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            bail!("pipe: {}", std::io::Error::last_os_error());
        }
        Ok(Pipe {
            read: fds[0],
            write: fds[1],
        })
    }

    fn write_u64(&self, n: u64) -> Result<()> {
        let bytes = n.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer; a pipe takes them whole.
        let wrote = unsafe { libc::write(self.write, bytes.as_ptr().cast(), bytes.len()) };
        ensure!(
            wrote == 8,
            "writing to the calibration pipe: {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Waits (at most 10 s) for 8 bytes: the other side's number.
    fn read_u64(&self) -> Result<u64> {
        let mut poll = libc::pollfd {
            fd: self.read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid descriptor.
        let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
        ensure!(ready == 1, "no answer within 10 s");
        let mut bytes = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer.
        let got = unsafe { libc::read(self.read, bytes.as_mut_ptr().cast(), bytes.len()) };
        ensure!(got == 8, "the calibration child ended early");
        Ok(u64::from_ne_bytes(bytes))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: closes descriptors this pipe owns.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// The calibration child, killed (if still there) and reaped when dropped.
struct Reaped(libc::pid_t);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: our own child, not yet reaped.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}
