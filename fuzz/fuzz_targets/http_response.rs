//! `load::Reader` on an HTTP response never panics (`feed` nor `eof`), and reads the same
//! bytes whole and in pieces to the same verdict (see `tcpprof_fuzz::whole_and_in_pieces`).
//! Input: a byte choosing the expectation (HEAD, status, body), a byte choosing the cuts, then
//! the response.
#![no_main]

use bench::load::{HttpExpect, ResponseSpec};
use libfuzzer_sys::fuzz_target;

const STATUSES: [Option<u16>; 4] = [None, Some(200), Some(204), Some(404)];
const BODIES: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"hello"), Some(b"hello world\n")];

fuzz_target!(|data: &[u8]| {
    let [expect, split, response @ ..] = data else {
        return;
    };
    let spec = ResponseSpec::Http(HttpExpect {
        head: expect & 1 != 0,
        status: STATUSES[usize::from(expect >> 1 & 3)],
        body: BODIES[usize::from(expect >> 3 & 3)].map(<[u8]>::to_vec),
    });
    tcpprof_fuzz::whole_and_in_pieces(&spec, *split, response);
});
