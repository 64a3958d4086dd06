//! The epoll server as a real child process, driven over loopback sockets.

mod support;

use bench::protocol::{self, ERR_LINE_TOO_LONG, MAX_LINE};
use bench::server::Model::Epoll;
use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};
use support::{ask, connect, read_n, read_to_end, start};

#[test]
fn answers_every_command() {
    let server = start(Epoll);
    let addr = server.addr();
    assert_eq!(ask(Epoll, addr, b"PING\n", 5), b"PONG\n");
    assert_eq!(ask(Epoll, addr, b"PING\r\n", 5), b"PONG\n");
    assert_eq!(ask(Epoll, addr, b"ECHO hello there\n", 12), b"hello there\n");
    let burn = format!("RESULT {}\n", protocol::burn(1000));
    assert_eq!(ask(Epoll, addr, b"BURN 1000\n", burn.len()), burn.as_bytes());
    assert_eq!(
        ask(Epoll, addr, b"STREAM 30\n", 35),
        b"abcdefghijklmnopqrstuvwxyzabcdDONE\n"
    );
    assert_eq!(ask(Epoll, addr, b"WAIT 10\n", 5), b"DONE\n");
    assert_eq!(ask(Epoll, addr, b"HELLO\n", 16), b"UNKNOWN_COMMAND\n");
}

#[test]
fn pipelined_requests_come_back_in_order() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    stream.write_all(b"WAIT 50\nPING\nSTREAM 3\nECHO x\nNOPE\n").unwrap();
    let expected = b"DONE\nPONG\nabcDONE\nx\nUNKNOWN_COMMAND\n";
    assert_eq!(read_n(Epoll, &mut stream, expected.len(), "the response"), expected);
}

#[test]
fn a_request_split_across_writes_is_one_request() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    for piece in [&b"EC"[..], b"HO spl", b"it\r", b"\n"] {
        stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_n(Epoll, &mut stream, 6, "the response"), b"split\n");
}

#[test]
fn wait_does_not_block_other_clients() {
    let server = start(Epoll);
    let mut waiting = connect(Epoll, server.addr());
    let started = Instant::now();
    waiting.write_all(b"WAIT 2000\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let ping_started = Instant::now();
    assert_eq!(ask(Epoll, server.addr(), b"PING\n", 5), b"PONG\n");
    let ping = ping_started.elapsed();
    assert!(ping < Duration::from_millis(100), "PING took {ping:?} during a WAIT");
    assert_eq!(read_n(Epoll, &mut waiting, 5, "the response"), b"DONE\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2000),
        "WAIT 2000 answered after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(3000),
        "WAIT 2000 answered after {waited:?}"
    );
}

#[test]
fn a_slow_reader_does_not_block_other_clients() {
    let server = start(Epoll);
    // Asks for 100 MB and never reads: the server must park it, not wait on it.
    let mut hog = connect(Epoll, server.addr());
    hog.write_all(b"STREAM 100000000\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(ask(Epoll, server.addr(), b"PING\n", 5), b"PONG\n");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Reading a little shows the stream is on its way and well formed.
    let head = read_n(Epoll, &mut hog, 1000, "the response");
    assert!(protocol::stream_matches(0, &head));
}

#[test]
fn a_slow_sender_does_not_block_other_clients() {
    let server = start(Epoll);
    let mut slow = connect(Epoll, server.addr());
    slow.write_all(b"PI").unwrap();
    let started = Instant::now();
    assert_eq!(ask(Epoll, server.addr(), b"PING\n", 5), b"PONG\n");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    slow.write_all(b"NG\n").unwrap();
    assert_eq!(read_n(Epoll, &mut slow, 5, "the response"), b"PONG\n");
}

#[test]
fn stream_delivers_exactly_n_bytes() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    let n = 5_000_000;
    stream.write_all(format!("STREAM {n}\n").as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let body = read_to_end(Epoll, &mut stream, "the response");
    assert_eq!(body.len(), n + 5);
    assert!(protocol::Expected::Stream(n as u64).check(0, &body));
}

#[test]
fn half_closed_client_gets_its_answers_then_eof() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    stream.write_all(b"WAIT 20\nPING\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(Epoll, &mut stream, "the response"), b"DONE\nPONG\n");
}

#[test]
fn a_too_long_line_is_rejected_and_the_connection_closed() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    let mut writer = stream.try_clone().unwrap();
    // The server stops reading after MAX_LINE bytes, so the rest may not go out: write from a
    // thread and ignore the error the close causes.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&vec![b'x'; MAX_LINE + 4096]);
    });
    // The error, then a clean EOF: the server lingers rather than resetting the connection.
    let reply = read_to_end(Epoll, &mut stream, "the response");
    sender.join().unwrap();
    assert_eq!(reply, ERR_LINE_TOO_LONG);
}

#[test]
fn the_longest_line_still_fits() {
    let server = start(Epoll);
    let mut stream = connect(Epoll, server.addr());
    let payload = vec![b'q'; MAX_LINE - "ECHO \r\n".len()];
    let mut line = b"ECHO ".to_vec();
    line.extend_from_slice(&payload);
    line.extend_from_slice(b"\r\n");
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&line).unwrap());
    let echoed = read_n(Epoll, &mut stream, payload.len() + 1, "the response");
    sender.join().unwrap();
    assert_eq!(&echoed[..payload.len()], &payload[..]);
    assert_eq!(echoed.last(), Some(&b'\n'));
}

#[test]
fn many_connections_at_once() {
    bench::raise_nofile_limit().unwrap();
    let server = start(Epoll);
    let mut streams: Vec<_> = (0..500).map(|_| connect(Epoll, server.addr())).collect();
    for stream in &mut streams {
        stream.write_all(b"PING\n").unwrap();
    }
    for stream in &mut streams {
        assert_eq!(read_n(Epoll, stream, 5, "the response"), b"PONG\n");
    }
}

#[test]
fn the_child_is_killed_on_drop() {
    let server = start(Epoll);
    let pid = server.pid();
    drop(server);
    // Reaped by the drop, so the pid no longer exists (as a zombie it would).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
