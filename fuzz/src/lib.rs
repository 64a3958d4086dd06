//! What the framing fuzz targets share: a response read whole and read in pieces must get the
//! same verdict, the rule of the `verdict()` helper in `bench/src/load/protocols/mod.rs`'s tests.

use bench::load::{Reader, ResponseSpec, Verdict};

/// Cuts `data` into non-empty pieces as `split` says: 0 whole, 255 a byte at a time, else at
/// 1 to 8 points drawn from `split` and the length.
pub fn pieces(data: &[u8], split: u8) -> Vec<&[u8]> {
    match split {
        _ if data.len() < 2 => vec![data],
        0 => vec![data],
        255 => data.chunks(1).collect(),
        _ => {
            let mut state = u64::from(split) << 32 | data.len() as u64;
            let mut cuts: Vec<usize> = (0..1 + split % 8)
                .map(|_| 1 + (splitmix64(&mut state) % (data.len() as u64 - 1)) as usize)
                .collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut out = Vec::with_capacity(cuts.len() + 1);
            let mut from = 0;
            for cut in cuts {
                out.push(&data[from..cut]);
                from = cut;
            }
            out.push(&data[from..]);
            out
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Same verdict: Done and Failed exactly, Broken of the same kind (its message may quote other
/// bytes, and pieces may find it earlier).
fn same(a: &Verdict, b: &Verdict) -> bool {
    match (a, b) {
        (Verdict::Broken { kind: x, .. }, Verdict::Broken { kind: y, .. }) => x == y,
        _ => a == b,
    }
}

/// Feeds `data` whole, then (after `reset`, as the worker reuses a reader) in the pieces `split`
/// gives, stopping at the first verdict that is not Partial. The verdicts must be the same,
/// and so must `eof`'s when both are still Partial. Panics (the fuzz finding) otherwise.
pub fn whole_and_in_pieces(spec: &ResponseSpec, split: u8, data: &[u8]) {
    let mut reader = Reader::new(spec);
    let whole = reader.feed(spec, data);
    let whole_eof = matches!(whole, Verdict::Partial).then(|| reader.eof(spec));

    reader.reset();
    let mut fed = 0;
    let mut last = Verdict::Partial;
    for piece in pieces(data, split) {
        last = reader.feed(spec, piece);
        fed += piece.len();
        if last != Verdict::Partial {
            break;
        }
    }
    let pieces_eof = reader.eof(spec);
    // Read in pieces, a response may end at a cut, before bytes that follow it (the worker then
    // finds them unsolicited): then those bytes break the whole read, and the response the
    // pieces ended at reads the same whole.
    if fed < data.len() && matches!(last, Verdict::Done { .. } | Verdict::Failed { .. }) {
        assert!(
            matches!(whole, Verdict::Broken { .. }),
            "{data:?}: in pieces {last:?} after {fed} bytes, whole {whole:?}"
        );
        assert_eq!(Reader::new(spec).feed(spec, &data[..fed]), last, "{data:?} up to {fed}");
        return;
    }
    assert!(same(&last, &whole), "{data:?}: in pieces {last:?}, whole {whole:?}");
    if let Some(whole_eof) = whole_eof {
        assert!(
            same(&pieces_eof, &whole_eof),
            "{data:?}: eof in pieces {pieces_eof:?}, whole {whole_eof:?}"
        );
    }
}
