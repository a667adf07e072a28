//! Interop of the handshake state machine with real OTP nodes.
//!
//! Every test starts its own `epmd -port P` on a free port and `erl` nodes
//! pointed at it with `ERL_EPMD_PORT`, so tests run in parallel and never touch
//! a system EPMD. The EPMD requests (ALIVE2, PORT_PLEASE2) are written here in
//! a few lines on purpose: the real EPMD client lives elsewhere in the crate.
//! All OS processes are killed by pid when their guard drops.
//!
//! Tests skip (with a message) when `erl`/`epmd` are not installed.
//! With `BEAM_PEER_RECORD_FIXTURES=1` the v6 tests also rewrite the recorded
//! handshakes under `tests/fixtures/handshake/` that the unit tests replay.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use beam_peer::dist::flags;
use beam_peer::dist::handshake::{
    Handshake, HandshakeConfig, HandshakeError, HandshakeEvent, PeerInfo, ServerStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(10);
const OUR_CHALLENGE: u32 = 0x1234_5678;
const OUR_CREATION: u32 = 0x5eed_0001;

/// An OS process killed (by pid) and reaped when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_erlang() -> bool {
    common::have_erl("handshake")
}

/// The OTP release of the `erl` under test.
fn peer_otp() -> u32 {
    common::beam_versions().map_or(0, |v| v.otp)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private EPMD on a free port.
async fn start_epmd() -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        let child = common::beam_tool("epmd")
            .args(["-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn epmd");
        let mut proc = Proc { child };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return (proc, port);
            }
            if proc.child.try_wait().ok().flatten().is_some() {
                break; // lost the port race; try another
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("could not start epmd");
}

/// A real `erl` node running `eval`, its stdout and stderr lines in a channel.
struct Erl {
    _proc: Proc,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Erl {
    fn start(epmd_port: u16, name: &str, cookie: &str, eval: &str) -> Erl {
        let mut child = common::beam_tool("erl")
            .args([
                "-noshell",
                "-name",
                name,
                "-setcookie",
                cookie,
                "-start_epmd",
                "false",
                "-eval",
                eval,
            ])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn erl");
        let (tx, lines) = mpsc::unbounded_channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        Erl {
            _proc: Proc { child },
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for a line containing `needle`; panics with everything erl said.
    async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                _ => panic!("erl never printed {needle:?}; it said: {:#?}", self.seen),
            }
        }
    }
}

/// ALIVE2_REQ: publish `alive` at `port`; the registration lasts as long as
/// the returned stream. Returns our creation.
async fn epmd_register(epmd_port: u16, alive: &str, port: u16, hidden: bool) -> (TcpStream, u32) {
    let mut req = vec![120u8];
    req.extend_from_slice(&port.to_be_bytes());
    req.push(if hidden { 72 } else { 77 }); // 'H' hidden / 'M' normal node
    req.push(0); // tcp/ipv4
    req.extend_from_slice(&6u16.to_be_bytes()); // highest version
    req.extend_from_slice(&5u16.to_be_bytes()); // lowest version
    req.extend_from_slice(&(alive.len() as u16).to_be_bytes());
    req.extend_from_slice(alive.as_bytes());
    req.extend_from_slice(&0u16.to_be_bytes()); // no extra
    let mut s = TcpStream::connect(("127.0.0.1", epmd_port)).await.unwrap();
    s.write_all(&(req.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&req).await.unwrap();
    let tag = s.read_u8().await.unwrap();
    let result = s.read_u8().await.unwrap();
    assert_eq!(result, 0, "epmd refused to register {alive}");
    let creation = match tag {
        118 => s.read_u32().await.unwrap(),        // ALIVE2_X_RESP
        121 => s.read_u16().await.unwrap() as u32, // ALIVE2_RESP
        t => panic!("unexpected epmd answer tag {t}"),
    };
    (s, creation)
}

/// PORT_PLEASE2_REQ: (port, highest version) of `alive`.
async fn epmd_lookup(epmd_port: u16, alive: &str) -> (u16, u16) {
    let mut s = TcpStream::connect(("127.0.0.1", epmd_port)).await.unwrap();
    let mut req = vec![122u8];
    req.extend_from_slice(alive.as_bytes());
    s.write_all(&(req.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&req).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert!(
        resp.len() >= 10 && resp[0] == 119 && resp[1] == 0,
        "{alive} not in epmd: {resp:?}"
    );
    let port = u16::from_be_bytes([resp[2], resp[3]]);
    let highest = u16::from_be_bytes([resp[6], resp[7]]);
    (port, highest)
}

fn config(cookie: &str, hidden: bool) -> HandshakeConfig {
    HandshakeConfig {
        name: "rust@127.0.0.1".into(),
        creation: OUR_CREATION,
        flags: flags::offered(hidden),
        cookie: cookie.into(),
    }
}

/// Bytes each way, for fixtures.
#[derive(Default)]
struct Recording {
    sent: Vec<u8>,
    received: Vec<u8>,
}

/// Pump a handshake over a socket until it completes or fails.
async fn drive(
    stream: &mut TcpStream,
    hs: &mut Handshake,
    status: ServerStatus,
    rec: &mut Recording,
) -> Result<(PeerInfo, Vec<u8>), HandshakeError> {
    let mut buf = [0u8; 4096];
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            rec.sent.extend_from_slice(&out);
            stream.write_all(&out).await.unwrap();
        }
        match hs.poll_event() {
            Some(HandshakeEvent::PeerNamed { .. }) => {
                hs.set_status(status);
                continue;
            }
            Some(HandshakeEvent::Completed { peer, leftover }) => {
                let n = rec.received.len() - leftover.len();
                rec.received.truncate(n);
                return Ok((peer, leftover));
            }
            None => {}
        }
        let n = match timeout(STEP, stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("handshake stalled"),
        };
        if n == 0 {
            return Err(hs.connection_closed());
        }
        rec.received.extend_from_slice(&buf[..n]);
        if let Err(e) = hs.receive(&buf[..n]) {
            // Flush a refusing status, as the owner is told to.
            let out = hs.take_output();
            rec.sent.extend_from_slice(&out);
            let _ = stream.write_all(&out).await;
            return Err(e);
        }
    }
}

/// After the handshake: answer and send ticks (4-byte zero frames) so the
/// peer sees a live connection; everything else it sends is skipped.
fn keep_alive(stream: TcpStream) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut rd, mut wr) = stream.into_split();
        let reader = async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = rd.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let ticker = async move {
            loop {
                if wr.write_all(&[0, 0, 0, 0]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        tokio::select! { _ = reader => {}, _ = ticker => {} }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn recording_enabled() -> bool {
    std::env::var_os("BEAM_PEER_RECORD_FIXTURES").is_some()
}

fn write_fixture(file: &str, lines: &[(&str, String)]) {
    let mut text = String::from(
        "# Recorded by tests/handshake.rs against a real OTP 25 node\n\
         # (BEAM_PEER_RECORD_FIXTURES=1). Hex is the raw TCP stream.\n",
    );
    for (k, v) in lines {
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = format!(
        "{}/tests/fixtures/handshake/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(path, text).unwrap();
}

/// Our server, registered in EPMD, accepts one connection and runs the
/// handshake with `status` for the named peer.
async fn serve_one(
    epmd_port: u16,
    cookie: &str,
    status: ServerStatus,
) -> (
    TcpStream,
    tokio::task::JoinHandle<(
        TcpStream,
        Recording,
        Result<(PeerInfo, Vec<u8>), HandshakeError>,
    )>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (registration, _creation) = epmd_register(epmd_port, "rust", port, false).await;
    let cfg = config(cookie, false);
    let task = tokio::spawn(async move {
        let (mut stream, _) = timeout(STEP, listener.accept()).await.unwrap().unwrap();
        let mut hs = Handshake::server(cfg, OUR_CHALLENGE);
        let mut rec = Recording::default();
        let r = drive(&mut stream, &mut hs, status, &mut rec).await;
        (stream, rec, r)
    });
    (registration, task)
}

/// (1) A real node dials us: `net_kernel:connect_node` returns true and we
/// are in its `nodes()`.
#[tokio::test(flavor = "multi_thread")]
async fn real_erl_connects_to_our_server() {
    if !have_erlang() {
        return;
    }
    let (_epmd, epmd_port) = start_epmd().await;
    let (_registration, server) = serve_one(epmd_port, "secret", ServerStatus::Ok).await;
    let mut erl = Erl::start(
        epmd_port,
        "erl1@127.0.0.1",
        "secret",
        "R = net_kernel:connect_node('rust@127.0.0.1'), \
         io:format(\"connect=~p~n\", [R]), \
         io:format(\"nodes=~p~n\", [nodes()]), \
         timer:sleep(200), halt().",
    );
    let (stream, rec, result) = timeout(STEP, server).await.unwrap().unwrap();
    let (peer, leftover) = result.expect("handshake with erl");
    let _alive = keep_alive(stream);
    assert_eq!(peer.name, "erl1@127.0.0.1");
    assert_eq!(peer.version, 6);
    assert_eq!(peer.flags & flags::MANDATORY_OTP25, flags::MANDATORY_OTP25);
    assert!(!peer.is_hidden());
    assert!(
        leftover.is_empty(),
        "erl waits for our ack before sending frames"
    );
    eprintln!(
        "OTP 25 client flags: {:#x}, creation {}",
        peer.flags, peer.creation
    );
    erl.expect("connect=true").await;
    erl.expect("nodes=['rust@127.0.0.1']").await;
    if recording_enabled() {
        write_fixture(
            "erl_client_v6.txt",
            &[
                ("cookie", "secret".into()),
                ("our_name", "rust@127.0.0.1".into()),
                ("our_creation", OUR_CREATION.to_string()),
                ("our_flags", format!("{:#x}", flags::offered(false))),
                ("our_challenge", OUR_CHALLENGE.to_string()),
                ("peer_name", peer.name.clone()),
                ("peer_flags", format!("{:#x}", peer.flags)),
                ("peer_creation", peer.creation.to_string()),
                ("peer_to_us", hex(&rec.received)),
                ("us_to_peer", hex(&rec.sent)),
            ],
        );
    }
}

/// Start a real node that waits until `rust@127.0.0.1` shows in
/// `nodes(hidden)` and says so; returns it with its (port, highest version).
async fn erl_waiting_for_us(epmd_port: u16, cookie: &str) -> (Erl, u16, u16) {
    let mut erl = Erl::start(
        epmd_port,
        "erl2@127.0.0.1",
        cookie,
        "io:format(\"ready~n\"), \
         W = fun W(0) -> false; \
                 W(N) -> case lists:member('rust@127.0.0.1', nodes(hidden)) of \
                             true -> true; \
                             false -> timer:sleep(50), W(N - 1) end end, \
         io:format(\"seen=~p~n\", [W(40)]), \
         timer:sleep(200), halt().",
    );
    erl.expect("ready").await;
    let (port, highest) = epmd_lookup(epmd_port, "erl2").await;
    (erl, port, highest)
}

/// (2) We dial a real node as a hidden node; it lists us in `nodes(hidden)`.
#[tokio::test(flavor = "multi_thread")]
async fn our_client_connects_to_real_erl() {
    if !have_erlang() {
        return;
    }
    let (_epmd, epmd_port) = start_epmd().await;
    let (mut erl, port, highest) = erl_waiting_for_us(epmd_port, "secret").await;
    assert_eq!(highest, 6, "OTP 25 registers protocol 6 in epmd");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hs = Handshake::client(config("secret", true), OUR_CHALLENGE, highest);
    let mut rec = Recording::default();
    let (peer, _leftover) = drive(&mut stream, &mut hs, ServerStatus::Ok, &mut rec)
        .await
        .expect("handshake with erl");
    let _alive = keep_alive(stream);
    assert_eq!(peer.name, "erl2@127.0.0.1");
    assert_eq!(peer.version, 6);
    assert!(!peer.is_hidden());
    eprintln!(
        "OTP 25 server flags: {:#x}, creation {}",
        peer.flags, peer.creation
    );
    erl.expect("seen=true").await;
    if recording_enabled() {
        write_fixture(
            "erl_server_v6.txt",
            &[
                ("cookie", "secret".into()),
                ("our_name", "rust@127.0.0.1".into()),
                ("our_creation", OUR_CREATION.to_string()),
                ("our_flags", format!("{:#x}", flags::offered(true))),
                ("our_challenge", OUR_CHALLENGE.to_string()),
                ("peer_name", peer.name.clone()),
                ("peer_flags", format!("{:#x}", peer.flags)),
                ("peer_creation", peer.creation.to_string()),
                ("peer_to_us", hex(&rec.received)),
                ("us_to_peer", hex(&rec.sent)),
            ],
        );
    }
}

/// (3a) A real node with another cookie dials us: we report the mismatch and
/// never ack; `connect_node` returns false.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_cookie_real_erl_to_our_server() {
    if !have_erlang() {
        return;
    }
    let (_epmd, epmd_port) = start_epmd().await;
    let (_registration, server) = serve_one(epmd_port, "secret", ServerStatus::Ok).await;
    let mut erl = Erl::start(
        epmd_port,
        "erl1@127.0.0.1",
        "not_the_secret",
        "R = net_kernel:connect_node('rust@127.0.0.1'), \
         io:format(\"connect=~p~n\", [R]), \
         io:format(\"nodes=~p~n\", [nodes(connected)]), \
         timer:sleep(200), halt().",
    );
    let (stream, rec, result) = timeout(STEP, server).await.unwrap().unwrap();
    match result {
        Err(HandshakeError::CookieMismatch { peer, .. }) => assert_eq!(peer, "erl1@127.0.0.1"),
        other => panic!("expected a cookie mismatch, got {other:?}"),
    }
    assert!(
        !rec.sent.windows(3).any(|w| w == [0, 17, b'a']),
        "no ack sent"
    );
    drop(stream); // what the owner does on error
    erl.expect("connect=false").await;
    erl.expect("nodes=[]").await;
    eprintln!("erl (client, wrong cookie) said: {:#?}", erl.seen);
}

/// (3b) We dial a real node with another cookie: it hangs up instead of
/// acking, we report a cookie mismatch, and erl logs the rejection.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_cookie_our_client_to_real_erl() {
    if !have_erlang() {
        return;
    }
    let (_epmd, epmd_port) = start_epmd().await;
    let (mut erl, port, highest) = erl_waiting_for_us(epmd_port, "secret").await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hs = Handshake::client(config("not_the_secret", true), OUR_CHALLENGE, highest);
    let mut rec = Recording::default();
    match drive(&mut stream, &mut hs, ServerStatus::Ok, &mut rec).await {
        Err(HandshakeError::CookieMismatch { peer, .. }) => assert_eq!(peer, "erl2@127.0.0.1"),
        other => panic!("expected a cookie mismatch, got {other:?}"),
    }
    let line = erl.expect("Invalid challenge reply").await;
    eprintln!("erl (server, wrong cookie) logged: {line}");
    erl.expect("seen=false").await;
}

/// (4) Protocol 5, answered as the release under test answers it (checked
/// against OTP 25 and OTP 27; OTP 26 is taken to answer as 27):
/// - OTP 25 only accepts the new `'N'` name. Our old `'n'` name (even with
///   HANDSHAKE_23 set in it) is answered by closing the socket, without a
///   status; `connection_closed` explains it.
/// - OTP 27 accepts the old name again and completes the handshake.
#[tokio::test(flavor = "multi_thread")]
async fn a_protocol_5_name_is_answered_as_the_peers_release_does() {
    if !have_erlang() {
        return;
    }
    let (_epmd, epmd_port) = start_epmd().await;
    let (mut erl, port, _highest) = erl_waiting_for_us(epmd_port, "secret").await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut hs = Handshake::client(config("secret", true), OUR_CHALLENGE, 5);
    let mut rec = Recording::default();
    let outcome = drive(&mut stream, &mut hs, ServerStatus::Ok, &mut rec).await;
    assert_eq!(rec.sent[2], b'n');
    let otp = peer_otp();
    if otp <= 25 {
        let err = outcome.expect_err("OTP 25 must refuse the old name");
        assert!(
            matches!(err, HandshakeError::ConnectionClosed(ref why) if why.contains("protocol 5")),
            "{err}"
        );
        assert!(
            rec.received.is_empty(),
            "no status before the close: {:?}",
            rec.received
        );
        erl.expect("seen=false").await;
    } else {
        let (peer, _leftover) = outcome.unwrap_or_else(|e| panic!("OTP {otp} refused: {e}"));
        let _alive = keep_alive(stream);
        assert_eq!(peer.name, "erl2@127.0.0.1");
        erl.expect("seen=true").await;
    }
    eprintln!("erl (OTP {otp}, server, 'n' name) said: {:#?}", erl.seen);
}

/// Digests computed by erl itself, for the unit tests.
#[test]
fn record_erl_digests() {
    if !recording_enabled() || !have_erlang() {
        return;
    }
    let pairs: &[(u32, &str)] = &[
        (0, "secret"),
        (1, "cookie"),
        (0x1234_5678, "secret"),
        (u32::MAX, "COOKIE_WITH_CAPS"),
        (2_147_483_648, "a"),
        (42, ""),
    ];
    let terms: Vec<String> = pairs
        .iter()
        .map(|(c, k)| format!("{{{c}, \"{k}\"}}"))
        .collect();
    let eval = format!(
        "[io:format(\"~b ~s ~s~n\", [C, binary:encode_hex(erlang:md5(K ++ integer_to_list(C))), K]) \
          || {{C, K}} <- [{}]], halt().",
        terms.join(", ")
    );
    let out = common::beam_tool("erl")
        .args(["-noshell", "-eval", &eval])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut fixture = String::from(
        "# challenge md5-hex cookie, computed by OTP 25 as erlang:md5(Cookie ++ integer_to_list(Challenge))\n",
    );
    fixture.push_str(&text);
    let path = format!(
        "{}/tests/fixtures/handshake/digests.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::write(path, fixture).unwrap();
}

/// The first `n` 2-byte-length-prefixed messages of a stream (the rest are
/// distribution frames).
fn first_messages(stream: &[u8], n: usize) -> Vec<u8> {
    let mut end = 0;
    for _ in 0..n {
        let len = u16::from_be_bytes([stream[end], stream[end + 1]]) as usize;
        end += 2 + len;
    }
    stream[..end].to_vec()
}

/// Forward one direction, keeping a copy of everything that passed.
fn tee(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = timeout(Duration::from_secs(2), from.read(&mut buf)).await {
            if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    })
}

/// A handshake between two real OTP 25 nodes, through a logging proxy: node
/// `a` finds "b" in its own EPMD, where we registered the proxy; the proxy
/// dials the real `b`. The unit tests replay it byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn erl_to_erl_through_a_logging_proxy() {
    if !have_erlang() {
        return;
    }
    let (_epmd_b, epmd_b) = start_epmd().await;
    let (_epmd_a, epmd_a) = start_epmd().await;
    let mut b = Erl::start(
        epmd_b,
        "b@127.0.0.1",
        "secret",
        "io:format(\"ready~n\"), timer:sleep(5000), halt().",
    );
    b.expect("ready").await;
    let (b_port, _) = epmd_lookup(epmd_b, "b").await;
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_registration, _) =
        epmd_register(epmd_a, "b", proxy.local_addr().unwrap().port(), false).await;
    let mut a = Erl::start(
        epmd_a,
        "a@127.0.0.1",
        "secret",
        "io:format(\"connect=~p~n\", [net_kernel:connect_node('b@127.0.0.1')]), \
         timer:sleep(300), halt().",
    );
    let (from_a, _) = timeout(STEP, proxy.accept()).await.unwrap().unwrap();
    let to_b = TcpStream::connect(("127.0.0.1", b_port)).await.unwrap();
    let (a_rd, a_wr) = from_a.into_split();
    let (b_rd, b_wr) = to_b.into_split();
    let a_to_b = tee(a_rd, b_wr);
    let b_to_a = tee(b_rd, a_wr);
    a.expect("connect=true").await;
    let a_to_b = first_messages(&a_to_b.await.unwrap(), 2); // name, reply
    let b_to_a = first_messages(&b_to_a.await.unwrap(), 3); // status, challenge, ack
    assert_eq!(a_to_b[2], b'N');
    assert_eq!(&b_to_a[..5], b"\x00\x03sok");
    if recording_enabled() {
        write_fixture(
            "erl_to_erl_v6.txt",
            &[
                ("cookie", "secret".into()),
                ("client_name", "a@127.0.0.1".into()),
                ("server_name", "b@127.0.0.1".into()),
                ("client_to_server", hex(&a_to_b)),
                ("server_to_client", hex(&b_to_a)),
            ],
        );
    }
}
