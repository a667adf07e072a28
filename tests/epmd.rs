//! EPMD layer against real processes: the real `epmd` daemon and real `erl`
//! nodes. Every test picks its own free port, so they run in
//! parallel; every OS process is killed by pid through a Drop guard.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use beam_peer::epmd::{
    ensure_epmd, names, port_please, register, EmbeddedEpmd, EpmdError, NodeEntry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Kills the child by pid when dropped, including when the test panics.
struct ChildGuard(Child);

impl ChildGuard {
    fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child process"),
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that was free a moment ago (bind :0, read it, release it).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_unregistered(addr: SocketAddr, name: &str) {
    eventually(5, "unregistration", || async move {
        matches!(port_please(addr, name).await, Ok(None)).then_some(())
    })
    .await
}

/// Starts the real epmd in the foreground on a free port.
async fn real_epmd() -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let guard = ChildGuard::spawn(common::beam_tool("epmd").args(["-port", &port.to_string()]));
    let addr = loopback(port);
    eventually(5, "real epmd to answer", || async move {
        names(addr).await.ok()
    })
    .await;
    (guard, addr)
}

#[tokio::test]
async fn our_client_against_real_epmd() {
    let (_epmd, addr) = real_epmd().await;

    let name = unique("rs");
    let entry = NodeEntry::new(&name, 40001, false);
    let reg = register(addr, &entry).await.unwrap();
    assert_ne!(reg.creation, 0);
    assert_eq!(port_please(addr, &name).await.unwrap(), Some(entry.clone()));

    // Hidden node with extra data round-trips through epmd unchanged.
    let hidden_name = unique("rs_hidden");
    let mut hidden = NodeEntry::new(&hidden_name, 40002, true);
    hidden.extra = b"extra!".to_vec();
    let hidden_reg = register(addr, &hidden).await.unwrap();
    assert_eq!(port_please(addr, &hidden_name).await.unwrap(), Some(hidden));
    // Note: the real epmd may give two *different* names the same creation;
    // only a re-registration of the same name is guaranteed a new one.
    assert_ne!(hidden_reg.creation, 0);

    let listed = names(addr).await.unwrap();
    assert!(listed.contains(&(name.clone(), 40001)), "{listed:?}");
    assert!(listed.contains(&(hidden_name.clone(), 40002)), "{listed:?}");

    match register(addr, &NodeEntry::new(&name, 40003, false)).await {
        Err(EpmdError::RegistrationRefused { result, .. }) => assert_eq!(result, 1),
        other => panic!("duplicate registration: {other:?}"),
    }

    assert_eq!(port_please(addr, &unique("nobody")).await.unwrap(), None);

    let first_creation = reg.creation;
    drop(reg);
    wait_unregistered(addr, &name).await;
    // The name is free again, with a new creation.
    let again = register(addr, &entry).await.unwrap();
    assert_ne!(again.creation, 0);
    assert_ne!(again.creation, first_creation);

    // A node announcing version 5 gets the old ALIVE2_RESP; creation 1..=3.
    let mut old = NodeEntry::new(&unique("rs_old"), 40004, false);
    old.highest_version = 5;
    let old_reg = register(addr, &old).await.unwrap();
    assert!((1..=3).contains(&old_reg.creation), "{}", old_reg.creation);
}

