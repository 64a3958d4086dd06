//! A small loopback workload with known syscall counts, run as a child process so that its
//! syscalls (and only its) can be profiled: `cargo xtask run`'s demo and the eBPF tests use it.
use anyhow::{Context, Result, ensure};
use owned_child::OwnedChild;
use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};

/// The calls [`run`] makes itself, per class. The process's runtime may add a few more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnCalls {
    pub accept: u64,
    pub read: u64,
    pub write: u64,
}

/// Message size of the workload's writes: small enough that each arrives in one read.
pub const MESSAGE: usize = 64;

pub fn own_calls(connections: u64, messages: u64) -> OwnCalls {
    OwnCalls {
        accept: connections,
        // Per message: the server reads the request, the client reads the echo.
        read: 2 * connections * messages,
        write: 2 * connections * messages,
    }
}

/// Opens `connections` connections to itself on 127.0.0.1, one after another, and on each echoes
/// `messages` messages of [`MESSAGE`] bytes with blocking calls: exactly one accept per
/// connection and one read and one write per message on each side.
pub fn run(connections: u64, messages: u64) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let request = [b'x'; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    for _ in 0..connections {
        let mut client = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        let (mut server, _) = listener.accept().context("accept")?;
        for _ in 0..messages {
            ensure!(client.write(&request)? == MESSAGE, "short write to the server");
            ensure!(server.read(&mut buf)? == MESSAGE, "short read in the server");
            ensure!(server.write(&buf)? == MESSAGE, "short write to the client");
            ensure!(client.read(&mut buf)? == MESSAGE, "short read in the client");
        }
    }
    Ok(())
}

/// The child's side of the handshake with its profiler: wait for a line on stdin (sent once the
/// programs are attached), run, print `done`, then wait for stdin to close so that the profiler
/// reads the totals while the process still exists.
pub fn run_as_child(connections: u64, messages: u64) -> Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line).context("waiting for the go line")?;
    run(connections, messages)?;
    println!("done");
    std::io::stdout().flush()?;
    line.clear();
    stdin.read_line(&mut line)?;
    Ok(())
}

/// A workload child process, held between the profiler's attach and its read of the totals.
pub struct Child {
    child: OwnedChild,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Child {
    /// Starts `exe workload --connections C --messages M` (the tcpprof binary); it idles until
    /// [`Child::go`].
    pub fn spawn(exe: &std::path::Path, connections: u64, messages: u64) -> Result<Child> {
        // Killed on drop: on an early return it may still wait for its go line.
        let mut child = OwnedChild::spawn(
            std::process::Command::new(exe)
                .args(["workload", "--connections", &connections.to_string()])
                .args(["--messages", &messages.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped()),
        )
        .with_context(|| format!("starting {} workload", exe.display()))?;
        let stdin = child.take_stdin();
        let stdout = std::io::BufReader::new(child.take_stdout().expect("stdout is piped"));
        Ok(Child { child, stdin, stdout })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the workload run and waits until it has made all its calls.
    pub fn run_to_done(&mut self) -> Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        stdin.write_all(b"go\n").context("starting the workload")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).context("waiting for the workload")?;
        ensure!(line.trim() == "done", "workload failed (said {line:?})");
        Ok(())
    }

    /// Lets the process exit and checks that it succeeded.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().context("waiting for the workload to exit")?;
        ensure!(status.success(), "workload exited with {status}");
        Ok(())
    }
}

/// Runs the workload in a child of `exe`, profiled from before its first call to after its last.
pub fn profile(
    exe: &std::path::Path,
    connections: u64,
    messages: u64,
    options: &crate::ProfileOptions,
) -> Result<crate::Report> {
    let mut child = Child::spawn(exe, connections, messages)?;
    let session = crate::Session::attach(&[child.pid()], options)?;
    child.run_to_done()?;
    let report = session.finish(None)?;
    child.finish()?;
    Ok(report)
}
