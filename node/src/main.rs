//! tcpprof's JSON node: one Maelstrom message per line on stdin, one reply per line on stdout.
//! Quick messages are answered on the read loop; benchmarks queue for one benchmark thread, so an
//! `echo` is never delayed by a run and two runs never share the machine's cores.
use node::fields;
use node::message::{Outbox, Rejected, Request, code, parse};
use node::runner::{Full, MAX_JOBS, Runner};
use profiler::plan::Limits;
use serde_json::{Value, json};
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let limits = Limits::of_this_machine();
    eprintln!("node: up to {} connections per benchmark", limits.max_concurrency);
    let outbox = Arc::new(Outbox::new());
    let jobs = Runner::start(outbox.clone());
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        match read_line(&mut stdin, &mut line) {
            Ok(Line::End) => break,
            Ok(Line::Read) => {}
            Ok(Line::TooLong) => {
                eprintln!("node: input line over {MAX_LINE} bytes; skipped");
                continue;
            }
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
            Ok((request, kind)) => handle(&outbox, &jobs, &limits, request, &kind),
            Err(Rejected::Reply(request, code, text)) => outbox.error(&request, code, &text),
            Err(Rejected::Log(text)) => eprintln!("node: {text}"),
        }
    }
    // EOF: answer what is queued or running, then exit 0.
    jobs.finish();
}

/// The longest input line: a request's largest field (1 MiB) with room for the envelope.
const MAX_LINE: usize = 2 << 20;

enum Line {
    Read,
    /// Longer than [`MAX_LINE`]: skipped to its end, never held whole.
    TooLong,
    End,
}

/// The next line into `line`, holding at most [`MAX_LINE`] bytes of it.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Line> {
    line.clear();
    let n = input.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if line.len() <= MAX_LINE || line.ends_with(b"\n") {
        return Ok(Line::Read);
    }
    // The rest of the line, a buffer at a time, never held.
    input.skip_until(b'\n')?;
    line.clear();
    Ok(Line::TooLong)
}

fn handle(outbox: &Outbox, jobs: &Runner, limits: &Limits, request: Request, kind: &str) {
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
        "bench_run" | "bench_sweep" | "bench_profile" | "bench_find_max" => {
            match node::plan::parse(kind, &request.body, limits) {
                Ok(job) => {
                    if let Err(Full(request)) = jobs.submit(request, job) {
                        let text = format!(
                            "the benchmark queue holds {MAX_JOBS} jobs and is full; send it again when one has been answered"
                        );
                        outbox.error(&request, code::TEMPORARILY_UNAVAILABLE, &text);
                    }
                }
                Err(text) => outbox.error(&request, code::MALFORMED_REQUEST, &text),
            }
        }
        other => outbox.error(
            &request,
            code::NOT_SUPPORTED,
            &format!("unsupported message type: {other}"),
        ),
    }
}
