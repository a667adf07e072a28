//! The decoders of `beam_peer::epmd::proto` fed arbitrary bytes.
//!
//! Input: `[selector, bytes...]`; `selector % 4` picks `decode_request`,
//! `decode_alive2_resp`, `decode_port2_resp` or `decode_names_resp`.
//!
//! Checks beyond "no panic": a decoded value reports a length within the
//! buffer; the bytes it used, alone, decode to the same value, and every
//! shorter prefix asks for more bytes rather than failing; whatever decodes
//! and re-encodes decodes back to the same value.
#![no_main]

use beam_peer::epmd::proto::{
    decode_alive2_resp, decode_names_resp, decode_port2_resp, decode_request, encode_alive2_resp,
    encode_names_resp, encode_port2_resp, encode_request, ProtoError,
};
use libfuzzer_sys::fuzz_target;

/// The prefix properties of a decoder returning `(value, used)`.
fn prefixes<T: PartialEq + std::fmt::Debug>(
    buf: &[u8],
    decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, ProtoError>,
) -> Option<T> {
    let (value, used) = decode(buf).ok()??;
    assert!(
        used > 0 && used <= buf.len(),
        "used {used} of {}",
        buf.len()
    );
    match decode(&buf[..used]) {
        Ok(Some((again, n))) => {
            assert_eq!(again, value);
            assert_eq!(n, used);
        }
        other => panic!("exact bytes decode differently: {other:?} vs {value:?}"),
    }
    for k in 0..used {
        match decode(&buf[..k]) {
            Ok(None) => {}
            other => panic!("prefix of {k}/{used} bytes gave {other:?}, not Ok(None)"),
        }
    }
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let [selector, buf @ ..] = data else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Some(req) = prefixes(buf, decode_request) {
                let mut out = Vec::new();
                if encode_request(&req, &mut out).is_ok() {
                    let back = decode_request(&out).expect("re-encoded request decodes");
                    assert_eq!(back, Some((req, out.len())));
                }
            }
        }
        1 => {
            if let Some(resp) = prefixes(buf, decode_alive2_resp) {
                let mut out = Vec::new();
                encode_alive2_resp(&resp, &mut out);
                let back = decode_alive2_resp(&out).expect("re-encoded ALIVE2 reply decodes");
                assert_eq!(back, Some((resp, out.len())));
            }
        }
        2 => {
            if let Some(resp) = prefixes(buf, decode_port2_resp) {
                let mut out = Vec::new();
                if encode_port2_resp(&resp, &mut out).is_ok() {
                    let back = decode_port2_resp(&out).expect("re-encoded PORT2 reply decodes");
                    assert_eq!(back, Some((resp, out.len())));
                }
            }
        }
        _ => {
            if let Ok(Some(names)) = decode_names_resp(buf) {
                let mut out = Vec::new();
                encode_names_resp(
                    names.epmd_port,
                    names.nodes.iter().map(|(n, p)| (n.as_str(), *p)),
                    &mut out,
                );
                let back = decode_names_resp(&out).expect("re-encoded NAMES reply decodes");
                assert_eq!(back, Some(names), "NAMES reply changed on a round trip");
            }
        }
    }
});
