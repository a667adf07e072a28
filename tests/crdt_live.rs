//! Our DeltaCrdt replica against a real `DeltaCrdt.AWLWWMap` process on an
//! Elixir node: writes and deletes cross in both directions, concurrent
//! writes resolve the same way on both sides, thousands of keys converge, and
//! equal replicas keep syncing without moving a single key.
//!
//! Each test starts a Rust node (with the embedded EPMD on a private port)
//! and an Elixir node with Horde's dependencies on the code path (see
//! `common::horde_ebin`); without them each test prints one SKIPPED line.
//! The BEAM replica is `DeltaCrdt.start_link(DeltaCrdt.AWLWWMap, name: N,
//! sync_interval: 100)`, ours is `crdt::process::start` under the same
//! registered name `N` (unique per test), and each lists the other as its
//! only neighbour, `{N, node}`.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use beam_peer::crdt::process::{self, CrdtHandle, CrdtOptions};
use beam_peer::crdt::OrdTerm;
use beam_peer::term::{self, Term};
use beam_peer::{Node, Process};
use common::{eval_elixir, Beam, COOKIE};

const SYNC_MS: u64 = 100;

type Contents = BTreeMap<OrdTerm, OrdTerm>;

/// One Rust replica and one BEAM replica of the same CRDT name.
struct Live {
    rust: Node,
    beam: Beam,
    p: Process,
    /// The registered name on both nodes, e.g. `Elixir.Live_123_0.Crdt`.
    name: String,
    crdt: CrdtHandle,
}

impl Live {
    /// Starts both replicas without neighbours; `beam_opts` are extra
    /// `DeltaCrdt.start_link/2` options (a keyword list term).
    async fn start(ebins: &[std::path::PathBuf], beam_opts: Vec<(&str, Term)>) -> Live {
        let port = common::free_port();
        let rust = common::rust_node("live_rs", port).await;
        let beam = Beam::start_horde("live_ex", COOKIE, port, ebins);
        let name = format!("Elixir.{}.Crdt", common::unique("Live"));
        let mut opts = CrdtOptions::new(name.clone());
        opts.sync_interval = SYNC_MS;
        let crdt = process::start(&rust, opts).expect("Rust replica starts");
        let mut p = rust.process();
        let opts = term::list(
            beam_opts
                .into_iter()
                .map(|(k, v)| beam_peer::tup![term::atom(k), v])
                .collect(),
        );
        let started = eval_elixir(
            &mut p,
            &beam.name,
            "{:ok, pid} = :beam_peer_ctl.keep(fn ->
               DeltaCrdt.start_link(DeltaCrdt.AWLWWMap, [name: name, sync_interval: interval] ++ opts)
             end)
             is_pid(pid)",
            vec![
                ("name", term::atom(&name)),
                ("interval", term::int(SYNC_MS as i64)),
                ("opts", opts),
            ],
        )
        .await;
        assert!(term::is_atom(&started, "true"), "{started}");
        Live {
            rust,
            beam,
            p,
            name,
            crdt,
        }
    }

    /// Makes each replica the other's only neighbour (or none when `on` is false).
    async fn connect(&mut self, on: bool) {
        let (name, beam) = (self.name.clone(), self.beam.name.clone());
        let to_rust = if on {
            term::list(vec![beam_peer::tup![
                term::atom(&name),
                term::atom(self.rust.name())
            ]])
        } else {
            term::nil()
        };
        self.elixir(
            "DeltaCrdt.set_neighbours(name, neighbours)",
            vec![("name", term::atom(&name)), ("neighbours", to_rust)],
        )
        .await;
        let to_beam = if on {
            vec![beam_peer::tup![term::atom(&name), term::atom(&beam)]]
        } else {
            vec![]
        };
        self.crdt
            .set_neighbours(to_beam)
            .expect("Rust replica alive");
    }

    async fn elixir(&mut self, code: &str, mut bindings: Vec<(&str, Term)>) -> Term {
        bindings.push(("name", term::atom(&self.name)));
        let beam = self.beam.name.clone();
        eval_elixir(&mut self.p, &beam, code, bindings).await
    }

    async fn beam_put(&mut self, key: Term, value: Term) {
        self.elixir(
            "DeltaCrdt.put(name, key, value)",
            vec![("key", key), ("value", value)],
        )
        .await;
    }

    async fn beam_delete(&mut self, key: Term) {
        self.elixir("DeltaCrdt.delete(name, key)", vec![("key", key)])
            .await;
    }

    async fn beam_map(&mut self) -> Contents {
        let m = self.elixir("DeltaCrdt.to_map(name)", vec![]).await;
        match m {
            Term::Map(m) => m
                .map
                .into_iter()
                .map(|(k, v)| (OrdTerm(k), OrdTerm(v)))
                .collect(),
            other => panic!("to_map gave {other}"),
        }
    }

    async fn rust_map(&self) -> Contents {
        self.crdt
            .read()
            .await
            .expect("Rust replica alive")
            .into_iter()
            .map(|(k, v)| (k, OrdTerm(v)))
            .collect()
    }

    /// Waits until both replicas hold `want` (or, with `None`, the same
    /// contents); returns the contents and how long it took.
    async fn converge(&mut self, want: Option<&Contents>, limit: Duration) -> (Contents, Duration) {
        let start = Instant::now();
        loop {
            let asked = Instant::now();
            let (r, b) = (self.rust_map().await, self.beam_map().await);
            // Reading thousands of keys keeps both replicas busy: poll less
            // often the longer a read takes.
            let pause =
                (asked.elapsed() * 4).clamp(Duration::from_millis(25), Duration::from_millis(500));
            let done = match want {
                Some(w) => &r == w && &b == w,
                None => r == b,
            };
            if done {
                return (r, start.elapsed());
            }
            if start.elapsed() > limit {
                panic!(
                    "no convergence after {:?}: Rust {} keys, BEAM {} keys{}\n{}",
                    limit,
                    r.len(),
                    b.len(),
                    want.map(|w| format!(", want {}", w.len()))
                        .unwrap_or_default(),
                    first_differences(&r, &b)
                );
            }
            tokio::time::sleep(pause).await;
        }
    }

    fn stop(mut self) {
        self.beam.kill9();
        self.rust.shutdown();
    }
}

