//! `FrameDecoder` fed arbitrary bytes, whole and in arbitrary chunks, with
//! `decode_control_cached` on every message frame (with the atoms its
//! header's cache references stand for).
//!
//! Input: `[chunking seed, limits selector, stream bytes...]`.
//! Checks beyond "no panic": chunked decoding yields exactly what decoding
//! the whole buffer yields; the decoder's buffered bytes and open sequences
//! stay within its limits; a control message we decoded and could re-encode
//! decodes again.
#![no_main]

use beam_peer::dist::codec::{
    decode_control, decode_control_cached, encode_control, encode_control_headered, Frame,
    FrameDecoder,
};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

#[path = "chunks.rs"]
mod chunks;

#[derive(Debug, PartialEq)]
enum Out {
    Tick,
    Message(Vec<u8>, Vec<String>),
    Error(String),
}

struct Limits {
    max_message: usize,
    max_open: usize,
    max_reassembly: usize,
}

fn limits(selector: u8) -> Limits {
    if selector & 0x80 == 0 {
        let max_message = beam_peer::dist::codec::DEFAULT_MAX_MESSAGE_SIZE;
        return Limits {
            max_message,
            max_open: beam_peer::dist::codec::DEFAULT_MAX_OPEN_SEQUENCES,
            max_reassembly: max_message * 2,
        };
    }
    // Small limits, so inputs of a few KiB reach every limit check.
    let max_message = 1usize << (selector & 0x0f);
    Limits {
        max_message,
        max_open: 1 + usize::from((selector >> 4) & 3),
        max_reassembly: max_message * (1 + usize::from((selector >> 6) & 1)),
    }
}

/// Decodes until the buffer holds no complete frame or an error occurs.
fn drain(dec: &mut FrameDecoder, buf: &mut BytesMut, lim: &Limits, out: &mut Vec<Out>) -> bool {
    loop {
        let r = dec.decode(buf);
        assert!(
            dec.open_sequences() <= lim.max_open,
            "open sequences over the limit"
        );
        assert!(
            dec.buffered_bytes() <= lim.max_reassembly,
            "buffered bytes over the limit"
        );
        match r {
            Ok(None) => return true,
            Ok(Some(Frame::Tick)) => out.push(Out::Tick),
            Ok(Some(frame @ (Frame::Message(_) | Frame::Split { .. }))) => {
                let body = frame.joined().expect("a message");
                assert!(body.len() <= lim.max_message, "message over the size limit");
                check_control(&body, dec.atoms());
                let atoms = dec.atoms().iter().map(|a| a.as_str().to_owned()).collect();
                out.push(Out::Message(body.to_vec(), atoms));
            }
            Err(e) => {
                out.push(Out::Error(e.to_string()));
                return false;
            }
        }
    }
}

fn check_control(body: &[u8], atoms: &[beam_peer::term::Atom]) {
    if let Ok(msg) = decode_control_cached(body, atoms) {
        if let Ok(again) = encode_control(msg.clone()) {
            assert!(
                decode_control(&again).is_ok(),
                "re-encoded control message does not decode: {msg:?}"
            );
        }
        if let Ok(again) = encode_control_headered(msg.clone()) {
            assert!(
                decode_control(&again).is_ok(),
                "re-encoded headered control message does not decode: {msg:?}"
            );
        }
    }
}

fn run<'a>(lim: &Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Out> {
    let mut dec = FrameDecoder::with_limits(lim.max_message, lim.max_open, lim.max_reassembly);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if !drain(&mut dec, &mut buf, lim, &mut out) {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [seed, selector, stream @ ..] = data else {
        return;
    };
    let lim = limits(*selector);
    let whole = run(&lim, [stream]);
    let chunked = run(&lim, chunks::split(*seed, stream));
    assert_eq!(whole, chunked, "chunking changed what was decoded");
});
