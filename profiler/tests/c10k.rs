//! C10K: ten thousand concurrent connections against the event-loop servers, with the server's
//! memory sampled while they are open; and 30,000 across processes.
mod common;

use bench::load::{Command, LineCommand};
use bench::server::Model;
use profiler::benchmark::{Benchmark, Target};

fn c10k(model: Model) -> (bench::load::LoadReport, profiler::server_stats::ServerStats) {
    bench::raise_nofile_limit().unwrap();
    let mut b = Benchmark::new(Target::server(model), Command::Line(LineCommand::Ping));
    b.load.concurrency = 10_000;
    b.load.requests = Some(20_000);
    let (report, stats) = b.run_with_server_stats(&mut profiler::live::Live::new()).unwrap();
    (report.load.unwrap(), stats)
}

#[test]
fn epoll_models_hold_ten_thousand_connections() {
    for model in [Model::Epoll, Model::EpollEt, Model::EpollWorkers] {
        let (report, stats) = c10k(model);
        eprintln!("{model}: {} ok, {} errors, {stats:?}", report.requests, report.errors);
        assert_eq!(report.errors, 0, "{model}: {:?}", report.first_error);
        assert_eq!(report.requests, 20_000, "{model}");
        assert_eq!(report.connections_opened, 10_000, "{model}");
    }
}

#[test]
fn epoll_with_ten_thousand_connections_stays_under_50_mb() {
    let (report, stats) = c10k(Model::Epoll);
    assert_eq!(report.errors, 0);
    assert!(stats.rss_max_kb > 0, "RSS was sampled");
    assert!(
        stats.rss_max_kb <= 50 * 1024,
        "epoll server RSS {} KiB with 10,000 connections",
        stats.rss_max_kb
    );
}

/// 30,000 connections at once, past what one process may hold here (RLIMIT_NOFILE's hard limit
/// is 20,000) and past one source address's share of the ephemeral ports: two load generators
/// run halves of one plan (`--shard`) against two epoll bench-servers sharing a port
/// (`--reuseport`), and the connections come from several loopback addresses.
#[test]
fn thirty_thousand_connections_across_processes() {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = profiler::benchmark::bench_server_exe().unwrap();
    let args = ["--model", "epoll", "--reuseport", "--addr", &addr];
    let _servers: Vec<common::Peer> = (0..2)
        .map(|_| common::Peer::start(&server.to_string_lossy(), &args))
        .collect();
    common::wait_for_port(port);
    let loads: Vec<std::process::Child> = (0..2)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_tcpprof"))
                .args(["bench", "--target", &addr, "--protocol", "line", "--command", "PING"])
                .args(["-c", "30000", "-n", "60000", "--json", "--shard", &format!("{i}/2")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut opened, mut requests) = (0, 0);
    for load in loads {
        let out = load.wait_with_output().unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["errors"], 0, "{}", report["first_error"]);
        assert!(report["source_addresses"].as_u64().unwrap() > 1, "{report}");
        opened += report["connections_opened"].as_u64().unwrap();
        requests += report["requests"].as_u64().unwrap();
    }
    assert_eq!((opened, requests), (30_000, 60_000));
}
