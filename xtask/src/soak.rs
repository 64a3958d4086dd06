//! `cargo xtask soak --minutes N`: one node fed random messages for N minutes, valid and
//! invalid, benchmarks among them, at a bounded rate; then stdin closes and every request with
//! someone to answer must have had exactly one reply. Prints what was sent, the replies by type,
//! the errors by code, and the node's RSS at the start and the end.
use crate::bench::rss_kib;
use anyhow::{Context, Result, ensure};
use owned_child::OwnedChild;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Messages sent per second: enough to keep the read loop busy, not a flood that only measures
/// the pipe.
const RATE: u64 = 2000;

pub fn soak(root: &Path, minutes: f64) -> Result<()> {
    ensure!(
        minutes > 0.0 && minutes <= 24.0 * 60.0,
        "--minutes must be above 0 and at most a day"
    );
    let exe = root.join("target/release/node");
    let mut node = OwnedChild::spawn(
        Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .with_context(|| format!("starting {}", exe.display()))?;
    let mut stdin = node.take_stdin().context("the node's stdin")?;
    let stdout = node.take_stdout().context("the node's stdout")?;
    let (replies, received) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value = serde_json::from_str(&line).unwrap_or_else(|_| json!({"unparsable": line}));
            if replies.send(value).is_err() {
                break;
            }
        }
    });
    writeln!(
        stdin,
        "{}",
        envelope(json!({"type": "init", "msg_id": 0, "node_id": "n1", "node_ids": ["n1"]}))
    )?;
    let init_ok = received
        .recv_timeout(Duration::from_secs(10))
        .context("no reply to init")?;
    ensure!(
        init_ok["body"]["type"] == "init_ok",
        "the node answered init with {init_ok}"
    );
    let rss_start = rss_kib(node.id());
    let mut rng = SplitMix(0x5eed ^ u64::from(std::process::id()));
    let (mut sent, mut expected) = (BTreeMap::<&str, u64>::new(), 0u64);
    let window = Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let mut msg_id = 1u64;
    let mut last_report = started;
    while started.elapsed() < window {
        let (kind, line, answered) = message(&mut rng, msg_id);
        msg_id += 1;
        writeln!(stdin, "{line}").context("writing to the node (did it die?)")?;
        *sent.entry(kind).or_default() += 1;
        expected += u64::from(answered);
        // Pace: the k-th message leaves at k / RATE seconds.
        let due = started + Duration::from_secs_f64(msg_id as f64 / RATE as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            eprintln!(
                "soak: {:.0} s, {} messages, node RSS {} KiB",
                started.elapsed().as_secs_f64(),
                sent.values().sum::<u64>(),
                rss_kib(node.id())
            );
            last_report = Instant::now();
        }
    }
    let rss_end = rss_kib(node.id());
    drop(stdin);
    // The node answers what is queued, then exits.
    let status = node
        .wait_timeout(Duration::from_secs(15 * 60))?
        .context("the node did not exit within 15 minutes of its stdin closing")?;
    let _ = reader.join();
    let (mut by_type, mut by_code, mut per_request) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for reply in received.try_iter() {
        let body = &reply["body"];
        let kind = body["type"].as_str().unwrap_or("unparsable").to_string();
        if kind == "error" {
            *by_code.entry(body["code"].as_u64().unwrap_or(0)).or_insert(0u64) += 1;
        }
        *by_type.entry(kind).or_insert(0u64) += 1;
        *per_request.entry(body["in_reply_to"].as_u64()).or_insert(0u64) += 1;
    }
    let replies: u64 = by_type.values().sum();
    let twice = per_request.values().filter(|&&n| n > 1).count();
    println!("soak for {minutes} min at {RATE} messages/s: node exit {status}");
    println!("sent: {} messages {sent:?}", sent.values().sum::<u64>());
    println!("replies: {replies} of {expected} expected {by_type:?}");
    println!("errors by code: {by_code:?}");
    println!("RSS: {rss_start} KiB at the start, {rss_end} KiB at the end");
    ensure!(status.success(), "the node exited with {status}");
    ensure!(
        replies == expected && twice == 0,
        "{expected} replies expected, {replies} came ({twice} requests answered twice)"
    );
    Ok(())
}

/// One random line: what kind it is, the line, and whether it has someone to answer.
fn message(rng: &mut SplitMix, msg_id: u64) -> (&'static str, String, bool) {
    let pick = rng.next() % 1000;
    let body = |mut body: Value| {
        body["msg_id"] = json!(msg_id);
        envelope(body).to_string()
    };
    match pick {
        0..=399 => ("echo", body(json!({"type": "echo", "echo": rng.next() % 1000})), true),
        400..=499 => ("bench_echo", body(json!({"type": "bench_echo", "echo": "x"})), true),
        500..=549 => ("bench_stats", body(json!({"type": "bench_stats"})), true),
        // A small real benchmark, one in a thousand: the queue fills now and then (error 11).
        550 => (
            "bench_run",
            body(json!({"type": "bench_run", "num_requests": 200, "command": "PING", "concurrency": 2})),
            true,
        ),
        551 => (
            "bench_sweep",
            body(json!({"type": "bench_sweep", "num_requests": 100, "concurrency_levels": [1, 2]})),
            true,
        ),
        552..=649 => {
            // A benchmark with a bad field: answered at once with error 12.
            let bad = [
                json!({"type": "bench_run", "num_requests": -1}),
                json!({"type": "bench_run", "command": "STREAM 99999999999999"}),
                json!({"type": "bench_sweep", "concurrency_levels": []}),
                json!({"type": "bench_run", "protocol": "http"}),
                json!({"type": "bench_profile", "mode": "magic"}),
                json!({"type": "bench_run", "target": "10.0.0.1:80"}),
            ];
            (
                "bad field",
                body(bad[(rng.next() % bad.len() as u64) as usize].clone()),
                true,
            )
        }
        650..=699 => ("unknown type", body(json!({"type": "teleport"})), true),
        700..=799 => {
            // Garbage bytes (never a newline: one line each).
            let len = rng.next() % 200;
            let text: String = (0..len).map(|_| char::from(b' ' + (rng.next() % 94) as u8)).collect();
            ("garbage", text, false)
        }
        800..=899 => (
            "no msg_id",
            envelope(json!({"type": "echo", "echo": 1})).to_string(),
            false,
        ),
        _ => ("not an object", "[1, 2, 3]".to_string(), false),
    }
}

fn envelope(body: Value) -> Value {
    json!({"src": "c1", "dest": "n1", "body": body})
}

/// A small deterministic generator (SplitMix64): the soak's mix, reproducible from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
