//! Unit tests: recorded real OTP 25 handshakes replayed, in-memory round trips
//! for every version path, every refusal and error path, and fuzzing.

use super::*;
use proptest::prelude::*;

const COOKIE: &str = "secret";

fn cfg(name: &str, flags: u64, cookie: &str) -> HandshakeConfig {
    HandshakeConfig {
        name: name.into(),
        creation: 7,
        flags,
        cookie: cookie.into(),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `key=value` lines of a recorded fixture.
struct Fixture(Vec<(String, String)>);

impl Fixture {
    fn parse(text: &str) -> Fixture {
        Fixture(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> &str {
        &self.0.iter().find(|(k, _)| k == key).unwrap().1
    }

    fn num(&self, key: &str) -> u64 {
        let v = self.get(key);
        match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => v.parse().unwrap(),
        }
    }

    fn our_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            name: self.get("our_name").into(),
            creation: self.num("our_creation") as u32,
            flags: self.num("our_flags"),
            cookie: self.get("cookie").into(),
        }
    }
}

const ERL_CLIENT_V6: &str = include_str!("../../../tests/fixtures/handshake/erl_client_v6.txt");
const ERL_SERVER_V6: &str = include_str!("../../../tests/fixtures/handshake/erl_server_v6.txt");
const ERL_TO_ERL_V6: &str = include_str!("../../../tests/fixtures/handshake/erl_to_erl_v6.txt");
const ERL_DIGESTS: &str = include_str!("../../../tests/fixtures/handshake/digests.txt");

/// Split a stream of length-prefixed messages.
fn messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    out
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn digests_match_the_ones_erl_computes() {
    let mut n = 0;
    for line in ERL_DIGESTS.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split(' ');
        let challenge: u32 = parts.next().unwrap().parse().unwrap();
        let expected = unhex(&parts.next().unwrap().to_ascii_lowercase());
        let cookie = parts.next().unwrap_or("");
        assert_eq!(digest(challenge, cookie).to_vec(), expected, "{line}");
        n += 1;
    }
    assert!(n >= 5);
}

#[test]
fn recorded_otp25_send_name_parses() {
    let fx = Fixture::parse(ERL_CLIENT_V6);
    let stream = unhex(fx.get("peer_to_us"));
    let send_name = framed(&messages(&stream)[0]);
    assert_eq!(send_name[2], b'N');
    let mut hs = Handshake::server(fx.our_config(), 1);
    hs.receive(&send_name).unwrap();
    match hs.poll_event() {
        Some(HandshakeEvent::PeerNamed {
            name,
            flags: f,
            creation,
        }) => {
            assert_eq!(name, "erl1@127.0.0.1");
            assert_eq!(f, fx.num("peer_flags"));
            assert_eq!(f & flags::MANDATORY_OTP25, flags::MANDATORY_OTP25);
            assert_eq!(creation, Some(fx.num("peer_creation") as u32));
        }
        other => panic!("{other:?}"),
    }
    assert!(hs.take_output().is_empty(), "nothing before the status");
}

/// Feed `stream` in `chunk`-byte pieces, answering `PeerNamed` with Ok.
/// Returns everything written and the completion.
fn replay(hs: &mut Handshake, stream: &[u8], chunk: usize) -> (Vec<u8>, PeerInfo, Vec<u8>) {
    let mut written = hs.take_output();
    let mut done = None;
    for piece in stream.chunks(chunk) {
        hs.receive(piece).unwrap();
        written.extend(hs.take_output());
        while let Some(ev) = hs.poll_event() {
            match ev {
                HandshakeEvent::PeerNamed { .. } => {
                    hs.set_status(ServerStatus::Ok);
                    written.extend(hs.take_output());
                }
                HandshakeEvent::Completed { peer, leftover } => done = Some((peer, leftover)),
            }
        }
    }
    // The whole stream may have been buffered before the status was set.
    while let Some(ev) = hs.poll_event() {
        if let HandshakeEvent::Completed { peer, leftover } = ev {
            done = Some((peer, leftover));
        }
    }
    let (peer, leftover) = done.expect("handshake completed");
    (written, peer, leftover)
}

