//! `load::Reader` on a RESP reply never panics (`feed` nor `eof`), and reads the same bytes
//! whole and in pieces to the same verdict (see `tcpprof_fuzz::whole_and_in_pieces`).
//! Input: a byte choosing the cuts, then the reply.
#![no_main]

use bench::load::ResponseSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [split, reply @ ..] = data else {
        return;
    };
    tcpprof_fuzz::whole_and_in_pieces(&ResponseSpec::Resp, *split, reply);
});
