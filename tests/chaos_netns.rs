//! Chaos scenarios 1 and 3 with every node in its own Linux network
//! namespace (tests/common/netns.rs): real link-down partitions and kill -9.
//! They need root; elsewhere each prints one `SKIPPED` line, and
//! scripts/test.sh leaves this binary out and counts its tests as skipped.
//!
//! * Scenario 1, `a_registry_netsplit_heals_to_one_winner_per_name`: three
//!   Rust members (in-process nodes whose runtimes live in their
//!   namespaces), 1,000 names: 400 registered before the split, then
//!   {A}|{B,C} by A's link going down, 200 names registered on both sides
//!   (conflicts), 200 on A only, 200 on B/C only; heal (link up, A
//!   reconnects as libcluster would). Then every member holds all 1,000
//!   names, one winner each and the same everywhere, every conflict's
//!   loser got its `name_conflict` exit and no one else got any exit, and
//!   no name registered on one side only is lost or moved.
//! * Scenario 1 mixed, `a_mixed_registry_netsplit_heals_to_one_winner_per_name`
//!   (Horde present): the same split, names and checks with A an Elixir
//!   node running the real `Horde.Registry` (driven, while cut off, by a
//!   hidden Rust node in A's namespace) and B, C Rust members; the Elixir
//!   losers report the exit Horde sends them, which must be exactly
//!   `{:name_conflict, {key, value}, registry, winner}`.
//! * Scenario 3, kill -9 of each node kind: two Rust members A and B watch
//!   a victim in a third namespace and its names are gone on both after
//!   the kill; time from nodedown to gone is reported (in sync
//!   intervals), not asserted. The kinds:
//!   - Rust, `kill_9_of_a_rust_member_removes_its_names_everywhere`: a
//!     `beam-peer registry` member;
//!   - `erl`, `kill_9_of_an_erl_node_removes_its_names_everywhere`: an `erl`
//!     node whose processes are registered through A;
//!   - Elixir with Horde, `kill_9_of_an_elixir_horde_member_loses_no_child_and_removes_its_names`
//!     (Horde present): a member of the registry (`Horde.Registry`, 50
//!     names) and of a `Horde.DynamicSupervisor` shared with A and B
//!     (Rust workers for the same child module); 30 children started
//!     through it each trial, Horde placing about a third on itself. After
//!     the kill every child of every trial runs exactly once on A and B.
//!
//!   Children lost/duplicated after kill -9 of Rust members are
//!   tests/supervisor_cluster.rs (scripts/chaos.sh runs it).
//!
//! Without Horde (BEAM_PEER_HORDE_EBIN unset, no built erlang/ project, as
//! in CI) the Elixir tests print one `SKIPPED` line each and pass.
//!
//! `CHAOS_TRIALS` sets the trials (default 2 here; scripts/chaos.sh: 20).
//! Each test prints one `CHAOS` line per scenario with its figures.

mod common;

/// The soak reports the heap the program holds beside its RSS.
#[global_allocator]
static HEAP: common::heap::Counting = common::heap::Counting;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use beam_peer::horde::registry::{self, Registry, RegistryOptions};
use beam_peer::horde::supervisor::{self, Supervisor, SupervisorOptions};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Node, NodeEvent, Process};
use common::netns::{self, Net, NsRuntime, EPMD_PORT};
use common::supervisor::Live;

/// Deadline for anything that must happen; never a measurement.
const DEADLINE: Duration = Duration::from_secs(60);
/// The registries' sync interval (ms).
const SYNC_MS: u64 = 100;

fn trials() -> usize {
    std::env::var("CHAOS_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
}

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

/// A Rust node in namespace `i` (see [`netns::rust_node`]), net_ticktime 4 s.
async fn ns_node(net: &Net, rt: &NsRuntime, alive: &str, i: usize) -> Node {
    netns::rust_node(net, rt, alive, i, Duration::from_secs(4)).await
}

/// A registry member; `grace` is its `lost_member_grace`.
async fn ns_registry(rt: &NsRuntime, node: &Node, name: &str, grace: Duration) -> Registry {
    let (node, name) = (node.clone(), name.to_string());
    rt.run(async move {
        let opts = RegistryOptions::new(name)
            .sync_interval(SYNC_MS)
            .lost_member_grace(grace);
        registry::start(&node, opts).expect("registry starts")
    })
    .await
}

/// A process on `node` that stays alive, traps exits and reports the exit
/// signal that ends it to `report_to` as `{lost, Self, Reason}`.
async fn holder(rt: &NsRuntime, node: &Node, report_to: &Pid) -> Pid {
    let (node, report_to) = (node.clone(), report_to.clone());
    rt.run(async move {
        node.spawn(move |mut p: Process| async move {
            p.trap_exit(true);
            loop {
                match p.receive().await {
                    Ok(m) => {
                        if let Some([tag, _, reason]) = term::as_tuple(&m) {
                            if term::is_atom(tag, "EXIT") {
                                p.send(
                                    &report_to,
                                    beam_peer::tup![
                                        term::atom("lost"),
                                        Term::Pid(p.pid().clone()),
                                        reason.clone()
                                    ],
                                );
                                return beam_peer::ProcessExit::Normal;
                            }
                        }
                    }
                    Err(e) => return e.into(),
                }
            }
        })
    })
    .await
}

async fn register(rt: &NsRuntime, r: &Registry, k: &str, value: &str, pid: &Pid) {
    let (r, k, v, pid) = (r.clone(), key(k), term::atom(value), pid.clone());
    rt.run(async move { r.register(k, v, &pid).await })
        .await
        .unwrap_or_else(|e| panic!("register: {e}"));
}

/// Waits until `cond` holds, polling every 10 ms; `Some(elapsed)` or `None`
/// at the deadline.
async fn settle(cond: impl FnMut() -> bool) -> Option<Duration> {
    settle_within(DEADLINE, cond).await
}

async fn settle_within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if cond() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond().then(|| started.elapsed())
}

/// Every name and its holder, as text (terms are not `Ord`).
fn holders(r: &Registry) -> BTreeMap<String, String> {
    r.select(|k, pid, _| Some((k.to_string(), pid.to_string())))
        .into_iter()
        .collect()
}

/// Every name registered during the split (one-sided and conflicting)
/// ends with one winner on every member, each loser told, lookups equal
/// (the loss of names from before the split, the test below, is allowed
/// here). Until the CRDT kept exact contexts, 1 trial in 8 lost every name
/// one member registered during the split on all three members; with them,
/// 17 of 17 trials kept every one (2026-12-07). Later, beside the other
/// chaos tests (Elixir nodes booting), 3 runs in 22 still lost every name
/// C registered during the split: at the heal A saw B back and synced
/// with it before it saw C, and B followed A's removal of `{:member, C}`
/// (made at A's nodedown) by dropping C's keys, which wins everywhere
/// (Horde's registry does the same). A `:auto` member now writes back a
/// member it still sees instead (unit test
/// `a_member_still_seen_keeps_its_names_when_a_heal_reaches_the_others_one_at_a_time`);
/// 10 runs of 10 passed since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_netsplit_heals_to_one_winner_per_name() {
    if !netns::available_or_skip("a_registry_netsplit_heals_to_one_winner_per_name") {
        return;
    }
    registry_netsplit(false).await;
}

/// Scenario 1's finding, and its answer. With Horde's rule (a member
/// drops the keys of the members it lost at nodedown, as Horde's
/// `{:remove, {:member, m}}` handling does), every name registered BEFORE
/// the split, its holder alive throughout, is gone on every member after
/// the heal: those removals have observed the adds and win everywhere (400
/// of 400 such names in every trial; derekkraan/horde #258's symptom).
/// With `lost_member_grace` longer than the split, no member drops them,
/// lookups skip them while their member is away, and after the heal every
/// name is back on every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_netsplit_keeps_names_registered_before_the_split() {
    if !netns::available_or_skip("a_registry_netsplit_keeps_names_registered_before_the_split") {
        return;
    }
    registry_netsplit(true).await;
}

/// The exits the mixed trial's holders reported since the last look, into
/// `got` (holder -> reason); a second exit of one holder, and with `late`
/// any exit of a Rust holder, goes to `extra`.
async fn exits_reported(
    m: &Mixed,
    watchers: &mut [Process],
    got: &mut BTreeMap<String, Term>,
    extra: &mut Vec<String>,
    late: bool,
) {
    for (p, reason) in m.a_reports().await {
        if got.insert(p.to_string(), reason.clone()).is_some() {
            extra.push(format!("{p} twice: {reason}"));
        }
    }
    for w in watchers.iter_mut() {
        while let Some(msg) = w
            .receive_timeout(Duration::from_millis(20))
            .await
            .expect("watcher alive")
        {
            if late {
                extra.push(format!("late exit {msg}"));
                continue;
            }
            let Some([_, Term::Pid(p), reason]) = term::as_tuple(&msg) else {
                panic!("unexpected report {msg}")
            };
            if got.insert(p.to_string(), reason.clone()).is_some() {
                extra.push(format!("{p} twice: {reason}"));
            }
        }
    }
}

/// The figures of scenario 1's trials. A trial whose members disagree is
/// reported and counted, and the next one runs: they cover every trial.
#[derive(Default)]
struct NetsplitFigures {
    trials: usize,
    max_settle: Duration,
    lost: usize,
    failures: Vec<String>,
}