#[test]
fn recorded_otp25_client_is_accepted_by_our_server() {
    let fx = Fixture::parse(ERL_CLIENT_V6);
    let stream = unhex(fx.get("peer_to_us"));
    for chunk in [1, 2, 7, stream.len()] {
        let mut hs = Handshake::server(fx.our_config(), fx.num("our_challenge") as u32);
        let (written, peer, leftover) = replay(&mut hs, &stream, chunk);
        // Byte-exact: same status, same challenge, and an ack over erl's
        // own challenge that erl accepted.
        assert_eq!(hex(&written), fx.get("us_to_peer"), "chunk {chunk}");
        assert_eq!(peer.name, fx.get("peer_name"));
        assert_eq!(peer.flags, fx.num("peer_flags"));
        assert_eq!(peer.creation as u64, fx.num("peer_creation"));
        assert_eq!(peer.version, 6);
        assert!(leftover.is_empty());
    }
}

#[test]
fn recorded_otp25_server_is_accepted_by_our_client() {
    let fx = Fixture::parse(ERL_SERVER_V6);
    let stream = unhex(fx.get("peer_to_us"));
    for chunk in [1, 3, stream.len()] {
        let mut hs = Handshake::client(fx.our_config(), fx.num("our_challenge") as u32, 6);
        let (written, peer, leftover) = replay(&mut hs, &stream, chunk);
        assert_eq!(hex(&written), fx.get("us_to_peer"), "chunk {chunk}");
        assert_eq!(peer.name, fx.get("peer_name"));
        assert_eq!(peer.flags, fx.num("peer_flags"));
        assert_eq!(peer.creation as u64, fx.num("peer_creation"));
        assert!(leftover.is_empty());
    }
}

#[test]
fn recorded_otp25_server_rejects_us_with_another_cookie() {
    let fx = Fixture::parse(ERL_SERVER_V6);
    let stream = unhex(fx.get("peer_to_us"));
    let mut c = fx.our_config();
    c.cookie = "other".into();
    let mut hs = Handshake::client(c, fx.num("our_challenge") as u32, 6);
    let err = hs.receive(&stream).unwrap_err();
    assert!(
        matches!(err, HandshakeError::CookieMismatch { ref peer, .. } if peer == "erl2@127.0.0.1"),
        "{err}"
    );
    assert!(err.to_string().contains("erl2@127.0.0.1"));
}

