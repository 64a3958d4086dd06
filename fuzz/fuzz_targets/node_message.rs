//! The node's read loop on any line: `message::parse`, then for a request the checks of its type
//! (init's `node_id`, echo's `echo`, and every bench_* field through `plan::parse` and the rulebook), never
//! panic; a parsed request always has a src and a msg_id to answer, and every refusal names the
//! field at fault with `name: why`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::message::{Rejected, parse};
use node::fields;
use node::plan::Limits;

const LIMITS: Limits = Limits {
    max_concurrency: 20_000,
    per_source_address: 7_000,
    cpus: 2,
};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match parse(line.trim_end(), std::time::Instant::now()) {
        Ok((request, kind)) => {
            assert!(!request.src.is_empty() || request.body.contains_key("msg_id"));
            let refusal = match kind.as_str() {
                "init" => fields::string(&request.body, "node_id").err(),
                "bench_run" | "bench_sweep" | "bench_profile" => node::plan::parse(&kind, &request.body, &LIMITS).err(),
                _ => None,
            };
            if let Some(text) = refusal {
                let (field, why) = text.split_once(": ").unwrap_or_else(|| panic!("{text:?} names no field"));
                assert!(!field.is_empty() && !why.is_empty(), "{text:?}");
            }
        }
        Err(Rejected::Reply(_, code, text)) => assert!(code == 12 && !text.is_empty()),
        Err(Rejected::Log(text)) => assert!(!text.is_empty()),
    }
});
