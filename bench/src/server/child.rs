//! Runs a `bench-server` as a child process, so that its threads can be profiled on their own
//! and so that it is stopped with the benchmark that started it, even when that fails.

use super::Model;
use super::selftime::SelfTimes;
use anyhow::{Context, Result, anyhow, bail};
use owned_child::OwnedChild;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `bench-server`; killed and reaped on drop (SIGKILL: the servers hold no state worth
/// a graceful stop, and a wedged server must not outlive the benchmark).
#[derive(Debug)]
pub struct ServerChild {
    child: OwnedChild,
    addr: SocketAddr,
    /// With self-timing: the server's stdin, and its stdout lines after `listening on`.
    control: Option<(ChildStdin, mpsc::Receiver<String>)>,
}

impl ServerChild {
    /// Where the server listens (always a concrete port, never 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the server ended, if it has (it serves until killed: any exit is news).
    pub fn exit(&mut self) -> Option<String> {
        let status = self.child.has_exited().ok()??;
        Some(format!("the server exited during the run ({status})"))
    }

    /// Starts, or restarts from zero, the server's self-timing (started with [`spawn_self_timed`]).
    pub fn reset_self_times(&mut self) -> Result<()> {
        self.control_ok("reset")
    }

    /// Stops the server's self-timing; its steps then cost no clock reads.
    pub fn stop_self_times(&mut self) -> Result<()> {
        self.control_ok("stop")
    }

    /// What the server measured of itself since the last reset.
    pub fn self_times(&mut self) -> Result<SelfTimes> {
        let answer = self.control("stats")?;
        serde_json::from_str(&answer).with_context(|| format!("server answered {answer:?} to stats"))
    }

    fn control_ok(&mut self, command: &str) -> Result<()> {
        let answer = self.control(command)?;
        anyhow::ensure!(answer == "ok", "server answered {answer:?} to {command}");
        Ok(())
    }

    fn control(&mut self, command: &str) -> Result<String> {
        let (stdin, lines) = self
            .control
            .as_mut()
            .context("the server was not started with self-timing")?;
        writeln!(stdin, "{command}").context("writing to the server's stdin")?;
        lines
            .recv_timeout(STARTUP_TIMEOUT)
            .with_context(|| format!("no answer to {command:?} from the server"))
    }
}

/// Which bench-server to start, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub model: Model,
    /// Pin the server (all its threads) to these CPUs.
    pub cpus: Option<Vec<usize>>,
    /// Listen backlog; default [`super::DEFAULT_BACKLOG`]. The kernel caps it at
    /// `net.core.somaxconn`.
    pub backlog: Option<u32>,
}

impl ServerSpec {
    pub fn new(model: Model) -> ServerSpec {
        ServerSpec {
            model,
            cpus: None,
            backlog: None,
        }
    }
}

impl From<Model> for ServerSpec {
    fn from(model: Model) -> ServerSpec {
        ServerSpec::new(model)
    }
}

/// Starts `exe --model <model> --addr 127.0.0.1:0 [--cpus ...] [--backlog N]` (the
/// `bench-server` binary) and waits for it to listen.
pub fn spawn_child(exe: &Path, spec: &ServerSpec) -> Result<ServerChild> {
    spawn(exe, spec, false)
}

/// [`spawn_child`] with `--self-timing`: after [`ServerChild::reset_self_times`] the server
/// times its own steps (userspace profiling mode) and answers [`ServerChild::self_times`].
pub fn spawn_self_timed(exe: &Path, spec: &ServerSpec) -> Result<ServerChild> {
    anyhow::ensure!(
        !spec.model.forks_workers(),
        "{} serves from worker processes, which cannot report self-timing",
        spec.model
    );
    spawn(exe, spec, true)
}

fn spawn(exe: &Path, spec: &ServerSpec, self_timing: bool) -> Result<ServerChild> {
    let model = spec.model;
    let mut command = Command::new(exe);
    command.args(["--model", model.name(), "--addr", "127.0.0.1:0"]);
    if self_timing {
        command.arg("--self-timing");
    }
    if let Some(cpus) = &spec.cpus {
        let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
        command.args(["--cpus", &list.join(",")]);
    }
    if let Some(backlog) = spec.backlog {
        command.args(["--backlog", &backlog.to_string()]);
    }
    // SAFETY: prctl and sigaction are async-signal-safe. PDEATHSIG makes the kernel kill the
    // server when the thread that started it dies, so a SIGKILLed benchmark never leaves a server
    // behind; callers start servers from a thread that outlives them (the node's benchmark
    // thread, a CLI's main). SIGINT ignored (it stays so across exec): a terminal's Ctrl-C goes
    // to the whole foreground group, and the benchmark, not the server, decides how a run ends.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            if libc::sigaction(libc::SIGINT, &ignore, std::ptr::null_mut()) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let stdin = if self_timing { Stdio::piped() } else { Stdio::null() };
    let mut child = OwnedChild::spawn(command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::inherit()))
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.take_stdout().context("the child's stdout")?;
    let stdin = child.take_stdin();
    // From here on, dropping `server` stops the child, whatever goes wrong.
    let mut server = ServerChild {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        control: None,
    };
    let (addr, lines) = read_listening_line(stdout)
        .with_context(|| format!("waiting for {} --model {model} to listen", exe.display()))?;
    server.addr = addr;
    server.control = stdin.map(|stdin| (stdin, lines));
    Ok(server)
}

/// Reads the first stdout line on a helper thread (a pipe read cannot time out), then keeps
/// reading stdout there so that the server never blocks on a full pipe; the later lines (answers
/// to control commands) come out of the returned channel.
fn read_listening_line(stdout: std::process::ChildStdout) -> Result<(SocketAddr, mpsc::Receiver<String>)> {
    let (tx, rx) = mpsc::channel();
    let (line_tx, lines) = mpsc::channel();
    std::thread::Builder::new()
        .name("server-stdout".into())
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            for line in reader.lines() {
                let Ok(line) = line else { return };
                // Nobody listening (no self-timing): keep draining.
                let _ = line_tx.send(line);
            }
        })
        .context("starting the stdout reader thread")?;
    let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
        Ok(line) => line.context("reading the server's stdout")?,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            bail!("no `listening on` line in {STARTUP_TIMEOUT:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the stdout reader thread died"),
    };
    Ok((parse_listening_line(&line)?, lines))
}

fn parse_listening_line(line: &str) -> Result<SocketAddr> {
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow!("expected `listening on ADDR`, got {line:?}"))?;
    addr.parse().with_context(|| format!("bad address in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let addr = parse_listening_line("listening on 127.0.0.1:4242\n").unwrap();
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 4242)));
        assert!(parse_listening_line("").is_err());
        assert!(parse_listening_line("listening on nowhere\n").is_err());
    }

    #[test]
    fn a_child_that_never_listens_is_an_error() {
        // `true` exits at once without printing: EOF, not a hang.
        let err = spawn_child(Path::new("true"), &Model::Epoll.into()).unwrap_err();
        assert!(format!("{err:#}").contains("listening on"), "{err:#}");
    }
}