/// Two real OTP 25 nodes, recorded through a proxy: their digests are ours,
/// and impersonating either side (same name, flags, creation, challenge) we
/// write exactly the bytes that node wrote.
#[test]
fn recorded_erl_to_erl_handshake_is_reproduced_byte_for_byte() {
    let fx = Fixture::parse(ERL_TO_ERL_V6);
    let cookie = fx.get("cookie");
    let c2s = unhex(fx.get("client_to_server"));
    let s2c = unhex(fx.get("server_to_client"));
    let (cm, sm) = (messages(&c2s), messages(&s2c));
    let (name, reply) = (&cm[0], &cm[1]);
    let (challenge, ack) = (&sm[1], &sm[2]);
    let u32_at = |m: &[u8], i: usize| u32::from_be_bytes(m[i..i + 4].try_into().unwrap());
    let u64_at = |m: &[u8], i: usize| u64::from_be_bytes(m[i..i + 8].try_into().unwrap());
    let b_challenge = u32_at(challenge, 9);
    let a_challenge = u32_at(reply, 1);
    assert_eq!(&reply[5..], &digest(b_challenge, cookie));
    assert_eq!(&ack[1..], &digest(a_challenge, cookie));

    let server_cfg = HandshakeConfig {
        name: fx.get("server_name").into(),
        creation: u32_at(challenge, 13),
        flags: u64_at(challenge, 1),
        cookie: cookie.into(),
    };
    let mut server = Handshake::server(server_cfg, b_challenge);
    let (written, peer, _) = replay(&mut server, &c2s, 1);
    assert_eq!(hex(&written), fx.get("server_to_client"));
    assert_eq!(peer.name, fx.get("client_name"));
    assert_eq!(peer.creation, u32_at(name, 9));

    let client_cfg = HandshakeConfig {
        name: fx.get("client_name").into(),
        creation: u32_at(name, 9),
        flags: u64_at(name, 1),
        cookie: cookie.into(),
    };
    let mut client = Handshake::client(client_cfg, a_challenge, 6);
    let (written, peer, _) = replay(&mut client, &s2c, 1);
    assert_eq!(hex(&written), fx.get("client_to_server"));
    assert_eq!(peer.name, fx.get("server_name"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Outcome of an in-memory handshake.
#[derive(Debug)]
struct Outcome {
    client: Result<PeerInfo, HandshakeError>,
    server: Result<PeerInfo, HandshakeError>,
    named: Option<(String, u64, Option<u32>)>,
    client_leftover: Vec<u8>,
}

/// Run both sides against each other, moving bytes `chunk` at a time, until
/// nothing moves. A side that fails "closes": the other sees EOF.
fn pump(
    mut client: Handshake,
    mut server: Handshake,
    status: ServerStatus,
    chunk: usize,
) -> Outcome {
    let mut c_res: Option<Result<PeerInfo, HandshakeError>> = None;
    let mut s_res: Option<Result<PeerInfo, HandshakeError>> = None;
    let mut named = None;
    let mut client_leftover = Vec::new();
    let mut to_server = Vec::new();
    let mut to_client = Vec::new();
    for _ in 0..10_000 {
        if c_res.is_none() {
            to_server.extend(client.take_output());
        }
        if s_res.is_none() {
            to_client.extend(server.take_output());
        }
        while let Some(ev) = server.poll_event() {
            match ev {
                HandshakeEvent::PeerNamed {
                    name,
                    flags: f,
                    creation,
                } => {
                    named = Some((name, f, creation));
                    server.set_status(status);
                    to_client.extend(server.take_output());
                }
                HandshakeEvent::Completed { peer, .. } => s_res = Some(Ok(peer)),
            }
        }
        while let Some(ev) = client.poll_event() {
            if let HandshakeEvent::Completed { peer, leftover } = ev {
                client_leftover = leftover;
                c_res = Some(Ok(peer));
            }
        }
        let mut moved = false;
        if !to_server.is_empty() && s_res.is_none() {
            let n = chunk.min(to_server.len());
            let piece: Vec<u8> = to_server.drain(..n).collect();
            if let Err(e) = server.receive(&piece) {
                to_client.extend(server.take_output()); // a refusing status
                s_res = Some(Err(e));
            }
            moved = true;
        }
        if !to_client.is_empty() && c_res.is_none() {
            let n = chunk.min(to_client.len());
            let piece: Vec<u8> = to_client.drain(..n).collect();
            if let Err(e) = client.receive(&piece) {
                c_res = Some(Err(e));
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    // Whoever is still waiting sees the other side hang up.
    let client = c_res.unwrap_or_else(|| Err(client.connection_closed()));
    let server = s_res.unwrap_or_else(|| Err(server.connection_closed()));
    Outcome {
        client,
        server,
        named,
        client_leftover,
    }
}

fn assert_completed(o: &Outcome, client_name: &str, server_name: &str, version: u16) {
    let c = o.client.as_ref().expect("client completed");
    let s = o.server.as_ref().expect("server completed");
    assert_eq!(c.name, server_name);
    assert_eq!(s.name, client_name);
    assert_eq!(c.version, version);
    assert_eq!(s.version, version);
}

#[test]
fn round_trip_v6_long_and_short_names_any_split() {
    for (cn, sn) in [
        ("rust@127.0.0.1", "erl@127.0.0.1"),
        ("a@h", "b@h"),
        (
            "client@some.long.host.example.org",
            "server@other.example.org",
        ),
    ] {
        for chunk in [1, 2, 5, 1000] {
            let client = Handshake::client(cfg(cn, flags::offered(true), COOKIE), 11, 6);
            let server = Handshake::server(cfg(sn, flags::offered(false), COOKIE), 22);
            let o = pump(client, server, ServerStatus::Ok, chunk);
            assert_completed(&o, cn, sn, 6);
            let (name, f, creation) = o.named.unwrap();
            assert_eq!(name, cn);
            assert_eq!(f, flags::offered(true));
            assert_eq!(creation, Some(7));
            let s = o.server.unwrap();
            assert!(s.is_hidden());
            assert_eq!(s.flags, flags::offered(true));
            assert_eq!(s.creation, 7);
            assert!(!o.client.unwrap().is_hidden());
        }
    }
}

/// An OTP 23/24-style client: old 'n' name with HANDSHAKE_23 in it, answered
/// by an 'N' challenge, then the 'c' complement carries the high flags.
#[test]
fn round_trip_v5_name_with_complement() {
    for chunk in [1, 1000] {
        let client = Handshake::client(cfg("old@h", flags::offered(false), COOKIE), 1, 5);
        let server = Handshake::server(cfg("new@h", flags::offered(false), COOKIE), 2);
        let o = pump(client, server, ServerStatus::Ok, chunk);
        assert_completed(&o, "old@h", "new@h", 6);
        let (_, f, creation) = o.named.unwrap();
        assert_eq!(
            f,
            flags::offered(false) & 0xffff_ffff,
            "the 'n' name carries 32 bits"
        );
        assert_eq!(creation, None, "and no creation");
        let s = o.server.unwrap();
        assert_eq!(
            s.flags,
            flags::offered(false),
            "high word from the complement"
        );
        assert_eq!(s.creation, 7);
    }
}

#[test]
fn complement_is_sent_between_challenge_and_reply() {
    let mut client = Handshake::client(cfg("old@h", flags::offered(false), COOKIE), 1, 5);
    let name = client.take_output();
    assert_eq!(&name[2..5], &[b'n', 0, 5]);
    let mut server = Handshake::server(cfg("new@h", flags::offered(false), COOKIE), 2);
    server.receive(&name).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    client.receive(&server.take_output()).unwrap();
    let msgs = messages(&client.take_output());
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0][0], b'c');
    assert_eq!(
        &msgs[0][1..5],
        &((flags::offered(false) >> 32) as u32).to_be_bytes()
    );
    assert_eq!(&msgs[0][5..9], &7u32.to_be_bytes());
    assert_eq!(msgs[1][0], b'r');
}

/// A pre-OTP-23 peer (no HANDSHAKE_23): old messages both ways. Needs the
/// mandatory set relaxed, since OTP 25's includes HANDSHAKE_23.
#[test]
fn round_trip_pure_v5() {
    let old = flags::MANDATORY_OTP25 & !flags::HANDSHAKE_23;
    for chunk in [1, 1000] {
        let client = Handshake::client(cfg("old@h", old | flags::PUBLISHED, COOKIE), 3, 5)
            .with_required_flags(old);
        let server = Handshake::server(cfg("srv@h", old, COOKIE), 4).with_required_flags(old);
        let o = pump(client, server, ServerStatus::Ok, chunk);
        assert_completed(&o, "old@h", "srv@h", 5);
        assert_eq!(o.server.as_ref().unwrap().creation, 0);
        assert_eq!(o.client.as_ref().unwrap().creation, 0);
    }
    // With the default (OTP 25) requirements the same peer is refused.
    let client = Handshake::client(cfg("old@h", old, COOKIE), 3, 5).with_required_flags(old);
    let server = Handshake::server(cfg("srv@h", old, COOKIE), 4);
    let o = pump(client, server, ServerStatus::Ok, 1000);
    assert!(matches!(
        o.server,
        Err(HandshakeError::MissingMandatoryFlags { missing }) if missing == flags::HANDSHAKE_23
    ));
    assert!(matches!(o.client, Err(HandshakeError::Refused(ref s)) if s == "not_allowed"));
}

#[test]
fn old_challenge_when_server_lacks_handshake_23() {
    let old = flags::MANDATORY_OTP25 & !flags::HANDSHAKE_23;
    let mut server =
        Handshake::server(cfg("srv@h", old, COOKIE), 0xdead_beef).with_required_flags(old);
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 5);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    let msgs = messages(&server.take_output());
    assert_eq!(msgs[0], b"sok");
    let ch = &msgs[1];
    assert_eq!(ch[0], b'n');
    assert_eq!(&ch[1..3], &[0, 5]);
    assert_eq!(&ch[3..7], &(old as u32).to_be_bytes());
    assert_eq!(&ch[7..11], &0xdead_beef_u32.to_be_bytes());
    assert_eq!(&ch[11..], b"srv@h");
}

#[test]
fn wrong_cookie_is_caught_by_the_server_and_no_ack_is_sent() {
    for version in [5, 6] {
        let client = Handshake::client(cfg("c@h", flags::offered(true), "one"), 1, version);
        let mut server = Handshake::server(cfg("s@h", flags::offered(false), "two"), 2);
        let mut client = client;
        server.receive(&client.take_output()).unwrap();
        server.poll_event().unwrap();
        server.set_status(ServerStatus::Ok);
        client.receive(&server.take_output()).unwrap();
        let err = server.receive(&client.take_output()).unwrap_err();
        assert!(
            matches!(err, HandshakeError::CookieMismatch { ref peer, .. } if peer == "c@h"),
            "{err}"
        );
        assert!(err.to_string().contains("c@h"), "names the peer: {err}");
        assert!(server.take_output().is_empty(), "no 'a' on a bad digest");
        // The client only sees the server hang up.
        let err = client.connection_closed();
        assert!(
            matches!(err, HandshakeError::CookieMismatch { ref peer, .. } if peer == "s@h"),
            "{err}"
        );
    }
}

#[test]
fn wrong_cookie_detected_by_the_client_from_a_bad_ack() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 99, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    client.receive(&server.take_output()).unwrap();
    server.receive(&client.take_output()).unwrap();
    let mut ack = server.take_output();
    assert_eq!(ack[2], b'a');
    ack[5] ^= 1;
    let err = client.receive(&ack).unwrap_err();
    assert!(
        matches!(err, HandshakeError::CookieMismatch { .. }),
        "{err}"
    );
    assert!(client.poll_event().is_none());
}

#[test]
fn server_refusals_reach_the_client() {
    for (status, text) in [
        (ServerStatus::Nok, "nok"),
        (ServerStatus::NotAllowed, "not_allowed"),
    ] {
        let client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
        let server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
        let o = pump(client, server, status, 1);
        assert!(
            matches!(o.client, Err(HandshakeError::Refused(ref s)) if s == text),
            "{:?}",
            o.client
        );
        assert!(o.server.is_err());
    }
    // After refusing, the server takes nothing more.
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Nok);
    assert_eq!(server.take_output(), framed(b"snok"));
    assert!(server.receive(b"\x00\x01x").is_err());
}

#[test]
fn ok_simultaneous_continues() {
    let client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    let o = pump(client, server, ServerStatus::OkSimultaneous, 1);
    assert_completed(&o, "c@h", "s@h", 6);
}

#[test]
fn alive_is_answered_true_and_the_handshake_continues() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Alive);
    let out = server.take_output();
    assert_eq!(out, framed(b"salive"), "no challenge before the answer");
    client.receive(&out).unwrap();
    let answer = client.take_output();
    assert_eq!(answer, framed(b"strue"));
    server.receive(&answer).unwrap();
    let o = pump(client, server, ServerStatus::Ok, 1);
    assert_completed(&o, "c@h", "s@h", 6);
}

