//! Every server model (`<model>::<check>`), as a real `bench-server --model NAME` child: the
//! whole protocol, pipelining, line limits, and 200 concurrent connections of the load
//! generator with no error; then what is particular to some models (select's descriptor limit,
//! the worker threads of epoll-workers, prefork's worker processes and their cleanup).
//!
//! Checks open one connection at a time and close it before the next, so that the `iterative`
//! server (one client until it closes) passes them too.

#[macro_use]
mod support;

use bench::load::{self, Command, ConnectionMode, LineCommand, LoadConfig};
use bench::protocol::{self, ERR_LINE_TOO_LONG, MAX_LINE};
use bench::server::Model;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};
use support::{ask, connect, read_n, read_to_end, start};

per_model!(
    answers_every_command,
    pipelined_and_split_requests,
    half_closed_client_gets_its_answers,
    long_lines,
    back_pressure_then_resume,
    load_200_connections,
);

fn answers_every_command(model: Model) {
    let server = start(model);
    let addr = server.addr();
    assert_eq!(ask(model, addr, b"PING\n", 5), b"PONG\n");
    assert_eq!(ask(model, addr, b"PING\r\n", 5), b"PONG\n");
    assert_eq!(ask(model, addr, b"ECHO hello there\n", 12), b"hello there\n");
    let burn = format!("RESULT {}\n", protocol::burn(1000));
    assert_eq!(ask(model, addr, b"BURN 1000\n", burn.len()), burn.as_bytes());
    assert_eq!(
        ask(model, addr, b"STREAM 30\n", 35),
        b"abcdefghijklmnopqrstuvwxyzabcdDONE\n"
    );
    assert_eq!(ask(model, addr, b"HELLO\n", 16), b"UNKNOWN_COMMAND\n", "{model}");
    let started = Instant::now();
    assert_eq!(ask(model, addr, b"WAIT 100\n", 5), b"DONE\n");
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(100)..Duration::from_secs(2)).contains(&waited),
        "{model}: WAIT 100 answered after {waited:?}"
    );
    // A big stream arrives whole and exact.
    let n = 3_000_000;
    let mut stream = connect(model, addr);
    stream.write_all(format!("STREAM {n}\n").as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let body = read_to_end(model, &mut stream, "STREAM 3000000");
    assert_eq!(body.len(), n + 5, "{model}: STREAM {n} length");
    assert!(
        protocol::Expected::Stream(n as u64).check(0, &body),
        "{model}: STREAM {n} content"
    );
}

fn pipelined_and_split_requests(model: Model) {
    let server = start(model);
    let addr = server.addr();
    {
        let mut stream = connect(model, addr);
        stream
            .write_all(b"WAIT 50\nPING\nSTREAM 3\nECHO x\nNOPE\nBURN 0\n")
            .unwrap();
        let expected = b"DONE\nPONG\nabcDONE\nx\nUNKNOWN_COMMAND\nRESULT 0\n";
        assert_eq!(
            read_n(model, &mut stream, expected.len(), "pipelined answers"),
            expected,
            "{model}: pipelined answers in order"
        );
    }
    {
        let mut stream = connect(model, addr);
        for piece in [&b"EC"[..], b"HO spl", b"it\r", b"\n"] {
            stream.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(read_n(model, &mut stream, 6, "split ECHO"), b"split\n");
    }
    {
        // Many small requests in one write, more than one read's worth of answers.
        let mut stream = connect(model, addr);
        let count = 2000;
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&b"PING\n".repeat(count)));
        let answers = read_n(model, &mut stream, 5 * count, "2000 pipelined PONGs");
        sender.join().unwrap().unwrap();
        assert!(answers == b"PONG\n".repeat(count), "{model}: 2000 PONGs");
    }
}

fn half_closed_client_gets_its_answers(model: Model) {
    let server = start(model);
    let mut stream = connect(model, server.addr());
    stream.write_all(b"WAIT 20\nPING\nPIN").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    // The incomplete last line is dropped; the rest answered, then EOF.
    assert_eq!(
        read_to_end(model, &mut stream, "answers after a half-close"),
        b"DONE\nPONG\n",
        "{model}"
    );
}

