//! Chaos scenario 5: hostile peers against a Rust node's distribution port
//! and its embedded EPMD, on loopback (no namespaces needed).
//!
//! The target is `beam-peer node` in its own OS process (with `echo` and
//! `sink`; it runs the embedded EPMD of its private `ERL_EPMD_PORT`), so its
//! resident memory (VmRSS from /proc) is its own. In every test a good peer
//! (a Rust node in this process) pings the target and calls its `echo`
//! every 20 ms while the hostile act runs; every one must be answered, and
//! the target's RSS must stay under [`RSS_BOUND_KIB`]. Each test prints one
//! `CHAOS` line with its figures (scripts/chaos.sh tabulates them).
//!
//! Acts: a handshake that trickles one byte a second; 5,000 connections
//! opened and abandoned, on the dist port and on EPMD; a 4 GiB length
//! prefix after a valid handshake; random bytes after a valid handshake; a
//! deep term, terms whose headers claim 4 G elements, and a large real
//! term; a peer that stops reading while the target streams to it.
//! `CHAOS_LONG=1` (scripts/chaos.sh) runs each longer.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beam_peer::dist::codec;
use beam_peer::dist::handshake::{Handshake, HandshakeConfig, HandshakeEvent};
use beam_peer::dist::message::Message;
use beam_peer::term::{self, Pid};
use beam_peer::{Dest, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The target's resident memory must stay below this (KiB) throughout:
/// its baseline is ~10-20 MiB, the send queue bound 64 MiB, plus socket
/// and read buffers.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Generous deadline for anything the target must do (close a connection,
/// answer); never a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

fn long() -> bool {
    std::env::var("CHAOS_LONG").as_deref() == Ok("1")
}

/// `beam-peer node` in its own process; killed by pid when dropped.
struct Target {
    child: Child,
    name: String,
    epmd_port: u16,
    dist_port: u16,
}

impl Target {
    async fn start() -> Target {
        let epmd_port = common::free_port();
        let alive = common::unique("target");
        let name = format!("{alive}@127.0.0.1");
        let child = Command::new(env!("CARGO_BIN_EXE_beam-peer"))
            .args(["node", "--name", &name, "--cookie", common::COOKIE])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("beam-peer node runs");
        let epmd = SocketAddr::from(([127, 0, 0, 1], epmd_port));
        let deadline = Instant::now() + DEADLINE;
        let dist_port = loop {
            if let Ok(Some(e)) = beam_peer::epmd::port_please(epmd, &alive).await {
                break e.port;
            }
            assert!(Instant::now() < deadline, "target never registered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Target {
            child,
            name,
            epmd_port,
            dist_port,
        }
    }

    fn rss_kib(&self) -> u64 {
        common::netns::rss_kib(self.child.id()).expect("target alive")
    }

    fn dist(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dist_port))
    }

    fn epmd(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.epmd_port))
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The good peer's tallies, and the target's highest RSS seen.
#[derive(Default)]
struct Tally {
    rounds: AtomicU64,
    failed: AtomicU64,
    max_rss_kib: AtomicU64,
    /// Slowest round (ping + call), µs: reported, never asserted.
    slowest_us: AtomicU64,
    stop: AtomicBool,
}

/// A good peer pinging the target and calling its `echo` every 20 ms (a
/// fresh Rust node: it looks the target up in the target's EPMD).
struct GoodPeer {
    tally: Arc<Tally>,
    task: tokio::task::JoinHandle<()>,
    node: Node,
}

