//! `pubsub::PubSub` against real Phoenix.PubSub 2.x (PG2 adapter) on an
//! Elixir node: broadcasts cross both ways in order, `broadcast_from`,
//! `local_broadcast` and `direct_broadcast` reach whom Phoenix's reach,
//! with `pool_size` 1, 2 and 4 on both sides.
//!
//! Needs Phoenix.PubSub's compiled modules (BEAM_PEER_HORDE_EBIN lists
//! them with Horde's); without them each test prints one SKIPPED line and
//! `scripts/test.sh` reports it skipped.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`).

mod common;

use std::time::Duration;

use beam_peer::pubsub::{PubSub, PubSubOptions};
use beam_peer::term::{self, Term};
use beam_peer::{Node, Process};
use common::Beam;

const T: Duration = Duration::from_secs(10);

struct Pair {
    node: Node,
    beam: Beam,
    p: Process,
    name: String,
    pubsub: PubSub,
}

/// A Rust node and an Elixir node each running the PubSub `name` with
/// `pool_size`, connected and each seeing the other's adapter workers.
async fn pair(test: &str, pool_size: usize) -> Option<Pair> {
    let ebins = common::horde_or_skip(test)?;
    let port = common::free_port();
    let node = common::rust_node("ps_rs", port).await;
    let beam = Beam::start_elixir("ps_ex", common::COOKIE, port, &ebins, &["phoenix_pubsub"]);
    let mut p = node.process();
    node.join(&beam.name).await.expect("joins");
    let name = format!("Elixir.{}", common::unique("LivePubSub"));
    common::eval_elixir(
        &mut p,
        &beam.name,
        "{:ok, _} = :beam_peer_ctl.keep(fn -> Supervisor.start_link([{Phoenix.PubSub, name: ps, pool_size: n}], strategy: :one_for_one) end); :ok",
        vec![("ps", term::atom(&name)), ("n", term::int(pool_size as i64))],
    )
    .await;
    let pubsub = PubSub::start_with(&node, PubSubOptions::new(&name).pool_size(pool_size))
        .await
        .expect("PubSub starts");
    let adapter = term::atom(&format!("{name}.Adapter"));
    let scope = beam_peer::services::pg::scope(&node, beam_peer::pubsub::PG_SCOPE).unwrap();
    common::eventually!(
        T,
        scope.get_members(&adapter).len() == 2,
        "Rust sees both nodes' adapter workers"
    );
    common::eventually!(
        T,
        term::as_i64(
            &common::eval_elixir(
                &mut p,
                &beam.name,
                "length(:pg.get_members(Phoenix.PubSub, g))",
                vec![("g", adapter.clone())]
            )
            .await
        ) == Some(2),
        "Elixir sees both nodes' adapter workers"
    );
    Some(Pair {
        node,
        beam,
        p,
        name,
        pubsub,
    })
}

/// An Elixir process subscribed to `topic` that forwards what it gets to a
/// collector; returns the collector.
async fn elixir_subscriber(pair: &mut Pair, topic: &str) -> Term {
    common::eval_elixir(
        &mut pair.p,
        &pair.beam.name,
        "c = :beam_peer_ctl.collector()
         me = self()
         spawn(fn ->
           :ok = Phoenix.PubSub.subscribe(ps, topic)
           send(me, :subscribed)
           Stream.repeatedly(fn -> receive do m -> send(c, m) end end) |> Stream.run()
         end)
         receive do :subscribed -> c end",
        vec![
            ("ps", term::atom(&pair.name)),
            ("topic", term::binary(topic.as_bytes().to_vec())),
        ],
    )
    .await
}

async fn collected(pair: &mut Pair, collector: &Term) -> Vec<Term> {
    let got = common::eval_elixir(
        &mut pair.p,
        &pair.beam.name,
        ":beam_peer_ctl.collected(c)",
        vec![("c", collector.clone())],
    )
    .await;
    term::as_list(&got).unwrap_or_default()
}

