//! The few OS calls that std does not offer: file descriptor limits, CPU pinning and a
//! sub-millisecond epoll wait.

use anyhow::{Context, Result, ensure};
use nix::sched::{CpuSet, sched_getcpu, sched_setaffinity};
use nix::sys::epoll::{Epoll, EpollEvent, EpollTimeout};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Descriptors asked for when the process may raise its hard limit (root): room for 10,000
/// connections on both ends of a loopback benchmark, and then some.
const WANTED_NOFILE: u64 = 1 << 17;

/// Raises `RLIMIT_NOFILE` as far as allowed and returns the new soft limit: 10,000 connections
/// need more than the usual soft 1024 descriptors. Root may raise the hard limit too (up to
/// `fs.nr_open`); anyone else gets the soft limit raised to the hard one.
pub fn raise_nofile_limit() -> Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let wanted = WANTED_NOFILE.min(nr_open);
    if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .with_context(|| format!("raising RLIMIT_NOFILE from {soft} to {hard}"))?;
    }
    Ok(hard)
}

/// Local ports the kernel hands out for outgoing connections (net.ipv4.ip_local_port_range).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
            Some(it.next()??.abs_diff(it.next()??) + 1)
        })
        .unwrap_or(28_232)
}

/// This machine's CPUs other than `taken`, in order.
pub fn cpus_besides(taken: &[usize]) -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..cores).filter(|c| !taken.contains(c)).collect()
}

/// Pins the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> Result<()> {
    ensure!(!cpus.is_empty(), "no CPU to pin to");
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).with_context(|| format!("CPU {cpu} is out of range"))?;
    }
    // Pid 0 is the calling thread, not the whole process.
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to CPUs {cpus:?}"))
}

/// The CPU the calling thread is running on right now.
pub fn current_cpu() -> Option<usize> {
    sched_getcpu().ok()
}

/// The time of `clock` (`clock_gettime`): a CPU-time clock of a thread or process, say.
pub fn clock_time(clock: libc::clockid_t) -> std::io::Result<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a timespec that outlives the call; a bad clock id is an error, not UB.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time the calling thread has used (user and system).
pub fn thread_cpu_time() -> Duration {
    clock_time(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

/// A thread's scheduler statistics, from its `/proc/.../schedstat`: time on CPU, time runnable
/// but waiting for a CPU, and how many times it was given one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStat {
    pub oncpu_ns: u64,
    pub run_delay_ns: u64,
    pub timeslices: u64,
}

impl SchedStat {
    /// `None` when the file cannot be read (the thread is gone, or no schedstats).
    pub fn read(path: &std::path::Path) -> Option<SchedStat> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
        let mut next = || fields.next().unwrap_or(0);
        Some(SchedStat {
            oncpu_ns: next(),
            run_delay_ns: next(),
            timeslices: next(),
        })
    }

    /// What happened since `start`, an earlier read of the same thread.
    pub fn since(self, start: SchedStat) -> SchedStat {
        SchedStat {
            oncpu_ns: self.oncpu_ns.saturating_sub(start.oncpu_ns),
            run_delay_ns: self.run_delay_ns.saturating_sub(start.run_delay_ns),
            timeslices: self.timeslices.saturating_sub(start.timeslices),
        }
    }
}

/// Time the calling thread has spent runnable but waiting for a CPU (zero where the kernel
/// keeps no schedstats).
pub fn thread_run_delay() -> Duration {
    SchedStat::read(std::path::Path::new("/proc/thread-self/schedstat"))
        .map_or(Duration::ZERO, |s| Duration::from_nanos(s.run_delay_ns))
}

/// Asks the kernel to fire this thread's timers on time: by default it may delay them by up to
/// 50 us to batch wakeups, which an open-loop client would report as latency.
pub(crate) fn precise_timers() -> Result<()> {
    nix::sys::prctl::set_timerslack(1).context("prctl(PR_SET_TIMERSLACK)")
}

/// `epoll_wait` with a nanosecond timeout (`epoll_pwait2`, Linux 5.11+), so that an open-loop
/// client can send on schedule rather than in 1 ms bursts; falls back to `epoll_wait` with the
/// timeout rounded up to whole milliseconds. `None` waits without limit. EINTR counts as zero
/// events.
pub(crate) fn wait_precise(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    timeout: Option<Duration>,
) -> std::io::Result<usize> {
    let Some(timeout) = timeout else {
        return wait_ms(epoll, events, None);
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: EpollEvent is repr(transparent) over libc::epoll_event, the buffer is valid for
    // events.len() entries for the duration of the call, and ts outlives it.
    let n = unsafe {
        libc::epoll_pwait2(
            epoll.0.as_raw_fd(),
            events.as_mut_ptr().cast(),
            events.len().min(i32::MAX as usize) as libc::c_int,
            &ts,
            std::ptr::null(),
        )
    };
    if n >= 0 {
        return Ok(n as usize);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINTR) => Ok(0),
        Some(libc::ENOSYS) => wait_ms(epoll, events, Some(timeout)),
        _ => Err(err),
    }
}

/// `epoll_wait` with the timeout rounded up to whole milliseconds (never early, so a timer that
/// is due in 0.3 ms does not turn into a busy loop). EINTR counts as zero events.
pub(crate) fn wait_ms(epoll: &Epoll, events: &mut [EpollEvent], timeout: Option<Duration>) -> std::io::Result<usize> {
    let timeout = match timeout {
        None => EpollTimeout::NONE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX)
        }
    };
    match epoll.wait(events, timeout) {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Whether `ip` is an address of this host (in this network namespace): loopback, or held by
/// one of its interfaces. A server at any other address runs on another host.
pub fn is_local_address(ip: std::net::IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    nix::ifaddrs::getifaddrs().is_ok_and(|mut addrs| {
        addrs.any(|a| {
            let Some(address) = a.address else { return false };
            match ip {
                std::net::IpAddr::V4(v4) => address.as_sockaddr_in().is_some_and(|s| s.ip() == v4),
                std::net::IpAddr::V6(v6) => address.as_sockaddr_in6().is_some_and(|s| s.ip() == v6),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::epoll::EpollCreateFlags;
    use std::time::Instant;

    #[test]
    fn precise_wait_times_out_on_time() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let mut events = [EpollEvent::empty(); 4];
        let start = Instant::now();
        assert_eq!(
            wait_precise(&epoll, &mut events, Some(Duration::from_micros(300))).unwrap(),
            0
        );
        assert_eq!(
            wait_ms(&epoll, &mut events, Some(Duration::from_micros(300))).unwrap(),
            0
        );
        let waited = start.elapsed();
        assert!(waited >= Duration::from_micros(1300), "{waited:?}");
        assert!(waited < Duration::from_millis(500), "{waited:?}");
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit() {
        let raised = raise_nofile_limit().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((soft, hard), (raised, raised));
    }

    #[test]
    fn loopback_is_local_and_a_documentation_address_is_not() {
        assert!(is_local_address("127.0.0.1".parse().unwrap()));
        assert!(is_local_address("::1".parse().unwrap()));
        // TEST-NET-3 (RFC 5737): no host has it.
        assert!(!is_local_address("203.0.113.7".parse().unwrap()));
    }
}