#[test]
fn alive_answered_false_refuses() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Alive);
    server.take_output();
    let err = server.receive(&framed(b"sfalse")).unwrap_err();
    assert!(
        matches!(err, HandshakeError::Refused(ref s) if s.contains("alive")),
        "{err}"
    );
}

#[test]
fn server_rejects_a_client_missing_mandatory_flags() {
    let mut client = Handshake::client(
        cfg(
            "c@h",
            flags::offered(true) & !flags::BIG_CREATION & !flags::MAP_TAG,
            COOKIE,
        ),
        1,
        6,
    );
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    let err = server.receive(&client.take_output()).unwrap_err();
    match &err {
        HandshakeError::MissingMandatoryFlags { missing } => {
            assert_eq!(*missing, flags::BIG_CREATION | flags::MAP_TAG)
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("BIG_CREATION") && text.contains("MAP_TAG"),
        "{text}"
    );
    assert_eq!(server.take_output(), framed(b"snot_allowed"), "like OTP");
    assert!(server.poll_event().is_none(), "the owner is never asked");
}

#[test]
fn client_rejects_a_server_missing_mandatory_flags() {
    let client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let server = Handshake::server(
        cfg("s@h", flags::offered(false) & !flags::UTF8_ATOMS, COOKIE),
        2,
    );
    let o = pump(client, server, ServerStatus::Ok, 1000);
    assert!(matches!(
        o.client,
        Err(HandshakeError::MissingMandatoryFlags { missing }) if missing == flags::UTF8_ATOMS
    ));
}

/// OTP 25 may send only DFLAG_MANDATORY_25_DIGEST for the whole mandatory
/// set (OTP 27 relies on it).
#[test]
fn mandatory_25_digest_stands_for_the_mandatory_set() {
    let digest_only = (flags::offered(true) & !flags::MANDATORY_OTP25) | flags::MANDATORY_25_DIGEST;
    let client = Handshake::client(cfg("c@h", digest_only, COOKIE), 1, 6);
    let server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    let o = pump(client, server, ServerStatus::Ok, 1000);
    assert_completed(&o, "c@h", "s@h", 6);
    let s = o.server.unwrap();
    assert_eq!(s.flags & flags::MANDATORY_OTP25, flags::MANDATORY_OTP25);
}

#[test]
fn bytes_after_the_ack_are_leftover() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    client.receive(&server.take_output()).unwrap();
    server.receive(&client.take_output()).unwrap();
    let mut ack_and_frames = server.take_output();
    ack_and_frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3, 112, 1, 2]);
    client.receive(&ack_and_frames).unwrap();
    match client.poll_event() {
        Some(HandshakeEvent::Completed { leftover, .. }) => {
            assert_eq!(leftover, [0, 0, 0, 0, 0, 0, 0, 3, 112, 1, 2])
        }
        other => panic!("{other:?}"),
    }
    assert!(client.is_completed());
    assert!(
        client.receive(&[0, 0, 0, 0]).is_err(),
        "frames go to the codec"
    );
}

