//! `Handshake::server` / `Handshake::client` fed arbitrary bytes, after an
//! honest peer (our own other side, same cookie) has delivered 0 to 3 of its
//! outputs, so every state of the handshake gets fuzzed, not only the first.
//!
//! Input: `[mode, chunking seed, bytes...]`, mode bits:
//! - bit 0: side under test (0 server, 1 client);
//! - bit 1: protocol version the client starts with (0: 6, 1: 5);
//! - bits 2-3: honest outputs delivered before the fuzz bytes (0..=3);
//! - bits 4-6: status the server under test answers (ok, ok_simultaneous,
//!   nok, not_allowed, alive);
//! - bit 7: require OTP 25's mandatory flags (0) or none (1).
//!
//! Checks beyond "no panic": no output is longer than a 2-byte length can
//! frame; a completed handshake names a valid peer; after an error, every
//! further `receive` errors too.
#![no_main]

use beam_peer::dist::flags;
use beam_peer::dist::handshake::{
    Handshake, HandshakeConfig, HandshakeEvent, ServerStatus, MAX_MESSAGE_LEN,
};
use libfuzzer_sys::fuzz_target;

#[path = "chunks.rs"]
mod chunks;

const COOKIE: &str = "fuzz-cookie";

fn cfg(name: &str) -> HandshakeConfig {
    HandshakeConfig {
        name: name.into(),
        creation: 0x1234_5678,
        flags: flags::offered(false),
        cookie: COOKIE.into(),
    }
}

fn status(bits: u8) -> ServerStatus {
    match bits % 5 {
        0 => ServerStatus::Ok,
        1 => ServerStatus::OkSimultaneous,
        2 => ServerStatus::Nok,
        3 => ServerStatus::NotAllowed,
        _ => ServerStatus::Alive,
    }
}

/// Answers a `PeerNamed` with `status`, and checks every event.
fn events(hs: &mut Handshake, status: ServerStatus) {
    while let Some(ev) = hs.poll_event() {
        match ev {
            HandshakeEvent::PeerNamed { name, .. } => {
                assert!(name.contains('@'), "peer named without '@': {name:?}");
                hs.set_status(status);
            }
            HandshakeEvent::Completed { peer, .. } => {
                assert!(hs.is_completed());
                assert!(
                    peer.name.contains('@'),
                    "completed with peer {:?}",
                    peer.name
                );
                assert!(peer.version == 5 || peer.version == 6);
            }
        }
    }
}

fn output(hs: &mut Handshake) -> Vec<u8> {
    let out = hs.take_output();
    // Every message we write is 2-byte length framed.
    assert!(out.len() <= 4 * (2 + MAX_MESSAGE_LEN));
    out
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, fuzz @ ..] = data else {
        return;
    };
    let test_client = mode & 1 == 1;
    let version = if mode & 2 == 0 { 6 } else { 5 };
    let prefix = (mode >> 2) & 3;
    let sut_status = status(mode >> 4);
    let required = if mode & 0x80 == 0 {
        flags::MANDATORY_OTP25
    } else {
        0
    };

    let (mut sut, mut honest) = if test_client {
        (
            Handshake::client(cfg("sut@127.0.0.1"), 0x0BAD_CAFE, version),
            Handshake::server(cfg("honest@127.0.0.1"), 0x00C0_FFEE),
        )
    } else {
        (
            Handshake::server(cfg("sut@127.0.0.1"), 0x0BAD_CAFE),
            Handshake::client(cfg("honest@127.0.0.1"), 0x00C0_FFEE, version),
        )
    };
    sut = sut.with_required_flags(required);
    honest = honest.with_required_flags(required);

    // The honest prefix: deliver whole outputs of the honest side.
    let mut delivered = 0;
    let mut failed = false;
    for _ in 0..8 {
        let to_honest = output(&mut sut);
        if !to_honest.is_empty() && honest.receive(&to_honest).is_err() {
            break;
        }
        events(&mut honest, ServerStatus::Ok);
        if delivered == prefix {
            break;
        }
        let to_sut = output(&mut honest);
        if to_sut.is_empty() {
            continue;
        }
        delivered += 1;
        if sut.receive(&to_sut).is_err() {
            failed = true;
            break;
        }
        events(&mut sut, sut_status);
    }

    // The fuzz bytes, as a socket might deliver them.
    for chunk in chunks::split(*seed, fuzz) {
        if failed {
            assert!(
                sut.receive(chunk).is_err(),
                "receive succeeded after a failure"
            );
            break;
        }
        match sut.receive(chunk) {
            Ok(()) => events(&mut sut, sut_status),
            Err(_) => failed = true,
        }
        output(&mut sut);
    }
    if !sut.is_completed() {
        let _ = sut.connection_closed();
    }
});
