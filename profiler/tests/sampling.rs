//! Sampling mode and stacks on the real kernel, against a real bench-server under the real load
//! generator: the breakdown from cpu-clock samples agrees with the exact mode, and the stacks name
//! the code behind each part. Needs root (eBPF, perf events).
mod common;

use bench::load::{Command, LineCommand};
use bench::server::Model;
use common::{attaching, counting};
use profiler::benchmark::{Benchmark, ProfileError, Target};
use profiler::{Mode, Part, Profile, ProfileOptions, Requested, Session, printer, workload};
use std::path::Path;

fn benchmark(command: Command, requests: u64, concurrency: usize, mode: Mode) -> Benchmark {
    let mut b = Benchmark::new(Target::server(Model::Epoll), command);
    b.load.requests = Some(requests);
    b.load.concurrency = concurrency;
    b.profiling.mode = Requested::Only(mode);
    b
}

fn profile(b: &Benchmark) -> Profile {
    let run = b.profile().unwrap_or_else(|e| panic!("{e:?}"));
    let (report, profile) = (run.load.unwrap(), run.profile.unwrap());
    assert_eq!(report.errors, 0, "{report:?}");
    eprintln!("{}", printer::profile_table(&profile));
    let sum = profile.breakdown.breakdown.sum();
    assert!((sum - 100.0).abs() <= 0.1, "percentages sum to {sum}");
    profile
}

/// BURN repeats a ~167 us cycle; at 2999 and 3001 Hz the sampling period is two cycles to within
/// a fraction of a microsecond, which read write at 26% instead of 6% before the sampler's period
/// was jittered (cpu_clock.rs). Every frequency must see the same split.
#[test]
fn burn_reads_the_same_at_frequencies_near_a_multiple_of_its_cycle() {
    let _turn = attaching();
    for hz in [1999, 2999, 3001] {
        let mut b = benchmark(Command::Line(LineCommand::Burn(20_000)), 3000, 4, Mode::Sampling);
        b.profiling.frequency_hz = hz;
        let p = profile(&b);
        assert!(
            p.breakdown.percent(Part::Process) >= 80.0,
            "{hz} Hz: {:?}",
            p.breakdown.breakdown
        );
    }
}

#[test]
fn burn_is_process_and_its_top_function_is_burn() {
    let _turn = attaching();
    let p = profile(&benchmark(
        Command::Line(LineCommand::Burn(20_000)),
        5000,
        4,
        Mode::Sampling,
    ));
    let b = &p.breakdown;
    assert_eq!(b.mode, Mode::Sampling);
    assert!(b.fallback_reasons.is_empty(), "{:?}", b.fallback_reasons);
    let sampling = b.sampling.expect("sampling mode states its samples");
    assert_eq!(sampling.frequency_hz, Benchmark::PROFILE_FREQUENCY_HZ);
    assert!(sampling.samples >= 500, "{} samples", sampling.samples);
    assert!(b.percent(Part::Process) >= 80.0, "{:?}", b.breakdown);
    assert!(sampling.margin_pct.process_pct > 0.0 && sampling.margin_pct.process_pct < 5.0);
    // Sampling mode has no syscall hook: no calls are counted.
    assert_eq!(b.classes.write.calls, 0);
    let stacks = p.stacks.as_ref().expect("sampling mode takes stacks");
    let first = &stacks.functions[&Part::Process][0];
    assert!(first.function.ends_with("burn"), "{first:?}");
    assert_eq!(first.module, "bench-server");
    assert!(first.pct >= 80.0, "{first:?}");
    // bench-server has frame pointers: its stacks reach main.
    let burn_stack = stacks
        .folded
        .iter()
        .find(|(line, _)| line.ends_with("::burn"))
        .expect("a stack ending in burn");
    assert!(
        burn_stack.0.starts_with("process;bench-server;") && burn_stack.0.contains(";main;"),
        "{burn_stack:?}"
    );
    assert!(
        stacks.errors.truncated * 10 < sampling.samples,
        "{:?} of {} samples",
        stacks.errors,
        sampling.samples
    );
}

