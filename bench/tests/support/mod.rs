//! Shared by the per-model integration tests: one test per (check, model) through
//! [`per_model!`], a real `bench-server --model NAME` child, and timed blocking clients.
//! Everything talks to 127.0.0.1 only and every read has a timeout.

#![allow(dead_code)] // each test binary uses a different subset

use bench::server::{Model, ServerChild, spawn_child};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest any single read may block in these tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// For each check named, a `#[test]` per model: `<model>::<check>` calls `<check>(Model::X)`.
/// Also a test that fails when a model is added to `Model::ALL` without being listed here.
#[allow(unused_macros)] // load.rs tests the epoll model only
macro_rules! per_model {
    ($($check:ident),+ $(,)?) => {
        per_model!(@models [$($check),+]
            iterative => Iterative,
            threads => Threads,
            select => Select,
            poll => Poll,
            epoll => Epoll,
            epoll_et => EpollEt,
            epoll_workers => EpollWorkers,
            prefork => Prefork,
            async_tokio => Async,
        );
    };
    (@models $checks:tt $($module:ident => $variant:ident),+ $(,)?) => {
        $( per_model!(@module $module $variant $checks); )+

        #[test]
        fn every_model_is_tested() {
            assert_eq!(bench::server::Model::ALL, [$(bench::server::Model::$variant),+]);
        }
    };
    (@module $module:ident $variant:ident [$($check:ident),+]) => {
        mod $module {
            $(
                #[test]
                fn $check() {
                    super::$check(bench::server::Model::$variant)
                }
            )+
        }
    };
}

/// `bench-server --model <model>` on 127.0.0.1, an ephemeral port; killed on drop.
pub fn start(model: Model) -> ServerChild {
    let exe = Path::new(env!("CARGO_BIN_EXE_bench-server"));
    spawn_child(exe, &model.into()).unwrap_or_else(|e| panic!("starting the {model} server: {e:#}"))
}

pub fn connect(model: Model, addr: SocketAddr) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("{model}: connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads exactly `n` bytes (within the stream's read timeout).
pub fn read_n(model: Model, stream: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{model}: reading {what}: {e}"));
    buf
}

/// Reads until EOF (within the stream's read timeout).
pub fn read_to_end(model: Model, stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{model}: reading {what} to EOF: {e}"));
    out
}

/// Sends `request` on a fresh connection, reads exactly `response_len` bytes, closes.
pub fn ask(model: Model, addr: SocketAddr, request: &[u8], response_len: usize) -> Vec<u8> {
    let mut stream = connect(model, addr);
    stream.write_all(request).unwrap();
    let what = format!("the answer to {:?}", String::from_utf8_lossy(request));
    read_n(model, &mut stream, response_len, &what)
}

/// A PING on a new connection, timed from before the connect (as `time echo PING | nc` does)
/// to the PONG, which must come within `limit`.
pub fn timed_ping(model: Model, addr: SocketAddr, limit: Duration, during: &str) -> Duration {
    let started = Instant::now();
    let mut stream = connect(model, addr);
    stream.write_all(b"PING\n").unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let pong = read_n(model, &mut stream, 5, &format!("PONG {during}"));
    let took = started.elapsed();
    assert_eq!(pong, b"PONG\n", "{model}: PING {during}");
    assert!(
        took < limit,
        "{model}: PING {during} took {took:?}, more than {limit:?}: the server let one client \
         hold up another"
    );
    took
}

/// Asserts that nothing arrives on `stream` for `quiet` (the server is stalled).
pub fn assert_silent(model: Model, stream: &mut TcpStream, quiet: Duration, during: &str) {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(n) => panic!(
            "{model}: expected no answer {during} for {quiet:?}, got {n} byte(s) after {:?} \
             (the iterative server should be stalled by the other client)",
            started.elapsed()
        ),
        Err(e) => panic!("{model}: expected silence {during}, got {e}"),
    }
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Bytes of one request and of its response, for a line-protocol command (whose bytes do not
/// depend on the target or the connection mode).
pub fn exchange_len(command: &bench::load::Command) -> (u64, u64) {
    use bench::load::ResponseSpec;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let request = command.request(any, bench::load::ConnectionMode::Persistent);
    let ResponseSpec::Exact(expected) = command.response() else {
        panic!("{command} has no fixed response length");
    };
    (request.len() as u64, expected.len())
}

/// Moves the calling thread (and the threads and processes it starts from now on) into a new
/// network namespace with its loopback up and `ports` as its ephemeral port range. Needs root.
pub fn private_network(ports: std::ops::RangeInclusive<u16>) {
    // SAFETY: plain syscalls on this thread; `ifreq` is plain data, zeroed then filled.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNET),
            0,
            "unshare(CLONE_NEWNET): {} (run as root)",
            std::io::Error::last_os_error()
        );
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0, "bringing lo up");
        libc::close(fd);
    }
    let range = format!("{} {}", ports.start(), ports.end());
    std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", &range).unwrap();
    assert_eq!(bench::sys::ephemeral_ports(), ports.len() as u64);
}
