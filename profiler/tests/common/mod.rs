//! Shared by the eBPF test binaries.
#![allow(dead_code)] // each test binary uses a different subset
use owned_child::OwnedChild;
use profiler::{Mode, ProfileOptions, Requested};

/// The eBPF mode the tests profile in: `TCPPROF_TEST_MODE=kprobe|tracepoint`, tracepoint when
/// unset. `cargo xtask vm-test` runs them in kprobe mode on a kernel that has kprobes; asking for
/// kprobe on one without fails the tests rather than falling back.
pub fn test_mode() -> Mode {
    match std::env::var("TCPPROF_TEST_MODE").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("tracepoint") => Mode::Tracepoint,
        Ok("kprobe") => Mode::Kprobe,
        other => panic!("TCPPROF_TEST_MODE={other:?}: expected kprobe or tracepoint"),
    }
}

pub fn requested() -> Requested {
    Requested::Only(test_mode())
}

/// Profiling in the test mode, nothing else.
pub fn options() -> ProfileOptions {
    ProfileOptions {
        mode: requested(),
        ..ProfileOptions::default()
    }
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs and need root: run `sudo -E cargo xtask test`"
    );
}

/// A program the tests start (a peer server, a load tool), killed with everything it started
/// (nginx's workers: one outlives a SIGKILLed master and keeps its port) and reaped on drop.
pub struct Peer(pub OwnedChild);

impl Peer {
    /// Starts `program` with `args` in a process group of its own, its output discarded; fails
    /// loudly when it is not installed.
    pub fn start(program: &str, args: &[&str]) -> Peer {
        let child = OwnedChild::spawn_group(
            std::process::Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .unwrap_or_else(|e| panic!("starting {program} ({e}): `cargo xtask test` installs it from Debian"));
        Peer(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port` (at most 10 s).
pub fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 10 s");
}

/// Runs a load tool to completion and returns its stdout; fails loudly when it fails.
pub fn run_to_end(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} ({e}): `cargo xtask test` installs it from Debian"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tcpprof-test-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tcpprof profile --pid PID --duration SECS --json`.
pub fn profile_json(pid: &str, duration: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tcpprof"));
    command.args(["profile", "--pid", pid, "--duration", duration, "--json"]);
    command
}

/// Debian's redis-server on a free loopback port, persisting nothing.
pub fn redis() -> (Peer, u16) {
    let port = free_port();
    let redis = Peer::start(
        "redis-server",
        &[
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    wait_for_port(port);
    (redis, port)
}

/// Debian's nginx, one worker, serving /index.html (1 KiB of `x`) on a free loopback port; the
/// directory holds its configuration and files while it runs.
pub fn nginx() -> (Peer, u16, TempDir) {
    let dir = TempDir::new("nginx");
    let port = free_port();
    std::fs::create_dir_all(dir.0.join("html")).unwrap();
    std::fs::write(dir.0.join("html/index.html"), "x".repeat(1024)).unwrap();
    let conf = dir.0.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; user root; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {dir}/html; }} }}\n",
            dir = dir.0.display()
        ),
    )
    .unwrap();
    let nginx = Peer::start(
        "nginx",
        &["-c", &conf.to_string_lossy(), "-p", &dir.0.to_string_lossy()],
    );
    wait_for_port(port);
    (nginx, port, dir)
}
