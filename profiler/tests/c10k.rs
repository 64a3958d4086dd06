//! C10K: ten thousand concurrent connections against the event-loop servers, with the server's
//! memory sampled while they are open.
use bench::load::Command;
use bench::server::Model;
use profiler::benchmark::{Benchmark, Target};

fn c10k(model: Model) -> (bench::load::LoadReport, profiler::server_stats::ServerStats) {
    bench::raise_nofile_limit().unwrap();
    let mut b = Benchmark::new(Target::server(model), Command::Ping);
    b.load.concurrency = 10_000;
    b.load.requests = Some(20_000);
    let (report, stats) = b.run_with_server_stats().unwrap();
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
