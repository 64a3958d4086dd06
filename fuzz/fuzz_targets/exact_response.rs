//! `load::Reader` on a line-protocol or fixed response (`Expected::Exact` bytes, or
//! `Expected::Stream(n)`) never panics (`feed` nor `eof`), and reads the same bytes whole and in
//! pieces to the same verdict (see `tcpprof_fuzz::whole_and_in_pieces`).
//! Input: a byte choosing the expected response, a byte choosing the cuts, then the response;
//! a large stream takes its length from the response's first 8 bytes.
#![no_main]

use bench::load::ResponseSpec;
use bench::protocol::Expected;
use libfuzzer_sys::fuzz_target;

const ANSWERS: [&[u8]; 6] = [
    b"PONG\n",
    b"DONE\n",
    b"UNKNOWN_COMMAND\n",
    b"RESULT 0\n",
    b"abcdefghij\n",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let [expected, split, response @ ..] = data else {
        return;
    };
    let mut response = response;
    let arg = usize::from(expected >> 2);
    let expected = match expected & 3 {
        0 => Expected::Exact(ANSWERS[arg % ANSWERS.len()].to_vec()),
        // The response's own first bytes (padded): right up to them, and then too long.
        1 => Expected::Exact(
            response
                .iter()
                .copied()
                .chain(std::iter::repeat(b'x'))
                .take(arg)
                .collect(),
        ),
        2 => Expected::Stream(arg as u64),
        _ => {
            let Some((n, rest)) = response.split_first_chunk::<8>() else {
                return;
            };
            response = rest;
            Expected::Stream(u64::from_be_bytes(*n))
        }
    };
    tcpprof_fuzz::whole_and_in_pieces(&ResponseSpec::Exact(expected), *split, response);
});