/// Runs `erl -noshell -start_epmd false ARGS` against the EPMD on `port`
/// until it halts, and returns its stdout and stderr together.
async fn erl_run(port: u16, args: &[&str]) -> String {
    let child = tokio::process::Command::from(common::beam_tool("erl"))
        .args(["-noshell", "-start_epmd", "false"])
        .args(args)
        .env("ERL_EPMD_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // If the timeout below fires, dropping the child kills it by pid.
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("erl timed out")
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test]
async fn real_erl_uses_embedded_epmd() {
    let epmd = EmbeddedEpmd::bind(loopback(0)).await.unwrap();
    let addr = epmd.local_addr();
    let port = addr.port();

    let a = unique("a");
    let erl = ChildGuard::spawn(
        common::beam_tool("erl")
            .args(["-name", &format!("{a}@127.0.0.1")])
            .args(["-setcookie", "c", "-noshell", "-start_epmd", "false"])
            .env("ERL_EPMD_PORT", port.to_string()),
    );

    let found = eventually(20, "erl to register", || {
        let a = a.clone();
        async move { port_please(addr, &a).await.ok().flatten() }
    })
    .await;
    assert_eq!(found.name, a);
    assert!(!found.hidden);
    assert_eq!((found.highest_version, found.lowest_version), (6, 5));
    assert_ne!(found.port, 0);
    assert!(names(addr)
        .await
        .unwrap()
        .contains(&(a.clone(), found.port)));

    // erl's name is taken for us too.
    assert!(matches!(
        register(addr, &NodeEntry::new(&a, 1, false)).await,
        Err(EpmdError::RegistrationRefused { .. })
    ));

    // Our registration is visible to erl's own EPMD client.
    let r = unique("rs");
    let _reg = register(addr, &NodeEntry::new(&r, 45678, false))
        .await
        .unwrap();
    let expr = format!(
        r#"io:format("~p~n~p~n", [net_adm:names("127.0.0.1"), erl_epmd:port_please("{r}", "127.0.0.1")]), halt()."#
    );
    let out = erl_run(port, &["-eval", &expr]).await;
    assert!(out.starts_with("{ok,["), "net_adm:names failed: {out}");
    assert!(out.contains(&format!("{{\"{r}\",45678}}")), "{out}");
    assert!(
        out.contains(&format!("{{\"{a}\",{}}}", found.port)),
        "{out}"
    );
    assert!(
        out.contains("{port,45678,6}"),
        "erl_epmd:port_please: {out}"
    );

    // A second erl with the same name is refused by our EPMD and says so.
    let node = format!("{a}@127.0.0.1");
    let out = erl_run(port, &["-name", &node, "-eval", "halt()."]).await;
    assert!(out.contains("seems to be in use"), "{out}");

    // Killing the erl process closes its EPMD connection: it is forgotten.
    drop(erl);
    wait_unregistered(addr, &a).await;
}

#[tokio::test]
async fn registration_lifetime_and_duplicates_on_embedded_epmd() {
    let epmd = EmbeddedEpmd::bind(loopback(0)).await.unwrap();
    let addr = epmd.local_addr();
    let name = unique("n");
    let entry = NodeEntry::new(&name, 5555, false);

    let reg = register(addr, &entry).await.unwrap();
    assert_ne!(reg.creation, 0);
    assert_eq!(reg.name(), name);
    assert_eq!(port_please(addr, &name).await.unwrap(), Some(entry.clone()));
    assert_eq!(names(addr).await.unwrap(), vec![(name.clone(), 5555)]);

    match register(addr, &NodeEntry::new(&name, 6666, true)).await {
        Err(EpmdError::RegistrationRefused { name: n, result }) => {
            assert_eq!((n.as_str(), result), (name.as_str(), 1));
        }
        other => panic!("duplicate registration: {other:?}"),
    }
    // The refused attempt did not disturb the original.
    assert_eq!(port_please(addr, &name).await.unwrap(), Some(entry.clone()));

    let first_creation = reg.creation;
    drop(reg);
    wait_unregistered(addr, &name).await;
    assert_eq!(names(addr).await.unwrap(), vec![]);

    let mut reg = register(addr, &entry).await.unwrap();
    assert_ne!(reg.creation, 0);
    assert_ne!(reg.creation, first_creation);

    // Shutting the EPMD down ends registrations, and the client notices.
    epmd.shutdown();
    tokio::time::timeout(Duration::from_secs(2), reg.closed())
        .await
        .expect("registration should end when the EPMD stops");
    assert!(
        names(addr).await.is_err(),
        "EPMD still accepting after shutdown"
    );
}

/// Sends raw bytes on a fresh connection and expects the server to close it.
async fn expect_closed(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("connection not closed after {bytes:?}"));
    // Either a clean EOF or a reset; no reply either way.
    if read.is_ok() {
        assert!(buf.is_empty(), "unexpected reply {buf:?} to {bytes:?}");
    }
}

#[tokio::test]
async fn malformed_requests_close_only_that_connection() {
    let epmd = EmbeddedEpmd::bind(loopback(0)).await.unwrap();
    let addr = epmd.local_addr();
    let name = unique("survivor");
    let _reg = register(addr, &NodeEntry::new(&name, 7777, false))
        .await
        .unwrap();

    // A client that sent half a request and stalls must not block others.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x00, 0x05, b'z']).await.unwrap();

    for bad in [
        &[0x00, 0x03, 0xff, 0x01, 0x02][..],   // unknown tag
        &[0x00, 0x00],                         // empty request
        &[0xff, 0xff, b'x'],                   // longer than allowed
        &[0x00, 0x01, b'n', b'n'],             // bytes after a request
        &[0x00, 0x04, b'z', b'a', 0x00, b'b'], // NUL in a name
        &[0x00, 0x0d, b'x', 0, 1, 77, 0, 0, 6, 0, 5, 0, 9, b'a', b'b'], // name past the frame
    ] {
        expect_closed(addr, bad).await;
    }

    // Everyone else is still served, and the registration survived.
    assert_eq!(
        port_please(addr, &name).await.unwrap().map(|e| e.port),
        Some(7777)
    );
    assert_eq!(names(addr).await.unwrap(), vec![(name, 7777)]);
    drop(stalled);
}

#[tokio::test]
async fn ensure_epmd_starts_one_only_when_needed() {
    let port = free_port();
    // Two racing callers: exactly one ends up owning the embedded EPMD.
    let (a, b) = tokio::join!(ensure_epmd(port), ensure_epmd(port));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.is_some() as u8 + b.is_some() as u8,
        1,
        "exactly one embedded EPMD"
    );
    let owner = a.or(b).unwrap();
    assert_eq!(owner.local_addr().port(), port);

    // Now one answers, so nothing new is started.
    assert!(ensure_epmd(port).await.unwrap().is_none());
    let _reg = register(loopback(port), &NodeEntry::new(&unique("e"), 1234, false))
        .await
        .unwrap();
    drop(owner);

    // Once it is gone, ensure_epmd starts a fresh one.
    let fresh = eventually(5, "a fresh embedded EPMD", || async move {
        ensure_epmd(port).await.ok().flatten()
    })
    .await;
    assert_eq!(names(loopback(port)).await.unwrap(), vec![]);
    drop(fresh);
}
