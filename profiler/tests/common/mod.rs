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

/// Tests that attach programs hold this shared, and a test that counts this process's eBPF and
/// perf descriptors holds it alone: a session attaching in another test (whose first exact-mode
/// attach also measures the tracing cost with programs of its own, loaded and closed) would move
/// the count under it.
static SESSIONS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a test that attaches (needs root).
#[allow(dead_code)]
pub fn attaching() -> std::sync::RwLockReadGuard<'static, ()> {
    require_root();
    SESSIONS.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// For a test that counts this process's descriptors (needs root).
#[allow(dead_code)]
pub fn counting() -> std::sync::RwLockWriteGuard<'static, ()> {
    require_root();
    SESSIONS.write().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        Peer::start_in(std::path::Path::new("."), program, args)
    }

    /// [`Peer::start`] in directory `cwd`, where it leaves what it writes there (Node's
    /// `--perf-basic-prof` writes a V8 log per isolate into its working directory).
    pub fn start_in(cwd: &std::path::Path, program: &str, args: &[&str]) -> Peer {
        let child = OwnedChild::spawn_group(
            std::process::Command::new(program)
                .args(args)
                .current_dir(cwd)
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
    let (dir, port) = nginx_config("nginx");
    let args = nginx_args(&dir);
    let nginx = Peer::start("nginx", &args.each_ref().map(String::as_str));
    wait_for_port(port);
    (nginx, port, dir)
}

/// A directory with an nginx configuration (in the foreground, one worker, no logs) serving
/// /index.html (1 KiB of `x`) on a free loopback port.
pub fn nginx_config(what: &str) -> (TempDir, u16) {
    let dir = TempDir::new(what);
    let port = free_port();
    std::fs::create_dir_all(dir.0.join("html")).unwrap();
    std::fs::create_dir_all(dir.0.join("logs")).unwrap();
    std::fs::write(dir.0.join("html/index.html"), "x".repeat(1024)).unwrap();
    std::fs::write(
        dir.0.join("nginx.conf"),
        format!(
            "daemon off; worker_processes 1; user root; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {dir}/html; }} }}\n",
            dir = dir.0.display()
        ),
    )
    .unwrap();
    (dir, port)
}

/// nginx's arguments for the configuration in `dir`.
pub fn nginx_args(dir: &TempDir) -> [String; 4] {
    let conf = dir.0.join("nginx.conf");
    [
        "-c".into(),
        conf.to_string_lossy().into(),
        "-p".into(),
        dir.0.to_string_lossy().into(),
    ]
}

/// nginx as a user builds it from its source (`./configure && make`: symbols kept, no frame
/// pointers), which `cargo xtask test` builds from Debian's source of the packaged version and
/// names in TCPPROF_SOURCE_NGINX. Debian's own binary has its static functions stripped
/// (ngx_worker_process_cycle among them).
pub fn source_nginx() -> String {
    let path = std::env::var("TCPPROF_SOURCE_NGINX").unwrap_or_else(|_| {
        panic!("TCPPROF_SOURCE_NGINX is not set: `cargo xtask test` builds nginx from source and sets it")
    });
    assert!(
        std::path::Path::new(&path).is_file(),
        "TCPPROF_SOURCE_NGINX={path}: no such file"
    );
    path
}

/// A server script of the tests' own (profiler/tests/servers).
pub fn server_script(name: &str) -> String {
    format!("{}/tests/servers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// CPython 3.12 or later (perf trampolines, `-X perf`), found as a user would find it: python3.N
/// on PATH, else under pyenv's versions ($PYENV_ROOT, or ~/.pyenv), newest first. A machine
/// without one fails the test that needs it, saying so: Python function names cannot be had
/// without it, and this machine image has 3.12 and 3.13 under pyenv.
pub fn python_with_perf() -> std::path::PathBuf {
    find_python_with_perf().unwrap_or_else(|| {
        panic!(
            "no CPython 3.12 or later on this machine (looked for python3.12 and later on PATH and under pyenv's \
             versions): Python function names need its perf trampolines; install one, e.g. `pyenv install 3.12`"
        )
    })
}

fn find_python_with_perf() -> Option<std::path::PathBuf> {
    let minors = (12..=20).rev();
    let on_path = minors.clone().find_map(|minor| {
        let name = format!("python3.{minor}");
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(&name))
            // pyenv's shims of versions other than the global one fail when run.
            .filter(|p| !p.to_string_lossy().contains("/shims/"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let root = std::env::var_os("PYENV_ROOT")
            .map(std::path::PathBuf::from)
            .or_else(|| Some(std::path::PathBuf::from(std::env::var_os("HOME")?).join(".pyenv")))?;
        let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(root.join("versions"))
            .ok()?
            .filter_map(|e| {
                let version = e.ok()?.file_name().into_string().ok()?;
                let minor: u32 = version.strip_prefix("3.")?.split('.').next()?.parse().ok()?;
                let python = root
                    .join("versions")
                    .join(&version)
                    .join(format!("bin/python3.{minor}"));
                (minor >= 12 && python.is_file()).then_some((minor, python))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, python)| python)
    })
}

/// What the checksum server answers to `WORD ROUNDS`.
pub fn checksum_answer(word: &[u8], rounds: u32) -> Vec<u8> {
    let mut h: u32 = 0;
    for _ in 0..rounds {
        for &b in word {
            h = h.wrapping_mul(31).wrapping_add(u32::from(b));
        }
    }
    format!("{h}\n").into_bytes()
}
pub mod hosts;
