//! Rust-only clusters: no BEAM anywhere. Simultaneous connects, fixed ports
//! without EPMD, many processes, a peer that sends garbage, and busy polling
//! on one side of a connection and not the other.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use beam_peer::dist::codec;
use beam_peer::dist::handshake::{Handshake, HandshakeConfig, HandshakeEvent, ServerStatus};
use beam_peer::term::{self, Term};
use beam_peer::{Discovery, Node, NodeConfig, NodeEvent, ProcessExit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_leave_exactly_one_connection() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("beam_peer=debug")
        .with_test_writer()
        .try_init();
    for round in 0..10 {
        let port = common::free_port();
        let a = common::rust_node(&format!("sim_a{round}"), port).await;
        let b = common::rust_node(&format!("sim_b{round}"), port).await;
        let mut ea = a.subscribe();
        let mut eb = b.subscribe();
        let (ra, rb) = tokio::join!(a.connect(b.name()), b.connect(a.name()));
        assert_eq!(ra, Ok(()), "round {round}");
        assert_eq!(rb, Ok(()), "round {round}");
        assert_eq!(a.nodes(), vec![b.name().to_string()]);
        assert_eq!(b.nodes(), vec![a.name().to_string()]);
        // Exactly one nodeup each, and the connection carries traffic both ways.
        assert!(matches!(ea.recv().await, Ok(NodeEvent::Up { .. })));
        assert!(matches!(eb.recv().await, Ok(NodeEvent::Up { .. })));
        for (x, y) in [(&a, &b), (&b, &a)] {
            let mut p = x.process();
            let r = p
                .call(
                    ("net_kernel", y.name()),
                    beam_peer::tup![term::atom("is_auth"), term::atom(x.name())],
                    T,
                )
                .await;
            assert_eq!(
                r,
                Ok(term::atom("yes")),
                "round {round}: {} pings {}",
                x.name(),
                y.name()
            );
        }
        assert!(ea.try_recv().is_err(), "no second nodeup/nodedown on a");
        assert!(eb.try_recv().is_err(), "no second nodeup/nodedown on b");
        a.shutdown();
        b.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_ports_without_epmd() {
    let (pa, pb) = (common::free_port(), common::free_port());
    let name_a = format!("{}@127.0.0.1", common::unique("fixed_a"));
    let name_b = format!("{}@127.0.0.1", common::unique("fixed_b"));
    let fixed = |peer: &str, port: u16| Discovery::Fixed {
        peer_port: 1,
        peers: [(peer.to_string(), SocketAddr::from(([127, 0, 0, 1], port)))].into(),
    };
    let a = Node::start(
        NodeConfig::new(&name_a)
            .cookie(common::COOKIE)
            .discovery(fixed(&name_b, pb))
            .listen([127, 0, 0, 1].into(), pa),
    )
    .await
    .expect("a");
    let b = Node::start(
        NodeConfig::new(&name_b)
            .cookie(common::COOKIE)
            .discovery(fixed(&name_a, pa))
            .listen([127, 0, 0, 1].into(), pb),
    )
    .await
    .expect("b");
    beam_peer::demo::start_echo_and_sink(&b).expect("echo");
    let mut p = a.process();
    let r = p.call(("echo", name_b.as_str()), term::atom("hi"), T).await;
    assert_eq!(r, Ok(term::atom("hi")));
    // Each side's counters see the other's traffic: what a wrote, b read.
    let stats = |n: &Node| n.connection_stats().first().map(|(_, s)| *s);
    let agree = || match (stats(&a), stats(&b)) {
        (Some(x), Some(y)) => {
            x.bytes_out == y.bytes_in
                && y.bytes_out == x.bytes_in
                && x.messages_out == y.messages_in
                && y.messages_out == x.messages_in
        }
        _ => false,
    };
    assert!(
        common::wait_until(T, agree).await,
        "{:?} {:?}",
        stats(&a),
        stats(&b)
    );
    let sa = stats(&a).expect("connected");
    assert_eq!(a.connection_stats()[0].0, name_b);
    assert!(sa.messages_out >= 1 && sa.messages_in >= 1, "{sa:?}");
    assert!(sa.bytes_out > sa.messages_out && sa.bytes_in > sa.messages_in);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_processes_each_answer_a_remote_message() {
    let port = common::free_port();
    let a = common::rust_node("many_a", port).await;
    let b = common::rust_node("many_b", port).await;
    const N: usize = 50_000;
    let mut pids = Vec::with_capacity(N);
    for _ in 0..N {
        pids.push(b.spawn(|mut p| async move {
            match p.receive().await {
                Ok(m) => {
                    if let Some([Term::Pid(from), n]) = term::as_tuple(&m) {
                        p.send(from, n.clone());
                    }
                    ProcessExit::Normal
                }
                Err(e) => e.into(),
            }
        }));
    }
    assert!(b.process_count() >= N);
    let mut me = a.process();
    for (i, pid) in pids.iter().enumerate() {
        me.send(
            pid,
            beam_peer::tup![Term::Pid(me.pid().clone()), term::int(i as i64)],
        );
    }
    let mut seen = vec![false; N];
    for _ in 0..N {
        let m = me
            .receive_timeout(T)
            .await
            .expect("alive")
            .expect("a reply");
        let i = term::as_i64(&m).expect("int") as usize;
        assert!(!seen[i], "duplicate reply {i}");
        seen[i] = true;
    }
    // Every process exited normally and left the table.
    assert!(common::wait_until(T, || b.process_count() < 100).await);
    a.shutdown();
    b.shutdown();
}

/// How a fake peer named `name` introduces itself.
fn fake_config(name: &str) -> HandshakeConfig {
    HandshakeConfig {
        name: name.to_string(),
        creation: 77,
        flags: beam_peer::dist::flags::offered(true),
        cookie: common::COOKIE.to_string(),
    }
}

/// Drives `hs` over `stream` until it completes, its last words sent.
async fn complete_handshake(stream: &mut TcpStream, hs: &mut Handshake) {
    let mut buf = vec![0u8; 4096];
    loop {
        let out = hs.take_output();
        if !out.is_empty() {
            stream.write_all(&out).await.expect("write");
        }
        if let Some(HandshakeEvent::Completed { .. }) = hs.poll_event() {
            let out = hs.take_output();
            stream.write_all(&out).await.expect("write");
            return;
        }
        let n = tokio::time::timeout(T, stream.read(&mut buf))
            .await
            .expect("handshake goes on")
            .expect("read");
        assert!(n > 0, "closed during handshake");
        hs.receive(&buf[..n]).expect("handshake");
    }
}

/// Completes a handshake as a fake peer over a raw socket and returns the
/// stream, ready for frames.
async fn fake_peer(node: &Node, name: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", node.listen_port()))
        .await
        .expect("tcp");
    let mut hs = Handshake::client(fake_config(name), 12345, 6);
    complete_handshake(&mut stream, &mut hs).await;
    stream
}

/// A peer that names itself and then stalls mid-handshake holds the node's
/// pending connection to that name only until the connect timeout: the
/// incoming handshake gives it up, and the node connects to the real node of
/// that name afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_stalled_after_the_name_releases_the_pending_connection() {
    let port = common::free_port();
    let mut config = NodeConfig::new(format!("{}@127.0.0.1", common::unique("stalled_at")));
    config.connect_timeout = Duration::from_millis(300);
    let node = common::rust_node_with(config, port).await;
    let real = common::rust_node("impersonated", port).await;
    // The impersonator sends `real`'s name and nothing after the challenge.
    let mut stream = TcpStream::connect(("127.0.0.1", node.listen_port()))
        .await
        .expect("tcp");
    let mut hs = Handshake::client(fake_config(real.name()), 12345, 6);
    stream
        .write_all(&hs.take_output())
        .await
        .expect("send_name");
    let mut status = [0u8; 64];
    let n = stream.read(&mut status).await.expect("status");
    assert!(n > 0, "the node answered the name");
    // Past the timeout the node has closed the stalled handshake...
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(T, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the stalled handshake was closed");
    // ...and connects to the real node of that name.
    assert!(
        tokio::time::timeout(T, node.ping(real.name()))
            .await
            .unwrap_or(false),
        "ping after the stalled handshake"
    );
    node.shutdown();
    real.shutdown();
}

/// Simultaneous connects where the winning side's handshake fails: our
/// node (the smaller name) answers the peer's incoming connect with
/// `ok_simultaneous`, which orphans our own outgoing connect; that incoming
/// handshake then breaks off; the peer then completes our outgoing one. Our
/// node must keep that connection (the peer has it up, and nothing else
/// connects the two), not close it and hand the peer a nodeup and a nodedown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_connect_completes_when_the_simultaneous_one_fails() {
    let peer_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let peer_addr = peer_listener.local_addr().expect("addr");
    // Names order the two sides: ours is smaller, so the peer's connect wins.
    let ours = format!("{}@127.0.0.1", common::unique("a_orphan"));
    let peer = format!("{}@127.0.0.1", common::unique("z_orphan"));
    let node = Node::start(
        NodeConfig::new(&ours)
            .cookie(common::COOKIE)
            .discovery(Discovery::Fixed {
                peer_port: 1,
                peers: [(peer.clone(), peer_addr)].into(),
            })
            .listen([127, 0, 0, 1].into(), 0),
    )
    .await
    .expect("node starts");
    let mut buf = vec![0u8; 4096];

    // 1. Our node dials the peer; the peer reads its name and holds on.
    let dialing = {
        let node = node.clone();
        let peer = peer.clone();
        tokio::spawn(async move { node.connect(&peer).await })
    };
    let (mut outgoing, _) = tokio::time::timeout(T, peer_listener.accept())
        .await
        .expect("our node dials")
        .expect("accept");
    let mut server = Handshake::server(fake_config(&peer), 54321);
    loop {
        let n = outgoing.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before naming itself");
        server.receive(&buf[..n]).expect("send_name");
        if let Some(HandshakeEvent::PeerNamed { .. }) = server.poll_event() {
            break;
        }
    }

    // 2. The peer dials our node too and is told ok_simultaneous (its
    // connect wins), then its handshake breaks off.
    let mut incoming = TcpStream::connect(("127.0.0.1", node.listen_port()))
        .await
        .expect("tcp");
    let mut client = Handshake::client(fake_config(&peer), 12345, 6);
    incoming
        .write_all(&client.take_output())
        .await
        .expect("send_name");
    let n = incoming.read(&mut buf).await.expect("status");
    assert!(
        buf[..n].windows(3).any(|w| w == b"sok"),
        "ok_simultaneous expected, got {:?}",
        &buf[..n]
    );
    drop(incoming);
    let failed = tokio::time::timeout(T, dialing)
        .await
        .expect("the connect gives up")
        .expect("task");
    assert!(failed.is_err(), "the winning handshake failed");

    // 3. The peer completes our node's orphaned outgoing connect.
    server.set_status(ServerStatus::Ok);
    complete_handshake(&mut outgoing, &mut server).await;
    assert!(
        common::wait_until(T, || node.is_connected(&peer)).await,
        "our node keeps the connection the peer completed"
    );
    // It stays: our node does not close it after the fact.
    let mut frame = [0u8; 4];
    let read = tokio::time::timeout(Duration::from_millis(300), outgoing.read(&mut frame)).await;
    assert!(
        !matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "our node closed the connection"
    );
    assert!(node.is_connected(&peer));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_that_connection() {
    let port = common::free_port();
    let node = common::rust_node("victim", port).await;
    let other = common::rust_node("bystander", port).await;
    beam_peer::demo::start_echo_and_sink(&node).expect("echo");
    assert!(other.ping(node.name()).await);
    let mut events = node.subscribe();

    // An unknown control message (op 99) is dropped; the connection stays.
    let fake = format!("{}@127.0.0.1", common::unique("fake"));
    let mut s = fake_peer(&node, &fake).await;
    let _ = events.recv().await;
    let mut body = Vec::new();
    body.push(112u8);
    body.extend(
        term::etf::to_binary(&beam_peer::tup![term::int(99), term::atom("what")]).expect("encode"),
    );
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).await.expect("write");
    // Then a valid REG_SEND to `sink` proves the connection still works.
    let from = beam_peer::term::Pid::new(fake.as_str(), 1, 0, 77);
    let msg = beam_peer::dist::message::Message::reg_send(
        from,
        term::Atom::from("sink"),
        beam_peer::tup![term::atom("m"), term::int(1)],
    );
    let body = codec::encode_control(msg).expect("encode");
    s.write_all(&codec::pass_through_frame(&body))
        .await
        .expect("write");
    // The fake's connection and ours are separate, so poll the sink until the
    // fake's message has been counted (the sink resets on each report).
    let mut probe = other.process();
    let mut counted = 0;
    let deadline = std::time::Instant::now() + T;
    while counted < 1 && std::time::Instant::now() < deadline {
        probe.send(
            ("sink", node.name()),
            beam_peer::tup![term::atom("report"), Term::Pid(probe.pid().clone())],
        );
        let m = probe
            .receive_timeout(T)
            .await
            .expect("alive")
            .expect("count");
        counted += term::as_tuple(&m)
            .and_then(|e| term::as_i64(&e[1]))
            .unwrap_or(0);
    }
    assert_eq!(
        counted, 1,
        "the fake's message arrived after the unknown op"
    );
    assert!(node.nodes().contains(&fake));

    // Garbage: a frame with an unknown header. Only the fake's connection goes.
    s.write_all(&[0, 0, 0, 3, 131, 99, 1]).await.expect("write");
    loop {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Ok(NodeEvent::Down { node: n, reason })) if n == fake => {
                assert!(reason.contains("malformed"), "{reason}");
                break;
            }
            Ok(Ok(_)) => continue,
            other => panic!("no nodedown for the fake: {other:?}"),
        }
    }
    let mut rest = Vec::new();
    let n = tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    let _ = n;
    assert!(other.ping(node.name()).await, "other peers are unaffected");
    assert!(node.nodes().contains(&other.name().to_string()));
    node.shutdown();
    other.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_links_and_selective_receive_on_one_node() {
    let port = common::free_port();
    let node = common::rust_node("local", port).await;
    let mut a = node.process();
    // Selective receive keeps unmatched messages in order.
    for i in 1..=5 {
        a.send(a.pid(), term::int(i));
    }
    let four = a
        .receive_match(|m| term::as_i64(m) == Some(4), Some(T))
        .await
        .expect("alive");
    assert_eq!(four, Some(term::int(4)));
    for i in [1, 2, 3, 5] {
        assert_eq!(a.receive().await.expect("alive"), term::int(i));
    }
    assert_eq!(a.receive_timeout(Duration::from_millis(20)).await, Ok(None));
    // exit(Pid, kill) is untrappable; a trapping linked process sees `killed`.
    let victim = node.spawn(|mut p| async move {
        p.trap_exit(true);
        loop {
            if let Err(e) = p.receive().await {
                return e.into();
            }
        }
    });
    a.trap_exit(true);
    a.link(&victim);
    a.exit(&victim, term::atom("kill"));
    let m = a.receive_timeout(T).await.expect("alive").expect("EXIT");
    assert_eq!(
        m,
        beam_peer::tup![
            term::atom("EXIT"),
            Term::Pid(victim.clone()),
            term::atom("killed")
        ]
    );
    assert!(!node.is_process_alive(&victim));
    // A monitor of a dead pid gives noproc at once; demonitor with flush leaves nothing.
    let r = a.monitor(&victim);
    let m = a.receive_timeout(T).await.expect("alive").expect("DOWN");
    assert_eq!(
        m,
        beam_peer::tup![
            term::atom("DOWN"),
            Term::Reference(Box::new(r)),
            term::atom("process"),
            Term::Pid(victim.clone()),
            term::atom("noproc")
        ]
    );
    let r2 = a.monitor(&victim);
    a.demonitor(&r2, true);
    assert_eq!(a.receive_timeout(Duration::from_millis(20)).await, Ok(None));
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_again_when_the_embedded_epmd_owner_leaves() {
    let port = common::free_port();
    let owner = common::rust_node("epmd_owner", port).await;
    let survivor = common::rust_node("survivor", port).await;
    owner.shutdown();
    drop(owner);
    // The survivor notices, starts its own embedded EPMD and registers again, so a
    // newcomer can still find it by name.
    let newcomer = common::rust_node("newcomer", port).await;
    let epmd = SocketAddr::from(([127, 0, 0, 1], port));
    let alive = survivor
        .name()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut found = false;
    let deadline = std::time::Instant::now() + T;
    while !found && std::time::Instant::now() < deadline {
        found = beam_peer::epmd::names(epmd)
            .await
            .map(|names| names.iter().any(|(n, _)| *n == alive))
            .unwrap_or(false);
        if !found {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(found, "survivor registered again");
    assert!(newcomer.ping(survivor.name()).await);
    survivor.shutdown();
    newcomer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_ping_reads_the_cookie_from_home_erlang_cookie() {
    let port = common::free_port();
    let node = common::rust_node("cookie_target", port).await;
    let home = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("home"));
    std::fs::create_dir_all(&home).expect("home");
    let ping = |cookie: &str| {
        std::fs::write(home.join(".erlang.cookie"), cookie).expect("cookie file");
        std::process::Command::new(env!("CARGO_BIN_EXE_beam-peer"))
            .args([
                "ping",
                node.name(),
                "--name",
                &format!("{}@127.0.0.1", common::unique("cli")),
            ])
            .env("HOME", &home)
            .env("ERL_EPMD_PORT", port.to_string())
            .output()
            .expect("beam-peer runs")
    };
    let ok = ping(&format!("{}\n", common::COOKIE));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "pong");
    assert!(ok.status.success());
    let bad = ping("not_the_cookie");
    assert_eq!(String::from_utf8_lossy(&bad.stdout).trim(), "pang");
    assert!(!bad.status.success());
    node.shutdown();
    let _ = std::fs::remove_dir_all(&home);
}

/// One side busy-polls its connection (the default), the other never does:
/// calls each way get their replies and a stream each way arrives whole,
/// whichever way a reader waits for bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_streams_arrive_with_busy_polling_on_or_off() {
    let port = common::free_port();
    let node = |prefix: &str, poll: Duration| {
        let name = format!("{}@127.0.0.1", common::unique(prefix));
        common::rust_node_with(NodeConfig::new(name).busy_poll(poll), port)
    };
    let a = node("poll_off", Duration::ZERO).await;
    let b = node("poll_on", Duration::from_micros(200)).await;
    for (from, to) in [(&a, &b), (&b, &a)] {
        beam_peer::demo::start_echo_and_sink(to).expect("echo");
        let mut p = from.process();
        for i in 0..200 {
            let req = beam_peer::tup![term::atom("x"), term::int(i)];
            let r = p.call(("echo", to.name()), req.clone(), T).await;
            assert_eq!(r, Ok(req));
        }
        let count =
            |m: &Term| matches!(term::as_tuple(m), Some([c, _]) if term::is_atom(c, "count"));
        let report = beam_peer::tup![term::atom("report"), Term::Pid(p.pid().clone())];
        p.send(("sink", to.name()), report.clone());
        p.receive_match(count, Some(T))
            .await
            .expect("alive")
            .expect("reset");
        for i in 0..20_000 {
            p.send(
                ("sink", to.name()),
                beam_peer::tup![term::atom("m"), term::int(i)],
            );
        }
        p.send(("sink", to.name()), report);
        let got = p
            .receive_match(count, Some(T))
            .await
            .expect("alive")
            .expect("count");
        assert_eq!(
            term::as_tuple(&got).and_then(|e| term::as_i64(&e[1])),
            Some(20_000)
        );
    }
    a.shutdown();
    b.shutdown();
}

/// Native tracing with a tracer on another node: every message the traced
/// gen_server receives and sends arrives as OTP's trace tuples; one tracer
/// per process; turning it off stops the messages; when the tracer's node
/// goes, the process is no longer traced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_tracer_gets_every_message_until_its_node_goes() {
    use beam_peer::node::trace::{TraceError, TraceFlags};
    let port = common::free_port();
    let a = common::rust_node("trace_a", port).await;
    let b = common::rust_node("trace_b", port).await;
    beam_peer::demo::start_echo_and_sink(&a).expect("echo");
    let echo = a.whereis("echo").expect("echo");
    let mut tracer = b.process();
    let flags = TraceFlags {
        send: true,
        receive: true,
        ..TraceFlags::default()
    };
    a.trace(&echo, true, flags, Some(tracer.pid().clone()))
        .expect("traces");
    assert_eq!(
        a.trace_info(&echo),
        Some(Some((flags, tracer.pid().clone())))
    );
    let other = a.process();
    assert_eq!(
        a.trace(&echo, true, flags, Some(other.pid().clone())),
        Err(TraceError::AlreadyTraced(tracer.pid().clone()))
    );
    let mut caller = b.process();
    assert_eq!(
        echo_call(&mut caller, &a, "first").await,
        term::atom("first")
    );
    let got = tracer
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("receive");
    let e = term::as_tuple(&got).expect("a tuple").to_vec();
    assert_eq!(e.len(), 4, "{got}");
    assert!(term::is_atom(&e[0], "trace") && e[1] == Term::Pid(echo.clone()));
    assert!(term::is_atom(&e[2], "receive"), "{got}");
    let Some([gen_call, from, req]) = term::as_tuple(&e[3]) else {
        panic!("{got}")
    };
    assert!(term::is_atom(gen_call, "$gen_call") && term::is_atom(req, "first"));
    let Some([Term::Pid(from_pid), tag]) = term::as_tuple(from) else {
        panic!("{got}")
    };
    assert_eq!(from_pid, caller.pid());
    let got = tracer
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("send");
    assert_eq!(
        got,
        beam_peer::tup![
            term::atom("trace"),
            Term::Pid(echo.clone()),
            term::atom("send"),
            beam_peer::tup![tag.clone(), term::atom("first")],
            Term::Pid(caller.pid().clone())
        ]
    );
    // Off: the next call is not reported; on again: the one after is.
    a.trace(&echo, false, TraceFlags::ALL, None).expect("off");
    assert_eq!(a.trace_info(&echo), Some(None));
    assert_eq!(
        echo_call(&mut caller, &a, "second").await,
        term::atom("second")
    );
    a.trace(&echo, true, flags, Some(tracer.pid().clone()))
        .expect("traces again");
    assert_eq!(
        echo_call(&mut caller, &a, "third").await,
        term::atom("third")
    );
    let got = tracer
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("receive");
    assert!(got.to_string().contains("third"), "{got}");
    // The tracer's node goes: nobody is left tracing.
    b.shutdown();
    assert!(
        common::wait_until(T, || a.trace_info(&echo) == Some(None)).await,
        "tracing stops with the tracer's node"
    );
    a.shutdown();
}

async fn echo_call(caller: &mut beam_peer::Process, on: &Node, what: &str) -> Term {
    caller
        .call(("echo", on.name()), term::atom(what), T)
        .await
        .expect("echo answers")
}