#[test]
fn leftover_on_the_server_side() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    client.receive(&server.take_output()).unwrap();
    let mut reply = client.take_output();
    reply.extend_from_slice(&[0, 0, 0, 0]);
    server.receive(&reply).unwrap();
    match server.poll_event() {
        Some(HandshakeEvent::Completed { leftover, .. }) => assert_eq!(leftover, [0, 0, 0, 0]),
        other => panic!("{other:?}"),
    }
}

fn server_after(msg: &[u8]) -> Result<Option<HandshakeEvent>, HandshakeError> {
    let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    s.receive(&framed(msg))?;
    Ok(s.poll_event())
}

fn n_name(f: u64, creation: u32, name_len: u16, name: &[u8]) -> Vec<u8> {
    let mut m = vec![b'N'];
    m.extend_from_slice(&f.to_be_bytes());
    m.extend_from_slice(&creation.to_be_bytes());
    m.extend_from_slice(&name_len.to_be_bytes());
    m.extend_from_slice(name);
    m
}

#[test]
fn malformed_names_are_errors() {
    let f = flags::offered(false);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (n_name(f, 1, 10, b"a@h"), "Malformed"),
        (vec![b'N', 0, 0, 0], "Malformed"),
        (n_name(f, 1, 3, b"ah_"), "NameInvalid"),
        (n_name(f, 1, 5, b"a@h@x"), "NameInvalid"),
        (n_name(f, 1, 2, b"@h"), "NameInvalid"),
        (n_name(f, 1, 2, b"a@"), "NameInvalid"),
        (n_name(f, 1, 0, b""), "NameInvalid"),
        (n_name(f, 1, 4, b"a@\xff\xfe"), "NameInvalid"),
        (n_name(f | flags::NAME_ME, 1, 1, b"h"), "NameInvalid"),
        (b"xyz".to_vec(), "UnexpectedMessage"),
        (
            vec![b'n', 0, 4, 0, 0, 0, 0, b'a', b'@', b'h'],
            "UnsupportedVersion",
        ),
        (vec![b'n', 0, 5], "Malformed"),
    ];
    for (msg, kind) in cases {
        let err = server_after(&msg).unwrap_err();
        assert!(format!("{err:?}").starts_with(kind), "{msg:?}: {err:?}");
    }
    let long = vec![b'a'; 254];
    let mut name = long.clone();
    name.extend_from_slice(b"@h");
    let err = server_after(&n_name(f, 1, name.len() as u16, &name)).unwrap_err();
    assert!(matches!(err, HandshakeError::NameInvalid(_)), "{err}");
    // Bytes after the name are ignored, as OTP does.
    let mut ok = n_name(f, 1, 3, b"a@h");
    ok.extend_from_slice(b"future");
    assert!(matches!(
        server_after(&ok).unwrap(),
        Some(HandshakeEvent::PeerNamed { name, .. }) if name == "a@h"
    ));
}

