//! What the profiler reads of other processes in /proc: names, parents, whether they still run.

/// A process's command name (/proc/PID/comm).
pub fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// Whether `pid` still runs: it exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    stat_after_comm(pid).is_some_and(|rest| rest.split_whitespace().next() != Some("Z"))
}

/// The processes whose parent is `pid` (a prefork server's or nginx's workers).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    stat_after_comm(pid)?.split_whitespace().nth(1)?.parse().ok()
}

/// /proc/PID/stat after its `(comm)` field: "state ppid ...". The name may hold spaces and
/// parentheses, so the fields start after the last `)`.
fn stat_after_comm(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit_once(')')?.1.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_and_its_child() {
        let me = std::process::id();
        assert!(super::is_alive(me));
        assert!(super::comm(me).is_some_and(|c| !c.is_empty()));
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(super::children(me).contains(&child.id()));
        child.kill().unwrap();
        // Killed but not reaped: a zombie has exited.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!super::is_alive(child.id()));
        child.wait().unwrap();
        assert!(!super::is_alive(child.id()));
    }
}