#[test]
fn large_stream_is_write_and_its_stacks_reach_tcp_sendmsg() {
    let _turn = attaching();
    let p = profile(&benchmark(
        Command::Line(LineCommand::Stream(4 << 20)),
        60,
        2,
        Mode::Sampling,
    ));
    assert_eq!(p.breakdown.bottleneck, Some(Part::Write), "{:?}", p.breakdown.breakdown);
    let stacks = p.stacks.as_ref().unwrap();
    let write_stacks: Vec<&str> = stacks
        .folded
        .iter()
        .map(|(line, _)| line.as_str())
        .filter(|line| line.starts_with("write;"))
        .collect();
    assert!(
        write_stacks.iter().any(|line| line.contains(";tcp_sendmsg_[k]")),
        "no write stack reaches tcp_sendmsg: {write_stacks:#?}"
    );
    // Kernel frames come after the user frames, outermost first, from the syscall entry.
    assert!(
        write_stacks
            .iter()
            .any(|line| line.contains(";entry_SYSCALL_64") && line.contains("_[k]")),
        "{write_stacks:#?}"
    );
}

/// Tracepoint mode switches on the syscall slow path for every syscall and runs two programs per
/// call; much of that lands outside its clock reads, where it would read as the server's time,
/// mostly as process (on this VM about 7 points for a 64-byte ECHO), so it takes the cost it
/// measured at attach out of its parts. Sampling mode hooks no syscall. So the exact shares are
/// checked against the samples of the same run outside the tracing path (the same workload seen
/// both ways), against sampling mode's, and the cost taken out against the share of the run's
/// samples that caught the tracing path.
#[test]
fn small_echo_shares_agree_with_tracepoint_mode() {
    let _turn = attaching();
    let echo = Command::Line(LineCommand::Echo { payload_size: 64 });
    let mut exact_run = benchmark(echo.clone(), 200_000, 10, Mode::Tracepoint);
    exact_run.profiling.stacks = true;
    let exact = profile(&exact_run);
    let sampled = profile(&benchmark(echo, 200_000, 10, Mode::Sampling)).breakdown;
    let (e, stacks) = (&exact.breakdown, exact.stacks.as_ref().unwrap());

    // The tracing path's samples, per part: the same run's own view of what the exact mode took
    // out of its parts (the cost measured at attach).
    let tracing_samples = |part: Part| stacks.tracing_samples.get(&part).copied().unwrap_or(0);
    // The same run's samples less those, as shares of on-CPU (samples x period) + run-queue time.
    let period_ns = 1e9 / f64::from(Benchmark::PROFILE_FREQUENCY_HZ);
    let c = &e.classes;
    let sampled_ns = |samples: u64, part: Part| samples.saturating_sub(tracing_samples(part)) as f64 * period_ns;
    let same_run_parts = [
        sampled_ns(c.accept.samples, Part::Accept),
        sampled_ns(c.read.samples, Part::Read),
        sampled_ns(c.user.samples, Part::Process),
        sampled_ns(c.write.samples, Part::Write),
        sampled_ns(c.other.samples, Part::Overhead) + e.runq_ns as f64,
    ];
    let same_run_total: f64 = same_run_parts.iter().sum();
    // Across the two runs, on-CPU shares of the per-request parts: run-queue wait is the host's
    // doing and differs from one run to the next (CI once saw 131 ms of it in one run and 9 ms
    // in the other), and so does the `other` class, epoll_wait here, whose calls depend on how
    // many requests each wait finds ready: a server slowed by tracing finds fewer (CI once saw
    // 12.8% of on-CPU traced, 5.3% sampled, from 40,000 waits for 200,000 requests).
    let oncpu_shares = |ns: [u64; 5]| {
        let total: u64 = ns[..4].iter().sum();
        ns.map(|n| n as f64 * 100.0 / total.max(1) as f64)
    };
    let exact_oncpu = oncpu_shares([c.accept, c.read, c.user, c.write, c.other].map(|k| k.oncpu_ns));
    let s = &sampled.classes;
    let sampled_oncpu = oncpu_shares([s.accept, s.read, s.user, s.write, s.other].map(|k| k.samples));
    let margin = sampled.sampling.unwrap().margin_pct;
    for (i, part) in Part::ALL.into_iter().enumerate() {
        let exact_pct = e.percent(part);
        let same_run = same_run_parts[i] / same_run_total * 100.0;
        let sampling = sampled_oncpu[i];
        eprintln!(
            "{part}: tracepoint {exact_pct:.1}% (its samples outside the tracing path {same_run:.1}%; of the \
             per-request on-CPU {:.1}%), sampling mode {:.1}% (of the per-request on-CPU {sampling:.1}%) +- {:.1}",
            exact_oncpu[i],
            sampled.percent(part),
            margin.get(part)
        );
        assert!(
            (exact_pct - same_run).abs() <= 5.0,
            "{part}: exact {exact_pct}% vs the same run's samples {same_run:.1}%"
        );
        assert!(
            part == Part::Overhead || (exact_oncpu[i] - sampling).abs() <= 5.0,
            "{part}: tracepoint, its tracing cost taken out, {:.1}% of on-CPU vs sampling mode {sampling:.1}%",
            exact_oncpu[i]
        );
    }
    // The cost measured at attach, against the share of the run's samples in the tracing path.
    let measured = e.tracing.expect("tracepoint mode measures its tracing cost").pct;
    let all: u64 = Part::ALL.iter().map(|&p| tracing_samples(p)).sum();
    let seen = all as f64 * 100.0 / stacks.total_stacked_samples() as f64;
    eprintln!("tracing: {measured:.1}% taken out, {seen:.1}% of the samples in the tracing path");
    assert!(tracing_samples(Part::Process) > 0, "{:?}", stacks.tracing_samples);
    assert!(
        (measured - seen).abs() <= 5.0,
        "taken out {measured:.1}%, sampled {seen:.1}%"
    );
}

