//! Userspace profiling mode: a bench-server started with --self-timing counts its own steps.
use bench::load::{Command, LineCommand, LoadConfig};
use bench::server::{Model, spawn_self_timed};
use std::path::Path;

const SERVER: &str = env!("CARGO_BIN_EXE_bench-server");

#[test]
fn every_single_process_model_times_its_steps() {
    for &model in Model::ALL.iter().filter(|m| !m.forks_workers()) {
        let mut server = spawn_self_timed(Path::new(SERVER), &model.into()).unwrap();
        let idle = server.self_times().unwrap();
        assert_eq!(
            idle.read.calls, 0,
            "{model}: timing must stay off until reset: {idle:?}"
        );
        server.reset_self_times().unwrap();
        // Two runs: a blocking accept already waiting at reset is not timed (its start was
        // missed), the second run's is.
        let requests = 2000;
        let config = LoadConfig {
            concurrency: 1,
            requests: Some(requests / 2),
            ..LoadConfig::new(Command::Line(LineCommand::Ping))
        };
        for _ in 0..2 {
            let report = bench::load::run(server.addr(), &config).unwrap();
            assert_eq!(report.requests, requests / 2, "{model}: {report:?}");
        }
        // The client can read the last response before the server has recorded its write.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t = server.self_times().unwrap();
        assert_eq!(
            t.write.calls - t.write.errors,
            requests,
            "{model}: one write per PONG: {t:?}"
        );
        assert_eq!(t.write.bytes, requests * 5, "{model}: {t:?}");
        assert!(
            t.read.calls >= requests && t.read.bytes == requests * 5,
            "{model}: {t:?}"
        );
        assert!(t.process.calls >= requests, "{model}: {t:?}");
        assert!(t.accept.calls - t.accept.errors >= 1, "{model}: {t:?}");
        assert!(t.read.ns > 0 && t.write.ns > 0 && t.window_ns > 0, "{model}: {t:?}");
        for step in [&t.accept, &t.read, &t.write, &t.process] {
            assert_eq!(
                step.hist.iter().sum::<u64>(),
                step.calls,
                "{model}: histogram holds every call"
            );
        }
    }
}

#[test]
fn prefork_refuses_self_timing() {
    let err = spawn_self_timed(Path::new(SERVER), &Model::Prefork.into()).unwrap_err();
    assert!(format!("{err:#}").contains("worker processes"), "{err:#}");
}

#[test]
fn stop_ends_timing_until_the_next_reset() {
    let mut server = spawn_self_timed(Path::new(SERVER), &Model::Epoll.into()).unwrap();
    let config = LoadConfig {
        requests: Some(100),
        ..LoadConfig::new(Command::Line(LineCommand::Ping))
    };
    let written = |server: &mut bench::server::ServerChild| {
        // The client can read the last response before the server has recorded its write.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t = server.self_times().unwrap();
        t.write.calls - t.write.errors
    };
    server.reset_self_times().unwrap();
    bench::load::run(server.addr(), &config).unwrap();
    assert_eq!(written(&mut server), 100);
    server.stop_self_times().unwrap();
    bench::load::run(server.addr(), &config).unwrap();
    assert_eq!(written(&mut server), 100, "nothing is timed after stop");
    server.reset_self_times().unwrap();
    bench::load::run(server.addr(), &config).unwrap();
    assert_eq!(written(&mut server), 100, "a reset starts from zero");
}
