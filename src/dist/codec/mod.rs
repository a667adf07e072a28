//! The frame codec of an established distribution connection (sans-I/O).
//!
//! Owns: the 4-byte length-prefixed framing used after the handshake, ticks,
//! the three frame kinds OTP sends (pass-through `112`, normal distribution
//! header `131,68` and fragments `131,69`/`131,70`), reassembly of
//! interleaved fragment sequences, splitting large outgoing bodies into
//! fragments, and the conversion between a frame's body and an
//! `crate::dist::message::Message`.
//!
//! Must never: touch sockets, clocks or tasks (the connection task does);
//! panic or allocate beyond its limits on peer input (length fields are
//! checked against limits before bytes are awaited or buffers sized, open
//! fragment sequences are bounded in count and bytes, bodies are decoded by
//! `term::etf`, which checks every count against the bytes left and bounds
//! nesting, and a body it refuses is walked by `scan` to say why); or take
//! an atom cache reference on trust (`atom_cache`: a reference to a slot no
//! header filled ends the connection, one past its header's list is an
//! error for that message).
//!
//! With `DFLAG_DIST_HDR_ATOM_CACHE` a BEAM peer's headers carry atom cache
//! references: the decoder keeps the connection's cache and hands out, with
//! each message, the atoms its `ATOM_CACHE_REF`s stand for
//! ([`FrameDecoder::atoms`], [`decode_control_cached`]). Our own headers
//! refer to atoms through [`OutAtomCache`] when the message goes out whole
//! and in the order it was encoded (the connection's writer decides);
//! fragmented messages and [`dist_header_frame`] make no references.
//!
//! Wire form depends on the negotiated flags (erts `erts_prepare_dist_ext`):
//! - neither `DFLAG_FRAGMENTS` nor `DFLAG_DIST_HDR_ATOM_CACHE`: every frame is
//!   `112` + terms that each start with the version byte 131 — use
//!   [`encode_control`] + [`pass_through_frame`];
//! - either of them: every frame must carry a distribution header and the
//!   terms after it must *not* start with 131 — use
//!   [`encode_control_headered`] + [`dist_header_frame`] or (with
//!   `DFLAG_FRAGMENTS`) [`Fragmenter`]. OTP kills the connection on a `112`
//!   frame in this mode.
//!
//! The decoder accepts all frame kinds regardless; [`decode_control`] accepts
//! terms with or without the version byte.

mod atom_cache;
mod control;
mod frame;
mod scan;
#[cfg(test)]
mod tests;

pub use atom_cache::{AtomCache, OutAtomCache};
pub use control::{
    control_terms, decode_control, decode_control_cached, decode_control_with_hole,
    decode_other_cached, decode_send_cached, encode_control, encode_control_headered,
    encode_control_into, encode_send_referencing, encode_terms_into_detached,
    encode_terms_referencing, strip_version_bytes, ControlError, Recipient,
};
pub use frame::{
    dist_header_frame, pass_through_frame, FragmentHead, Fragmenter, Frame, FrameDecoder,
    FrameError, InPlace, DEFAULT_FRAGMENT_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_OPEN_SEQUENCES, NORMAL_DIST_HEADER, PASS_THROUGH, READ_CHUNK, TICK,
};
pub use scan::{TermError, MAX_TERM_DEPTH};
