//! Chaos scenario 4 (issue 23), the delta_crdt_ex #65 pattern: steady
//! writes on two DeltaCrdt replicas (`crdt::process`, Horde's `S.Crdt`)
//! with random partitions, every node in its own Linux network namespace
//! (tests/common/netns.rs). Needs root; elsewhere it prints one `SKIPPED`
//! line.
//!
//! `steady_writes_with_random_partitions_lose_no_acknowledged_write`: two
//! Rust nodes A and B, one replica each (sync interval 100 ms, each the
//! other's neighbour). Every sync interval each replica gets a write of a
//! new key `<m>-<n>` and an overwrite of its own key `<m>-last` with `n`;
//! a write counts as acknowledged once the writer's replica answers a
//! `get` of it with the value (DeltaCrdt's `put` answers once applied
//! locally; `get` runs after it). Meanwhile, at random times (every 0.5 to
//! 2.5 s), A's or B's link goes down for 0.3 to 4 s (net_ticktime 2 s, so
//! some cuts end in a nodedown and a reconnect, some only stall the
//! connection), then comes back and A reconnects as libcluster would.
//! After the last heal both replicas must hold every acknowledged key with
//! its value and each `<m>-last` with the writer's last `n`; the time from
//! the last heal to that agreement is reported, never asserted.
//!
//! `CHAOS_CRDT_SECS` sets how long the writes go on (default 10 for CI;
//! scripts/chaos.sh: 60). `CHAOS_SEED` replays a run's fault schedule (the
//! seed is printed). The test prints one `CHAOS` line.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use beam_peer::crdt::process::{self, CrdtHandle, CrdtOptions};
use beam_peer::term::{self, Term};
use beam_peer::Node;
use common::netns::{self, Net, NsRuntime};
use rand::{Rng, SeedableRng};

const NAME: &str = "Elixir.Chaos.Steady.Crdt";
const SYNC_MS: u64 = 100;
/// Deadline for the replicas to agree after the last heal (300 sync
/// intervals); never a measurement.
const SETTLE: Duration = Duration::from_secs(30);

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

async fn replica(rt: &NsRuntime, node: &Node, peer: &str) -> CrdtHandle {
    let (node, peer) = (node.clone(), peer.to_string());
    rt.run(async move {
        let mut opts = CrdtOptions::new(NAME);
        opts.sync_interval = SYNC_MS;
        let r = process::start(&node, opts).expect("replica starts");
        r.set_neighbours(vec![beam_peer::tup![term::atom(NAME), term::atom(&peer)]])
            .expect("replica alive");
        r
    })
    .await
}

/// Writes `key -> value` and waits for the writer's replica to answer it
/// back: true once acknowledged.
async fn write(r: &CrdtHandle, k: &str, value: i64) -> bool {
    if r.put(key(k), term::int(value)).is_err() {
        return false;
    }
    matches!(r.get(key(k)).await, Ok(Some(v)) if term::as_i64(&v) == Some(value))
}

