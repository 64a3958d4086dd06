//! Programs of the user's that tcpprof starts: a server for a benchmark (`bench --exec`), run until
//! it listens and stopped after the load, and a command to profile from its first instruction
//! (`profile -- CMD`). Neither outlives tcpprof's use of it: each runs in a process group of its
//! own (a server) or ours (a command, so that Ctrl-C reaches it as it would without us), and is
//! stopped with SIGTERM, then SIGKILL after a grace period, on every path.
use anyhow::{Context, Result, bail, ensure};
use owned_child::OwnedChild;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A program by name, as the shell finds it: a path as given, or the first match on PATH.
pub fn find_program(program: &str) -> Result<PathBuf> {
    ensure!(!program.is_empty(), "no command given");
    if program.contains('/') {
        let path = PathBuf::from(program);
        ensure!(path.is_file(), "command not found: {program}");
        return Ok(path);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
        .with_context(|| format!("command not found: {program}"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What naming a program's functions needs from how it is started: CPython 3.12+ writes its perf
/// map when PYTHONPERFSUPPORT is set (set here, unless the caller set it); Node only with a flag
/// of its own (said here). The environment to add, and a note for the user.
pub fn naming(program: &Path, args: &[String]) -> (Vec<(&'static str, &'static str)>, Option<String>) {
    let name = program
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    if name.starts_with("python") {
        if std::env::var_os("PYTHONPERFSUPPORT").is_some() {
            return (Vec::new(), None);
        }
        return match python_minor(program) {
            Some(minor) if minor >= 12 => (vec![("PYTHONPERFSUPPORT", "1")], None),
            Some(minor) => (
                Vec::new(),
                Some(format!(
                    "{name} is CPython 3.{minor}, which cannot name its Python functions to a profiler (no perf \
                     trampolines before 3.12): its stacks show the interpreter's C functions"
                )),
            ),
            None => (Vec::new(), None),
        };
    }
    let flagged = args
        .iter()
        .any(|a| a.starts_with("--perf-basic-prof") || a.starts_with("--perf-prof"));
    if name.starts_with("node") && !flagged {
        return (
            Vec::new(),
            Some(format!(
                "{name}: start it with --perf-basic-prof to have its JavaScript functions named (JIT code is \
                 otherwise [jit])"
            )),
        );
    }
    (Vec::new(), None)
}

/// CPython 3's minor version, asked of the interpreter itself.
fn python_minor(program: &Path) -> Option<u32> {
    let out = Command::new(program)
        .args([
            "-c",
            "import sys; print(sys.version_info[1] if sys.version_info[0] == 3 else '')",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The perf map a CPython we started with PYTHONPERFSUPPORT writes (and never removes): removed
/// once the profile has read it and the process is stopped. The user asked for a profile, not for
/// a file in /tmp per run.
struct OwnPerfMap(Option<PathBuf>);

impl OwnPerfMap {
    fn of(pid: u32, env: &[(&str, &str)]) -> OwnPerfMap {
        OwnPerfMap((!env.is_empty()).then(|| PathBuf::from(format!("/tmp/perf-{pid}.map"))))
    }
}

impl Drop for OwnPerfMap {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The last lines a program wrote (stdout and stderr), for an error that says why it failed.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    const LINES: usize = 20;
    const LINE_BYTES: usize = 300;
    const PIECE_BYTES: u64 = 4096;

    /// Reads `from` to its end on a thread of its own, keeping the last lines.
    fn keep(&self, from: impl Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut line = Vec::new();
            // A line without an end is kept in pieces, not held whole.
            while (&mut reader)
                .take(Self::PIECE_BYTES)
                .read_until(b'\n', &mut line)
                .is_ok_and(|n| n > 0)
            {
                let mut text = String::from_utf8_lossy(&line).trim_end().to_string();
                text.truncate(text.floor_char_boundary(Self::LINE_BYTES));
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() == Self::LINES {
                    lines.pop_front();
                }
                lines.push_back(text);
                line.clear();
            }
        });
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.is_empty() {
            return "(it printed nothing)".into();
        }
        lines.iter().map(|l| format!("  | {l}\n")).collect()
    }
}

/// A server of the user's, started for a run (`bench --exec`). Dropping it stops it and every
/// process it started.
pub struct Server {
    child: OwnedChild,
    command: String,
    output: Tail,
    /// Dropped after the child is stopped.
    _perf_map: OwnPerfMap,
}

/// How long a started server has to accept connections before it is given up on.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`Server::start`] starts a server.
pub struct How<'a> {
    /// It will be profiled: start it as naming its functions needs ([`naming`]).
    pub profiled: bool,
    /// The CPUs it (and every thread and process it starts) may run on.
    pub cpus: Option<&'a [usize]>,
    /// How long it has to accept connections.
    pub timeout: Duration,
    /// Set (Ctrl-C) to give up waiting.
    pub stop: Option<&'a AtomicBool>,
}

impl Server {
    /// Starts `command` (a program and its arguments) as `how` says and waits until `addr`
    /// accepts a connection. Refused when something listens on `addr` already; an error naming
    /// the command and quoting the end of its output when it exits first, does not listen in
    /// time, or is interrupted while it starts.
    pub fn start(command: &[String], addr: SocketAddr, how: &How) -> Result<Server> {
        let (program, args) = command.split_first().context("--exec: no command given")?;
        let path = find_program(program).context("--exec")?;
        let shown = shell_words(command);
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let holders = crate::signals::listen::processes_listening_on(addr.port()).unwrap_or_default();
            let holders: Vec<String> = holders
                .iter()
                .map(|&pid| format!("{pid} ({})", crate::procfs::comm(pid).unwrap_or_default()))
                .collect();
            bail!(
                "--exec: {addr} already accepts connections (pid {}), so `{shown}` could not serve it; stop that \
                 server, or drop --exec to load it",
                holders.join(", ")
            );
        }
        let (env, note) = if how.profiled {
            naming(&path, args)
        } else {
            Default::default()
        };
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cpus) = how.cpus {
            pin(&mut cmd, cpus)?;
        }
        let mut child = OwnedChild::spawn_group(&mut cmd)
            .with_context(|| format!("--exec: starting `{shown}`"))?
            .stopped_with(libc::SIGTERM);
        let output = Tail::default();
        if let Some(out) = child.take_stdout() {
            output.keep(out);
        }
        if let Some(err) = child.take_stderr() {
            output.keep(err);
        }
        let perf_map = OwnPerfMap::of(child.id(), &env);
        let mut server = Server {
            child,
            command: shown,
            output,
            _perf_map: perf_map,
        };
        server.wait_listening(addr, how.timeout, how.stop)?;
        Ok(server)
    }

    fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration, stop: Option<&AtomicBool>) -> Result<()> {
        let started = Instant::now();
        loop {
            if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                bail!("--exec: interrupted while `{}` was starting", self.command);
            }
            if let Some(status) = self.child.has_exited()? {
                // Its last words may still be in the pipe.
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "--exec: `{}` exited ({status}) before it listened on {addr}; its last output:\n{}",
                    self.command,
                    self.output.text()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                bail!(
                    "--exec: `{}` did not accept connections on {addr} within {} s; its last output:\n{}",
                    self.command,
                    timeout.as_secs(),
                    self.output.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, if it has during the run (it serves until stopped).
    pub fn exit(&mut self) -> Option<String> {
        let status = self.child.has_exited().ok()??;
        Some(format!(
            "`{}` exited during the run ({status}); its last output:\n{}",
            self.command,
            self.output.text()
        ))
    }
}

/// A command started for `profile -- CMD`, held before its program runs until [`Gated::release`]:
/// its pid is known and attached to first, so the profile sees it from its first instruction.
/// It runs as a `tcpprof` child that waits for a byte on a pipe, then execs the command (same
/// pid). Dropping it stops the command.
pub struct Gated {
    child: OwnedChild,
    gate: Option<std::fs::File>,
    pub program: PathBuf,
    /// Dropped after the child is stopped.
    _perf_map: OwnPerfMap,
}

/// The variable that tells the gated child which descriptor to read its go byte from.
const GATE_FD: &str = "TCPPROF_GATE_FD";

impl Gated {
    /// `tcpprof` (`exe`) started as `exec-gated -- CMD ARGS`, waiting.
    pub fn start(exe: &Path, command: &[String]) -> Result<Gated> {
        let (program, args) = command.split_first().context("no command given after --")?;
        let path = find_program(program)?;
        let (env, note) = naming(&path, args);
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        let (read, write) = std::io::pipe().context("making the start gate")?;
        let read = OwnedFd::from(read);
        let read_fd = read.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg("exec-gated")
            .arg("--")
            .arg(&path)
            .args(args)
            .envs(env.iter().copied())
            .env(GATE_FD, read_fd.to_string());
        // SAFETY: fcntl is async-signal-safe; the child keeps the read end open across its exec,
        // and nothing else changes.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::fcntl(read_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = OwnedChild::spawn(&mut cmd)
            .with_context(|| format!("starting `{}`", shell_words(command)))?
            .stopped_with(libc::SIGTERM);
        drop(read);
        Ok(Gated {
            _perf_map: OwnPerfMap::of(child.id(), &env),
            child,
            gate: Some(std::fs::File::from(OwnedFd::from(write))),
            program: path,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the command run.
    pub fn release(&mut self) -> Result<()> {
        let mut gate = self.gate.take().context("released twice")?;
        gate.write_all(b"1").context("starting the command")
    }

    /// Its exit status, once it has exited.
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.has_exited().ok().flatten()
    }

    /// Stops it (SIGTERM, then SIGKILL after the grace period) if it still runs.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// The gated child's side (`tcpprof exec-gated -- PROGRAM ARGS`): waits for the go byte, then
/// becomes the program. Returns only on failure.
pub fn exec_gated(command: &[String]) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return anyhow::anyhow!("no command given");
    };
    let Some(fd) = std::env::var(GATE_FD).ok().and_then(|fd| fd.parse::<i32>().ok()) else {
        return anyhow::anyhow!("exec-gated is tcpprof's own: {GATE_FD} is not set");
    };
    // SAFETY: Gated::start left this descriptor open for this process alone.
    let mut gate = std::fs::File::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    let mut go = [0u8; 1];
    if gate.read_exact(&mut go).is_err() {
        // The profiler gave up (it could not attach): run nothing.
        std::process::exit(1);
    }
    drop(gate);
    let e = Command::new(program).args(args).env_remove(GATE_FD).exec();
    anyhow::anyhow!("{program}: {e}")
}

/// Starts `cmd` on `cpus` only: its affinity, which every thread and process it starts inherits.
fn pin(cmd: &mut Command, cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO and CPU_SET only write into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        ensure!(cpu < libc::CPU_SETSIZE as usize, "CPU {cpu} is out of range");
        // SAFETY: in range, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity is async-signal-safe and `set` was built before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// A command line as one would type it, for messages.
pub fn shell_words(command: &[String]) -> String {
    command
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_the_shell_finds_them() {
        assert!(find_program("sh").unwrap().ends_with("sh"));
        let missing = find_program("no-such-program-here").unwrap_err().to_string();
        assert_eq!(missing, "command not found: no-such-program-here");
        assert!(
            find_program("/no/such/path")
                .unwrap_err()
                .to_string()
                .contains("/no/such/path")
        );
    }

    fn quick(timeout: Duration) -> How<'static> {
        How {
            profiled: false,
            cpus: None,
            timeout,
            stop: None,
        }
    }

    #[test]
    fn a_server_that_exits_at_start_is_an_error_with_its_last_words() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let command: Vec<String> = ["sh", "-c", "echo starting; echo 'bad config' >&2; exit 3"]
            .map(String::from)
            .to_vec();
        let e = Server::start(&command, addr, &quick(Duration::from_secs(5)))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exited") && e.contains("exit status: 3"), "{e}");
        assert!(e.contains("bad config") && e.contains("starting"), "{e}");
    }

    #[test]
    fn a_server_that_never_listens_is_given_up_and_stopped() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let command: Vec<String> = ["sh", "-c", "echo $$; exec sleep 60"].map(String::from).to_vec();
        let e = Server::start(&command, addr, &quick(Duration::from_millis(500)))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("did not accept connections on 127.0.0.1:9"), "{e}");
        let pid: u32 = e
            .lines()
            .find_map(|l| l.trim_start_matches("  | ").parse().ok())
            .unwrap();
        assert!(!crate::procfs::is_alive(pid), "the server {pid} was left running");
    }

    #[test]
    fn commands_are_shown_as_typed() {
        let words = ["python3", "-c", "print('hi')", "a b"].map(String::from);
        assert_eq!(shell_words(&words), r#"python3 -c 'print('\''hi'\'')' 'a b'"#);
    }
}