fn long_lines(model: Model) {
    let server = start(model);
    let addr = server.addr();
    {
        // The longest line that fits is answered.
        let mut stream = connect(model, addr);
        let payload = vec![b'q'; MAX_LINE - "ECHO \r\n".len()];
        let mut line = b"ECHO ".to_vec();
        line.extend_from_slice(&payload);
        line.extend_from_slice(b"\r\n");
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || writer.write_all(&line));
        let echoed = read_n(model, &mut stream, payload.len() + 1, "the longest ECHO");
        sender.join().unwrap().unwrap();
        assert!(
            echoed[..payload.len()] == payload[..] && echoed.last() == Some(&b'\n'),
            "{model}: the longest line"
        );
    }
    {
        // One byte more than fits: an error, then EOF (the server lingers instead of
        // resetting), and it never buffers the rest.
        let mut stream = connect(model, addr);
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(&vec![b'x'; MAX_LINE + 64 * 1024]);
        });
        let reply = read_to_end(model, &mut stream, "the too-long-line error");
        sender.join().unwrap();
        assert_eq!(reply, ERR_LINE_TOO_LONG, "{model}: a too long line");
    }
    // And the server is still fine.
    assert_eq!(ask(model, addr, b"PING\n", 5), b"PONG\n", "{model}");
}

/// A client pipelines far more than the server buffers (5 MB of answers to 60 KB of requests)
/// and reads nothing for a while: the server stops reading while its output is full, and must
/// resume on its own once the client reads, even though no new data arrives then (the
/// edge-triggered loop has to remember that the socket was still readable).
fn back_pressure_then_resume(model: Model) {
    let server = start(model);
    let mut stream = connect(model, server.addr());
    let count = 5000;
    let request = b"STREAM 1000\n".repeat(count);
    stream.write_all(&request).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let one = protocol::Expected::Stream(1000);
    let len = one.len() as usize;
    let answers = read_n(model, &mut stream, count * len, "5000 STREAM answers");
    for (i, answer) in answers.chunks(len).enumerate() {
        assert!(one.check(0, answer), "{model}: answer {i} is wrong");
    }
}

fn load_config(connection: ConnectionMode, requests: u64) -> LoadConfig {
    LoadConfig {
        concurrency: 200,
        requests: Some(requests),
        connection,
        // Tests must end quickly whatever happens.
        max_time: Some(Duration::from_secs(20)),
        ..LoadConfig::new(Command::Line(LineCommand::Echo { payload_size: 64 }))
    }
}

/// 200 concurrent connections of the load generator, with no error. The iterative server
/// serves one connection until it closes, so it gets a new connection per request (still 200
/// in flight); the others get 200 persistent connections, and a per-request run too.
fn load_200_connections(model: Model) {
    bench::raise_nofile_limit().unwrap();
    let server = start(model);
    let mut runs = vec![(ConnectionMode::PerRequest, 400)];
    if !model.stalls_other_clients() {
        runs.push((ConnectionMode::Persistent, 4000));
    }
    for (connection, requests) in runs {
        let config = load_config(connection, requests);
        let report = load::run(server.addr(), &config).unwrap_or_else(|e| panic!("{model}, {connection}: load: {e:#}"));
        assert_eq!(
            report.errors, 0,
            "{model}, {connection}: {:?}, first error: {:?}",
            report.error_counts, report.first_error
        );
        assert_eq!(report.requests, requests, "{model}, {connection}");
        assert!(!report.stopped_early, "{model}, {connection}");
        let (_, response_len) = support::exchange_len(&config.command);
        assert_eq!(report.bytes_received, requests * response_len, "{model}, {connection}");
    }
}