fn msg(i: i64) -> Term {
    beam_peer::tup![term::atom("n"), term::int(i)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_both_ways_in_order_with_pool_size_1() {
    broadcasts_cross_both_ways_in_order("broadcasts_cross_both_ways_in_order_with_pool_size_1", 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_both_ways_in_order_with_pool_size_4() {
    broadcasts_cross_both_ways_in_order("broadcasts_cross_both_ways_in_order_with_pool_size_4", 4)
        .await;
}

/// 1,000 broadcasts each way, each side's arriving in the order sent.
async fn broadcasts_cross_both_ways_in_order(test: &str, pool_size: usize) {
    const N: i64 = 1000;
    let Some(mut pair) = pair(test, pool_size).await else {
        return;
    };
    // Elixir -> Rust: N broadcasts from one Elixir process, in order.
    let mut sub = pair.node.process();
    pair.pubsub.subscribe(sub.pid(), "rooms:lobby", None);
    common::eval_elixir(
        &mut pair.p,
        &pair.beam.name,
        "for i <- 1..n, do: :ok = Phoenix.PubSub.broadcast(ps, \"rooms:lobby\", {:n, i})
         :ok",
        vec![("ps", term::atom(&pair.name)), ("n", term::int(N))],
    )
    .await;
    for i in 1..=N {
        let got = sub
            .receive_timeout(T)
            .await
            .expect("alive")
            .expect("a broadcast");
        assert_eq!(got, msg(i), "Elixir's broadcasts arrive bare and in order");
    }

    // Rust -> Elixir: N broadcasts, in order, and our own subscriber too.
    let c = elixir_subscriber(&mut pair, "rooms:lobby").await;
    for i in 1..=N {
        pair.pubsub.broadcast("rooms:lobby", msg(i));
    }
    for i in 1..=N {
        assert_eq!(sub.receive_timeout(T).await.unwrap().unwrap(), msg(i));
    }
    let mut got = Vec::new();
    common::eventually!(
        T,
        {
            got.extend(collected(&mut pair, &c).await);
            got.len() >= N as usize
        },
        "Elixir got the Rust broadcasts: {}",
        got.len()
    );
    assert_eq!(got, (1..=N).map(msg).collect::<Vec<_>>());
    pair.node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_local_and_direct_broadcasts_reach_whom_phoenix_reaches() {
    let Some(mut pair) = pair(
        "from_local_and_direct_broadcasts_reach_whom_phoenix_reaches",
        2,
    )
    .await
    else {
        return;
    };
    let c = elixir_subscriber(&mut pair, "t").await;
    let mut a = pair.node.process();
    let mut b = pair.node.process();
    pair.pubsub.subscribe(a.pid(), "t", None);
    pair.pubsub
        .subscribe(b.pid(), "t", Some(term::atom("meta")));
    // broadcast_from: everyone but a.
    pair.pubsub.broadcast_from(&a.pid().clone(), "t", msg(1));
    // local_broadcast: only this node.
    pair.pubsub.local_broadcast("t", msg(2));
    // direct_broadcast to the Elixir node: only there.
    pair.pubsub
        .direct_broadcast(&pair.beam.name.clone(), "t", msg(3));
    // And Elixir's direct_broadcast to us.
    common::eval_elixir(
        &mut pair.p,
        &pair.beam.name,
        "Phoenix.PubSub.direct_broadcast(n, ps, \"t\", {:n, 4})",
        vec![
            ("ps", term::atom(&pair.name)),
            ("n", term::atom(pair.node.name())),
        ],
    )
    .await;
    assert_eq!(b.receive_timeout(T).await.unwrap().unwrap(), msg(1));
    assert_eq!(b.receive_timeout(T).await.unwrap().unwrap(), msg(2));
    assert_eq!(b.receive_timeout(T).await.unwrap().unwrap(), msg(4));
    assert_eq!(a.receive_timeout(T).await.unwrap().unwrap(), msg(2));
    assert_eq!(a.receive_timeout(T).await.unwrap().unwrap(), msg(4));
    let mut got = Vec::new();
    common::eventually!(
        T,
        {
            got.extend(collected(&mut pair, &c).await);
            got.len() >= 2
        },
        "Elixir got 1 and 3: {got:?}"
    );
    got.sort_by_key(|m| m.to_string());
    assert_eq!(got, [msg(1), msg(3)]);
    // Nothing else arrived anywhere.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.receive_timeout(Duration::ZERO).await.unwrap(), None);
    assert_eq!(b.receive_timeout(Duration::ZERO).await.unwrap(), None);
    assert!(collected(&mut pair, &c).await.is_empty());
    // An exited subscriber is dropped; an unsubscribed one gets nothing.
    pair.pubsub.unsubscribe(b.pid(), "t");
    drop(a);
    pair.pubsub.local_broadcast("t", msg(5));
    assert!(pair.pubsub.subscribers("t").is_empty());
    assert_eq!(
        b.receive_timeout(Duration::from_millis(50)).await.unwrap(),
        None
    );
    pair.node.shutdown();
}

/// Records what an Elixir Phoenix.PubSub member sends a Rust member on the
/// wire, for `tests/pubsub_wire.rs` to replay where Phoenix.PubSub is
/// absent: its pg scope's answer to our discover (the sync and its own
/// discover), the joins of its adapter workers, and the
/// `{:forward_to_local, ..}` of a broadcast. Writes
/// `tests/fixtures/pubsub/elixir-<version>.etf`; run it with
/// `cargo nextest run --test pubsub_live --run-ignored only` (and
/// BEAM_PEER_BEAM_BIN for another release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records fixtures; run with --run-ignored only"]
async fn record_the_wire_of_an_elixir_member() {
    let Some(ebins) = common::horde_or_skip("record_the_wire_of_an_elixir_member") else {
        return;
    };
    let port = common::free_port();
    let node = common::rust_node("ps_rs", port).await;
    let beam = Beam::start_elixir("ps_ex", common::COOKIE, port, &ebins, &["phoenix_pubsub"]);
    let mut p = node.process();
    node.join(&beam.name).await.expect("joins");
    // Fixed names, so the fixture does not depend on the run.
    let name = "Elixir.Fixture.PubSub";
    let rust = term::atom(node.name());
    common::eval_elixir(
        &mut p,
        &beam.name,
        "{:ok, _} = :beam_peer_ctl.keep(fn -> Supervisor.start_link([{Phoenix.PubSub, name: ps, pool_size: 2}], strategy: :one_for_one) end)
         c = :beam_peer_ctl.keep(fn -> :beam_peer_ctl.collector() end)
         :erlang.trace(Process.whereis(Phoenix.PubSub), true, [:send, {:tracer, c}])
         :persistent_term.put(:fixture_tracer, c)
         :ok",
        vec![("ps", term::atom(name))],
    )
    .await;
    let pubsub = PubSub::start_with(&node, PubSubOptions::new(name).pool_size(2))
        .await
        .expect("PubSub starts");
    let mut sub = node.process();
    pubsub.subscribe(sub.pid(), "fixture:topic", None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    common::eval_elixir(
        &mut p,
        &beam.name,
        "c = :persistent_term.get(:fixture_tracer)
         :erlang.trace(self(), true, [:send, {:tracer, c}])
         :ok = Phoenix.PubSub.broadcast(ps, \"fixture:topic\", {:hello, %{from: :elixir}})
         :erlang.trace(self(), false, [:send])
         :ok",
        vec![("ps", term::atom(name))],
    )
    .await;
    sub.receive_timeout(T)
        .await
        .unwrap()
        .expect("the broadcast");
    let sent = common::eval_elixir(
        &mut p,
        &beam.name,
        "c = :persistent_term.get(:fixture_tracer)
         :erlang.trace(Process.whereis(Phoenix.PubSub), false, [:send])
         to_rust = fn
           pid when is_pid(pid) -> node(pid) == rust
           {_name, n} -> n == rust
           _ -> false
         end
         for {:trace, from, :send, msg, to} <- :beam_peer_ctl.collected(c),
             to_rust.(to),
             do: {from, to, msg}",
        vec![("rust", rust)],
    )
    .await;
    let version = common::beam_versions()
        .and_then(|v| v.elixir.clone())
        .unwrap_or_default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pubsub");
    std::fs::create_dir_all(&dir).unwrap();
    let record = beam_peer::tup![
        term::binary(version.as_bytes().to_vec()),
        term::atom(node.name()),
        sent
    ];
    let path = dir.join(format!("elixir-{version}.etf"));
    std::fs::write(&path, beam_peer::term::etf::to_binary(&record).unwrap()).unwrap();
    println!("wrote {}", path.display());
    node.shutdown();
}
