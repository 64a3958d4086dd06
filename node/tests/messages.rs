//! The node protocol: seed sample cases, ordering, and bad input of every class.
mod common;
use common::{Node, ms};
use serde_json::json;

#[test]
fn seed_init_and_echo() {
    let mut node = Node::start();
    node.send_line(r#"{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":2,"echo":"bench"}}"#);
    assert_eq!(
        node.recv(ms(5000)),
        json!({"src": "n1", "dest": "c1", "body": {"type": "echo_ok", "echo": "bench", "in_reply_to": 2, "msg_id": 1}})
    );
}

#[test]
fn bench_echo_reports_latency_and_stats_count_messages() {
    let mut node = Node::start();
    let reply = node.call(json!({"type": "bench_echo", "echo": "perf"}), ms(5000));
    assert_eq!(reply["type"], "bench_echo_ok");
    assert_eq!(reply["echo"], "perf");
    assert!(reply["latency_us"].is_u64(), "{reply}");
    for i in 0..20 {
        node.call(json!({"type": "echo", "echo": i}), ms(5000));
    }
    let stats = node.call(json!({"type": "bench_stats"}), ms(5000));
    assert_eq!(stats["type"], "bench_stats_ok");
    // Since init: init itself, bench_echo and 20 echoes were answered before bench_stats.
    assert_eq!(stats["total_messages"], 22, "{stats}");
    for key in [
        "elapsed_ms",
        "throughput_per_sec",
        "avg_latency_us",
        "p50_latency_us",
        "p99_latency_us",
    ] {
        assert!(stats[key].is_number(), "{key} missing: {stats}");
    }
    assert!(stats["p99_latency_us"].as_u64() >= stats["p50_latency_us"].as_u64());
}

#[test]
fn bad_input_gets_errors_naming_the_field_and_the_node_keeps_serving() {
    let mut node = Node::start();
    // Nobody to answer: stderr only, nothing on stdout.
    node.send_line("this is not json");
    node.send_line(r#"{"src":"c1","dest":"n1"}"#);
    node.send_line(r#"{"src":"c1","dest":"n1","body":{"type":"echo","echo":"no msg_id"}}"#);
    node.send_line(r#"[1,2,3]"#);
    let cases = [
        (json!({"no_type": 1}), 12, "type"),
        (json!({"type": 7}), 12, "type"),
        (json!({"type": "frobnicate"}), 10, "frobnicate"),
        (json!({"type": "bench_run", "num_requests": "many"}), 12, "num_requests"),
        (json!({"type": "bench_run", "num_requests": 0}), 12, "num_requests"),
        (json!({"type": "bench_run", "num_requests": -5}), 12, "num_requests"),
        (json!({"type": "bench_run", "num_requests": 2.5}), 12, "num_requests"),
        (
            json!({"type": "bench_run", "num_requests": 100_000_000_000u64}),
            12,
            "num_requests",
        ),
        (
            json!({"type": "bench_run", "payload_size_bytes": 2_000_000}),
            12,
            "payload_size_bytes",
        ),
        (json!({"type": "bench_run", "concurrency": 0}), 12, "concurrency"),
        (
            json!({"type": "bench_run", "concurrency": 10_000_000}),
            12,
            "concurrency",
        ),
        (json!({"type": "bench_run", "concurrency": [1]}), 12, "concurrency"),
        (json!({"type": "bench_run", "command": "DELETE *"}), 12, "command"),
        (
            json!({"type": "bench_run", "connection": "sometimes"}),
            12,
            "connection",
        ),
        (json!({"type": "bench_run", "server": "fork-bomb"}), 12, "server"),
        (json!({"type": "bench_run", "rate": -1}), 12, "rate"),
        (json!({"type": "bench_run", "duration_ms": 0}), 12, "duration_ms"),
        (
            json!({"type": "bench_run", "target": "10.0.0.1", "request": "x", "response": "y"}),
            12,
            "target",
        ),
        (json!({"type": "bench_run", "target": "127.0.0.1:6379"}), 12, "request"),
        (json!({"type": "bench_run", "protocol": "gopher"}), 12, "protocol"),
        (
            json!({"type": "bench_run", "command": "STREAM 99999999999999"}),
            12,
            "command",
        ),
        (
            json!({"type": "bench_sweep", "duration_ms": 600000, "concurrency_levels": [1, 2]}),
            12,
            "duration_ms",
        ),
        (json!({"type": "bench_run", "protocol": "http"}), 12, "protocol"),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:80", "protocol": "http", "method": "G ET"}),
            12,
            "method",
        ),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:80", "protocol": "http", "headers": ["no colon"]}),
            12,
            "headers",
        ),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:80", "protocol": "http", "headers": "X: y"}),
            12,
            "headers",
        ),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:80", "protocol": "http", "expect_status": 99}),
            12,
            "expect_status",
        ),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:80", "protocol": "http", "keyspace": 10}),
            12,
            "keyspace",
        ),
        (
            json!({"type": "bench_sweep", "target": "127.0.0.1:6379", "protocol": "resp", "request": " "}),
            12,
            "request",
        ),
        (
            json!({"type": "bench_run", "target": "127.0.0.1:6379", "protocol": "resp", "keyspace": 0}),
            12,
            "keyspace",
        ),
        (
            json!({"type": "bench_sweep", "concurrency_levels": []}),
            12,
            "concurrency_levels",
        ),
        (
            json!({"type": "bench_sweep", "concurrency_levels": [1, -1]}),
            12,
            "concurrency_levels[1]",
        ),
        (json!({"type": "bench_profile", "mode": "magic"}), 12, "mode"),
        (json!({"type": "bench_run", "backlog": 0}), 12, "backlog"),
        (json!({"type": "bench_run", "backlog": 70_000}), 12, "backlog"),
        (
            json!({"type": "bench_run", "backlog": 8, "target": "127.0.0.1:6379", "request": "x", "response": "y"}),
            12,
            "backlog",
        ),
        (json!({"type": "bench_profile", "frequency_hz": 0}), 12, "frequency_hz"),
        (
            json!({"type": "bench_profile", "frequency_hz": 20001}),
            12,
            "frequency_hz",
        ),
        (
            json!({"type": "bench_profile", "frequency_hz": "fast"}),
            12,
            "frequency_hz",
        ),
        (json!({"type": "bench_profile", "stacks": "yes"}), 12, "stacks"),
        (json!({"type": "init"}), 12, "node_id"),
        (json!({"type": "echo"}), 12, "echo"),
    ];
    for (body, code, field) in cases {
        let reply = node.call(body.clone(), ms(5000));
        assert_eq!(reply["type"], "error", "{body} -> {reply}");
        assert_eq!(reply["code"], code, "{body} -> {reply}");
        let text = reply["text"].as_str().unwrap();
        assert!(
            text.contains(field),
            "{body}: error text {text:?} does not name {field}"
        );
    }
    let reply = node.call(json!({"type": "echo", "echo": "still here"}), ms(5000));
    assert_eq!(reply["echo"], "still here");
}