#[test]
fn empty_message_is_malformed() {
    let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    assert!(matches!(
        s.receive(&[0, 0]),
        Err(HandshakeError::Malformed(_))
    ));
    assert!(s.receive(&[0]).is_err(), "and the handshake stays failed");
}

#[test]
fn wrong_length_reply_and_ack_are_malformed() {
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    client.receive(&server.take_output()).unwrap();
    let mut reply = messages(&client.take_output()).remove(0);
    reply.push(0);
    assert!(matches!(
        server.receive(&framed(&reply)),
        Err(HandshakeError::Malformed(_))
    ));
    let mut short_ack = vec![b'a'];
    short_ack.extend_from_slice(&[0; 15]);
    assert!(matches!(
        client.receive(&framed(&short_ack)),
        Err(HandshakeError::Malformed(_))
    ));
}

#[test]
fn client_status_errors() {
    for (msg, ok) in [
        (&b"sok"[..], true),
        (b"sok_simultaneous", true),
        (b"snamed:\x00\x01x\x00\x00\x00\x01", false),
        (b"swhat", false),
        (b"N", false),
    ] {
        let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
        c.take_output();
        assert_eq!(c.receive(&framed(msg)).is_ok(), ok, "{msg:?}");
    }
    // An 'n' challenge answers an 'N' name only in a broken server.
    let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    c.receive(&framed(b"sok")).unwrap();
    let mut old = vec![b'n', 0, 5];
    old.extend_from_slice(&(flags::offered(false) as u32).to_be_bytes());
    old.extend_from_slice(&[0, 0, 0, 1]);
    old.extend_from_slice(b"s@h");
    assert!(matches!(
        c.receive(&framed(&old)),
        Err(HandshakeError::UnexpectedMessage(_))
    ));
}

