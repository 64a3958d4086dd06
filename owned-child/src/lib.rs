//! A child process that never outlives the value owning it: servers the benchmarks start, peers
//! the tests start, tools the benchmarks run. On drop it is signalled (SIGKILL unless told
//! otherwise) and reaped; one started in a process group of its own takes its whole group with it,
//! so that what it started (nginx's workers, a prefork server's) goes too.

use std::io;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a child stopped with a signal other than SIGKILL has to exit.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct OwnedChild {
    /// `None` once moved out by [`OwnedChild::wait_with_output`].
    child: Option<Child>,
    pid: u32,
    /// Once it has been waited for: nothing left to stop.
    exited: Option<ExitStatus>,
    /// It leads a process group of its own: signal the group.
    group: bool,
    /// Sent on drop.
    signal: libc::c_int,
}

impl OwnedChild {
    /// Starts `command`.
    pub fn spawn(command: &mut Command) -> io::Result<OwnedChild> {
        Ok(OwnedChild::from(command.spawn()?))
    }

    /// Starts `command` as the leader of a new process group, stopped with the whole group.
    pub fn spawn_group(command: &mut Command) -> io::Result<OwnedChild> {
        use std::os::unix::process::CommandExt;
        let mut owned = OwnedChild::from(command.process_group(0).spawn()?);
        owned.group = true;
        Ok(owned)
    }

    /// Stops it with `signal` rather than SIGKILL (SIGINT lets `perf record` write its data).
    pub fn stopped_with(mut self, signal: libc::c_int) -> OwnedChild {
        self.signal = signal;
        self
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn has_exited(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none()
            && let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.exited_with(status);
        }
        Ok(self.exited)
    }

    /// Waits at most `limit` for it to exit by itself: its status, or `None` if it still runs.
    pub fn wait_timeout(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.has_exited()?;
            if status.is_some() || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for it to exit by itself.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.as_mut().ok_or_else(moved_out)?.wait()?;
        self.exited_with(status);
        Ok(status)
    }

    /// Waits for it to exit by itself, collecting its piped output.
    pub fn wait_with_output(mut self) -> io::Result<std::process::Output> {
        let output = self.child.take().ok_or_else(moved_out)?.wait_with_output()?;
        self.exited_with(output.status);
        Ok(output)
    }

    /// Stops it now (see the type's documentation) and reaps it. A child stopped with a gentler
    /// signal than SIGKILL gets [`GRACE`] to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited.is_some() || self.child.is_none() {
            return;
        }
        self.signal(self.signal);
        if self.signal != libc::SIGKILL {
            if let Ok(Some(_)) = self.wait_timeout(GRACE) {
                return;
            }
            self.signal(libc::SIGKILL);
        }
        if let Some(status) = self.child.as_mut().and_then(|c| c.wait().ok()) {
            self.exited_with(status);
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if self.group {
            signal_group(self.pid, signal);
        } else {
            // SAFETY: signalling our own child, not reaped yet, so its pid is still its own.
            unsafe { libc::kill(self.pid as libc::pid_t, signal) };
        }
    }

    /// The leader has exited: what is left of its group (a worker it forked) goes too.
    fn exited_with(&mut self, status: ExitStatus) {
        self.exited = Some(status);
        if self.group {
            signal_group(self.pid, libc::SIGKILL);
        }
    }
}

impl From<Child> for OwnedChild {
    fn from(child: Child) -> OwnedChild {
        OwnedChild {
            pid: child.id(),
            child: Some(child),
            exited: None,
            group: false,
            signal: libc::SIGKILL,
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: signalling the process group our child leads (or led: a group's id is not reused
    // while a member lives).
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) };
}

fn moved_out() -> io::Error {
    io::Error::other("the child process was already waited for with its output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry: read its state.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
            .unwrap_or(false)
    }

    fn gone_within(pid: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !alive(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_dropped_child_and_its_group_are_gone() {
        // A shell that starts a grandchild, as nginx starts its workers, and prints its pid.
        let mut leader = OwnedChild::spawn_group(
            Command::new("sh")
                .args(["-c", "sleep 60 & echo $!; wait"])
                .stdout(std::process::Stdio::piped()),
        )
        .unwrap();
        let mut out = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(leader.take_stdout().unwrap())
            .read_line(&mut out)
            .unwrap();
        let grandchild: u32 = out.trim().parse().unwrap();
        let pid = leader.id();
        assert!(alive(pid) && alive(grandchild));
        drop(leader);
        assert!(gone_within(pid) && gone_within(grandchild));
    }

    #[test]
    fn a_child_that_exits_is_waited_for() {
        let mut child = OwnedChild::spawn(&mut Command::new("true")).unwrap();
        assert!(child.wait().unwrap().success());
        let out = OwnedChild::spawn(Command::new("echo").arg("hi").stdout(std::process::Stdio::piped()))
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }
}
