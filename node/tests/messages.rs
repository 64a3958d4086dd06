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
            json!({"type": "bench_run", "target": "10.0.0.1:80", "request": "x", "response": "y"}),
            12,
            "target",
        ),
        (json!({"type": "bench_run", "target": "127.0.0.1:6379"}), 12, "request"),
        (json!({"type": "bench_run", "protocol": "gopher"}), 12, "protocol"),
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
