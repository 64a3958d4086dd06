//! `RequestFields::command` on any fields never panics; when it gives a command, its request
//! bytes (for any target and connection mode) are not empty and `response()` does not panic,
//! and a Redis command's request, key slots filled, reads as one whole RESP reply.
#![no_main]

use arbitrary::Arbitrary;
use bench::load::{Command, ConnectionMode, Protocol, Reader, RequestFields, ResponseSpec, Verdict};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

/// `RequestFields`, field for field.
#[derive(Arbitrary, Debug)]
struct Fields {
    protocol: Option<Proto>,
    command: Option<String>,
    payload_size: Option<usize>,
    request: Option<String>,
    response: Option<String>,
    method: Option<String>,
    path: Option<String>,
    headers: Vec<String>,
    body: Option<String>,
    expect_status: Option<u16>,
    expect_body: Option<String>,
    keyspace: Option<u64>,
}

#[derive(Arbitrary, Debug)]
enum Proto {
    Line,
    Fixed,
    Http,
    Resp,
}

#[derive(Arbitrary, Debug)]
struct Input {
    fields: Fields,
    to_target: bool,
    target: ([u8; 4], u16),
    per_request: bool,
    conn: u64,
    seq: u64,
}

fuzz_target!(|input: Input| {
    let f = input.fields;
    let fields = RequestFields {
        protocol: f.protocol.map(|p| match p {
            Proto::Line => Protocol::Line,
            Proto::Fixed => Protocol::Fixed,
            Proto::Http => Protocol::Http,
            Proto::Resp => Protocol::Resp,
        }),
        command: f.command,
        payload_size: f.payload_size,
        request: f.request,
        response: f.response,
        method: f.method,
        path: f.path,
        headers: f.headers,
        body: f.body,
        expect_status: f.expect_status,
        expect_body: f.expect_body,
        keyspace: f.keyspace,
    };
    let Ok(command) = fields.command(input.to_target) else {
        return;
    };
    let mode = if input.per_request {
        ConnectionMode::PerRequest
    } else {
        ConnectionMode::Persistent
    };
    let request = command.request(SocketAddr::from(input.target), mode);
    assert!(!request.is_empty(), "{fields:?}");
    let _ = command.response();
    if let Command::Resp(_) = command {
        let mut bytes = request.bytes.clone();
        request.fill(input.conn, input.seq, &mut bytes);
        let verdict = Reader::new(&ResponseSpec::Resp).feed(&ResponseSpec::Resp, &bytes);
        assert_eq!(verdict, Verdict::Done { keep_alive: true }, "{fields:?}: {bytes:?}");
    }
});