#[test]
fn bad_own_config_fails_at_first_receive_without_output() {
    let mut c = Handshake::client(cfg("no-at-sign", flags::offered(true), COOKIE), 1, 6);
    assert!(c.take_output().is_empty());
    assert!(matches!(
        c.receive(b""),
        Err(HandshakeError::NameInvalid(_))
    ));
    let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 4);
    assert!(c.take_output().is_empty());
    assert!(matches!(
        c.receive(b""),
        Err(HandshakeError::UnsupportedVersion)
    ));
    let mut s = Handshake::server(cfg("", flags::offered(true), COOKIE), 1);
    assert!(matches!(
        s.receive(b""),
        Err(HandshakeError::NameInvalid(_))
    ));
    // Newer versions than 6 are spoken as 6.
    let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 7);
    assert_eq!(c.take_output()[2], b'N');
}

#[test]
fn set_status_out_of_turn_is_ignored() {
    let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let name = c.take_output();
    c.set_status(ServerStatus::Ok);
    assert!(c.take_output().is_empty());
    let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    s.set_status(ServerStatus::Ok);
    assert!(s.take_output().is_empty());
    s.receive(&name).unwrap();
    assert!(matches!(
        s.poll_event(),
        Some(HandshakeEvent::PeerNamed { .. })
    ));
}

#[test]
fn flooding_while_waiting_for_the_owner_is_bounded() {
    let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    s.receive(&c.take_output()).unwrap();
    let junk = vec![0xffu8; 4096];
    let mut failed = false;
    for _ in 0..100 {
        if s.receive(&junk).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "buffering stops at one message's worth");
}

