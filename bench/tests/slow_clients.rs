//! The slow-client experiments of seed 003, on every model (`<model>::<experiment>`), against
//! the real `bench-server`: one client holds its connection busy (a `WAIT 5000`, a slow reader
//! of `STREAM 100000000`, a slowloris sending `P`, `I`, `N`, `G\n` 300 ms apart) while a second
//! client sends `PING`.
//!
//! Every model but `iterative` must answer the second client within 100 ms. For `iterative`
//! the test asserts the stall instead (no answer within 1 s while the first client holds the
//! server) and then that releasing the first client releases the second: showing the stall is
//! the point of that model. Each test ends within about 7 s; reads all have timeouts.

#[macro_use]
mod support;

use bench::protocol;
use bench::server::Model;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{assert_silent, connect, read_n, start, timed_ping};

/// How fast a server that does not stall must answer the second client.
const RESPONSIVE: Duration = Duration::from_millis(100);
/// How long the stalled iterative server is watched for an (unexpected) answer.
const STALLED: Duration = Duration::from_secs(1);
/// The seed's numbers.
const WAIT_MS: u64 = 5000;
const STREAM_BYTES: u64 = 100_000_000;
const SLOWLORIS_PIECES: [&[u8]; 4] = [b"P", b"I", b"N", b"G\n"];
const SLOWLORIS_PAUSE: Duration = Duration::from_millis(300);

per_model!(wait_then_ping, slow_reader_then_ping, slowloris_then_ping);

/// `WAIT 5000` on one connection, then `PING` on a second.
fn wait_then_ping(model: Model) {
    let server = start(model);
    let addr = server.addr();
    let mut waiting = connect(model, addr);
    let waited_from = Instant::now();
    waiting.write_all(format!("WAIT {WAIT_MS}\n").as_bytes()).unwrap();
    // Let the server start the WAIT before the second client shows up.
    std::thread::sleep(Duration::from_millis(100));

    if !model.stalls_other_clients() {
        timed_ping(model, addr, RESPONSIVE, "during another client's WAIT 5000");
        // The WAIT goes on; closing its client must not upset the server.
        drop(waiting);
        timed_ping(model, addr, RESPONSIVE, "after a client left in the middle of a WAIT");
        return;
    }

    let mut pinger = connect(model, addr);
    pinger.write_all(b"PING\n").unwrap();
    assert_silent(model, &mut pinger, STALLED, "to PING during a WAIT 5000");
    // The WAIT ends on time, and its client is still the only one served...
    waiting
        .set_read_timeout(Some(Duration::from_millis(WAIT_MS + 2000)))
        .unwrap();
    assert_eq!(read_n(model, &mut waiting, 5, "DONE"), b"DONE\n");
    let waited = waited_from.elapsed();
    assert!(
        waited >= Duration::from_millis(WAIT_MS),
        "{model}: WAIT {WAIT_MS} answered after {waited:?}"
    );
    assert_silent(
        model,
        &mut pinger,
        Duration::from_millis(200),
        "to PING while the WAIT client stays connected",
    );
    // ...until it leaves: then the PING is answered at last.
    drop(waiting);
    assert_eq!(
        read_n(model, &mut pinger, 5, "PONG once the WAIT client left"),
        b"PONG\n"
    );
}

/// A client asks for `STREAM 100000000`, reads a little, then stops reading; then `PING` on a
/// second connection.
fn slow_reader_then_ping(model: Model) {
    let server = start(model);
    let addr = server.addr();
    let mut hog = connect(model, addr);
    hog.write_all(format!("STREAM {STREAM_BYTES}\n").as_bytes()).unwrap();
    let head = read_n(model, &mut hog, 1000, "the start of the stream");
    assert!(protocol::stream_matches(0, &head), "{model}: malformed stream");
    // Stop reading: the server fills the socket buffers and has to hold the rest back.
    std::thread::sleep(Duration::from_millis(200));

    if !model.stalls_other_clients() {
        timed_ping(model, addr, RESPONSIVE, "while another client reads slowly");
        timed_ping(model, addr, RESPONSIVE, "while another client still reads slowly");
        // The stream is parked, not dropped: it goes on where the reader left off.
        let more = read_n(model, &mut hog, 1000, "more of the stream");
        assert!(
            protocol::stream_matches(1000, &more),
            "{model}: the stream did not resume where it stopped"
        );
        drop(hog);
        timed_ping(model, addr, RESPONSIVE, "after the slow reader left");
        return;
    }

    let mut pinger = connect(model, addr);
    pinger.write_all(b"PING\n").unwrap();
    assert_silent(model, &mut pinger, STALLED, "to PING during a slow read");
    // Closing the slow reader (with unread data: a reset) unblocks the server's write.
    drop(hog);
    assert_eq!(
        read_n(model, &mut pinger, 5, "PONG once the slow reader left"),
        b"PONG\n"
    );
}

/// A client sends `P`, `I`, `N`, `G\n` 300 ms apart; `PING`s on a second connection during the
/// pauses.
fn slowloris_then_ping(model: Model) {
    let server = start(model);
    let addr = server.addr();
    let mut slow = connect(model, addr);
    let (release, released) = mpsc::channel::<()>();
    let started = Instant::now();
    let slowloris = std::thread::spawn(move || {
        for (i, piece) in SLOWLORIS_PIECES.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(SLOWLORIS_PAUSE);
            }
            slow.write_all(piece).unwrap();
        }
        let pong = read_n(model, &mut slow, 5, "the slowloris's PONG");
        // Keep the connection open until told (the iterative server serves it until then).
        let _ = released.recv_timeout(Duration::from_secs(10));
        pong
    });

    if !model.stalls_other_clients() {
        // One PING in the middle of each pause.
        for pause in 0..SLOWLORIS_PIECES.len() as u32 - 1 {
            let at = SLOWLORIS_PAUSE / 2 + SLOWLORIS_PAUSE * pause;
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            let during = format!("during pause {} of a slowloris", pause + 1);
            timed_ping(model, addr, RESPONSIVE, &during);
        }
        release.send(()).unwrap();
        let pong = slowloris.join().expect("the slowloris client");
        assert_eq!(pong, b"PONG\n", "{model}: the slowloris's own request");
        return;
    }

    std::thread::sleep((SLOWLORIS_PAUSE / 2).saturating_sub(started.elapsed()));
    let mut pinger = connect(model, addr);
    pinger.write_all(b"PING\n").unwrap();
    // Covers the whole slowloris (900 ms) and then some: it keeps its connection.
    assert_silent(model, &mut pinger, STALLED, "to PING during a slowloris");
    release.send(()).unwrap();
    let pong = slowloris.join().expect("the slowloris client");
    assert_eq!(pong, b"PONG\n", "{model}: the slowloris's own request");
    assert_eq!(read_n(model, &mut pinger, 5, "PONG once the slowloris left"), b"PONG\n");
}
