//! Servers nobody here wrote, built as their users get them, profiled under load in sampling
//! mode: nginx built from source without frame pointers (its stacks unwound whole from CFI), a
//! Python server on CPython 3.12+ with perf trampolines, a Node.js server and a Java one with perf
//! maps (their functions named). redis-server is in peers.rs. Needs root (eBPF), and what `cargo
//! xtask test` provides: the nginx build, node, the JDK, and a CPython 3.12+ (this machine image
//! has it under pyenv).
mod common;

use bench::load::{Command, FixedRequest, HttpRequest, LoadConfig};
use common::{Peer, free_port, require_root, run_to_end, wait_for_port};
use profiler::benchmark::{Benchmark, Target};
use profiler::stacks::Stacks;
use profiler::{Mode, Part, Profile, ProfileOptions, Requested, printer};
use std::net::SocketAddr;
use std::time::Duration;

/// A profiled load of `target`: `command` from `connections` connections for 3 s, sampled at
/// 999 Hz, user stacks walked as `--unwind auto` chooses.
fn profiled(target: Target, command: Command, connections: usize) -> Profile {
    let mut benchmark = Benchmark::new(target, command);
    benchmark.load = LoadConfig {
        concurrency: connections,
        requests: None,
        duration: Some(Duration::from_secs(3)),
        ..benchmark.load
    };
    benchmark.profiling = ProfileOptions {
        mode: Requested::Only(Mode::Sampling),
        frequency_hz: 999,
        ..ProfileOptions::default()
    };
    let report = benchmark.profile().unwrap();
    let load = report.load.as_ref().unwrap();
    assert!(load.requests > 100 && load.errors == 0, "{load:?}");
    let profile = report.profile.unwrap();
    eprintln!("{}", printer::profile_table(&profile));
    profile
}

/// Samples in the folded stacks whose line holds a frame starting with each of `frames`, in
/// `part` if one is given.
fn samples_with(stacks: &Stacks, part: Option<Part>, frames: &[&str]) -> u64 {
    stacks
        .folded
        .iter()
        .filter(|(line, _)| part.is_none_or(|p| line.starts_with(&format!("{};", p.name()))))
        .filter(|(line, _)| frames.iter().all(|f| line.split(';').any(|frame| frame.starts_with(f))))
        .map(|(_, n)| n)
        .sum()
}