fn first_differences(a: &Contents, b: &Contents) -> String {
    let mut out = Vec::new();
    for (k, v) in a {
        if b.get(k) != Some(v) {
            out.push(format!(
                "  {}: Rust {} BEAM {:?}",
                k.0,
                v.0,
                b.get(k).map(|v| v.0.to_string())
            ));
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("  {}: only on the BEAM", k.0));
    }
    out.truncate(10);
    out.join("\n")
}

fn contents(pairs: Vec<(Term, Term)>) -> Contents {
    pairs
        .into_iter()
        .map(|(k, v)| (OrdTerm(k), OrdTerm(v)))
        .collect()
}

fn s(text: &str) -> Term {
    term::binary(text.as_bytes().to_vec())
}

macro_rules! require_horde {
    ($name:expr) => {
        match common::horde_or_skip($name) {
            Some(ebins) => ebins,
            None => return,
        }
    };
}

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_deletes_cross_both_ways() {
    let ebins = require_horde!("writes_and_deletes_cross_both_ways");
    let mut live = Live::start(&ebins, vec![]).await;
    live.connect(true).await;

    // BEAM -> Rust: Horde-shaped keys and values of several types.
    let horde_key = beam_peer::tup![term::atom("key"), s("name-1")];
    live.beam_put(horde_key.clone(), beam_peer::tup![term::int(1), s("v")])
        .await;
    live.beam_put(term::atom("count"), term::int(7)).await;
    live.beam_put(s("list"), term::list(vec![term::int(1), term::atom("b")]))
        .await;
    let mut want = contents(vec![
        (horde_key.clone(), beam_peer::tup![term::int(1), s("v")]),
        (term::atom("count"), term::int(7)),
        (s("list"), term::list(vec![term::int(1), term::atom("b")])),
    ]);
    let (_, t1) = live.converge(Some(&want), T).await;

    // Rust -> BEAM: a new key, and an overwrite of a BEAM-written key.
    live.crdt
        .put(s("from-rust"), term::int(1_000_000_000_000))
        .expect("alive");
    live.crdt
        .put(term::atom("count"), term::int(8))
        .expect("alive");
    want.insert(
        OrdTerm(s("from-rust")),
        OrdTerm(term::int(1_000_000_000_000)),
    );
    want.insert(OrdTerm(term::atom("count")), OrdTerm(term::int(8)));
    let (_, t2) = live.converge(Some(&want), T).await;
    // DeltaCrdt's other readers agree with to_map.
    let got = live
        .elixir(
            "{DeltaCrdt.get(name, \"from-rust\"), DeltaCrdt.read(name, [:count, :nope])}",
            vec![],
        )
        .await;
    assert_eq!(
        got.to_string(),
        "{1000000000000,#{count => 8}}",
        "DeltaCrdt.get/read of Rust writes"
    );

    // Deletes: the BEAM deletes a key Rust wrote, Rust deletes one the BEAM wrote.
    live.beam_delete(s("from-rust")).await;
    live.crdt.delete(horde_key.clone()).expect("alive");
    want.remove(&OrdTerm(s("from-rust")));
    want.remove(&OrdTerm(horde_key));
    let (_, t3) = live.converge(Some(&want), T).await;

    // Deleting everything leaves both empty.
    live.beam_delete(term::atom("count")).await;
    live.crdt.delete(s("list")).expect("alive");
    let (_, t4) = live.converge(Some(&Contents::new()), T).await;
    println!("converged: BEAM->Rust {t1:?}, Rust->BEAM {t2:?}, deletes {t3:?}, all deleted {t4:?}");
    live.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_resolve_the_same_on_both_sides() {
    let ebins = require_horde!("concurrent_writes_resolve_the_same_on_both_sides");
    let mut live = Live::start(&ebins, vec![]).await;
    // A key both will later disagree about, synced first.
    live.connect(true).await;
    live.beam_put(s("contested-delete"), s("original")).await;
    let want = contents(vec![(s("contested-delete"), s("original"))]);
    live.converge(Some(&want), T).await;

    // Apart: both write the same 20 keys with different values, the BEAM
    // deletes the synced key while Rust overwrites it.
    live.connect(false).await;
    // Rounds already under way finish (they carry nothing: both are equal).
    tokio::time::sleep(Duration::from_millis(3 * SYNC_MS)).await;
    for i in 0..20 {
        let key = beam_peer::tup![term::atom("k"), term::int(i)];
        live.beam_put(key.clone(), s(&format!("beam-{i}"))).await;
        live.crdt.put(key, s(&format!("rust-{i}"))).expect("alive");
    }
    live.beam_delete(s("contested-delete")).await;
    live.crdt
        .put(s("contested-delete"), s("rust-update"))
        .expect("alive");

    live.connect(true).await;
    let (agreed, took) = live.converge(None, T).await;
    assert_eq!(agreed.len(), 21, "every key survives");
    // Add wins over a concurrent remove.
    assert_eq!(
        agreed.get(&OrdTerm(s("contested-delete"))),
        Some(&OrdTerm(s("rust-update")))
    );
    // Each contested key keeps both concurrent entries; the read value is the
    // one with the larger timestamp, as DeltaCrdt's own read picks it.
    let check = live
        .elixir(
            "st = :sys.get_state(name).crdt_state
             for i <- 0..19 do
               entries = Map.fetch!(st.value, {:k, i})
               {{winner, _ts}, _dots} = Enum.max_by(entries, fn {{_v, ts}, _} -> ts end)
               {map_size(entries), winner}
             end",
            vec![],
        )
        .await;
    let rows = term::as_list(&check).expect("list");
    for (i, row) in rows.iter().enumerate() {
        let [n, winner] = term::as_tuple(row).expect("pair") else {
            panic!("{row}")
        };
        assert_eq!(n, &term::int(2), "key {i} keeps both concurrent entries");
        let key = OrdTerm(beam_peer::tup![term::atom("k"), term::int(i as i64)]);
        assert_eq!(
            agreed.get(&key),
            Some(&OrdTerm(winner.clone())),
            "key {i}: both read the latest entry"
        );
    }
    println!("21 contested keys agreed after {took:?}");
    live.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_keys_converge_both_ways() {
    let ebins = require_horde!("thousands_of_keys_converge_both_ways");
    // `max_sync_size: :infinite` as Horde passes it: with DeltaCrdt's own
    // default of 200 a truncated round loses data (delta_crdt_ex#65), with or
    // without us.
    let mut live = Live::start(&ebins, vec![("max_sync_size", term::atom("infinite"))]).await;
    live.connect(true).await;
    const N: i64 = 2000;
    let t0 = Instant::now();
    live.elixir(
        "DeltaCrdt.merge(name, Map.new(0..(n - 1), fn i -> {{:beam, i}, {:erlang.phash2(i), \"value #{i}\"}} end), 30_000)",
        vec![("n", term::int(N))],
    )
    .await;
    for i in 0..N {
        live.crdt
            .put(
                beam_peer::tup![term::atom("rust"), term::int(i)],
                beam_peer::tup![term::int(i * 3), s(&format!("value {i}"))],
            )
            .expect("alive");
    }
    let written = t0.elapsed();
    // A key both sides write.
    let (agreed, took) = live.converge(None, Duration::from_secs(30)).await;
    assert_eq!(agreed.len(), 2 * N as usize);
    assert_eq!(
        agreed.get(&OrdTerm(beam_peer::tup![
            term::atom("beam"),
            term::int(1999)
        ])),
        Some(&OrdTerm(beam_peer::tup![
            term::int(phash2_of_int(1999)),
            s("value 1999")
        ]))
    );
    println!(
        "{} keys ({N} written on each side in {written:?}) equal on both after {took:?}",
        agreed.len()
    );
    live.stop();
}

/// An empty replica next to a full one, on either side: our replica answers
/// the BEAM's steps with its keys wherever the BEAM has nothing (not with
/// cut subtrees, as upstream would), and DeltaCrdt takes them as it takes
/// its own peers' key lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_replica_fills_from_a_full_one_on_either_side() {
    let ebins = require_horde!("an_empty_replica_fills_from_a_full_one_on_either_side");
    const N: i64 = 5000;
    // Rust full, BEAM empty.
    let mut live = Live::start(&ebins, vec![("max_sync_size", term::atom("infinite"))]).await;
    for i in 0..N {
        live.crdt
            .put(
                beam_peer::tup![term::atom("rust"), term::int(i)],
                s(&format!("value {i}")),
            )
            .expect("alive");
    }
    live.connect(true).await;
    let (agreed, took) = live.converge(None, Duration::from_secs(30)).await;
    assert_eq!(agreed.len(), N as usize);
    println!("{N} Rust keys reached an empty BEAM replica in {took:?}");
    live.stop();
    // BEAM full, Rust empty.
    let mut live = Live::start(&ebins, vec![("max_sync_size", term::atom("infinite"))]).await;
    live.elixir(
        "DeltaCrdt.merge(name, Map.new(0..(n - 1), fn i -> {{:beam, i}, \"value #{i}\"} end), 30_000)",
        vec![("n", term::int(N))],
    )
    .await;
    live.connect(true).await;
    let (agreed, took) = live.converge(None, Duration::from_secs(30)).await;
    assert_eq!(agreed.len(), N as usize);
    println!("{N} BEAM keys reached an empty Rust replica in {took:?}");
    live.stop();
}

/// `erlang:phash2(i)` of a small non-negative integer, via our own phash2.
fn phash2_of_int(i: i64) -> i64 {
    i64::from(beam_peer::term::phash2::phash2(&term::int(i)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_replicas_sync_without_moving_keys() {
    let ebins = require_horde!("equal_replicas_sync_without_moving_keys");
    let mut live = Live::start(&ebins, vec![("max_sync_size", term::atom("infinite"))]).await;
    live.connect(true).await;
    live.elixir(
        "DeltaCrdt.merge(name, Map.new(1..300, fn i -> {{:key, \"name-#{i}\"}, {self(), i}} end))",
        vec![],
    )
    .await;
    for i in 0..300 {
        live.crdt
            .put(
                beam_peer::tup![term::atom("rust"), term::int(i)],
                term::int(i),
            )
            .expect("alive");
    }
    let (agreed, _) = live.converge(None, T).await;
    assert_eq!(agreed.len(), 600);
    // Let rounds already under way finish, then trace the BEAM replica's
    // traffic with us for eight sync intervals.
    tokio::time::sleep(Duration::from_millis(3 * SYNC_MS)).await;
    let watched = Duration::from_millis(8 * SYNC_MS);
    let counts = common::crdt_traffic(&mut live.p, &live.beam.name, &live.name, watched).await;
    println!("BEAM replica's CRDT traffic over {watched:?} of equal contents: {counts:?}");
    common::assert_idle_sync(&counts, 4);
    // Still equal afterwards.
    assert_eq!(live.converge(None, T).await.0, agreed);
    live.stop();
}