impl GoodPeer {
    async fn start(target: &Target) -> GoodPeer {
        let node = common::rust_node("good", target.epmd_port).await;
        let tally = Arc::new(Tally::default());
        let (n, t, name, pid) = (
            node.clone(),
            tally.clone(),
            target.name.clone(),
            target.child.id(),
        );
        // The first round connects: it must succeed before the act starts.
        assert!(good_round(&n, &name, 0).await, "good peer reaches target");
        let task = tokio::spawn(async move {
            let mut i = 1;
            while !t.stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                if !good_round(&n, &name, i).await {
                    t.failed.fetch_add(1, Ordering::Relaxed);
                }
                t.slowest_us
                    .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                t.rounds.fetch_add(1, Ordering::Relaxed);
                if let Some(rss) = common::netns::rss_kib(pid) {
                    t.max_rss_kib.fetch_max(rss, Ordering::Relaxed);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        GoodPeer { tally, task, node }
    }

    /// Stops the loop; panics unless every round was answered and the RSS
    /// stayed under the bound. Returns (rounds, max RSS KiB).
    async fn finish(self, target: &mut Target, act: &str) -> (u64, u64) {
        self.tally.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("good peer loop");
        assert!(target.alive(), "{act}: the target died");
        // One more round after the act: still served.
        assert!(
            good_round(&self.node, &target.name, u64::MAX).await,
            "{act}: target no longer answers"
        );
        let t = &self.tally;
        let rss = t.max_rss_kib.load(Ordering::Relaxed).max(target.rss_kib());
        let (rounds, failed) = (
            t.rounds.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
        );
        println!(
            "{act}: good peer {rounds} rounds, {failed} failed, slowest {} ms; target max RSS {} KiB",
            t.slowest_us.load(Ordering::Relaxed) / 1000,
            rss
        );
        assert_eq!(failed, 0, "{act}: good peer's pings/calls failed");
        assert!(
            rss < RSS_BOUND_KIB,
            "{act}: target RSS {rss} KiB over the bound {RSS_BOUND_KIB} KiB"
        );
        self.node.shutdown();
        (rounds, rss)
    }
}

/// One ping and one call to `echo`; true when both were answered rightly.
async fn good_round(node: &Node, target: &str, i: u64) -> bool {
    if !node.ping(target).await {
        return false;
    }
    let mut p = node.process();
    let req = beam_peer::tup![term::atom("good"), term::int(i as i64 & 0xffff_ffff)];
    matches!(
        p.call(Dest::Remote("echo".into(), target.into()), req.clone(), Duration::from_secs(10)).await,
        Ok(r) if r == req
    )
}

/// The one figures line per act (see scripts/chaos.sh).
fn chaos_line(act: &str, trials: u64, faults: u64, checked: u64, rss: u64) {
    println!(
        "CHAOS scenario=5:{act} trials={trials} faults={faults} checked={checked} lost=0 dup=0 max_rss_kib={rss} settle_ms=-"
    );
}

/// A raw peer that completed a real handshake as the hidden node
/// `hostile_..@127.0.0.1` (dist-header frames: FRAGMENTS is offered).
async fn hostile_peer(target: &Target) -> (TcpStream, Pid) {
    let name = format!("{}@127.0.0.1", common::unique("hostile"));
    let cfg = HandshakeConfig {
        name: name.clone(),
        creation: 1,
        flags: beam_peer::dist::flags::offered(true),
        cookie: common::COOKIE.into(),
    };
    let mut hs = Handshake::client(cfg, rand_u32(), 6);
    let mut s = TcpStream::connect(target.dist()).await.expect("connects");
    let mut buf = [0u8; 4096];
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            s.write_all(&out).await.expect("handshake write");
        }
        if let Some(HandshakeEvent::Completed { leftover, .. }) = hs.poll_event() {
            assert!(leftover.is_empty() || leftover.iter().all(|&b| b == 0));
            break;
        }
        let n = s.read(&mut buf).await.expect("handshake read");
        assert!(n > 0, "target closed the handshake");
        hs.set_alive_answer(true);
        hs.receive(&buf[..n]).expect("handshake");
    }
    (s, Pid::new(&name, 1, 0, 1))
}

fn rand_u32() -> u32 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    x ^= x << 13;
    x ^= x >> 17;
    x ^ (x << 5)
}

/// A REG_SEND frame to `to` whose payload is the raw external-format bytes
/// `payload` (without the 131 version byte).
fn reg_send_raw(from: &Pid, to: &str, payload: &[u8]) -> Vec<u8> {
    let body = codec::encode_control_headered(Message::reg_send(
        from.clone(),
        term::Atom::from(to),
        term::atom("x"),
    ))
    .expect("encodes");
    // The placeholder payload `x`: SMALL_ATOM_UTF8_EXT, length 1.
    assert!(body.ends_with(&[119, 1, b'x']), "{body:?}");
    let mut body = body[..body.len() - 3].to_vec();
    body.extend_from_slice(payload);
    codec::dist_header_frame(&body).to_vec()
}

