//! The `prefork` model (seed 004, note 2): the parent binds, then forks one worker process per
//! core; every worker inherits the listening socket and runs its own level-triggered epoll loop
//! ([`super::epoll`]'s) over it and over the connections it accepted. Nothing is passed between
//! processes: a connection belongs to the worker that accepted it.
//!
//! - The listener is in every worker's epoll set with `EPOLLEXCLUSIVE`, so a new connection
//!   wakes one worker (or a few), not all of them (the thundering herd that nginx's accept
//!   mutex used to prevent). A woken worker accepts until `EAGAIN`; losing the race to another
//!   worker is just an empty accept.
//! - The parent serves nothing: it waits for its workers. If one dies, it kills the others and
//!   exits with an error (no respawning: a crashing worker should fail the benchmark, not hide).
//! - Each worker sets `PR_SET_PDEATHSIG` = `SIGKILL` first thing, so killing the parent (as
//!   [`super::ServerChild`] does on drop) takes the workers with it and leaves nothing behind;
//!   a worker whose parent died before that took effect exits at once.
//! - Forking is only safe from a single-threaded process; [`serve`] checks that (bench-server
//!   starts no thread before it).
//!
//! **For the profiler:** the workers are separate processes, with their own tgids (children of
//! the pid that `bench-server` was started as). Profiling the parent's tgid sees only a process
//! asleep in `wait4`; profile the workers (the parent's children) instead.

use super::epoll::EpollPoller;
use super::reactor::{Reactor, Trigger};
use super::support::worker_count;
use anyhow::{Context, Result, bail, ensure};
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, wait, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};
use std::net::TcpListener;

/// Forks the workers, then waits; returns (with an error) only when a worker ended.
pub fn serve(listener: TcpListener) -> Result<()> {
    ensure!(thread_count()? == 1, "prefork must fork from a single-threaded process");
    listener
        .set_nonblocking(true)
        .context("making the listener non-blocking")?;
    let parent = getpid();
    let mut workers = Vec::new();
    for i in 0..worker_count() {
        // SAFETY: the process is single-threaded (checked above), so the child is a complete
        // copy with no lock held by a thread that does not exist there.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => worker(i, listener, parent),
            Ok(ForkResult::Parent { child }) => workers.push(child),
            Err(e) => {
                stop(&workers);
                bail!("fork: {e}");
            }
        }
    }
    // The workers have it; the parent never accepts.
    drop(listener);
    supervise(&workers)
}

/// A worker's whole life: never returns.
fn worker(i: usize, listener: TcpListener, parent: Pid) -> ! {
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("prefork worker {i}: prctl(PR_SET_PDEATHSIG): {e}");
        std::process::exit(1);
    }
    if getppid() != parent {
        // The parent died before the death signal was armed.
        std::process::exit(1);
    }
    let result = EpollPoller::new(Trigger::Level)
        .map(EpollPoller::with_exclusive_listener)
        .and_then(|poller| Reactor::new(listener, poller))
        .and_then(Reactor::run);
    if let Err(e) = result {
        eprintln!("prefork worker {i} (pid {}): {e:#}", getpid());
    }
    std::process::exit(1);
}

/// Waits for the workers; when one ends, kills and reaps the rest and reports it.
fn supervise(workers: &[Pid]) -> Result<()> {
    loop {
        let status = match wait() {
            Ok(status) => status,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                stop(workers);
                bail!("waiting for the workers: {e}");
            }
        };
        let (pid, how) = match status {
            WaitStatus::Exited(pid, code) => (pid, format!("exited with status {code}")),
            WaitStatus::Signaled(pid, signal, _) => (pid, format!("was killed by {signal}")),
            _ => continue,
        };
        if workers.contains(&pid) {
            let rest: Vec<Pid> = workers.iter().copied().filter(|w| *w != pid).collect();
            stop(&rest);
            bail!("prefork worker {pid} {how}; stopped the others");
        }
    }
}

/// Kills and reaps `workers`.
fn stop(workers: &[Pid]) {
    for &pid in workers {
        let _ = kill(pid, Signal::SIGKILL);
    }
    for &pid in workers {
        let _ = waitpid(pid, None);
    }
}

fn thread_count() -> Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")
        .context("listing /proc/self/task")?
        .count())
}
