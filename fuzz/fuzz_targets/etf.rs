//! `term::etf::from_binary` fed arbitrary bytes: the decoder every received
//! term goes through.
//!
//! Input: the bytes, as `binary_to_term/1` would get them (version byte and
//! compression optional).
//!
//! Checks beyond "no panic": a term we decoded and can encode decodes again
//! from our bytes, to a term with the same `phash2`; after that one round
//! (where a list of bytes may become a `STRING_EXT`) the term survives
//! encoding and decoding unchanged. Bytes are not compared: a map's pairs go
//! out in its table's order, which differs from map to map.
#![no_main]

use beam_peer::term::{etf, phash2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(term) = etf::from_binary(data) else {
        return;
    };
    let hash = phash2::make_hash2(&term);
    // Some decodable shapes have no encoding of ours (a reference without
    // id words, say): refused as an error value is fine.
    let Ok(bytes) = etf::to_binary(&term) else {
        return;
    };
    let again = match etf::from_binary(&bytes) {
        Ok(t) => t,
        Err(e) => panic!("our encoding of {term:?} does not decode: {e}"),
    };
    assert_eq!(hash, phash2::make_hash2(&again), "phash2 changed: {term:?}");
    let bytes_again = etf::to_binary(&again).expect("a term we decoded from our bytes encodes");
    let third = etf::from_binary(&bytes_again).expect("our encoding decodes");
    assert_eq!(again, third, "a round trip changed the term: {term:?}");
});
