//! tcpprof's JSON node: one Maelstrom message per line on stdin, one reply per line on stdout.
//! Quick messages are answered on the read loop; benchmarks queue for one benchmark thread, so an
//! `echo` is never delayed by a run and two runs never share the machine's cores.
mod fields;
mod jobs;
mod message;
mod stats;

use message::{Outbox, Rejected, Request, code, parse};
use serde_json::{Value, json};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    // Raise RLIMIT_NOFILE now, so that ten thousand connections are possible from the first run.
    let max_concurrency = jobs::max_concurrency();
    eprintln!("node: up to {max_concurrency} connections per benchmark");
    let outbox = Arc::new(Outbox::new());
    let jobs = jobs::Runner::start(outbox.clone());
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("node: reading stdin: {e}");
                break;
            }
        }
        let received = Instant::now();
        let Ok(text) = std::str::from_utf8(&line) else {
            eprintln!("node: input line is not UTF-8; ignored");
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse(text.trim_end(), received) {
            Ok((request, kind)) => handle(&outbox, &jobs, request, &kind),
            Err(Rejected::Reply(request, code, text)) => outbox.error(&request, code, &text),
            Err(Rejected::Log(text)) => eprintln!("node: {text}"),
        }
    }
    // EOF: answer what is queued or running, then exit 0.
    jobs.finish();
}

fn handle(outbox: &Outbox, jobs: &jobs::Runner, request: Request, kind: &str) {
    match kind {
        "init" => match fields::string(&request.body, "node_id") {
            Ok(id) => {
                outbox.init(id.to_owned());
                outbox.reply(&request, json!({ "type": "init_ok" }));
            }
            Err(text) => outbox.error(&request, code::MALFORMED_REQUEST, &text),
        },
        "echo" | "bench_echo" => {
            let Some(echo) = request.body.get("echo").cloned() else {
                return outbox.error(&request, code::MALFORMED_REQUEST, "echo: missing");
            };
            let mut body = json!({ "type": format!("{kind}_ok"), "echo": echo });
            if kind == "bench_echo" {
                body["latency_us"] = Value::from(request.received.elapsed().as_micros() as u64);
            }
            outbox.reply(&request, body);
        }
        "bench_stats" => outbox.reply(&request, outbox.stats()),
        "bench_run" | "bench_sweep" | "bench_profile" => match jobs::Job::parse(kind, &request.body) {
            Ok(job) => jobs.submit(request, job),
            Err(text) => outbox.error(&request, code::MALFORMED_REQUEST, &text),
        },
        other => outbox.error(
            &request,
            code::NOT_SUPPORTED,
            &format!("unsupported message type: {other}"),
        ),
    }
}
