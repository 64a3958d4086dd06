//! `bench::protocol::parse` on any bytes never panics, and a request that `Request::encode`
//! can write back as one line (all but an `ECHO` payload holding a `\n` or ending in the `\r`
//! that `parse` drops) is one `\n`-terminated line that parses back to the same request.
#![no_main]

use bench::protocol::{Request, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let request = parse(data);
    let writable = match request {
        Request::Echo(payload) => !payload.contains(&b'\n') && payload.last() != Some(&b'\r'),
        _ => true,
    };
    if writable {
        let mut line = Vec::new();
        request.encode(&mut line);
        assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1), "{line:?}");
        assert_eq!(parse(&line), request, "{line:?}");
    }
});
