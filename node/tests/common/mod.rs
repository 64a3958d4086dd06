//! Drives the real node binary over stdin/stdout.
#![allow(dead_code)]
use owned_child::OwnedChild;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub struct Node {
    child: OwnedChild,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
}

impl Node {
    /// Starts the node and initialises it as n1.
    pub fn start() -> Node {
        let mut node = Node::start_raw();
        node.send_line(
            r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#,
        );
        let init_ok = node.recv(Duration::from_secs(5));
        assert_eq!(
            init_ok,
            json!({"src": "n1", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}})
        );
        node
    }

    pub fn start_raw() -> Node {
        Node::start_raw_with(Stdio::inherit())
    }

    /// [`Node::start_raw`] with the node's stderr (one line per input it cannot answer) sent
    /// to `stderr`.
    pub fn start_raw_with(stderr: Stdio) -> Node {
        let mut child = OwnedChild::spawn(
            Command::new(env!("CARGO_BIN_EXE_node"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(stderr),
        )
        .expect("starting the node");
        let stdout = child.take_stdout().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.take_stdin();
        Node {
            child,
            stdin,
            lines,
            next_id: 100,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// The node's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends a request from c1 with a fresh msg_id; returns the msg_id.
    pub fn send(&mut self, mut body: Value) -> u64 {
        self.next_id += 1;
        body["msg_id"] = json!(self.next_id);
        let msg = json!({"src": "c1", "dest": "n1", "body": body});
        self.send_line(&msg.to_string());
        self.next_id
    }

    /// The next output line as JSON, or a panic after `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("node wrote non-JSON {line:?}: {e}")),
            Err(RecvTimeoutError::Timeout) => panic!("no reply within {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("node closed stdout"),
        }
    }

    /// An output line already written, if any.
    pub fn try_recv(&mut self) -> Option<Value> {
        let line = self.lines.try_recv().ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("node wrote non-JSON {line:?}: {e}")))
    }

    /// Sends `body` and returns the body of its reply (other replies in between are a failure).
    pub fn call(&mut self, body: Value, timeout: Duration) -> Value {
        let id = self.send(body);
        let reply = self.recv(timeout);
        assert_eq!(
            reply["body"]["in_reply_to"],
            json!(id),
            "reply to another request: {reply}"
        );
        assert_eq!(reply["dest"], json!("c1"));
        assert_eq!(reply["src"], json!("n1"));
        reply["body"].clone()
    }

    /// Closes stdin and waits for the exit status, collecting what was still written.
    pub fn close(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<Value>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let mut rest = Vec::new();
        loop {
            if let Some(status) = self.child.has_exited().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    rest.push(serde_json::from_str(&line).unwrap());
                }
                return (status, rest);
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit within {timeout:?} of stdin closing"
            );
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                rest.push(serde_json::from_str(&line).unwrap());
            }
        }
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