#[test]
fn msg_ids_count_up_from_zero() {
    let mut node = Node::start();
    for expected in 1..=5 {
        let reply = node.call(json!({"type": "echo", "echo": expected}), ms(5000));
        assert_eq!(reply["msg_id"], expected);
    }
}

/// The benchmark queue holds MAX_JOBS (16) jobs, running or waiting: past that a bench_* request
/// gets error 11 naming the limit, echo is still answered at once, and every job taken is
/// answered.
#[test]
fn a_full_queue_refuses_with_code_11_and_echo_still_answers() {
    let mut node = Node::start();
    let runs: Vec<u64> = (0..20)
        .map(|_| node.send(json!({"type": "bench_run", "duration_ms": 150, "command": "PING", "concurrency": 1})))
        .collect();
    let echo = node.send(json!({"type": "echo", "echo": "still here"}));
    let (mut refused, mut echoed_after_runs) = (Vec::new(), None);
    for _ in 0..5 {
        let reply = node.recv(ms(5000));
        let body = &reply["body"];
        if body["type"] == "echo_ok" {
            assert_eq!(body["in_reply_to"], echo);
            echoed_after_runs = Some(refused.len());
        } else {
            assert_eq!(body["type"], "error", "{reply}");
            assert_eq!(body["code"], 11, "{reply}");
            assert!(body["text"].as_str().unwrap().contains("16 jobs"), "{reply}");
            refused.push(body["in_reply_to"].as_u64().unwrap());
        }
    }
    assert_eq!(refused, &runs[16..], "the last four are refused, in order");
    assert_eq!(
        echoed_after_runs,
        Some(4),
        "echo answered right after the refusals, before any run"
    );
    let (status, rest) = node.close(ms(60_000));
    assert!(status.success());
    let done: Vec<u64> = rest
        .iter()
        .map(|r| r["body"]["in_reply_to"].as_u64().unwrap())
        .collect();
    assert_eq!(done, &runs[..16], "every job taken was answered: {rest:?}");
    assert!(rest.iter().all(|r| r["body"]["type"] == "bench_run_ok"), "{rest:?}");
}

