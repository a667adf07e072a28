//! `decode_control` and `strip_version_bytes` fed arbitrary frame bodies
//! (what `FrameDecoder` hands over), without framing in the way.
//!
//! Checks beyond "no panic": a message we decoded and could re-encode (both
//! body forms) decodes again; a body `strip_version_bytes` accepts decodes
//! the same with and without version bytes.
#![no_main]

use beam_peer::dist::codec::{
    decode_control, encode_control, encode_control_headered, strip_version_bytes,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let decoded = decode_control(body);
    if let Ok(msg) = &decoded {
        if let Ok(again) = encode_control(msg.clone()) {
            assert!(
                decode_control(&again).is_ok(),
                "re-encoded message does not decode: {msg:?}"
            );
        }
        if let Ok(again) = encode_control_headered(msg.clone()) {
            assert!(
                decode_control(&again).is_ok(),
                "re-encoded headered message does not decode: {msg:?}"
            );
        }
    }
    if let Ok(stripped) = strip_version_bytes(body) {
        let after = decode_control(&stripped);
        assert_eq!(
            decoded.is_ok(),
            after.is_ok(),
            "stripping version bytes changed decodability: {decoded:?} vs {after:?}"
        );
    }
});