impl NetsplitFigures {
    /// One trial: its time to agree, or what differed; names lost either way.
    fn record(&mut self, outcome: Result<Duration, String>, lost: usize) {
        self.trials += 1;
        self.lost += lost;
        match outcome {
            Ok(settled) => self.max_settle = self.max_settle.max(settled),
            Err(report) => {
                println!("{report}");
                self.failures.push(report);
            }
        }
    }

    /// The `CHAOS` line (1,000 names a trial), then every failure asserted.
    fn finish(self, scenario: &str) {
        let settle = if self.failures.len() == self.trials {
            "-".to_string()
        } else {
            self.max_settle.as_millis().to_string()
        };
        println!(
            "CHAOS scenario=1:{scenario} trials={t} faults={t} checked={} lost={} dup=0 max_rss_kib={} settle_ms={settle}",
            self.trials * 1000,
            self.lost,
            netns::rss_kib(std::process::id()).unwrap_or(0),
            t = self.trials,
        );
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

async fn registry_netsplit(keep_common: bool) {
    let mut figures = NetsplitFigures::default();
    for trial in 0..trials() {
        match registry_netsplit_trial(trial, keep_common).await {
            Ok((settled, lost)) => figures.record(Ok(settled), lost),
            Err((report, lost)) => figures.record(Err(report), lost),
        }
    }
    println!(
        "scenario 1: {} names lost in {} trials; {} trials disagreed on names registered during the split",
        figures.lost,
        figures.trials,
        figures.failures.len()
    );
    // Under Horde's rule the names from before the split are dropped
    // (Horde #258), and counted lost; with the grace none may be.
    figures.finish(if keep_common {
        "registry_netsplit_with_grace"
    } else {
        "registry_netsplit_horde_rule"
    });
}

/// One trial; returns the time from the reconnect to agreement, and the
/// names lost (registered before the split and gone after the heal). With
/// `keep_common`, those must all be kept too. When the members do not
/// agree: a report of what differs, and the most names one member lacks.
async fn registry_netsplit_trial(
    trial: usize,
    keep_common: bool,
) -> Result<(Duration, usize), (String, usize)> {
    let net = Net::new(3).expect("namespaces");
    let rts: Vec<NsRuntime> = (0..3).map(|i| net.runtime(i)).collect();
    let mut nodes = Vec::new();
    for (i, rt) in rts.iter().enumerate() {
        nodes.push(ns_node(&net, rt, ["a", "b", "c"][i], i).await);
    }
    let name = format!("Elixir.{}", common::unique("Split"));
    let mut regs = Vec::new();
    for (i, rt) in rts.iter().enumerate() {
        // Keeping the names from before the split takes a grace longer
        // than the split (see `RegistryOptions::lost_member_grace`).
        let grace = if keep_common {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
        regs.push(ns_registry(rt, &nodes[i], &name, grace).await);
    }
    netns::join_first(&rts, &nodes).await;
    // Exit reports from every holder, per node.
    let mut watchers: Vec<Process> = Vec::new();
    for (i, rt) in rts.iter().enumerate() {
        let n = nodes[i].clone();
        watchers.push(rt.run(async move { n.process() }).await);
    }

    // 400 names before the split, spread over the three.
    let mut expect: BTreeMap<String, Pid> = BTreeMap::new();
    for k in 0..400 {
        let i = k % 3;
        let h = holder(&rts[i], &nodes[i], watchers[i].pid()).await;
        let k = format!("common-{k}");
        register(&rts[i], &regs[i], &k, "common", &h).await;
        expect.insert(k, h);
    }
    let all_see = |regs: &[Registry], n: usize| regs.iter().all(|r| r.count() == n);
    settle(|| all_see(&regs, 400))
        .await
        .expect("400 names everywhere before the split");

    // {A} | {B, C}: A's cable pulled; wait until both sides noticed. Node
    // events from here on go into a failure report.
    let mut events: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();
    net.partition(&[0]);
    let split = |nodes: &[Node]| {
        !nodes[0].is_connected(nodes[1].name())
            && !nodes[0].is_connected(nodes[2].name())
            && !nodes[1].is_connected(nodes[0].name())
            && !nodes[2].is_connected(nodes[0].name())
            && nodes[1].is_connected(nodes[2].name())
    };
    settle(|| split(&nodes))
        .await
        .expect("the split is noticed");

    // 200 names on both sides (B/C's registered after A's: LWW picks them),
    // 200 on A only, 200 on B/C only.
    let mut conflict_losers: BTreeMap<String, Pid> = BTreeMap::new();
    for k in 0..200 {
        let ka = format!("conflict-{k}");
        let ha = holder(&rts[0], &nodes[0], watchers[0].pid()).await;
        register(&rts[0], &regs[0], &ka, "a", &ha).await;
        conflict_losers.insert(ka, ha);
        let k2 = format!("only-a-{k}");
        let h2 = holder(&rts[0], &nodes[0], watchers[0].pid()).await;
        register(&rts[0], &regs[0], &k2, "a", &h2).await;
        expect.insert(k2, h2);
    }
    for k in 0..200 {
        let i = 1 + k % 2;
        let kb = format!("conflict-{k}");
        let hb = holder(&rts[i], &nodes[i], watchers[i].pid()).await;
        register(&rts[i], &regs[i], &kb, "bc", &hb).await;
        expect.insert(kb, hb);
        let k2 = format!("only-bc-{k}");
        let h2 = holder(&rts[i], &nodes[i], watchers[i].pid()).await;
        register(&rts[i], &regs[i], &k2, "bc", &h2).await;
        expect.insert(k2, h2);
    }
    assert_eq!(expect.len(), 1000);

    // Heal: the link comes back; A reconnects (libcluster's part).
    net.heal();
    let healed_at = Instant::now();
    for i in 1..3 {
        let (a, peer) = (nodes[0].clone(), nodes[i].name().to_string());
        let mut ok = false;
        let deadline = Instant::now() + DEADLINE;
        while !ok && Instant::now() < deadline {
            let (a, peer) = (a.clone(), peer.clone());
            ok = rts[0]
                .run(async move { a.connect(&peer).await })
                .await
                .is_ok();
            if !ok {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(ok, "A reconnects to {peer}");
    }
    let want: BTreeMap<String, String> = expect
        .iter()
        .map(|(k, p)| (key(k).to_string(), p.to_string()))
        .collect();
    // Every member holds the same names with the same holders; every name
    // registered during the split is there with its winner; a name from
    // before the split is there with its holder, or (unless
    // `keep_common`) gone everywhere.
    let agreed_on = |regs: &[Registry]| {
        let first = holders(&regs[0]);
        let same = regs.iter().skip(1).all(|r| holders(r) == first);
        let right = want.iter().all(|(k, p)| match first.get(k) {
            Some(h) => h == p,
            None => !keep_common && k.starts_with("<<\"common-"),
        }) && first.keys().all(|k| want.contains_key(k));
        same && right
    };
    // 20 s is 200 sync intervals: far beyond settling, short enough to
    // report a disagreement quickly.
    let agreed = settle_within(Duration::from_secs(20), || agreed_on(&regs)).await;
    let settled = healed_at.elapsed();
    if agreed.is_none() {
        // Say exactly what differs, per member.
        let mut report = String::new();
        let mut lost = 0;
        for (i, r) in regs.iter().enumerate() {
            let have = holders(r);
            let missing: Vec<String> = want
                .keys()
                .filter(|k| !have.contains_key(*k))
                .cloned()
                .collect();
            let wrong: Vec<String> = want
                .iter()
                .filter(|(k, p)| have.get(*k).is_some_and(|h| h != *p))
                .map(|(k, p)| format!("{k}: {} not {p}", have[k]))
                .collect();
            lost = lost.max(missing.len());
            let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
            for k in &missing {
                let kind = ["common", "conflict", "only-a", "only-bc"]
                    .into_iter()
                    .find(|p| k.contains(&format!("\"{p}-")))
                    .unwrap_or("?");
                *by_kind.entry(kind).or_default() += 1;
            }
            let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
            for k in &missing {
                let holder = &want[k];
                let node = nodes
                    .iter()
                    .position(|n| holder.contains(n.name()))
                    .map(|n| ["A", "B", "C"][n])
                    .unwrap_or("?");
                *by_node.entry(node.to_string()).or_default() += 1;
            }
            report.push_str(&format!(
                "\n member {i} missing by kind: {by_kind:?}, by the holder's node: {by_node:?}"
            ));
            report.push_str(&format!(
                "\n member {i}: {} names, {} missing {:?}, {} wrong holder {:?}",
                have.len(),
                missing.len(),
                &missing[..missing.len().min(20)],
                wrong.len(),
                &wrong[..wrong.len().min(20)]
            ));
        }
        for (i, ev) in events.iter_mut().enumerate() {
            while let Ok(e) = ev.try_recv() {
                report.push_str(&format!("\n event at {}: {e:?}", ["A", "B", "C"][i]));
            }
        }
        for n in &nodes {
            n.shutdown();
        }
        return Err((
            format!("trial {trial}: members disagree after the heal:{report}"),
            lost,
        ));
    }

    // Every conflict's loser (A's holder) got name_conflict; nobody else
    // got any exit.
    let mut told: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while told.len() < conflict_losers.len() && Instant::now() < deadline {
        if let Some(m) = watchers[0]
            .receive_timeout(Duration::from_millis(100))
            .await
            .expect("watcher alive")
        {
            let Some([_, Term::Pid(who), reason]) = term::as_tuple(&m) else {
                panic!("unexpected report {m}")
            };
            let Some([tag, ..]) = term::as_tuple(reason) else {
                panic!("{who} exited with {reason}")
            };
            assert!(
                term::is_atom(tag, "name_conflict"),
                "{who} exited with {reason}"
            );
            told.insert(who.to_string());
        }
    }
    let losers: BTreeSet<String> = conflict_losers.values().map(|p| p.to_string()).collect();
    assert_eq!(
        told, losers,
        "every loser, and only losers, got name_conflict"
    );
    for w in watchers.iter_mut().skip(1) {
        assert!(
            w.receive_timeout(Duration::from_millis(200))
                .await
                .expect("watcher alive")
                .is_none(),
            "a B/C holder got an exit"
        );
    }
    let lost = want.len() - holders(&regs[0]).len();
    println!(
        "registry netsplit trial {trial}: members agree {:?} after the reconnect ({} sync intervals); {} losers told; {lost} names from before the split lost",
        settled,
        settled.as_millis() as u64 / SYNC_MS,
        told.len()
    );
    for n in &nodes {
        n.shutdown();
    }
    Ok((settled, lost))
}

/// Elixir code run on a node in a namespace, through a process of `via`
/// on its runtime `rt` (the call may connect: the socket must be opened
/// in `via`'s namespace).
async fn ex(
    rt: &NsRuntime,
    via: &Node,
    beam: &str,
    code: &str,
    bindings: Vec<(&'static str, Term)>,
) -> Term {
    let (via, beam, code) = (via.clone(), beam.to_string(), code.to_string());
    rt.run(async move {
        let mut p = via.process();
        common::eval_elixir(&mut p, &beam, &code, bindings).await
    })
    .await
}

/// `Horde.Registry.start_link(name: r, keys: :unique, members: :auto)`
/// with the Rust members' sync interval, owned by a process that stays.
const ELIXIR_REGISTRY: &str = "{:ok, _} = :beam_peer_ctl.keep(fn -> Horde.Registry.start_link(name: r, keys: :unique, members: :auto, delta_crdt_options: [sync_interval: si]) end); :ok";

/// One Elixir holder per key in `keys`, each registered in Horde.Registry
/// `r` under its key with value `v`; each traps exits and reports the exit
/// signal that ends it to the collector `c` as `{:lost, self(), reason}`.
/// The value: `[{key, pid}]`.
const ELIXIR_HOLDERS: &str = r#"
me = self()
for k <- keys do
  pid = spawn(fn ->
    Process.flag(:trap_exit, true)
    send(me, {:registered, self(), Horde.Registry.register(r, k, v)})
    receive do
      {:EXIT, _, reason} -> send(c, {:lost, self(), reason})
    end
  end)
  receive do
    {:registered, ^pid, {:ok, _}} -> {k, pid}
    {:registered, ^pid, e} -> raise "register #{k}: #{inspect(e)}"
  after
    10_000 -> raise "register #{k}: no answer"
  end
end
"#;

/// Every name in Horde.Registry `r` and its holder.
const ELIXIR_SELECT: &str =
    r#"Horde.Registry.select(r, [{{:"$1", :"$2", :_}, [], [{{:"$1", :"$2"}}]}])"#;

/// The mixed cluster of scenario 1: an Elixir node with Horde (A) and a
/// hidden Rust node beside it in A's namespace (its only way to drive A
/// while A is cut off), and two Rust members (B, C).
struct Mixed {
    net: Net,
    /// Node i's runtime; rts[0] runs the hidden driver.
    rts: Vec<NsRuntime>,
    a: netns::NsBeam,
    driver: Node,
    /// B and C.
    rust: Vec<Node>,
    name: String,
    /// B's and C's registries.
    regs: Vec<Registry>,
    /// The collector on A the Elixir holders report to.
    collector: Term,
}

impl Mixed {
    async fn start(ebins: &[std::path::PathBuf]) -> Mixed {
        let mut net = Net::new(3).expect("namespaces");
        let rts: Vec<NsRuntime> = (0..3).map(|i| net.runtime(i)).collect();
        let a = net.horde_node(0, &common::unique("a_ex"), 4, ebins);
        // Hidden: not in A's `Node.list()`, so not a member for `:auto`.
        let config = beam_peer::NodeConfig::new(net.node_name(&common::unique("driver"), 0))
            .cookie(common::COOKIE)
            .hidden(true)
            .net_ticktime(Duration::from_secs(4))
            .discovery(beam_peer::Discovery::Epmd { port: EPMD_PORT });
        let driver = rts[0]
            .run(async move { Node::start(config).await })
            .await
            .expect("the driver starts beside A");
        assert!(
            netns::reconnect(&rts[0], &driver, &a.name, DEADLINE).await,
            "the driver connects to A"
        );
        let mut rust = Vec::new();
        for i in 1..3 {
            let n = ns_node(&net, &rts[i], ["b", "c"][i - 1], i).await;
            assert!(
                netns::reconnect(&rts[i], &n, &a.name, DEADLINE).await,
                "{} connects to A",
                n.name()
            );
            rust.push(n);
        }
        assert!(
            netns::reconnect(&rts[2], &rust[1], rust[0].name(), DEADLINE).await,
            "C connects to B"
        );
        let name = format!("Elixir.{}", common::unique("MixedSplit"));
        let mut m = Mixed {
            net,
            rts,
            a,
            driver,
            rust,
            name,
            regs: Vec::new(),
            collector: term::atom("undefined"),
        };
        m.collector = m.ex(":beam_peer_ctl.collector()", vec![]).await;
        m.ex(
            ELIXIR_REGISTRY,
            vec![
                ("r", term::atom(&m.name)),
                ("si", term::int(SYNC_MS as i64)),
            ],
        )
        .await;
        for i in 0..2 {
            let r = ns_registry(&m.rts[i + 1], &m.rust[i], &m.name, Duration::ZERO).await;
            m.regs.push(r);
        }
        m
    }

    async fn ex(&self, code: &str, bindings: Vec<(&'static str, Term)>) -> Term {
        ex(&self.rts[0], &self.driver, &self.a.name, code, bindings).await
    }

    /// Elixir holders on A for `keys`, registered with value `v`.
    async fn register_on_a(&self, keys: &[String], v: &str) -> Vec<(String, Pid)> {
        let list = term::list(keys.iter().map(|k| key(k)).collect());
        let got = self
            .ex(
                ELIXIR_HOLDERS,
                vec![
                    ("keys", list),
                    ("v", term::atom(v)),
                    ("r", term::atom(&self.name)),
                    ("c", self.collector.clone()),
                ],
            )
            .await;
        term::as_list(&got)
            .expect("a list")
            .iter()
            .map(|e| match term::as_tuple(e) {
                Some([Term::Binary(k), Term::Pid(p)]) => {
                    (String::from_utf8_lossy(&k.bytes).into_owned(), p.clone())
                }
                _ => panic!("not {{key, pid}}: {e}"),
            })
            .collect()
    }

    /// A's names and holders, as text (like [`holders`]).
    async fn a_holders(&self) -> BTreeMap<String, String> {
        let got = self
            .ex(ELIXIR_SELECT, vec![("r", term::atom(&self.name))])
            .await;
        term::as_list(&got)
            .expect("a list")
            .iter()
            .map(|e| match term::as_tuple(e) {
                Some([k, p]) => (k.to_string(), p.to_string()),
                _ => panic!("not {{key, pid}}: {e}"),
            })
            .collect()
    }

    /// Every member's names and holders: A's, B's, C's.
    async fn views(&self) -> Vec<BTreeMap<String, String>> {
        let mut v = vec![self.a_holders().await];
        v.extend(self.regs.iter().map(holders));
        v
    }

    /// What the Elixir holders reported since the last call:
    /// `(holder, exit reason)`.
    async fn a_reports(&self) -> Vec<(Pid, Term)> {
        let got = self
            .ex(
                ":beam_peer_ctl.collected(c)",
                vec![("c", self.collector.clone())],
            )
            .await;
        term::as_list(&got)
            .expect("a list")
            .iter()
            .map(|m| match term::as_tuple(m) {
                Some([tag, Term::Pid(p), reason]) if term::is_atom(tag, "lost") => {
                    (p.clone(), reason.clone())
                }
                _ => panic!("unexpected report on A: {m}"),
            })
            .collect()
    }

    fn shutdown(self) {
        for n in self.rust.iter().chain([&self.driver]) {
            n.shutdown();
        }
    }
}

/// Scenario 1 with the node kinds mixed (Horde present; else one SKIPPED
/// line): A is an Elixir node running the real `Horde.Registry` (`keys:
/// :unique, members: :auto`, the Rust members' registry name and sync
/// interval), B and C Rust members; the same split, registrations and
/// heal as [`a_registry_netsplit_heals_to_one_winner_per_name`], so Horde's
/// default (a lost member's names dropped at nodedown, no grace) holds on
/// every member. After the heal: all three hold the same names, one
/// winner each; every name registered on one side only is there with its
/// holder; each conflict's loser got exactly Horde's exit
/// `{:name_conflict, {key, value}, registry, winner}` (an Elixir loser
/// reports what it received) and no other holder got any exit. Which side
/// wins a conflict is the last-writer-wins of the two timestamps: Rust
/// writes wall-clock nanoseconds, DeltaCrdt the writer's
/// `System.monotonic_time(:nanosecond)` (not comparable across nodes);
/// the test accepts either winner as long as every member picked the same,
/// and reports which won. 20 of 20 trials agreed 0.25 to 0.67 s after the
/// reconnect; the Rust registration won 4,000 of 4,000 conflicts, and
/// each of the 4,000 Elixir losers got Horde's exit (2026-12-07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_registry_netsplit_heals_to_one_winner_per_name() {
    let test = "a_mixed_registry_netsplit_heals_to_one_winner_per_name";
    if !netns::available_or_skip(test) || !common::have_erl(test) {
        return;
    }
    let Some(ebins) = common::horde_or_skip(test) else {
        return;
    };
    let (mut figures, mut elixir_wins) = (NetsplitFigures::default(), 0);
    for trial in 0..trials() {
        match mixed_netsplit_trial(trial, &ebins).await {
            Ok((settled, lost, won)) => {
                figures.record(Ok(settled), lost);
                elixir_wins += won;
            }
            Err(report) => figures.record(Err(report), 0),
        }
    }
    println!(
        "scenario 1 mixed: {} names from before the split lost in {} trials; {elixir_wins} of {} conflicts won by the Elixir side; {} trials failed",
        figures.lost,
        figures.trials,
        figures.trials * 200,
        figures.failures.len()
    );
    figures.finish("registry_netsplit_mixed_horde_rule");
}

/// One mixed trial: the time from the reconnect to agreement, the names
/// from before the split that are gone (everywhere), and the conflicts the
/// Elixir side won; or a report of what went wrong.
async fn mixed_netsplit_trial(
    trial: usize,
    ebins: &[std::path::PathBuf],
) -> Result<(Duration, usize, usize), String> {
    let m = Mixed::start(ebins).await;
    let mut watchers = Vec::new();
    for i in 0..2 {
        let n = m.rust[i].clone();
        watchers.push(m.rts[i + 1].run(async move { n.process() }).await);
    }
    // name -> the holders that registered it (two for a conflict).
    let mut expect: BTreeMap<String, Vec<Pid>> = BTreeMap::new();
    // holder -> the value it registered with.
    let mut value_of: BTreeMap<String, &str> = BTreeMap::new();

    // 400 names before the split, spread over the three.
    let mut on_a = Vec::new();
    for k in 0..400 {
        let k_name = format!("common-{k}");
        match k % 3 {
            0 => on_a.push(k_name),
            i => {
                let h = holder(&m.rts[i], &m.rust[i - 1], watchers[i - 1].pid()).await;
                register(&m.rts[i], &m.regs[i - 1], &k_name, "common", &h).await;
                expect.entry(k_name).or_default().push(h);
            }
        }
    }
    for (k, h) in m.register_on_a(&on_a, "common").await {
        expect.entry(k).or_default().push(h);
    }
    let everyone_holds =
        |views: &[BTreeMap<String, String>], n: usize| views.iter().all(|v| v.len() == n);
    let mut ok = false;
    let deadline = Instant::now() + DEADLINE;
    while !ok && Instant::now() < deadline {
        ok = everyone_holds(&m.views().await, 400);
        if !ok {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(ok, "trial {trial}: 400 names everywhere before the split");

    // {A} | {B, C}: A's cable pulled; wait until all three noticed (A's
    // `Node.list()` leaves out the hidden driver).
    m.net.partition(&[0]);
    let a_name = m.a.name.clone();
    let rust_noticed = || {
        !m.rust[0].is_connected(&a_name)
            && !m.rust[1].is_connected(&a_name)
            && m.rust[0].is_connected(m.rust[1].name())
    };
    settle(rust_noticed)
        .await
        .unwrap_or_else(|| panic!("trial {trial}: B and C notice the split"));
    let deadline = Instant::now() + DEADLINE;
    while m.ex("Node.list()", vec![]).await != term::list(vec![]) {
        assert!(
            Instant::now() < deadline,
            "trial {trial}: A notices the split"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 200 names on both sides (A's first), 200 on A only, 200 on B/C only.
    let conflicts: Vec<String> = (0..200).map(|k| format!("conflict-{k}")).collect();
    let only_a: Vec<String> = (0..200).map(|k| format!("only-a-{k}")).collect();
    for (k, h) in m.register_on_a(&conflicts, "a").await {
        value_of.insert(h.to_string(), "a");
        expect.entry(k).or_default().push(h);
    }
    for (k, h) in m.register_on_a(&only_a, "a").await {
        expect.entry(k).or_default().push(h);
    }
    for k in 0..200 {
        let i = k % 2;
        for k_name in [format!("conflict-{k}"), format!("only-bc-{k}")] {
            let h = holder(&m.rts[i + 1], &m.rust[i], watchers[i].pid()).await;
            register(&m.rts[i + 1], &m.regs[i], &k_name, "bc", &h).await;
            value_of.insert(h.to_string(), "bc");
            expect.entry(k_name).or_default().push(h);
        }
    }
    assert_eq!(expect.len(), 1000);

    // Heal: the link comes back; B and C reconnect (libcluster's part).
    m.net.heal();
    let healed_at = Instant::now();
    for i in 0..2 {
        assert!(
            netns::reconnect(&m.rts[i + 1], &m.rust[i], &a_name, DEADLINE).await,
            "trial {trial}: {} reconnects to A",
            m.rust[i].name()
        );
    }
    // The three views equal; each name's holder one of those that
    // registered it; a name registered during the split always there; a
    // name from before the split there with its holder or gone everywhere.
    let want: BTreeMap<String, Vec<String>> = expect
        .iter()
        .map(|(k, hs)| {
            (
                key(k).to_string(),
                hs.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect();
    let judge = |views: &[BTreeMap<String, String>]| -> Result<(), String> {
        let first = &views[0];
        for (i, v) in views.iter().enumerate().skip(1) {
            if v != first {
                let differ = want
                    .keys()
                    .filter(|k| v.get(*k) != first.get(*k))
                    .take(5)
                    .map(|k| {
                        format!(
                            "{k}: A {:?}, {} {:?}",
                            first.get(k),
                            ["B", "C"][i - 1],
                            v.get(k)
                        )
                    })
                    .collect::<Vec<_>>();
                return Err(format!(
                    "A holds {} names, {} holds {}; first differences {differ:?}",
                    first.len(),
                    ["B", "C"][i - 1],
                    v.len()
                ));
            }
        }
        if let Some(k) = first.keys().find(|k| !want.contains_key(*k)) {
            return Err(format!("an unknown name {k}"));
        }
        let mut missing = Vec::new();
        for (k, hs) in &want {
            match first.get(k) {
                Some(h) if hs.contains(h) => {}
                Some(h) => return Err(format!("{k} held by {h}, not one of {hs:?}")),
                None if k.starts_with("<<\"common-") => {}
                None => missing.push(k.clone()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} names registered during the split missing everywhere: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ))
        }
    };
    // 20 s is 200 sync intervals: far beyond settling, short enough to
    // report a disagreement quickly.
    let mut verdict = Err("never compared".to_string());
    let mut views = Vec::new();
    while healed_at.elapsed() < Duration::from_secs(20) {
        views = m.views().await;
        verdict = judge(&views);
        if verdict.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = healed_at.elapsed();
    if let Err(why) = verdict {
        m.shutdown();
        return Err(format!(
            "trial {trial}: the members disagree {settled:?} after the heal: {why}"
        ));
    }
    let agreed = &views[0];

    // Each conflict's loser, and the exit it must have got.
    let r = term::atom(&m.name);
    let mut owed: BTreeMap<String, Term> = BTreeMap::new();
    let mut elixir_won = 0;
    for k in &conflicts {
        let hs = &expect[k];
        let winner = agreed[&key(k).to_string()].clone();
        let win_pid = hs
            .iter()
            .find(|p| p.to_string() == winner)
            .expect("a holder");
        let loser = hs
            .iter()
            .find(|p| p.to_string() != winner)
            .expect("two holders");
        if value_of[&loser.to_string()] == "bc" {
            elixir_won += 1;
        }
        owed.insert(
            loser.to_string(),
            beam_peer::tup![
                term::atom("name_conflict"),
                beam_peer::tup![key(k), term::atom(value_of[&loser.to_string()])],
                r.clone(),
                Term::Pid(win_pid.clone())
            ],
        );
    }
    // What the holders got: the Elixir ones through A's collector, the
    // Rust ones through B's and C's watchers.
    let mut got: BTreeMap<String, Term> = BTreeMap::new();
    let mut extra = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < owed.len() && Instant::now() < deadline {
        exits_reported(&m, &mut watchers, &mut got, &mut extra, false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anyone else's exit would come by now: one more look at each side.
    tokio::time::sleep(Duration::from_millis(200)).await;
    exits_reported(&m, &mut watchers, &mut got, &mut extra, true).await;
    let wrong: Vec<String> = got
        .iter()
        .filter(|(p, reason)| owed.get(*p) != Some(reason))
        .map(|(p, reason)| format!("{p} got {reason}, owed {:?}", owed.get(p)))
        .collect();
    let untold = owed.keys().filter(|p| !got.contains_key(*p)).count();
    let lost = want.len() - agreed.len();
    println!(
        "mixed registry netsplit trial {trial}: members agree {settled:?} after the heal ({} sync intervals); {} of {} losers told ({elixir_won} conflicts won by Elixir); {lost} names from before the split lost",
        settled.as_millis() as u64 / SYNC_MS,
        got.len() - wrong.len(),
        owed.len()
    );
    m.shutdown();
    if !wrong.is_empty() || !extra.is_empty() || untold > 0 {
        return Err(format!(
            "trial {trial}: {untold} losers never told; {} wrong or unowed exits {:?}; {extra:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        ));
    }
    Ok((settled, lost, elixir_won))
}

/// Scenario 3 for Rust nodes: a `beam-peer registry` member killed with
/// kill -9 takes its names off both other members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_rust_member_removes_its_names_everywhere() {
    let test = "kill_9_of_a_rust_member_removes_its_names_everywhere";
    if !netns::available_or_skip(test) {
        return;
    }
    kill_9_trials("rust").await;
}

/// Scenario 3 for `erl` nodes: 50 processes of an `erl` node with no
/// member, registered through member A (which links them, as Horde's
/// registry does); its kill -9 takes the names off both members' tables.
/// Before the registry linked processes of other nodes, those entries
/// stayed in every table forever, hidden only by lookups' liveness check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flaky once: 1 full-suite run in 4 on 2026-12-07 (load 10-13) the erl node's 50 names, registered through A, were not seen on both members within 60 s, before any kill; 55 runs since (alone, beside the other chaos tests, and at load 8) passed; the panic now says which member lacks what; scripts/chaos.sh runs it"]
async fn kill_9_of_an_erl_node_removes_its_names_everywhere() {
    let test = "kill_9_of_an_erl_node_removes_its_names_everywhere";
    if !netns::available_or_skip(test) || !common::have_erl(test) {
        return;
    }
    kill_9_trials("erl").await;
}

/// [`trials`] kill -9s of a victim of `kind` (`rust` or `erl`) holding
/// names in a registry of two in-process members, A and B.
async fn kill_9_trials(kind: &str) {
    let mut net = Net::new(3).expect("namespaces");
    let rts: Vec<NsRuntime> = (0..2).map(|i| net.runtime(i)).collect();
    let a = ns_node(&net, &rts[0], "a", 0).await;
    let b = ns_node(&net, &rts[1], "b", 1).await;
    let bn = (b.clone(), a.name().to_string());
    rts[1]
        .run(async move { bn.0.join(&bn.1).await })
        .await
        .expect("b joins a");
    let name = format!("Elixir.{}", common::unique("Kill"));
    let ra = ns_registry(&rts[0], &a, &name, Duration::ZERO).await;
    let rb = ns_registry(&rts[1], &b, &name, Duration::ZERO).await;
    let trials = trials();
    {
        let mut max_settle = Duration::ZERO;
        let mut names_checked = 0;
        for trial in 0..trials {
            let mut events = a.subscribe();
            let alive = common::unique(&format!("victim_{kind}"));
            // `_beam` keeps the erl node's EPMD up until the trial ends.
            let (victim, _beam, victim_name, keys) = match kind {
                "rust" => {
                    let victim_name = net.node_name(&alive, 2);
                    let k = format!("{alive}-echo");
                    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beam-peer"));
                    cmd.args([
                        "registry",
                        "--name",
                        &victim_name,
                        "--cookie",
                        common::COOKIE,
                    ])
                    .args(["--join", a.name(), "--registry", &name, "--key", &k])
                    .env("ERL_EPMD_PORT", EPMD_PORT.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null());
                    (net.spawn(2, cmd), None, victim_name, vec![k])
                }
                _ => {
                    let beam = net.erl_node(2, &alive, 4);
                    let victim_name = beam.name.clone();
                    // 50 processes on the erl node, registered through A.
                    // On A's runtime: the call connects, and the socket
                    // must be opened in A's namespace.
                    let (a2, v) = (a.clone(), victim_name.clone());
                    let pids = rts[0]
                        .run(async move {
                            let mut p = a2.process();
                            common::eval(
                                &mut p,
                                &v,
                                "[spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 50)].",
                            )
                            .await
                        })
                        .await;
                    let mut keys = Vec::new();
                    for (j, pid) in term::as_list(&pids).expect("pids").iter().enumerate() {
                        let Term::Pid(pid) = pid else { panic!("{pid}") };
                        let k = format!("{alive}-{j}");
                        register(&rts[0], &ra, &k, "erl", pid).await;
                        keys.push(k);
                    }
                    (beam.node.clone(), Some(beam), victim_name, keys)
                }
            };
            let seen = |r: &Registry| keys.iter().all(|k| r.lookup(&key(k)).is_some());
            if settle(|| seen(&ra) && seen(&rb)).await.is_none() {
                let held =
                    |r: &Registry| keys.iter().filter(|k| r.lookup(&key(k)).is_some()).count();
                let inmap = |r: &Registry| {
                    let h = holders(r);
                    keys.iter()
                        .filter(|k| h.keys().any(|x| x.contains(k.as_str())))
                        .count()
                };
                panic!("{kind} trial {trial}: the victim's names not seen: a {} live {} in map, b {} live {} in map; a sees {:?} b sees {:?}", held(&ra), inmap(&ra), held(&rb), inmap(&rb), a.visible_nodes(), b.visible_nodes());
            }
            victim.kill9();
            // Nodedown at A, then the names gone on both.
            let deadline = tokio::time::Instant::now() + DEADLINE;
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Ok(NodeEvent::Down { node, .. })) if node == victim_name => break,
                    Ok(Ok(_)) => {}
                    other => panic!("{kind} trial {trial}: no nodedown: {other:?}"),
                }
            }
            // Gone from the registry's table, not only hidden from
            // lookups (which already fail once the node is disconnected).
            let gone = |r: &Registry| {
                let held = holders(r);
                keys.iter()
                    .all(|k| r.lookup(&key(k)).is_none() && !held.contains_key(&key(k).to_string()))
            };
            let took = settle(|| gone(&ra) && gone(&rb)).await.unwrap_or_else(|| {
                panic!("{kind} trial {trial}: the dead node's names are still there")
            });
            max_settle = max_settle.max(took);
            names_checked += keys.len();
            println!(
                "kill -9 {kind} trial {trial}: {} names gone {took:?} after nodedown",
                keys.len()
            );
        }
        println!(
            "CHAOS scenario=3:kill9_{kind}_names trials={trials} faults={trials} checked={names_checked} lost=0 dup=0 max_rss_kib=- settle_ms={}",
            max_settle.as_millis()
        );
    }
    a.shutdown();
    b.shutdown();
}

/// The supervisor and worker module of scenario 3's Elixir kind.
const KILL_SUP: &str = "Elixir.Chaos.KillSup";
const KILL_WORKER: &str = "Elixir.Chaos.Worker";
/// Children started through the Elixir member in each trial.
const KILL_CHILDREN: i64 = 30;
/// Names the Elixir member's processes hold in each trial.
const KILL_NAMES: usize = 50;

/// The Elixir member of scenario 3: the worker module (the Rust members
/// run theirs for the same name), a `Horde.Registry` and a
/// `Horde.DynamicSupervisor` (both `members: :auto`, the Rust members'
/// names and sync interval), `n` processes holding names `"<prefix>-<j>"`
/// and the `args` children started through it (Horde places them on the
/// three members). The value: the node of each child, `[{arg, node}]`.
const ELIXIR_KILL_MEMBER: &str = r##"
defmodule Chaos.Worker do
  use GenServer
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)
  def init(arg), do: {:ok, arg}
  def handle_call(_, _, arg), do: {:reply, :pong, arg}
end
{:ok, _} = :beam_peer_ctl.keep(fn ->
  Horde.Registry.start_link(name: r, keys: :unique, members: :auto,
    delta_crdt_options: [sync_interval: si])
end)
{:ok, _} = :beam_peer_ctl.keep(fn ->
  Horde.DynamicSupervisor.start_link(name: s, strategy: :one_for_one, members: :auto,
    delta_crdt_options: [sync_interval: si])
end)
alive = fn ->
  m = DeltaCrdt.to_map(:"#{s}.Crdt")
  Enum.count(m, &match?({{:member_node_info, _}, %{status: :alive}}, &1))
end
wait = fn wait, t ->
  cond do
    alive.() == 3 -> :ok
    t > 600 -> raise "the Elixir member never saw 3 members alive"
    true -> Process.sleep(50); wait.(wait, t + 1)
  end
end
wait.(wait, 0)
for j <- 1..n do
  :beam_peer_ctl.keep(fn -> {:ok, _} = Horde.Registry.register(r, "#{prefix}-#{j}", j) end)
end
for arg <- args do
  spec = %{id: arg, start: {Chaos.Worker, :start_link, [arg]}}
  case Horde.DynamicSupervisor.start_child(s, spec) do
    {:ok, pid} -> {arg, node(pid)}
    e -> raise "start_child #{arg}: #{inspect(e)}"
  end
end
"##;

/// Scenario 3 for Elixir nodes with Horde (Horde present; else one
/// SKIPPED line): Rust members A and B share a registry and a
/// Horde.DynamicSupervisor with an Elixir node in a third namespace, a
/// member of both (real `Horde.Registry` and `Horde.DynamicSupervisor`);
/// each trial a new Elixir node registers 50 names and starts 30 children
/// (Horde places about a third on itself), then dies by kill -9. Checked:
/// every child of every trial so far runs exactly once on A and B (none
/// lost, none doubled) and both members count each once; the dead node's
/// names are gone from both tables. The times from nodedown to the names
/// gone and to the children settled are reported (in sync intervals), not
/// asserted: with 20 trials, 219 children of the dead members each ran
/// again once, all within 33 ms of A's nodedown, the names gone within
/// 12 ms (2026-12-07).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_elixir_horde_member_loses_no_child_and_removes_its_names() {
    let test = "kill_9_of_an_elixir_horde_member_loses_no_child_and_removes_its_names";
    if !netns::available_or_skip(test) || !common::have_erl(test) {
        return;
    }
    let Some(ebins) = common::horde_or_skip(test) else {
        return;
    };
    let mut net = Net::new(3).expect("namespaces");
    let rts: Vec<NsRuntime> = (0..2).map(|i| net.runtime(i)).collect();
    let a = ns_node(&net, &rts[0], "a", 0).await;
    let b = ns_node(&net, &rts[1], "b", 1).await;
    netns::join_first(&rts, &[a.clone(), b.clone()]).await;
    let name = format!("Elixir.{}", common::unique("KillEx"));
    let ra = ns_registry(&rts[0], &a, &name, Duration::ZERO).await;
    let rb = ns_registry(&rts[1], &b, &name, Duration::ZERO).await;
    let live = common::supervisor::Live::default();
    let mut sups = Vec::new();
    for (rt, n) in rts.iter().zip([&a, &b]) {
        let (n, live) = (n.clone(), live.clone());
        sups.push(
            rt.run(async move {
                let opts = SupervisorOptions::new(KILL_SUP)
                    .sync_interval(SYNC_MS)
                    .worker(
                        KILL_WORKER,
                        common::supervisor::live_worker(live, |_, _| {}),
                    );
                supervisor::start(&n, opts).expect("the Rust member starts")
            })
            .await,
        );
    }
    common::all_members_alive(&sups, 2, DEADLINE).await;
    let on_survivors = |live: &common::supervisor::Live| -> BTreeMap<i64, usize> {
        live.lock()
            .unwrap()
            .iter()
            .map(|(arg, v)| (*arg, v.len()))
            .collect()
    };
    let trials = trials();
    let (mut max_names, mut max_children) = (Duration::ZERO, Duration::ZERO);
    let (mut names_checked, mut on_victims) = (0, 0);
    let mut total: i64 = 0;
    for trial in 0..trials {
        let victim = net.horde_node(2, &common::unique("victim_ex"), 4, &ebins);
        for (rt, n) in rts.iter().zip([&a, &b]) {
            assert!(
                netns::reconnect(rt, n, &victim.name, DEADLINE).await,
                "trial {trial}: {} connects to the Elixir node",
                n.name()
            );
        }
        let prefix = common::unique("victim_ex_name");
        let args: Vec<i64> = (total + 1..=total + KILL_CHILDREN).collect();
        total += KILL_CHILDREN;
        let placed = ex(
            &rts[0],
            &a,
            &victim.name,
            ELIXIR_KILL_MEMBER,
            vec![
                ("r", term::atom(&name)),
                ("s", term::atom(KILL_SUP)),
                ("si", term::int(SYNC_MS as i64)),
                ("n", term::int(KILL_NAMES as i64)),
                ("prefix", term::binary(prefix.as_bytes())),
                (
                    "args",
                    term::list(args.iter().map(|&a| term::int(a)).collect()),
                ),
            ],
        )
        .await;
        let on_victim = term::as_list(&placed)
            .expect("[{arg, node}]")
            .iter()
            .filter(|e| matches!(term::as_tuple(e), Some([_, n]) if term::as_atom(n) == Some(victim.name.as_str())))
            .count();
        assert!(
            on_victim > 0,
            "trial {trial}: Horde placed no child on the Elixir member: {placed}"
        );
        on_victims += on_victim;
        let keys: Vec<String> = (1..=KILL_NAMES).map(|j| format!("{prefix}-{j}")).collect();
        // Before the kill: both Rust members see the names and count every
        // child; each child placed on them runs there once.
        let seen = |r: &Registry| keys.iter().all(|k| r.lookup(&key(k)).is_some());
        settle(|| seen(&ra) && seen(&rb))
            .await
            .unwrap_or_else(|| panic!("trial {trial}: the Elixir node's names seen on A and B"));
        let mut ready = false;
        let deadline = Instant::now() + DEADLINE;
        while !ready && Instant::now() < deadline {
            ready = true;
            for s in &sups {
                ready &= common::supervisor::global_count(s).await == Some(total);
            }
            let c = on_survivors(&live);
            ready &= (1..=total).all(|arg| c.get(&arg).copied().unwrap_or(0) <= 1)
                && c.values().sum::<usize>() == total as usize - on_victim;
            if !ready {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(
            ready,
            "trial {trial}: before the kill, A and B count {total} children and run {} of them",
            total as usize - on_victim
        );

        let mut events = a.subscribe();
        victim.kill9();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(NodeEvent::Down { node, .. })) if node == victim.name => break,
                Ok(Ok(_)) => {}
                other => panic!("trial {trial}: no nodedown: {other:?}"),
            }
        }
        let down_at = Instant::now();
        let gone = |r: &Registry| {
            let held = holders(r);
            keys.iter()
                .all(|k| r.lookup(&key(k)).is_none() && !held.contains_key(&key(k).to_string()))
        };
        let names_took = settle(|| gone(&ra) && gone(&rb))
            .await
            .unwrap_or_else(|| panic!("trial {trial}: the dead node's names are still there"));
        // Every child so far runs exactly once on A and B, and both count
        // each once.
        let mut settled = false;
        let deadline = Instant::now() + DEADLINE;
        while !settled && Instant::now() < deadline {
            let c = on_survivors(&live);
            settled = (1..=total).all(|arg| c.get(&arg) == Some(&1));
            for s in &sups {
                settled &= common::supervisor::global_count(s).await == Some(total);
            }
            if !settled {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let children_took = down_at.elapsed();
        let c = on_survivors(&live);
        let lost: Vec<i64> = (1..=total)
            .filter(|a| c.get(a).is_none_or(|&n| n == 0))
            .collect();
        let dup: Vec<i64> = (1..=total)
            .filter(|a| c.get(a).is_some_and(|&n| n > 1))
            .collect();
        assert!(
            settled,
            "trial {trial}: after the kill, children lost {lost:?}, run twice {dup:?}; A and B count {:?} and {:?} of {total}",
            common::supervisor::global_count(&sups[0]).await,
            common::supervisor::global_count(&sups[1]).await,
        );
        max_names = max_names.max(names_took);
        max_children = max_children.max(children_took);
        names_checked += keys.len();
        println!(
            "kill -9 elixir trial {trial}: {} names gone {names_took:?} ({} sync intervals) after nodedown; its {on_victim} children of {total} running again, each once, {children_took:?} ({} sync intervals) after",
            keys.len(),
            names_took.as_millis() as u64 / SYNC_MS,
            children_took.as_millis() as u64 / SYNC_MS,
        );
    }
    println!(
        "CHAOS scenario=3:kill9_elixir_names trials={trials} faults={trials} checked={names_checked} lost=0 dup=0 max_rss_kib=- settle_ms={}",
        max_names.as_millis()
    );
    println!(
        "CHAOS scenario=3:kill9_elixir_children trials={trials} faults={trials} checked={total} lost=0 dup=0 max_rss_kib=- settle_ms={}",
        max_children.as_millis()
    );
    println!("scenario 3 elixir: {on_victims} children ran on the killed Elixir members and each ran again exactly once on A or B");
    drop(sups);
    a.shutdown();
    b.shutdown();
}

/// A sink counting `{seq, N}` messages and the gaps in N; answers
/// `{report, Pid}` with `{seq_report, Count, Gaps}`.
fn seq_sink(node: &Node) -> Pid {
    node.spawn(|mut p: Process| async move {
        let (mut count, mut gaps, mut last) = (0i64, 0i64, 0i64);
        loop {
            let m = match p.receive().await {
                Ok(m) => m,
                Err(e) => return e.into(),
            };
            match term::as_tuple(&m) {
                Some([tag, n]) if term::is_atom(tag, "seq") => {
                    let n = term::as_i64(n).unwrap_or(0);
                    count += 1;
                    if n != last + 1 {
                        gaps += 1;
                    }
                    last = n;
                }
                Some([tag, Term::Pid(to)]) if term::is_atom(tag, "report") => {
                    p.send(
                        to,
                        beam_peer::tup![
                            term::atom("seq_report"),
                            term::int(count),
                            term::int(gaps)
                        ],
                    );
                }
                _ => {}
            }
        }
    })
}

/// The soak registries' `lost_member_grace`, longer than a cut (10 s).
/// With Horde's rule (no grace) the cut-off member drops every name of
/// the members it lost, and those removals reach them at the heal: a
/// 75 s soak lost 215 of 465 names registered on A and B that way
/// (Horde #258). The grace is the answer, so the soak runs with it.
const SOAK_GRACE: Duration = Duration::from_secs(60);

/// Names and children alive at once in the soak: the oldest end as new
/// ones come (about 50 s of names and 50 s of children).
const SOAK_LIVE_NAMES: usize = 500;
const SOAK_LIVE_CHILDREN: usize = 100;

/// The soak's child module, run by [`soak_member`]s as a Rust worker.
const SOAK_WORKER: &str = "Elixir.Soak.Worker";

/// A Horde.DynamicSupervisor member `name` on `node` (UniformDistribution,
/// `members: :auto`) whose children are in `live` while they run.
async fn soak_member(
    rt: &NsRuntime,
    node: &Node,
    name: &str,
    live: &Live,
    log: &SoakLog,
) -> Supervisor {
    let log = log.clone();
    let opts = SupervisorOptions::new(name).sync_interval(SYNC_MS).worker(
        SOAK_WORKER,
        common::supervisor::live_worker(live.clone(), move |arg, node| {
            log.event(format!("start {arg} on {node}"))
        }),
    );
    let node = node.clone();
    rt.run(async move { supervisor::start(&node, opts).expect("the member starts") })
        .await
}

/// Heap bytes of a list of strings the soak keeps.
fn strings_held(v: &[String]) -> usize {
    std::mem::size_of_val(v) + v.iter().map(String::capacity).sum::<usize>()
}

/// Heap bytes of the live-children map, roughly: a B-tree entry and a
/// vector per running child argument.
fn live_held(live: &Live) -> usize {
    let live = live.lock().unwrap();
    live.values()
        .map(|v| 64 + v.capacity() * std::mem::size_of::<(String, Pid)>())
        .sum()
}

/// What happened when in the soak, for its failure reports: child starts,
/// acknowledgements and faults, each with the seconds since it began.
#[derive(Clone)]
struct SoakLog {
    began: Instant,
    events: std::sync::Arc<std::sync::Mutex<Vec<(f64, String)>>>,
}

impl SoakLog {
    fn new() -> SoakLog {
        SoakLog {
            began: Instant::now(),
            events: Default::default(),
        }
    }

    /// Bytes the log itself holds on the heap (it grows with every event,
    /// and the soak's heap figure counts it).
    fn held_bytes(&self) -> usize {
        let events = self.events.lock().unwrap();
        events.capacity() * std::mem::size_of::<(f64, String)>()
            + events.iter().map(|(_, e)| e.capacity()).sum::<usize>()
    }

    fn event(&self, what: String) {
        let at = self.began.elapsed().as_secs_f64();
        self.events.lock().unwrap().push((at, what));
    }

    /// Child `arg` last started on a node that was killed less than
    /// `window` later.
    fn lost_with_its_node(&self, arg: i64, window: Duration) -> bool {
        let start = format!("start {arg} on ");
        let events = self.events.lock().unwrap();
        let Some((at, node)) = events
            .iter()
            .rev()
            .find_map(|(t, e)| Some((*t, e.strip_prefix(&start)?.to_string())))
        else {
            return false;
        };
        let killed = format!("fault: {node} killed");
        events
            .iter()
            .any(|(t, e)| *e == killed && *t >= at && *t - at < window.as_secs_f64())
    }

    /// The events of child `arg` and every fault, in order.
    fn story(&self, arg: i64) -> Vec<String> {
        let (start, acked) = (format!("start {arg} on "), format!("acked {arg} "));
        let terminated = format!("terminated {arg}");
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e.starts_with(&start)
                    || e.starts_with(&acked)
                    || *e == terminated
                    || e.starts_with("fault")
            })
            .map(|(t, e)| format!("{t:.1}s {e}"))
            .collect()
    }
}

/// Scenario 6, the soak (scripts/chaos.sh; `CHAOS_SOAK_SECS`, default 1800):
/// three Rust members in namespaces with a registry, a
/// Horde.DynamicSupervisor and `echo`; A streams numbered messages to a
/// sink on B (a connection no fault touches) and calls `echo` on B and C
/// every 10 ms; a name is registered every 100 ms on A or B; A starts a
/// child every 500 ms (placed on any member by the ring); every 30 s (`CHAOS_SOAK_FAULT_SECS`) C is
/// either cut off for 10 s and reconnected, or killed (its runtime shut
/// down at once) and restarted under a new name, its member with it.
/// The oldest names (their holders killed) and children (terminated
/// through the supervisor) end as new ones come, so the live state stays
/// bounded and memory growth means a leak. Reported: messages lost or out
/// of order on A->B (must be 0), call errors by kind, live names gone and
/// ended names still found (must be 0), acknowledged children that do not
/// run exactly once, and ended ones that run, on the members alive at the
/// end once settled (must be 0; a child whose node was killed before a
/// sync could carry its entry is counted apart), and the test process's
/// RSS every 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the 30-minute soak: scripts/chaos.sh runs it"]
async fn soak_mixed_traffic_with_a_fault_every_30_s() {
    if !netns::available_or_skip("soak_mixed_traffic_with_a_fault_every_30_s") {
        return;
    }
    let secs: u64 = std::env::var("CHAOS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1800);
    let net = Net::new(3).expect("namespaces");
    let mut rts: Vec<NsRuntime> = (0..3).map(|i| net.runtime(i)).collect();
    let mut nodes = Vec::new();
    for (i, rt) in rts.iter().enumerate() {
        nodes.push(ns_node(&net, rt, ["sa", "sb", "sc"][i], i).await);
    }
    let name = format!("Elixir.{}", common::unique("Soak"));
    let sup_name = format!("Elixir.{}", common::unique("SoakSup"));
    let live = Live::default();
    let log = SoakLog::new();
    let mut regs = Vec::new();
    let mut sups = Vec::new();
    for (i, rt) in rts.iter().enumerate() {
        regs.push(ns_registry(rt, &nodes[i], &name, SOAK_GRACE).await);
        sups.push(soak_member(rt, &nodes[i], &sup_name, &live, &log).await);
        let n = nodes[i].clone();
        rt.run(async move { beam_peer::demo::start_echo_and_sink(&n) })
            .await
            .expect("echo");
    }
    netns::join_first(&rts, &nodes).await;
    let sink = {
        let b = nodes[1].clone();
        rts[1]
            .run(async move {
                let s = seq_sink(&b);
                b.register("soak_sink", &s).expect("registers");
                s
            })
            .await
    };
    let rss_start = netns::rss_kib(std::process::id()).unwrap_or(0);
    let heap_start = common::heap::live_kib();
    let mut rss_max = rss_start;
    let started = Instant::now();
    let (a, b_name) = (nodes[0].clone(), nodes[1].name().to_string());
    let mut c_name = nodes[2].name().to_string();
    let mut sent: i64 = 0;
    let mut call_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut calls = 0u64;
    let mut faults = 0u64;
    // The live names and children (a bounded set: the oldest are ended as
    // new ones come, so memory growth means a leak, not a larger state),
    // and the ones ended, which must stay gone.
    let mut names: std::collections::VecDeque<(String, usize, Pid)> = Default::default();
    let mut names_ended: Vec<String> = Vec::new();
    let mut registered = 0usize;
    let mut acked: std::collections::VecDeque<i64> = Default::default();
    let mut children_ended: Vec<i64> = Vec::new();
    let mut acknowledged = 0usize;
    let mut start_errors: BTreeMap<String, u64> = BTreeMap::new();
    let sender = rts[0]
        .run({
            let a = a.clone();
            async move { a.process() }
        })
        .await;
    let every = Duration::from_secs(
        std::env::var("CHAOS_SOAK_FAULT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let mut next_fault = every;
    let mut rss_at = Instant::now();
    // `CHAOS_SOAK_WITHOUT=messages,calls,names,children,faults` leaves
    // parts out (to tell which one a memory growth comes with).
    let left_out = std::env::var("CHAOS_SOAK_WITHOUT").unwrap_or_default();
    let without = |part: &str| left_out.split(',').any(|p| p == part);
    let mut tick = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        tick += 1;
        // 10 messages each 10 ms (1,000/s) to B's sink.
        for _ in 0..(if without("messages") { 0 } else { 10 }) {
            sent += 1;
            sender.send(
                beam_peer::Dest::Remote("soak_sink".into(), b_name.clone()),
                beam_peer::tup![term::atom("seq"), term::int(sent)],
            );
        }
        for target in [b_name.clone(), c_name.clone()] {
            if without("calls") {
                break;
            }
            let a2 = a.clone();
            let r = rts[0]
                .run(async move {
                    let mut p = a2.process();
                    p.call(
                        beam_peer::Dest::Remote("echo".into(), target),
                        term::atom("hi"),
                        Duration::from_secs(5),
                    )
                    .await
                })
                .await;
            calls += 1;
            if let Err(e) = r {
                *call_errors.entry(e.to_string()).or_default() += 1;
            }
        }
        if tick.is_multiple_of(10) && !without("names") {
            let i = (tick / 10 % 2) as usize;
            let k = format!("soak-{tick}");
            let h = holder(&rts[i], &nodes[i], sender.pid()).await;
            register(&rts[i], &regs[i], &k, "soak", &h).await;
            names.push_back((k, i, h));
            registered += 1;
            if names.len() > SOAK_LIVE_NAMES {
                if let Some((k, i, h)) = names.pop_front() {
                    // Its holder traps exits: `kill` ends it, and the
                    // registry's link takes its name.
                    nodes[i].exit(sender.pid(), &h, term::atom("kill"));
                    names_ended.push(k);
                }
            }
        }
        if tick % 50 == 25 && !without("children") {
            let arg = tick as i64;
            match sups[0]
                .start_child(
                    common::supervisor::spec(SOAK_WORKER, arg),
                    Duration::from_secs(5),
                )
                .await
            {
                Ok(r) if matches!(term::as_tuple(&r), Some([ok, _]) if term::is_atom(ok, "ok")) => {
                    log.event(format!("acked {arg} {r}"));
                    acked.push_back(arg);
                    acknowledged += 1;
                }
                Ok(r) => *start_errors.entry(r.to_string()).or_default() += 1,
                Err(e) => *start_errors.entry(e.to_string()).or_default() += 1,
            }
        }
        if acked.len() > SOAK_LIVE_CHILDREN {
            // One of the oldest children ends through the supervisor, once
            // it runs exactly once (not while a failover is under way; one
            // lost with its node runs nowhere and stays for the end's
            // count). Every tick, so the ends keep up with the starts
            // however long a tick takes.
            let (a_name, b_name) = (nodes[0].name(), nodes[1].name());
            let chosen = {
                let live = live.lock().unwrap();
                acked.iter().take(20).enumerate().find_map(|(i, arg)| {
                    // Entries of killed C nodes stay in `live` (their
                    // monitors died with them): only the live nodes count.
                    let here: Vec<&(String, Pid)> = live
                        .get(arg)?
                        .iter()
                        .filter(|(n, _)| n == a_name || n == b_name || *n == c_name)
                        .collect();
                    match here.as_slice() {
                        [(_, pid)] => Some((i, *arg, pid.clone())),
                        _ => None,
                    }
                })
            };
            if let Some((i, arg, pid)) = chosen {
                match sups[0].terminate_child(&pid, Duration::from_secs(5)).await {
                    Ok(r) if term::is_atom(&r, "ok") => {
                        log.event(format!("terminated {arg}"));
                        acked.remove(i);
                        children_ended.push(arg);
                    }
                    Ok(r) => *start_errors.entry(format!("terminate: {r}")).or_default() += 1,
                    Err(e) => *start_errors.entry(format!("terminate: {e}")).or_default() += 1,
                }
            }
        }
        if rss_at.elapsed() >= Duration::from_secs(10) {
            rss_at = Instant::now();
            if let Some(r) = netns::rss_kib(std::process::id()) {
                let own = log.held_bytes() + strings_held(&names_ended) + live_held(&live);
                log.event(format!(
                    "rss {r} KiB heap {} KiB records {} KiB",
                    common::heap::live_kib(),
                    own / 1024
                ));
                rss_max = rss_max.max(r);
            }
        }
        if started.elapsed() >= next_fault && !without("faults") {
            next_fault += every;
            faults += 1;
            if !faults.is_multiple_of(2) {
                log.event(format!("fault: {c_name} cut off for 10 s"));
                net.partition(&[2]);
                tokio::time::sleep(Duration::from_secs(10)).await;
                net.heal();
                let (a2, c) = (a.clone(), c_name.clone());
                let _ = rts[0].run(async move { a2.connect(&c).await }).await;
            } else {
                log.event(format!("fault: {c_name} killed"));
                rts[2].kill();
                rts[2] = net.runtime(2);
                let c = ns_node(&net, &rts[2], "sc", 2).await;
                regs[2] = ns_registry(&rts[2], &c, &name, SOAK_GRACE).await;
                sups[2] = soak_member(&rts[2], &c, &sup_name, &live, &log).await;
                let (c2, a_name) = (c.clone(), a.name().to_string());
                rts[2]
                    .run(async move {
                        beam_peer::demo::start_echo_and_sink(&c2).expect("echo");
                        c2.join(&a_name).await
                    })
                    .await
                    .expect("restarted C joins");
                c_name = c.name().to_string();
                nodes[2] = c;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What B's sink got, once the last messages had time to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = {
        let a2 = a.clone();
        let b = b_name.clone();
        rts[0]
            .run(async move {
                let mut p = a2.process();
                p.send(
                    beam_peer::Dest::Remote("soak_sink".into(), b),
                    beam_peer::tup![term::atom("report"), Term::Pid(p.pid().clone())],
                );
                p.receive_timeout(Duration::from_secs(10)).await
            })
            .await
    };
    let Ok(Some(report)) = report else {
        panic!("no report from the sink {sink}")
    };
    let Some([_, count, gaps]) = term::as_tuple(&report) else {
        panic!("{report}")
    };
    let (count, gaps) = (
        term::as_i64(count).unwrap_or(-1),
        term::as_i64(gaps).unwrap_or(-1),
    );
    // Every acknowledged child runs once on the members alive now.
    let alive: BTreeSet<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    // Lost at their node's kill before any sync could carry their entry
    // (started on C less than two sync intervals before C was killed):
    // Horde's window too, its `{:ok, pid}` says the child started, not that
    // another member knows it. Reported apart, not counted as lost.
    let before_sync: BTreeSet<i64> = acked
        .iter()
        .copied()
        .filter(|a| log.lost_with_its_node(*a, Duration::from_millis(2 * SYNC_MS)))
        .collect();
    let once = |live: &Live| {
        let c = common::supervisor::live_counts(live, |n| alive.contains(n));
        let lost = acked
            .iter()
            .filter(|a| !before_sync.contains(a) && c.get(a).is_none_or(|&n| n == 0))
            .count();
        let dup = acked
            .iter()
            .filter(|a| c.get(a).is_some_and(|&n| n > 1))
            .count();
        let ended = children_ended
            .iter()
            .filter(|a| c.get(a).is_some_and(|&n| n > 0))
            .count();
        (lost, dup + ended)
    };
    let child_settle = settle(|| once(&live) == (0, 0)).await;
    let (children_lost, children_dup) = once(&live);
    let missing: Vec<&String> = names
        .iter()
        .filter(|(k, _, _)| regs[0].lookup(&key(k)).is_none())
        .map(|(k, _, _)| k)
        .collect();
    let stale: Vec<&String> = names_ended
        .iter()
        .filter(|k| regs.iter().any(|r| r.lookup(&key(k)).is_some()))
        .collect();
    let rss_end = netns::rss_kib(std::process::id()).unwrap_or(0);
    // What of the RSS is memory the allocator holds free: glibc gives it
    // back to the kernel on `malloc_trim`.
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) };
    let rss_trimmed = netns::rss_kib(std::process::id()).unwrap_or(0);
    let rss_by_fault: Vec<String> = log
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(t, e)| {
            let (rss, rest) = e.strip_prefix("rss ")?.split_once(" KiB heap ")?;
            let (heap, own) = rest.split_once(" KiB records ")?;
            Some(format!(
                "{t:.0}s:{rss}/{heap}/{}",
                own.trim_end_matches(" KiB")
            ))
        })
        .collect();
    println!(
        "soak RSS/heap held/the soak's own records in it (KiB) every 10 s: {}",
        rss_by_fault.join(" ")
    );
    let own_end = (log.held_bytes() + strings_held(&names_ended) + live_held(&live)) / 1024;
    println!(
        "soak {secs}s: {sent} messages A->B, {} lost, {gaps} gaps; {calls} calls, errors {call_errors:?}; {registered} names registered on A/B ({} ended, {} of them still found; {} live, {} of them gone); {acknowledged} children acknowledged ({} ended), {children_lost} lost, {} lost with their node before any sync, {children_dup} duplicated or not ended, settled in {child_settle:?}, supervisor errors {start_errors:?}; {faults} faults; RSS {rss_start} -> {rss_end} KiB (max {rss_max}; {rss_trimmed} after malloc_trim), heap held {heap_start} -> {} KiB, of it the soak's own records {own_end} KiB",
        sent - count,
        names_ended.len(),
        stale.len(),
        names.len(),
        missing.len(),
        children_ended.len(),
        before_sync.len(),
        common::heap::live_kib()
    );
    println!(
        "CHAOS scenario=6:soak_{secs}s trials=1 faults={faults} checked={} lost={} dup={children_dup} max_rss_kib={rss_max} settle_ms={}",
        sent as usize + registered + acknowledged,
        (sent - count) as usize + missing.len() + children_lost,
        child_settle.map_or("-".to_string(), |d| d.as_millis().to_string())
    );
    assert_eq!(
        count, sent,
        "messages lost on A->B, a connection that stayed up"
    );
    assert_eq!(gaps, 0, "messages out of order on A->B");
    assert!(
        missing.is_empty(),
        "names registered on A/B gone: {missing:?}"
    );
    assert!(stale.is_empty(), "ended names still found: {stale:?}");
    if (children_lost, children_dup) != (0, 0) {
        let c = common::supervisor::live_counts(&live, |n| alive.contains(n));
        let wrong: Vec<i64> = acked
            .iter()
            .filter(|a| !before_sync.contains(a) && c.get(a) != Some(&1))
            .chain(
                children_ended
                    .iter()
                    .filter(|a| c.get(a).is_some_and(|&n| n > 0)),
            )
            .copied()
            .collect();
        for a in wrong.iter().take(3) {
            eprintln!(
                "child {a}: runs {:?} times on the live members; where it ran: {:?}",
                c.get(a),
                live.lock().unwrap().get(a)
            );
            for e in log.story(*a) {
                eprintln!("  {e}");
            }
        }
        panic!("acknowledged children lost or duplicated: {wrong:?}");
    }
    for n in &nodes {
        n.shutdown();
    }
}