/// 200,000 echoes and 200,000 bad lines (not JSON, nobody to answer, unknown types, a field
/// type wrong), and a line of 3 MiB: every echo answered, and the node's memory stays flat.
#[test]
fn a_flood_of_lines_leaves_memory_flat_and_every_echo_answered() {
    let mut node = Node::start_raw_with(std::process::Stdio::null());
    node.send_line(r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":[]}}"#);
    node.recv(ms(5000));
    // Warm up the reply path before measuring.
    for i in 0..1000 {
        node.call(json!({"type": "echo", "echo": i}), ms(5000));
    }
    let before = node.rss_kib();
    let bad = [
        "not json at all",
        r#"{"src":"c1","body":{"type":"echo"}}"#,
        r#"{"src":"c1","dest":"n1","body":{"type":"nope","msg_id":7}}"#,
        r#"{"src":"c1","dest":"n1","body":{"type":"bench_run","msg_id":8,"concurrency":"x"}}"#,
        "[1,2,3]",
    ];
    let huge = "x".repeat(3 << 20);
    let mut stdin_lines = Vec::with_capacity(1000);
    let (mut echoes, mut peak) = (0u64, before);
    let mut answered = 0u64;
    for round in 0..400 {
        stdin_lines.clear();
        for k in 0..500 {
            echoes += 1;
            stdin_lines.push(format!(
                r#"{{"src":"c1","dest":"n1","body":{{"type":"echo","msg_id":{},"echo":{k}}}}}"#,
                1000 + echoes
            ));
            stdin_lines.push(bad[k % bad.len()].to_string());
        }
        if round == 200 {
            stdin_lines.push(huge.clone());
        }
        node.send_line(&stdin_lines.join("\n"));
        // Replies: an echo_ok per echo, an error per bad line that has someone to answer.
        while let Some(reply) = node.try_recv() {
            answered += u64::from(reply["body"]["type"] == "echo_ok");
        }
        peak = peak.max(node.rss_kib());
    }
    let (status, rest) = node.close(ms(60_000));
    assert!(status.success());
    answered += rest.iter().filter(|r| r["body"]["type"] == "echo_ok").count() as u64;
    assert_eq!((echoes, answered), (200_000, 200_000));
    eprintln!("RSS {before} KiB before, at most {peak} KiB during the flood");
    assert!(peak - before <= 10 * 1024, "RSS grew from {before} to {peak} KiB");
}
