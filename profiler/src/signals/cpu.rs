//! The server's CPU use, from what any process may read about another: its process CPU clock
//! (every thread's time, exited threads included, in ns), each live thread's schedstat, and the
//! CPUs it may run on.
use bench::sys::SchedStat;
use std::collections::HashMap;
use std::io;

/// CPU time of all of `pid`'s threads so far, exited ones included.
pub fn process_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: a plain call with a valid out-pointer.
    let err = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(bench::sys::clock_time(clock)?.as_nanos() as u64)
}

/// Every live thread of `pids`, by tid (a thread that exits while they are read is left out).
pub fn thread_stats(pids: &[u32]) -> HashMap<u32, SchedStat> {
    let mut out = HashMap::new();
    for &pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.filter_map(Result::ok) {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if let Some(stat) = SchedStat::read(&task.path().join("schedstat")) {
                out.insert(tid, stat);
            }
        }
    }
    out
}

/// What each thread alive at the end did since the start (a thread born since counts from zero).
pub fn thread_deltas(start: &HashMap<u32, SchedStat>, end: &HashMap<u32, SchedStat>) -> Vec<SchedStat> {
    end.iter()
        .map(|(tid, &now)| now.since(start.get(tid).copied().unwrap_or_default()))
        .collect()
}

/// The CPUs `pid` may run on (its main thread's affinity).
pub fn allowed_cpus(pid: u32) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    if unsafe { libc::sched_getaffinity(pid as libc::pid_t, size, &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_our_own_cpu() {
        let pid = std::process::id();
        let before = process_cpu_ns(pid).unwrap();
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        let used = process_cpu_ns(pid).unwrap() - before;
        assert!(used >= 20_000_000, "{used} ns");
        assert!(!allowed_cpus(pid).unwrap().is_empty());
        let threads = thread_stats(&[pid]);
        assert!(
            threads.values().any(|t| t.oncpu_ns > 0 && t.timeslices > 0),
            "{threads:?}"
        );
        // A process that is gone has no clock.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        assert!(process_cpu_ns(gone).is_err());
    }
}
