//! Servers nobody here wrote, profiled under their own load tools: redis-server under
//! redis-benchmark in sampling mode (Debian builds it without frame pointers: its stacks are
//! unwound from CFI), nginx and its workers under wrk in tracepoint mode. The peers are Debian's,
//! installed by `cargo xtask test`. Needs root (eBPF).
mod common;

use common::{require_root, run_to_end};
use profiler::{Mode, Part, ProfileOptions, Requested, Session, printer};

#[test]
fn redis_under_redis_benchmark_has_whole_stacks_naming_redis_functions() {
    require_root();
    let (redis, port) = common::redis();
    let port = port.to_string();
    let options = ProfileOptions {
        mode: Requested::Only(Mode::Sampling),
        frequency_hz: 999,
        ..ProfileOptions::default()
    };
    let session = Session::attach(&[redis.pid()], &options).unwrap();
    run_to_end(
        "redis-benchmark",
        &["-p", &port, "-t", "set,get", "-n", "100000", "-c", "50", "-q"],
    );
    let profile = session.finish(None).unwrap().profile.unwrap();
    eprintln!("{}", printer::profile_table(&profile));
    assert_eq!(profile.breakdown.mode, Mode::Sampling);
    let stacks = profile.stacks.as_ref().unwrap();
    // Debian's /usr/bin/redis-server links to the binary the process maps, whatever its name.
    let exe = std::fs::read_link(format!("/proc/{}/exe", redis.pid())).unwrap();
    let binary = exe.file_name().unwrap().to_string_lossy().into_owned();
    let named_in_redis = |f: &profiler::stacks::FunctionShare| f.module == binary && !f.function.starts_with('[');
    let process = &stacks.functions[&Part::Process];
    let named: Vec<_> = process.iter().filter(|f| named_in_redis(f)).collect();
    assert!(
        !named.is_empty(),
        "no function of {binary} named in the process part: {process:#?}"
    );
    eprintln!("named in {binary}: {named:#?}");
    // Command handling itself shows up, named: reading, parsing, running and answering queries.
    const COMMAND_PATH: [&str; 7] = [
        "readQueryFromClient",
        "processInputBuffer",
        "processMultibulkBuffer",
        "processCommand",
        "call",
        "writeToClient",
        "_writeToClient",
    ];
    assert!(
        named.iter().any(|f| COMMAND_PATH.contains(&f.function.as_str())),
        "none of redis's command path among {named:#?}"
    );
    // Its replies are writes, its reads reads: a server doing I/O on a socket per command.
    assert!(
        profile.breakdown.percent(Part::Write) > 10.0,
        "{:?}",
        profile.breakdown.breakdown
    );
    assert!(
        profile.breakdown.percent(Part::Read) > 2.0,
        "{:?}",
        profile.breakdown.breakdown
    );
    // Whole stacks, though Debian builds redis without frame pointers: unwound from CFI.
    assert_eq!(stacks.unwound_cfi, [redis.pid()]);
    let total = stacks.total_stacked_samples();
    assert!(
        stacks.errors.cut_short() * 10 <= total,
        "{} of {total} samples with a user stack cut short: {:?}",
        stacks.errors.cut_short(),
        stacks.errors
    );
    let with = |part: &str, frames: &[&str]| -> u64 {
        stacks
            .folded
            .iter()
            .filter(|(line, _)| line.starts_with(part))
            .filter(|(line, _)| frames.iter().all(|f| line.split(';').any(|frame| frame == *f)))
            .map(|(_, n)| n)
            .sum()
    };
    // redis 7 writes its replies after each turn of its event loop (beforeSleep), not inside the
    // command: a write stack runs from main through its reply path into the kernel's TCP send.
    let replies = with(
        "write;",
        &["main", "aeMain", "beforeSleep", "writeToClient", "tcp_sendmsg_[k]"],
    );
    assert!(
        replies * 2 >= with("write;", &[]),
        "{replies} write samples from main through writeToClient"
    );
    // Commands run from main through processCommand and call.
    assert!(with("", &["main", "aeMain", "readQueryFromClient", "processCommand", "call"]) > 0);
}

#[test]
fn nginx_workers_other_syscalls_name_epoll_wait_and_the_file_calls_per_request() {
    require_root();
    let (nginx, port, _dir) = common::nginx();
    // --children: the master only manages; the worker serves.
    let mut pids = vec![nginx.pid()];
    pids.extend(profiler::procfs::children(nginx.pid()));
    assert_eq!(pids.len(), 2, "the master and its one worker: {pids:?}");
    let options = ProfileOptions {
        mode: Requested::Only(Mode::Tracepoint),
        ..ProfileOptions::default()
    };
    let session = Session::attach(&pids, &options).unwrap();
    let url = format!("http://127.0.0.1:{port}/index.html");
    let out = run_to_end("wrk", &["-t1", "-c10", "-d2s", &url]);
    let profile = session.finish(None).unwrap().profile.unwrap();
    eprintln!("{out}\n{}", printer::profile_table(&profile));
    let requests: u64 = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output: {out}"));
    assert!(requests >= 1000, "{out}");
    let calls = |name: &str| {
        profile
            .breakdown
            .syscalls
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.calls)
    };
    assert!(calls("epoll_wait") > 0, "{:#?}", profile.breakdown.syscalls);
    // Per request, without open_file_cache: open, stat, read (pread64) and close the file.
    for name in ["openat", "newfstatat", "pread64", "close"] {
        assert!(
            calls(name) >= requests,
            "{name}: {} calls for {requests} requests: {:#?}",
            calls(name),
            profile.breakdown.syscalls
        );
    }
    assert!(printer::profile_table(&profile).contains("openat"));
}