/// Reads until the target closes `s` (EOF or reset); false at the deadline.
async fn closed_by_target(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_trickling_one_byte_a_second_is_cut_off_and_others_are_served() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    // A valid send_name, one byte a second, on many connections at once;
    // and an EPMD request the same way.
    let cfg = HandshakeConfig {
        name: "trickle@127.0.0.1".into(),
        creation: 1,
        flags: beam_peer::dist::flags::offered(true),
        cookie: common::COOKIE.into(),
    };
    let mut hs = Handshake::client(cfg, 1, 6);
    let send_name = hs.take_output();
    let conns = if long() { 500 } else { 50 };
    let mut tasks = Vec::new();
    for i in 0..conns {
        let (addr, bytes) = if i % 5 == 4 {
            // PORT_PLEASE2_REQ for the target, trickled to EPMD.
            let alive = target.name.split('@').next().unwrap_or_default();
            let mut req = vec![0, (alive.len() + 1) as u8, 122];
            req.extend_from_slice(alive.as_bytes());
            (target.epmd(), req)
        } else {
            (target.dist(), send_name.clone())
        };
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connects");
            let started = Instant::now();
            for b in bytes {
                if s.write_all(&[b]).await.is_err() {
                    return (true, started.elapsed());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Cut off (the dist handshake timeout is 7 s)?
                let mut probe = [0u8; 1];
                if let Ok(Ok(0)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
                {
                    return (true, started.elapsed());
                }
            }
            (false, started.elapsed())
        }));
    }
    let mut cut = 0;
    let mut longest = Duration::ZERO;
    for t in tasks {
        let (was_cut, held) = t.await.expect("trickler");
        cut += was_cut as u64;
        longest = longest.max(held);
    }
    println!("trickle: {cut} of {conns} connections cut off, longest held {longest:?}");
    // The dist handshakes (longer than the 7 s handshake timeout) are cut off.
    assert!(cut >= conns as u64 * 4 / 5, "{cut} of {conns} cut off");
    let (rounds, rss) = good.finish(&mut target, "trickle").await;
    chaos_line("trickle", 1, conns as u64, rounds, rss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_abandoned_connections_on_dist_and_epmd_leave_others_served() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    // Long: 8,000 a port (16,000 connections, 8,000 held at once: under
    // a 20,000 descriptor limit).
    let n = if long() { 8_000 } else { 5_000 };
    let mut held = Vec::with_capacity(2 * n);
    for i in 0..2 * n {
        let addr = if i % 2 == 0 {
            target.dist()
        } else {
            target.epmd()
        };
        // Opened and left: nothing sent, held open (half of them are
        // closed at once instead).
        match StdTcpStream::connect(addr) {
            Ok(s) if i % 4 < 2 => held.push(s),
            Ok(s) => drop(s),
            Err(e) => panic!("connect {i}: {e}"),
        }
    }
    // While they are held: a fresh node must still look the target up in
    // its EPMD and connect (the good peer is connected already).
    let fresh = common::rust_node("fresh", target.epmd_port).await;
    assert!(
        good_round(&fresh, &target.name, 1).await,
        "a new peer is served while {} connections are held",
        held.len()
    );
    fresh.shutdown();
    let open = held.len();
    drop(held);
    let (rounds, rss) = good.finish(&mut target, "abandoned").await;
    chaos_line("abandoned", 1, 2 * n as u64, rounds + 1, rss);
    println!("abandoned: {} connections, {open} held open at once", 2 * n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4_gib_length_prefix_closes_that_connection_only() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    let trials = if long() { 200 } else { 20 };
    for _ in 0..trials {
        let (mut s, _) = hostile_peer(&target).await;
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 131, 68, 0])
            .await
            .expect("write");
        s.write_all(&[0u8; 4096]).await.expect("write");
        assert!(closed_by_target(&mut s, DEADLINE).await, "4 GiB frame kept");
    }
    // EPMD's own prefix is 16 bits: its largest, then junk.
    for _ in 0..trials {
        let mut s = TcpStream::connect(target.epmd()).await.expect("epmd");
        let mut junk = vec![0xff, 0xff];
        junk.extend(std::iter::repeat_n(0xab, 65535));
        let _ = s.write_all(&junk).await;
        assert!(closed_by_target(&mut s, DEADLINE).await, "EPMD kept junk");
    }
    let (rounds, rss) = good.finish(&mut target, "4gib_prefix").await;
    chaos_line("4gib_prefix", trials, 2 * trials, rounds, rss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_after_a_valid_handshake_close_that_connection_only() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    let trials = if long() { 500 } else { 30 };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut closed = 0;
    for t in 0..trials {
        let (mut s, from) = hostile_peer(&target).await;
        // Half start with a valid message, then junk.
        if t % 2 == 0 {
            let ok = reg_send_raw(&from, "sink", &[119, 2, b'o', b'k']);
            s.write_all(&ok).await.expect("write");
        }
        let len = 1 + (seed as usize % (256 * 1024));
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&junk).await;
        // Junk either breaks framing (closed) or decodes as frames the
        // target drops; either way it must not stall: end the connection
        // from our side after a short look.
        if closed_by_target(&mut s, Duration::from_millis(200)).await {
            closed += 1;
        }
    }
    println!("random: {closed} of {trials} connections closed by the target");
    let (rounds, rss) = good.finish(&mut target, "random_bytes").await;
    chaos_line("random_bytes", trials, trials, rounds, rss);
}

