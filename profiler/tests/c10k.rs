//! C10K: ten thousand concurrent connections against the event-loop servers, with the server's
//! memory sampled while they are open.
use bench::load::{Command, LoadConfig};
use bench::server::Model;
use profiler::benchmark::Benchmark;
use std::net::SocketAddr;

fn c10k(model: Model) -> (bench::load::LoadReport, profiler::server_stats::ServerStats) {
    bench::raise_nofile_limit().unwrap();
    let (server_cpus, client_cpus) = profiler::benchmark::default_cpus(None, None);
    let b = Benchmark {
        server: model,
        target: None,
        server_cpus,
        load: LoadConfig {
            concurrency: 10_000,
            requests: Some(20_000),
            client_cpus,
            ..LoadConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), Command::Ping)
        },
        bpf_stats: false,
    };
    b.run_with_server_stats().unwrap()
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