#[test]
fn status_and_challenge_in_one_read() {
    // A server writes status and challenge back to back; one read may hold both.
    let mut client = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, 6);
    let mut server = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
    server.receive(&client.take_output()).unwrap();
    server.poll_event().unwrap();
    server.set_status(ServerStatus::Ok);
    let both = server.take_output();
    assert_eq!(messages(&both).len(), 2);
    client.receive(&both).unwrap();
    assert_eq!(messages(&client.take_output())[0][0], b'r');
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
        version in 0u16..8,
    ) {
        let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, version);
        let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
        let (mut c_ok, mut s_ok) = (true, true);
        for piece in data.chunks(chunk) {
            c_ok = c_ok && c.receive(piece).is_ok();
            s_ok = s_ok && s.receive(piece).is_ok();
            while let Some(ev) = s.poll_event() {
                if let HandshakeEvent::PeerNamed { .. } = ev {
                    s.set_status(ServerStatus::Ok);
                }
            }
            let _ = (c.take_output(), s.take_output(), c.poll_event());
        }
        let _ = (c.connection_closed(), s.connection_closed());
    }

    /// Valid prefixes followed by garbage: deeper states see junk too.
    #[test]
    fn garbage_after_valid_messages_never_panics(
        junk in proptest::collection::vec(any::<u8>(), 0..200),
        tag in prop::sample::select(vec![b'N', b'n', b'r', b'a', b'c', b's']),
        status in prop::sample::select(vec![ServerStatus::Ok, ServerStatus::Alive, ServerStatus::Nok]),
        version in 5u16..7,
    ) {
        let mut c = Handshake::client(cfg("c@h", flags::offered(true), COOKIE), 1, version);
        let mut s = Handshake::server(cfg("s@h", flags::offered(false), COOKIE), 2);
        let _ = s.receive(&c.take_output());
        while s.poll_event().is_some() {
            s.set_status(status);
        }
        let _ = c.receive(&s.take_output());
        let mut msg = vec![tag];
        msg.extend_from_slice(&junk);
        let _ = s.receive(&framed(&msg));
        let _ = c.receive(&framed(&msg));
        let _ = s.receive(&junk);
        let _ = c.receive(&junk);
    }

    #[test]
    fn any_challenges_cookies_and_splits_complete(
        c_ch in any::<u32>(),
        s_ch in any::<u32>(),
        cookie in "[ -~]{0,40}",
        chunk in 1usize..40,
        version in 5u16..7,
    ) {
        let client = Handshake::client(cfg("c@h", flags::offered(true), &cookie), c_ch, version);
        let server = Handshake::server(cfg("s@h", flags::offered(false), &cookie), s_ch);
        let o = pump(client, server, ServerStatus::Ok, chunk);
        prop_assert!(o.client.is_ok() && o.server.is_ok(), "{:?}", o);
        prop_assert!(o.client_leftover.is_empty());
    }
}

#[test]
fn four_byte_lengths_as_tls_distribution_frames_them() {
    for chunk in [1, 3, 1000] {
        let client = Handshake::client(cfg("rust@127.0.0.1", flags::offered(false), "c"), 7, 6)
            .with_four_byte_lengths();
        let server = Handshake::server(cfg("erl@127.0.0.1", flags::offered(false), "c"), 9)
            .with_four_byte_lengths();
        let o = pump(client, server, ServerStatus::Ok, chunk);
        assert_completed(&o, "rust@127.0.0.1", "erl@127.0.0.1", 6);
    }
    // The client's first message: a 4-byte length, then 'N'.
    let mut c = Handshake::client(cfg("rust@127.0.0.1", flags::offered(false), "c"), 7, 6)
        .with_four_byte_lengths();
    let out = c.take_output();
    let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
    assert_eq!(len + 4, out.len());
    assert_eq!(out[4], b'N');
    // A 2-byte-framed peer's first message is refused, not misread.
    let mut s = Handshake::server(cfg("erl@127.0.0.1", flags::offered(false), "c"), 9)
        .with_four_byte_lengths();
    let plain =
        Handshake::client(cfg("rust@127.0.0.1", flags::offered(false), "c"), 7, 6).take_output();
    assert!(s.receive(&plain).is_err());
}

#[test]
fn a_tls_client_hello_at_a_plain_server_is_named_at_once() {
    let mut s = Handshake::server(cfg("erl@127.0.0.1", flags::offered(false), "c"), 9);
    let e = s
        .receive(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap_err();
    assert!(e.to_string().contains("TLS ClientHello"), "{e}");
}
