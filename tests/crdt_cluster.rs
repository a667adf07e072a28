//! Rust-only DeltaCrdt replicas on three nodes: concurrent writes and deletes
//! converge, and a replica restarted from storage comes back with its state.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beam_peer::crdt::merkle::PartialDiff;
use beam_peer::crdt::process::{self, CrdtHandle, CrdtOptions};
use beam_peer::crdt::storage::FileStorage;
use beam_peer::crdt::sync::SyncDiff;
use beam_peer::crdt::AwLwwMap;
use beam_peer::term::{self, Term};
use beam_peer::Node;

const NAME: &str = "Elixir.Test.Crdt";

fn neighbours(nodes: &[&Node], me: &Node) -> Vec<Term> {
    nodes
        .iter()
        .filter(|n| n.name() != me.name())
        .map(|n| beam_peer::tup![term::atom(NAME), term::atom(n.name())])
        .collect()
}

async fn converged(replicas: &[&CrdtHandle], limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut maps = Vec::new();
        for r in replicas {
            maps.push(r.read().await.expect("replica alive"));
        }
        if maps.windows(2).all(|w| w[0] == w[1]) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_and_one_restarts_from_storage() {
    let port = common::free_port();
    let a = common::rust_node("crdt_a", port).await;
    let b = common::rust_node("crdt_b", port).await;
    let c = common::rust_node("crdt_c", port).await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("crdt"));
    let storage = Arc::new(FileStorage::open(&dir).expect("storage dir"));
    let start = |node: &Node, stored: bool| {
        let mut opts = CrdtOptions::new(NAME);
        opts.sync_interval = 50;
        if stored {
            opts.storage = Some(storage.clone());
        }
        process::start(node, opts).expect("replica starts")
    };
    let (ra, rb, rc) = (start(&a, false), start(&b, false), start(&c, true));
    let all = [&a, &b, &c];
    for (r, n) in [(&ra, &a), (&rb, &b), (&rc, &c)] {
        r.set_neighbours(neighbours(&all, n)).expect("alive");
    }
    let mut diffs = ra.subscribe();
    // Concurrent writes on every node, some to the same keys, and deletes.
    for i in 0..30 {
        let key = term::binary(format!("k{}", i % 12));
        let writer = [&ra, &rb, &rc][i % 3];
        writer
            .put(
                key.clone(),
                beam_peer::tup![term::atom("v"), term::int(i as i64)],
            )
            .expect("alive");
        if i % 7 == 0 {
            [&rb, &rc, &ra][i % 3].delete(key).expect("alive");
        }
    }
    assert!(converged(&[&ra, &rb, &rc], Duration::from_secs(10)).await);
    let agreed = ra.read().await.expect("alive");
    assert!(!agreed.is_empty());
    assert!(diffs.try_recv().is_ok(), "subscribers saw diffs");

    // The replica on c stops with its node; a new one with the same storage
    // comes back with the same contents before any sync.
    c.shutdown();
    drop(rc);
    let c2 = common::rust_node("crdt_c2", port).await;
    let mut opts = CrdtOptions::new(NAME);
    opts.sync_interval = 50;
    opts.storage = Some(storage.clone());
    let rc2 = process::start(&c2, opts).expect("replica restarts");
    assert_eq!(
        rc2.read().await.expect("alive"),
        agreed,
        "state restored from storage"
    );
    // Writes after the restart still reach everyone.
    let all = [&a, &b, &c2];
    for (r, n) in [(&ra, &a), (&rb, &b), (&rc2, &c2)] {
        r.set_neighbours(neighbours(&all, n)).expect("alive");
    }
    rc2.put(term::atom("after_restart"), term::int(1))
        .expect("alive");
    // `get` runs after the put sent before it.
    assert_eq!(
        rc2.get(term::atom("after_restart")).await,
        Ok(Some(term::int(1)))
    );
    assert!(converged(&[&ra, &rb, &rc2], Duration::from_secs(10)).await);
    assert!(ra
        .read()
        .await
        .expect("alive")
        .values()
        .any(|v| v == &term::int(1)));
    for n in [&a, &b, &c2] {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A replica whose mailbox never goes quiet still syncs on time: a BEAM
/// replica starts a round every interval without waiting for acks, so a busy
/// mailbox is the normal case next to one. (Syncs used to wait for an idle
/// mailbox, so a replica kept busy never started a round and never shipped
/// its writes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_mailbox_does_not_starve_syncs() {
    let port = common::free_port();
    let a = common::rust_node("busy_a", port).await;
    let b = common::rust_node("busy_b", port).await;
    let start = |node: &Node| {
        let mut opts = CrdtOptions::new(NAME);
        opts.sync_interval = 50;
        process::start(node, opts).expect("replica starts")
    };
    let (ra, rb) = (start(&a), start(&b));
    ra.set_neighbours(neighbours(&[&a, &b], &a)).expect("alive");
    rb.set_neighbours(neighbours(&[&a, &b], &b)).expect("alive");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Keep a's mailbox from ever being empty, with bounded memory: 64 pairs
    // of (a state naming 5,000 keys a does not hold: slow to join, changes
    // nothing; a `{:get_diff, _, []}` whose ack comes back to us) are always
    // queued, each ack answered with a new pair.
    let mut flooder = a.process();
    let me = Term::Pid(flooder.pid().clone());
    let busywork = beam_peer::tup![
        term::atom("diff"),
        AwLwwMap::new().to_term(),
        term::list((0..5000).map(term::int).collect())
    ];
    let marker = beam_peer::tup![
        term::atom("get_diff"),
        SyncDiff {
            continuation: PartialDiff::default(),
            dots: AwLwwMap::new().dots.to_term(),
            originator: me.clone(),
            from: me.clone(),
            to: me,
            vouched: None,
            exact_peer: false,
        }
        .to_term(),
        term::nil()
    ];
    let target = ra.pid().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let flood = tokio::spawn(async move {
        let send_pair = |f: &beam_peer::Process| {
            f.send(target.clone(), busywork.clone());
            f.send(target.clone(), marker.clone());
        };
        for _ in 0..64 {
            send_pair(&flooder);
        }
        let mut pairs = 64u64;
        while !stopped.load(Relaxed) {
            match flooder
                .receive_match(|_| true, Some(Duration::from_secs(5)))
                .await
            {
                Ok(Some(m))
                    if term::as_tuple(&m).is_some_and(|t| term::is_atom(&t[0], "ack_diff")) =>
                {
                    send_pair(&flooder);
                    pairs += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        pairs
    });
    let written = Instant::now();
    ra.put(term::atom("written_while_busy"), term::int(1))
        .expect("alive");
    let arrived = converged(&[&ra, &rb], Duration::from_secs(5)).await
        && rb.read().await.expect("alive").len() == 1;
    let took = written.elapsed();
    stop.store(true, Relaxed);
    let pairs = flood.await.expect("flooder");
    println!("the write reached b: {arrived}, after {took:?}, while a took {pairs} pairs");
    assert!(arrived, "the write reached b while a was kept busy");
    a.shutdown();
    b.shutdown();
}

/// A replica keeps its sync schedule while a stream of local writes keeps it
/// busy: a neighbour hears `{:diff, ..}` rounds before the writes are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_go_out_while_writes_keep_the_replica_busy() {
    let port = common::free_port();
    let node = common::rust_node("crdt_busy", port).await;
    let mut opts = CrdtOptions::new(NAME);
    opts.sync_interval = 10;
    let replica = process::start(&node, opts).expect("replica starts");
    // A neighbour that acks every round and counts them.
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = rounds.clone();
    let neighbour = node.spawn(move |mut p| async move {
        loop {
            let Ok(msg) = p.receive().await else {
                return beam_peer::ProcessExit::Normal;
            };
            if let Some([tag, _diff]) = term::as_tuple(&msg) {
                if term::is_atom(tag, "diff") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let me = Term::Pid(p.pid().clone());
                    let ack = beam_peer::tup![term::atom("ack_diff"), me];
                    let originator = replica_pid_of(&msg);
                    p.send(originator, ack);
                }
            }
        }
    });
    replica
        .set_neighbours(vec![Term::Pid(neighbour.clone())])
        .expect("alive");
    let n = 50_000;
    for i in 0..n {
        replica.put(term::int(i), term::int(i)).expect("alive");
    }
    let during = rounds.load(std::sync::atomic::Ordering::SeqCst);
    let last = replica.get(term::int(n - 1)).await.expect("alive");
    let after_writes = rounds.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(last, Some(term::int(n - 1)));
    assert!(
        after_writes > during.max(1),
        "rounds while writing: {during} when queued, {after_writes} when applied"
    );
    node.shutdown();
}

/// The originator of a `{:diff, %Diff{}}`: whom to ack.
fn replica_pid_of(msg: &Term) -> beam_peer::term::Pid {
    let Some([_, diff]) = term::as_tuple(msg) else {
        panic!("not a diff: {msg}");
    };
    let Term::Map(m) = diff else {
        panic!("not a struct: {diff}");
    };
    match m.map.get(&term::atom("originator")) {
        Some(Term::Pid(p)) => p.clone(),
        other => panic!("originator: {other:?}"),
    }
}

/// The Elixir stdlib and logger ebin directories, from `elixir` itself.
fn elixir_ebins() -> Option<Vec<String>> {
    let out = common::beam_tool("elixir")
        .args(["-e", "IO.puts(:code.lib_dir(:elixir))"])
        .output()
        .ok()?;
    let lib = String::from_utf8(out.stdout).ok()?;
    let lib = std::path::Path::new(lib.trim());
    let root = lib.parent()?;
    Some(
        ["elixir", "logger"]
            .iter()
            .map(|app| root.join(app).join("ebin").display().to_string())
            .collect(),
    )
}

/// A Rust replica with the compact diff depth and a real DeltaCrdt 0.6.4
/// replica on a BEAM node (`BEAM_PEER_HORDE_EBIN`) write, overwrite and
/// delete on both sides and end with the same map. Skipped in one line
/// without the modules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compact_rust_replica_and_a_beam_delta_crdt_converge() {
    const TEST: &str = "a_compact_rust_replica_and_a_beam_delta_crdt_converge";
    let ebin = std::env::var("BEAM_PEER_HORDE_EBIN").unwrap_or_default();
    if ebin.trim().is_empty() {
        println!("SKIPPED {TEST}: BEAM_PEER_HORDE_EBIN is not set");
        return;
    }
    if !common::have_erl(TEST) {
        return;
    }
    let Some(elixir) = elixir_ebins() else {
        println!("SKIPPED {TEST}: elixir not found");
        return;
    };
    // Our BEAM-side helper, next to the ctl module.
    let helper = common::ctl_ebin();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("erlang/src/beam_peer_crdt_bench.erl");
    let ok = common::beam_tool("erlc")
        .arg("-o")
        .arg(&helper)
        .arg(&src)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "erlc {}", src.display());
    let mut extra: Vec<String> = Vec::new();
    for dir in elixir.iter().map(String::as_str).chain(ebin.split(':')) {
        if !dir.is_empty() {
            extra.push("-pa".into());
            extra.push(dir.into());
        }
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();

    let port = common::free_port();
    let rust = common::rust_node("crdt_live", port).await;
    let beam = common::Beam::start("crdt_live_erl", common::COOKIE, port, &extra);
    let name = "Elixir.Live.Crdt";
    let eval = |code: String| {
        let beam = beam.name.clone();
        let mut p = rust.process();
        async move { common::eval(&mut p, &beam, &code).await }
    };
    eval("beam_peer_crdt_bench:node_ready(), ok.".into()).await;
    eval(format!(
        "beam_peer_crdt_bench:start_replica('{name}', 50), ok."
    ))
    .await;
    let mut opts = CrdtOptions::new(name);
    opts.sync_interval = 50;
    let replica = process::start(&rust, opts).expect("replica starts");
    replica
        .set_neighbours(vec![beam_peer::tup![
            term::atom(name),
            term::atom(&beam.name)
        ]])
        .expect("alive");
    eval(format!(
        "beam_peer_crdt_bench:set_neighbours('{name}', [{{'{name}', '{}'}}]), ok.",
        rust.name()
    ))
    .await;
    // Writes on both sides, then an overwrite of a Rust key on the BEAM and
    // a delete of a BEAM key on Rust once each side has seen the other's.
    let key = |i: i64| beam_peer::tup![term::atom("key"), term::int(i)];
    for i in 1..=300 {
        replica.put(key(i), term::int(i)).expect("alive");
    }
    eval(format!(
        "[ 'Elixir.DeltaCrdt':put('{name}', {{key, I}}, I) || I <- lists:seq(301, 600)], ok."
    ))
    .await;
    let has = |k: Term| {
        let r = replica.clone();
        async move { r.get(k).await.expect("alive").is_some() }
    };
    let start = Instant::now();
    while !has(key(600)).await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "BEAM writes reach Rust"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica.delete(key(450)).expect("alive");
    let seen_on_beam = |code: &'static str| {
        let eval = &eval;
        async move {
            let start = Instant::now();
            loop {
                if eval(code.replace("NAME", name)).await == term::atom("true") {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "not seen: {code}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    seen_on_beam("'Elixir.DeltaCrdt':get('NAME', {key, 300}) =:= 300.").await;
    eval(format!(
        "'Elixir.DeltaCrdt':put('{name}', {{key, 7}}, {{changed, 7}}), ok."
    ))
    .await;
    seen_on_beam("'Elixir.DeltaCrdt':get('NAME', {key, 450}) =:= nil.").await;
    // Both read the same map: 599 keys, key 7 changed.
    let start = Instant::now();
    loop {
        let ours = replica.read().await.expect("alive");
        let map: std::collections::HashMap<Term, Term> =
            ours.into_iter().map(|(k, v)| (k.0, v)).collect();
        let digest = beam_peer::tup![
            term::int(map.len() as i64),
            term::int(i64::from(beam_peer::term::phash2::phash2(&Term::Map(
                beam_peer::term::Map::from(map)
            ))))
        ];
        let theirs = eval(format!("beam_peer_crdt_bench:digest('{name}').")).await;
        if theirs == digest {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "maps differ: BEAM {theirs}, Rust {digest}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        replica.get(key(7)).await.expect("alive"),
        Some(beam_peer::tup![term::atom("changed"), term::int(7)])
    );
    rust.shutdown();
}