/// select(2) cannot watch descriptors from FD_SETSIZE (1024) on: such connections are closed at
/// once, and the server keeps serving the others.
#[test]
fn select_closes_connections_beyond_fd_setsize() {
    let model = Model::Select;
    bench::raise_nofile_limit().unwrap();
    let server = start(model);
    let addr = server.addr();
    let total = bench::server::select::FD_SETSIZE + 100;
    let mut streams: Vec<_> = (0..total).map(|_| connect(model, addr)).collect();
    let (mut served, mut refused) = (0, 0);
    for stream in &mut streams {
        // A refused connection may reset the write or the read, or read EOF.
        let _ = stream.write_all(b"PING\n");
        let mut reply = [0u8; 5];
        match stream.read_exact(&mut reply) {
            Ok(()) => {
                assert_eq!(&reply, b"PONG\n");
                served += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                refused += 1
            }
            Err(e) => panic!("select: connection {served} + {refused}: {e}"),
        }
    }
    // Descriptors 0-2, the listener and a few spares of the runtime are taken.
    assert!(
        (1000..1024).contains(&served),
        "select served {served}, refused {refused}"
    );
    assert_eq!(served + refused, total);
    drop(streams);
    assert_eq!(ask(model, addr, b"PING\n", 5), b"PONG\n", "select after refusing");
}

/// The names of `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .map(|task| {
            let path = task.unwrap().path().join("comm");
            std::fs::read_to_string(path).unwrap().trim().to_string()
        })
        .collect()
}

/// How many of `pid`'s threads are named as `wanted` says, once that reaches `expected` (the
/// server prints its address before its workers start) or after 5 s.
fn count_threads(pid: u32, wanted: impl Fn(&str) -> bool, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = thread_names(pid).iter().filter(|n| wanted(n)).count();
        if n == expected || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn epoll_workers_run_one_thread_per_core_on_one_port() {
    let server = start(Model::EpollWorkers);
    let workers = count_threads(server.pid(), |n| n.starts_with("epoll-worker-"), cores());
    assert_eq!(workers, cores(), "one epoll-worker thread per core");
    // Every connection lands on one of the listeners of the one printed port.
    for _ in 0..20 {
        assert_eq!(ask(Model::EpollWorkers, server.addr(), b"PING\n", 5), b"PONG\n");
    }
}

#[test]
fn async_runs_one_tokio_worker_per_core() {
    let server = start(Model::Async);
    assert_eq!(ask(Model::Async, server.addr(), b"PING\n", 5), b"PONG\n");
    let workers = count_threads(server.pid(), |n| n == "tokio-worker", cores());
    assert_eq!(workers, cores(), "one tokio worker thread per core");
}

/// The children of `pid` (by scanning /proc for their parent pid).
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{child}/status")) else {
            continue;
        };
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

/// Gone, or a zombie waiting for whoever inherited it.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn wait_until_dead(pids: &[u32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|&p| is_dead(p)) {
        assert!(Instant::now() < deadline, "{what}: {pids:?} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workers of a prefork server (waiting a moment for the forks).
fn prefork_workers(pid: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let workers = children_of(pid);
        if workers.len() == cores() || Instant::now() > deadline {
            return workers;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prefork_workers_die_with_the_killed_server() {
    let server = start(Model::Prefork);
    let workers = prefork_workers(server.pid());
    assert_eq!(workers.len(), cores(), "one worker process per core");
    assert!(workers.iter().all(|&w| w != server.pid()));
    assert_eq!(ask(Model::Prefork, server.addr(), b"PING\n", 5), b"PONG\n");
    // ServerChild's drop SIGKILLs the parent only; PR_SET_PDEATHSIG takes the workers.
    drop(server);
    wait_until_dead(&workers, "prefork workers after their parent was killed");
}

#[test]
fn prefork_stops_when_a_worker_dies() {
    let server = start(Model::Prefork);
    let workers = prefork_workers(server.pid());
    assert!(!workers.is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(workers[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The parent notices, stops the other workers and exits (a zombie until the drop reaps it).
    wait_until_dead(&[server.pid()], "the prefork parent after a worker died");
    wait_until_dead(&workers, "the other prefork workers");
}

#[test]
fn the_server_is_killed_and_reaped_on_drop() {
    let server = start(Model::Epoll);
    let pid = server.pid();
    drop(server);
    // Reaped by the drop, so the pid no longer exists (as a zombie it would).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