/// LIST_EXT of one element, `depth` times, then NIL: a list nested `depth` deep.
fn deep_list(depth: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(depth * 6 + depth + 1);
    for _ in 0..depth {
        t.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    t.push(106);
    t.extend(std::iter::repeat_n(106, depth));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_huge_terms_are_refused_without_harm() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    let mut payloads: Vec<(&str, Vec<u8>)> = vec![
        ("deep list 100000", deep_list(100_000)),
        // Headers claiming 4 G elements / bytes with nothing behind them.
        ("tuple arity 2^32-1", vec![105, 0xff, 0xff, 0xff, 0xff]),
        ("list of 2^32-1", vec![108, 0xff, 0xff, 0xff, 0xff]),
        ("binary of 2^32-1", vec![109, 0xff, 0xff, 0xff, 0xff]),
        ("map of 2^32-1", vec![116, 0xff, 0xff, 0xff, 0xff]),
        (
            "bignum of 2^32-1 bytes",
            vec![111, 0xff, 0xff, 0xff, 0xff, 0],
        ),
        (
            "compressed 4 GiB",
            vec![80, 0xff, 0xff, 0xff, 0xff, 0x78, 0x9c, 0x03, 0x00],
        ),
    ];
    // A real large term: a list of 1,000,000 small integers (~2 MB).
    let mut big = vec![108, 0, 0x0f, 0x42, 0x40];
    for i in 0..1_000_000u32 {
        big.extend_from_slice(&[97, i as u8]);
    }
    big.push(106);
    payloads.push(("list of 1000000 integers", big));
    let rounds_per = if long() { 20 } else { 2 };
    let mut sent = 0;
    for _ in 0..rounds_per {
        for (what, payload) in &payloads {
            let (mut s, from) = hostile_peer(&target).await;
            s.write_all(&reg_send_raw(&from, "sink", payload))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            // Whether the target drops the message or the connection, the
            // good peer is still served (checked throughout); close ours.
            let _ = closed_by_target(&mut s, Duration::from_millis(200)).await;
            sent += 1;
        }
    }
    let (rounds, rss) = good.finish(&mut target, "deep_huge_terms").await;
    chaos_line("deep_huge_terms", rounds_per, sent, rounds, rss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_at_the_send_queue_bound() {
    let mut target = Target::start().await;
    let good = GoodPeer::start(&target).await;
    let (s, from) = hostile_peer(&target).await;
    let mut s = s.into_std().expect("std stream");
    s.set_nonblocking(false).expect("blocking");
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // `gen_server:call(echo, Bin)` with 64 KiB binaries, never reading the
    // replies: the target's queue towards us grows by 64 KiB per request.
    let chunk = vec![0x5au8; 64 * 1024];
    let mut payload = vec![104, 3, 100, 0, 9];
    payload.extend_from_slice(b"$gen_call");
    // {Pid, Ref}: our pid and a small reference.
    payload.extend_from_slice(&[104, 2]);
    payload.extend_from_slice(&pid_ext(&from));
    payload.extend_from_slice(&[90, 0, 1, 119, from.node.as_str().len() as u8]);
    payload.extend_from_slice(from.node.as_str().as_bytes());
    payload.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
    payload.push(109);
    payload.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
    payload.extend_from_slice(&chunk);
    let frame = reg_send_raw(&from, "echo", &payload);
    // Without a bound the target would queue all of these (1 GiB).
    let limit_bytes: u64 = 1 << 30;
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut dropped = false;
    while sent < limit_bytes {
        match s.write_all(&frame) {
            Ok(()) => sent += frame.len() as u64,
            Err(_) => {
                dropped = true;
                break;
            }
        }
    }
    // Drain nothing: just see the connection is gone.
    let mut probe = [0u8; 1];
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = s.read(&mut probe);
    let _ = s.flush();
    println!(
        "stop-reading: sent {} MiB of requests in {:?} before the target dropped us: {dropped}",
        sent >> 20,
        started.elapsed()
    );
    assert!(
        dropped,
        "the target queued {} MiB of replies to a peer that does not read",
        sent >> 20
    );
    let (rounds, rss) = good.finish(&mut target, "stop_reading").await;
    chaos_line("stop_reading", 1, sent >> 16, rounds, rss);
}

/// NEW_PID_EXT of `pid`.
fn pid_ext(pid: &Pid) -> Vec<u8> {
    let mut v = vec![88, 119, pid.node.as_str().len() as u8];
    v.extend_from_slice(pid.node.as_str().as_bytes());
    v.extend_from_slice(&pid.id.to_be_bytes());
    v.extend_from_slice(&pid.serial.to_be_bytes());
    v.extend_from_slice(&pid.creation.to_be_bytes());
    v
}
