//! Shared by the integration tests: a real `bench-server` child on 127.0.0.1 and small blocking
//! clients with timeouts, so that a broken server fails a test instead of hanging it.

#![allow(dead_code)] // each test binary uses a different subset

use bench::server::{Model, ServerChild, spawn_child};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub fn server() -> ServerChild {
    let exe = Path::new(env!("CARGO_BIN_EXE_bench-server"));
    spawn_child(exe, Model::Epoll, None).expect("starting bench-server")
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connecting");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("reading the response");
    buf
}

/// Sends `request` on a fresh connection and reads exactly `response_len` bytes back.
pub fn ask(addr: SocketAddr, request: &[u8], response_len: usize) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    read_n(&mut stream, response_len)
}

/// Reads until EOF (or the read timeout, which fails the test).
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("reading to EOF");
    out
}