/// At most a tenth of the samples have a user stack cut short, whatever the cause.
fn mostly_whole(stacks: &Stacks) {
    let total = stacks.total_stacked_samples();
    assert!(total >= 500, "too few samples to judge: {total}");
    assert!(
        stacks.errors.cut_short() * 10 <= total,
        "{} of {total} samples with a user stack cut short: {:?}",
        stacks.errors.cut_short(),
        stacks.errors
    );
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn get(path: &str) -> Command {
    Command::Http(HttpRequest {
        path: path.into(),
        ..HttpRequest::default()
    })
}

/// `program ARGS PORT` (a server nobody here wrote) started in a directory of its own (removed
/// after, with what the runtime wrote there), `prepare`d once it listens (given its port and
/// pid), profiled under `command` from 4 connections, then stopped and its perf map removed.
fn profiled_peer(program: &str, args: &[&str], command: Command, prepare: impl FnOnce(u16, u32)) -> Profile {
    let port = free_port();
    let port_arg = port.to_string();
    let cwd = common::TempDir::new(&format!("peer-{port}"));
    let server = Peer::start_in(&cwd.0, program, &[args, &[port_arg.as_str()]].concat());
    wait_for_port(port);
    let pid = server.pid();
    prepare(port, pid);
    let profile = profiled(Target::Addr(loopback(port)), command, 4);
    drop(server);
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    profile
}

#[test]
fn nginx_built_without_frame_pointers_has_whole_worker_stacks() {
    require_root();
    let (dir, port) = common::nginx_config("source-nginx");
    let mut command = vec![common::source_nginx()];
    command.extend(common::nginx_args(&dir));
    // `bench --exec` starts it (master and one worker) and stops it; both hold the listener.
    let profile = profiled(
        Target::Exec {
            command,
            addr: loopback(port),
            cpus: None,
        },
        get("/index.html"),
        10,
    );
    let stacks = profile.stacks.as_ref().unwrap();
    assert_eq!(stacks.unwound_cfi.len(), 2, "master and worker unwound from CFI");
    mostly_whole(stacks);
    // The worker serves every request, from its cycle down to the syscall.
    let total = stacks.total_stacked_samples();
    let cycle = ["main", "ngx_master_process_cycle", "ngx_worker_process_cycle"];
    let worker = samples_with(stacks, None, &cycle);
    assert!(
        worker * 10 >= total * 8,
        "{worker} of {total} samples in the worker's cycle"
    );
    let writes = samples_with(
        stacks,
        Some(Part::Write),
        &["ngx_worker_process_cycle", "ngx_http_", "tcp_sendmsg_[k]"],
    );
    assert!(
        writes > 0,
        "no write stack from the worker's cycle through its HTTP code to TCP"
    );
    assert!(
        std::net::TcpStream::connect(loopback(port)).is_err(),
        "nginx still listens after the run"
    );
}

#[test]
fn python_functions_are_named_by_perf_trampolines() {
    require_root();
    let python = common::python_with_perf();
    let script = common::server_script("checksum_server.py");
    let command = Command::Fixed(FixedRequest {
        request: b"abcdefghij 30\n".to_vec(),
        response: common::checksum_answer(b"abcdefghij", 30),
    });
    let profile = profiled_peer(&python.to_string_lossy(), &["-X", "perf", &script], command, |_, _| {});
    let stacks = profile.stacks.as_ref().unwrap();
    mostly_whole(stacks);
    // The CPU-heavy function is the process part's top function, as Python.
    let process = &stacks.functions[&Part::Process];
    let top: Vec<&str> = process.iter().take(3).map(|f| f.function.as_str()).collect();
    assert!(
        process
            .iter()
            .take(3)
            .any(|f| f.function.starts_with("py::checksum:") && f.module == "[python]"),
        "py::checksum not among the top functions: {top:?}"
    );
    // Its stacks run from the interpreter's main through the server's loop.
    let checksum = samples_with(stacks, None, &["py::checksum:"]);
    let from_loop = samples_with(
        stacks,
        None,
        &["Py_BytesMain", "py::serve:", "py::handle:", "py::checksum:"],
    );
    assert!(
        from_loop * 10 >= checksum * 9,
        "{from_loop} of {checksum} samples in checksum reach the loop"
    );
    assert!(stacks.hints.is_empty(), "{:?}", stacks.hints);
}

#[test]
fn javascript_functions_are_named_from_nodes_perf_map() {
    require_root();
    let script = common::server_script("busy_server.js");
    let profile = profiled_peer("node", &["--perf-basic-prof", &script], get("/"), |_, _| {});
    let stacks = profile.stacks.as_ref().unwrap();
    let process = &stacks.functions[&Part::Process];
    let handler = process
        .iter()
        .find(|f| f.function.contains("handleRequest") || f.function.contains("spinArithmetic"))
        .unwrap_or_else(|| panic!("the handler is not named in the process part: {process:#?}"));
    assert_eq!(handler.module, "[jit]");
    assert!(handler.pct >= 20.0, "{handler:?}");
    assert!(stacks.hints.is_empty(), "{:?}", stacks.hints);
}

#[test]
fn node_without_a_perf_map_gets_one_hint_not_unknown_frames() {
    require_root();
    let script = common::server_script("busy_server.js");
    let profile = profiled_peer("node", &[&script], get("/"), |_, _| {});
    let stacks = profile.stacks.as_ref().unwrap();
    assert_eq!(stacks.hints.len(), 1, "{:?}", stacks.hints);
    assert!(stacks.hints[0].contains("--perf-basic-prof"), "{}", stacks.hints[0]);
    let process = &stacks.functions[&Part::Process];
    assert_eq!(process[0].function, "[jit]", "{process:#?}");
    // Nameless JIT frames one after another fold into one.
    assert!(
        stacks.folded.iter().all(|(line, _)| !line.contains("[jit];[jit]")),
        "repeated [jit] frames"
    );
    assert!(printer::profile_table(&profile).contains("hint: node"));
}

#[test]
fn java_methods_are_named_from_the_jvms_perf_map() {
    require_root();
    let script = common::server_script("SpinServer.java");
    // Frame pointers in compiled Java frames, so that stacks go on through them; no Nagle delay
    // between the server's head and body writes (SpinServer.java says why).
    let args = [
        "-XX:+PreserveFramePointer",
        "-Dsun.net.httpserver.nodelay=true",
        &script,
    ];
    let profile = profiled_peer("java", &args, get("/"), |port, pid| {
        // Warmed up, the JIT has compiled spin; then the JVM writes its perf map when asked.
        let mut warm = Benchmark::new(Target::Addr(loopback(port)), get("/"));
        warm.load.requests = Some(1000);
        assert_eq!(warm.run().unwrap().load.unwrap().errors, 0);
        run_to_end("jcmd", &[&pid.to_string(), "Compiler.perfmap"]);
    });
    let stacks = profile.stacks.as_ref().unwrap();
    let process = &stacks.functions[&Part::Process];
    let spin = process
        .iter()
        .find(|f| f.function.contains("SpinServer.spin"))
        .unwrap_or_else(|| panic!("SpinServer.spin is not named in the process part: {process:#?}"));
    assert_eq!(spin.module, "[jit]");
    assert!(spin.pct >= 20.0, "{spin:?}");
}