#[test]
fn folded_stacks_parse_and_the_flame_graph_is_svg() {
    let _turn = attaching();
    let p = profile(&benchmark(
        Command::Line(LineCommand::Echo { payload_size: 64 }),
        30_000,
        10,
        Mode::Sampling,
    ));
    let stacks = p.stacks.as_ref().unwrap();
    let folded = printer::folded(stacks);
    let mut total = 0;
    for line in folded.lines() {
        let (stack, count) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no count: {line:?}"));
        let count: u64 = count.parse().unwrap_or_else(|_| panic!("bad count: {line:?}"));
        assert!(count > 0, "{line}");
        total += count;
        let frames: Vec<&str> = stack.split(';').collect();
        assert!(
            Part::ALL.iter().any(|p| p.name() == frames[0]),
            "first frame must be a part: {line}"
        );
        assert_eq!(frames[1], "bench-server", "then the process: {line}");
        assert!(frames.len() >= 3 && frames.iter().all(|f| !f.is_empty()), "{line}");
        // Kernel frames, once they start, go on to the end.
        if let Some(first_kernel) = frames.iter().position(|f| f.ends_with("_[k]")) {
            assert!(frames[first_kernel..].iter().all(|f| f.ends_with("_[k]")), "{line}");
        }
    }
    let samples = p.breakdown.sampling.unwrap().samples;
    assert_eq!(
        total + stacks.errors.lost,
        samples,
        "every sample is in one stack or lost"
    );

    let svg = printer::flamegraph(stacks, "test", None).unwrap();
    let svg = String::from_utf8(svg).unwrap();
    // inferno's SVG carries a DOCTYPE.
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&svg, options).unwrap_or_else(|e| panic!("not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // The parts are the first row above the root.
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .filter_map(|n| n.text())
        .collect();
    for part in [Part::Read, Part::Write] {
        assert!(
            titles.iter().any(|t| t.starts_with(&format!("{} (", part.name()))),
            "no {part} frame in the flame graph: {titles:?}"
        );
    }
}

#[test]
fn exact_modes_take_stacks_when_asked() {
    let _turn = attaching();
    let mut b = benchmark(Command::Line(LineCommand::Burn(20_000)), 3000, 4, Mode::Tracepoint);
    b.profiling.stacks = true;
    let p = profile(&b);
    assert_eq!(p.breakdown.mode, Mode::Tracepoint);
    assert!(p.breakdown.sampling.is_none(), "exact shares carry no margin");
    assert!(p.breakdown.classes.write.calls >= 3000, "calls are still counted");
    let stacks = p.stacks.expect("stacks were asked for");
    assert!(stacks.functions[&Part::Process][0].function.ends_with("burn"));
    let json = serde_json::to_value(&p.breakdown).unwrap();
    assert!(json.get("margin_pct").is_none(), "{json}");
}

#[test]
fn a_target_that_exits_mid_window_is_reported_and_its_stacks_named() {
    let _turn = attaching();
    let exe = Path::new(env!("CARGO_BIN_EXE_tcpprof"));
    let options = ProfileOptions {
        mode: Requested::Only(Mode::Sampling),
        frequency_hz: 4999,
        ..ProfileOptions::default()
    };
    let mut child = workload::Child::spawn(exe, 100, 1000).unwrap();
    let pid = child.pid();
    let session = Session::attach(&[pid], &options).unwrap();
    child.run_to_done().unwrap();
    child.finish().unwrap();
    let p = session.finish(None).unwrap().profile.unwrap();
    eprintln!("{}", printer::profile_table(&p));
    assert_eq!(p.exited, [pid]);
    assert!(printer::profile_table(&p).contains(&format!("process {pid} exited during the window")));
    let stacks = p.stacks.unwrap();
    assert!(
        stacks
            .folded
            .iter()
            .any(|(line, _)| line.contains("profiler::workload::run")),
        "the exited workload's frames are named: {:#?}",
        stacks.folded
    );
}

#[test]
fn programs_and_perf_events_are_gone_after_the_session() {
    let _alone = counting();
    let (bpf_before, perf_before) = (descriptors("anon_inode:bpf"), descriptors("anon_inode:[perf_event]"));
    let target = workload::Child::spawn(Path::new(env!("CARGO_BIN_EXE_tcpprof")), 1, 1).unwrap();
    let options = ProfileOptions {
        mode: Requested::Only(Mode::Sampling),
        ..ProfileOptions::default()
    };
    let session = Session::attach(&[target.pid()], &options).unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        descriptors("anon_inode:[perf_event]"),
        perf_before + cpus,
        "one cpu-clock event per CPU"
    );
    assert!(descriptors("anon_inode:bpf") > bpf_before);
    drop(session);
    assert_eq!(descriptors("anon_inode:[perf_event]"), perf_before);
    assert_eq!(descriptors("anon_inode:bpf"), bpf_before);
}

