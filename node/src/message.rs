//! The Maelstrom envelope and the node's one writer: replies go out one JSON object per line,
//! flushed, numbered by a single msg_id counter however many threads answer.
use crate::stats::Stats;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Maelstrom error codes (https://github.com/jepsen-io/maelstrom/blob/main/doc/protocol.md).
pub mod code {
    pub const CRASH: u64 = 13;
    pub const NOT_SUPPORTED: u64 = 10;
    pub const TEMPORARILY_UNAVAILABLE: u64 = 11;
    pub const MALFORMED_REQUEST: u64 = 12;
}

/// A request the node can answer: it has a `src` to answer to and a `msg_id` to answer.
#[derive(Clone, Debug)]
pub struct Request {
    pub src: String,
    pub dest: String,
    pub msg_id: u64,
    pub body: Map<String, Value>,
    /// When the line was read: the start of this message's handling latency.
    pub received: Instant,
}

/// Why a line cannot be handled.
#[derive(Debug)]
pub enum Rejected {
    /// Worth an `error` reply to this request.
    Reply(Box<Request>, u64, String),
    /// Nobody to answer (no src, no msg_id, not JSON): one line on stderr.
    Log(String),
}

/// Parses one input line into a request with a `type`.
pub fn parse(line: &str, received: Instant) -> Result<(Request, String), Rejected> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| Rejected::Log(format!("input is not JSON ({e}): {}", clip(line))))?;
    let Value::Object(mut envelope) = value else {
        return Err(Rejected::Log(format!("input is not a JSON object: {}", clip(line))));
    };
    let text_field =
        |envelope: &Map<String, Value>, name: &str| envelope.get(name).and_then(Value::as_str).map(str::to_owned);
    let src = text_field(&envelope, "src");
    let dest = text_field(&envelope, "dest").unwrap_or_default();
    let body = match envelope.remove("body") {
        Some(Value::Object(body)) => body,
        Some(_) => {
            return Err(Rejected::Log(format!("body is not an object: {}", clip(line))));
        }
        None => {
            return Err(Rejected::Log(format!("message has no body: {}", clip(line))));
        }
    };
    let msg_id = body.get("msg_id").and_then(Value::as_u64);
    let (Some(src), Some(msg_id)) = (src, msg_id) else {
        return Err(Rejected::Log(format!(
            "message has no src or no integer msg_id to answer: {}",
            clip(line)
        )));
    };
    let request = Request {
        src,
        dest,
        msg_id,
        body,
        received,
    };
    match request.body.get("type") {
        Some(Value::String(kind)) => {
            let kind = kind.clone();
            Ok((request, kind))
        }
        Some(_) => Err(Rejected::Reply(
            Box::new(request),
            code::MALFORMED_REQUEST,
            "type: must be a string".into(),
        )),
        None => Err(Rejected::Reply(
            Box::new(request),
            code::MALFORMED_REQUEST,
            "type: missing from body".into(),
        )),
    }
}

fn clip(line: &str) -> &str {
    let end = line.char_indices().nth(200).map_or(line.len(), |(i, _)| i);
    &line[..end]
}

/// Writes replies to stdout; shared by the read loop and the benchmark threads.
pub struct Outbox {
    state: Mutex<OutboxState>,
}

struct OutboxState {
    node_id: Option<String>,
    next_msg_id: u64,
    stats: Stats,
}

impl Default for Outbox {
    fn default() -> Outbox {
        Outbox::new()
    }
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState {
                node_id: None,
                next_msg_id: 0,
                stats: Stats::new(),
            }),
        }
    }

    /// Takes the node's id from `init`; the handling statistics start over from here.
    pub fn init(&self, id: String) {
        let mut state = self.lock();
        state.node_id = Some(id);
        state.stats = Stats::new();
    }

    /// The node's own message handling since init, as bench_stats reports it.
    pub fn stats(&self) -> Value {
        self.lock().stats.report()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        // A panic elsewhere must not silence the node.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `body` (an object) in reply to `request`, adding `in_reply_to` and `msg_id`.
    /// The lock covers numbering and writing, so msg_ids leave in increasing order.
    pub fn reply(&self, request: &Request, mut body: Value) {
        let mut state = self.lock();
        let msg_id = state.next_msg_id;
        state.next_msg_id += 1;
        body["in_reply_to"] = json!(request.msg_id);
        body["msg_id"] = json!(msg_id);
        // Before init we answer as whoever the request was addressed to.
        let src = state.node_id.clone().unwrap_or_else(|| request.dest.clone());
        let message = json!({ "src": src, "dest": request.src, "body": body });
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer(&mut out, &message)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        drop(out);
        match written {
            Ok(()) => state.stats.record(request.received.elapsed()),
            Err(e) => eprintln!("node: cannot write reply to stdout: {e}"),
        }
    }

    pub fn error(&self, request: &Request, code: u64, text: &str) {
        self.reply(request, json!({ "type": "error", "code": code, "text": text }));
    }
}
