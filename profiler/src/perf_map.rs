//! Names of JIT-compiled code from a process's perf map, `/tmp/perf-PID.map`: one
//! `START SIZE name` line (hexadecimal) per piece of code, as Node's `--perf-basic-prof`, the JVM's
//! `jcmd PID Compiler.perfmap` and CPython 3.12+'s `-X perf` write it and perf reads it.
//!
//! The file is read from the target's own root (`/proc/PID/root/tmp`, under the pid it has in its
//! own namespace), so a process in a container is named too. Writers append as they compile: each
//! refresh reads only what was added, and a file that shrank (rewritten whole) is read again. A
//! later line for the same start wins: the code there was replaced.
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct PerfMap {
    path: Option<PathBuf>,
    /// Bytes read so far, up to the last whole line.
    read_to: u64,
    /// Sorted by start, one entry per start.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    name: String,
}

impl PerfMap {
    /// The perf map of `pid`, read as far as it is written now (empty when there is none).
    pub fn of(pid: u32) -> PerfMap {
        let mut map = PerfMap {
            path: Some(PathBuf::from(format!(
                "/proc/{pid}/root/tmp/perf-{}.map",
                namespace_pid(pid)
            ))),
            ..PerfMap::default()
        };
        map.refresh();
        map
    }

    /// Reads what was written since the last read; keeps what was read when the process is gone.
    pub fn refresh(&mut self) {
        let Some(path) = &self.path else { return };
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return;
        };
        if len < self.read_to {
            // Rewritten whole (jcmd Compiler.perfmap does that): start over.
            self.read_to = 0;
            self.entries.clear();
        }
        if len == self.read_to || file.seek(SeekFrom::Start(self.read_to)).is_err() {
            return;
        }
        let mut text = Vec::new();
        if file.take(len - self.read_to).read_to_end(&mut text).is_err() {
            return;
        }
        // A line being written is left for the next read.
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.read_to += whole as u64;
        self.add(&String::from_utf8_lossy(&text[..whole]));
    }

    fn add(&mut self, text: &str) {
        let before = self.entries.len();
        self.entries.extend(text.lines().filter_map(parse_line));
        if self.entries.len() == before {
            return;
        }
        // Stable: among equal starts the later line stays last, and is the one kept.
        self.entries.sort_by_key(|e| e.start);
        let mut kept: Vec<Entry> = Vec::with_capacity(self.entries.len());
        for entry in self.entries.drain(..) {
            match kept.last_mut() {
                Some(last) if last.start == entry.start => *last = entry,
                _ => kept.push(entry),
            }
        }
        self.entries = kept;
    }

    /// The name of the code at `addr`, if the map has it.
    pub fn find(&self, addr: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.start <= addr).checked_sub(1)?;
        let entry = &self.entries[i];
        (addr < entry.end).then_some(entry.name.as_str())
    }

    /// The start of the code at `addr`, if the map has it.
    pub fn start_of(&self, addr: u64) -> Option<u64> {
        let i = self.entries.partition_point(|e| e.start <= addr).checked_sub(1)?;
        let entry = &self.entries[i];
        (addr < entry.end).then_some(entry.start)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `START SIZE name`, hexadecimal with or without `0x`; the name is the rest of the line.
fn parse_line(line: &str) -> Option<Entry> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    let (start, rest) = line.split_once(' ')?;
    let (size, name) = rest.split_once(' ')?;
    let (start, size) = (hex(start)?, hex(size)?);
    Some(Entry {
        start,
        end: start.checked_add(size)?,
        name: name.trim_end().to_string(),
    })
}

/// The pid `pid` has in its own pid namespace (the last NSpid of /proc/PID/status), which is
/// the one it names its perf map by; `pid` itself where the kernel does not say.
fn namespace_pid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
            line.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_ranges_and_a_later_line_wins() {
        let mut map = PerfMap::default();
        map.add(
            "7f0000001000 40 py::handle:/srv/server.py\n\
             0x3a1c2e04e0 1a4 LazyCompile:*handler /srv/app.js:5\n\
             garbage\n\
             7f0000002000 10 old\n",
        );
        map.add("7f0000002000 20 new name with spaces\n");
        assert_eq!(map.find(0x7f0000001000), Some("py::handle:/srv/server.py"));
        assert_eq!(map.find(0x7f000000103f), Some("py::handle:/srv/server.py"));
        assert_eq!(map.find(0x7f0000001040), None);
        assert_eq!(
            map.find(0x3a1c2e04e0 + 0x1a3),
            Some("LazyCompile:*handler /srv/app.js:5")
        );
        assert_eq!(map.find(0x7f0000002018), Some("new name with spaces"));
        assert_eq!(map.start_of(0x7f0000002018), Some(0x7f0000002000));
        assert_eq!(map.find(1), None);
    }

    #[test]
    fn a_file_is_read_as_it_grows_and_again_when_rewritten() {
        let dir = std::env::temp_dir().join(format!("tcpprof-perfmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("perf.map");
        let mut map = PerfMap {
            path: Some(path.clone()),
            ..PerfMap::default()
        };
        std::fs::write(&path, "1000 10 a\n2000 10 b\n3000 1").unwrap();
        map.refresh();
        assert_eq!(
            (map.find(0x1000), map.find(0x2000), map.find(0x3000)),
            (Some("a"), Some("b"), None)
        );
        std::fs::write(&path, "1000 10 a\n2000 10 b\n3000 10 c\n").unwrap();
        map.refresh();
        assert_eq!(map.find(0x3000), Some("c"), "the line finished since");
        std::fs::write(&path, "1000 10 z\n").unwrap();
        map.refresh();
        assert_eq!((map.find(0x1000), map.find(0x2000)), (Some("z"), None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