#[test]
fn a_frequency_above_the_kernels_limit_is_refused_with_the_limit() {
    let _turn = attaching();
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let target = workload::Child::spawn(Path::new(env!("CARGO_BIN_EXE_tcpprof")), 1, 1).unwrap();
    let options = ProfileOptions {
        mode: Requested::Only(Mode::Sampling),
        frequency_hz: max + 1,
        ..ProfileOptions::default()
    };
    let err = Session::attach(&[target.pid()], &options).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains(&format!("limit of {max} Hz")), "{text}");
    // In a benchmark, with stacks in auto mode: refused as well, not passed off as a profile in
    // userspace mode (which takes no stacks) after every eBPF mode "failed".
    let mut b = benchmark(Command::Line(LineCommand::Ping), 100, 1, Mode::Tracepoint);
    b.profiling = ProfileOptions {
        stacks: true,
        frequency_hz: max + 1,
        ..ProfileOptions::default()
    };
    match b.profile() {
        Err(ProfileError::Unavailable(text)) => assert!(text.contains(&format!("limit of {max} Hz")), "{text}"),
        Ok(run) => panic!(
            "profiled instead of refusing: {:?}",
            run.profile.map(|p| p.breakdown.mode)
        ),
        Err(e) => panic!("{e:?}"),
    }
}

/// This process's descriptors whose link starts with `kind`.
fn descriptors(kind: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with(kind))
        .count()
}