/// Keys (as text) whose value on `map` is not the acknowledged one.
fn missing(
    map: &BTreeMap<beam_peer::crdt::awlww_map::OrdTerm, Term>,
    acked: &BTreeMap<String, i64>,
) -> Vec<String> {
    acked
        .iter()
        .filter(|(k, v)| {
            map.get(&beam_peer::crdt::awlww_map::OrdTerm(key(k)))
                .and_then(term::as_i64)
                != Some(**v)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_writes_with_random_partitions_lose_no_acknowledged_write() {
    if !netns::available_or_skip("steady_writes_with_random_partitions_lose_no_acknowledged_write")
    {
        return;
    }
    let secs: u64 = std::env::var("CHAOS_CRDT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("scenario 4: {secs} s of writes, CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let net = Net::new(2).expect("namespaces");
    let rts: Vec<NsRuntime> = (0..2).map(|i| net.runtime(i)).collect();
    let tick = Duration::from_secs(2);
    let a = netns::rust_node(&net, &rts[0], "steady_a", 0, tick).await;
    let b = netns::rust_node(&net, &rts[1], "steady_b", 1, tick).await;
    let (b2, an) = (b.clone(), a.name().to_string());
    rts[1]
        .run(async move { b2.join(&an).await })
        .await
        .expect("b joins a");
    let ra = replica(&rts[0], &a, b.name()).await;
    let rb = replica(&rts[1], &b, a.name()).await;
    let replicas = [("a", &ra), ("b", &rb)];

    // Every acknowledged write: key -> value.
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut unacked = 0usize;
    let mut faults = 0usize;
    let mut nodedowns = 0usize;
    let started = Instant::now();
    let run_for = Duration::from_secs(secs);
    let mut next_fault = started + Duration::from_millis(rng.random_range(500..2500));
    // (node cut off, link back at)
    let mut cut: Option<(usize, Instant)> = None;
    let mut n = 0i64;
    let mut events = a.subscribe();
    // One round of writes each sync interval (a slow round delays the next).
    let mut ticks = tokio::time::interval(Duration::from_millis(SYNC_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < run_for {
        ticks.tick().await;
        n += 1;
        for (m, r) in replicas {
            for (k, v) in [(format!("{m}-{n}"), n), (format!("{m}-last"), n)] {
                if write(r, &k, v).await {
                    acked.insert(k, v);
                } else {
                    unacked += 1;
                }
            }
        }
        let now = Instant::now();
        match cut {
            None if now >= next_fault => {
                let side = rng.random_range(0..2usize);
                net.partition(&[side]);
                faults += 1;
                cut = Some((
                    side,
                    now + Duration::from_millis(rng.random_range(300..4000)),
                ));
            }
            Some((_, back)) if now >= back => {
                net.heal();
                cut = None;
                next_fault = now + Duration::from_millis(rng.random_range(500..2500));
            }
            _ => {}
        }
        // Reconnect (libcluster's part) without holding up the writes: a
        // short try each tick while the link is up and the nodes apart.
        if cut.is_none() && !a.is_connected(b.name()) {
            let (a2, bn) = (a.clone(), b.name().to_string());
            let _ = tokio::time::timeout(
                Duration::from_millis(SYNC_MS),
                rts[0].run(async move { a2.connect(&bn).await }),
            )
            .await;
        }
        while let Ok(e) = events.try_recv() {
            if matches!(e, beam_peer::NodeEvent::Down { .. }) {
                nodedowns += 1;
            }
        }
    }
    net.heal();
    let healed = Instant::now();
    assert!(
        netns::reconnect(&rts[0], &a, b.name(), SETTLE).await,
        "A reconnects to B after the last heal"
    );
    // Both replicas hold every acknowledged write.
    let mut lost = (Vec::new(), Vec::new());
    let mut settled = None;
    while healed.elapsed() < SETTLE {
        let ma = ra.read().await.expect("replica a");
        let mb = rb.read().await.expect("replica b");
        lost = (missing(&ma, &acked), missing(&mb, &acked));
        if lost.0.is_empty() && lost.1.is_empty() {
            settled = Some(healed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost_n = lost.0.len().max(lost.1.len());
    println!(
        "scenario 4: {} writes acknowledged ({unacked} not), {faults} partitions ({nodedowns} nodedowns at A); missing on A {}, on B {}",
        acked.len(),
        lost.0.len(),
        lost.1.len()
    );
    println!(
        "CHAOS scenario=4:crdt_steady_writes_{secs}s trials=1 faults={faults} checked={} lost={lost_n} dup=0 max_rss_kib={} settle_ms={}",
        acked.len(),
        netns::rss_kib(std::process::id()).unwrap_or(0),
        settled.map_or("-".to_string(), |d| d.as_millis().to_string()),
    );
    assert!(
        settled.is_some(),
        "acknowledged writes missing after the heal (seed {seed}): on A {:?}, on B {:?}",
        &lost.0[..lost.0.len().min(20)],
        &lost.1[..lost.1.len().min(20)]
    );
    a.shutdown();
    b.shutdown();
}
