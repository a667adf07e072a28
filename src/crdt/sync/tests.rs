//! Rust-only behaviour of [`Replica`]: convergence of three replicas over an
//! in-memory bus that reorders, delays and drops (on "kill"), the rules for
//! outstanding rounds and monitors, and rejection of malformed messages
//! without any state change.

use super::*;
use crate::term::{binary, int, Pid, Reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn node(i: usize) -> Term {
    atom(&format!("n{i}@127.0.0.1"))
}

fn name(i: usize) -> Term {
    tuple(vec![elixir::module("Fix.Crdt"), node(i)])
}

fn pid(i: usize, incarnation: u32) -> Term {
    Term::Pid(Pid::new(format!("n{i}@127.0.0.1"), 100 + incarnation, 0, 1))
}

fn cfg(i: usize, incarnation: u32) -> Config {
    Config::horde(1000 + i as i64, pid(i, incarnation), Some(name(i)))
}

// ---- the bus ----------------------------------------------------------------

struct Node {
    replica: Replica,
    alive: bool,
    incarnation: u32,
    /// What `Action::Persist` last wrote.
    stored: Term,
}

/// Odd nodes answer like replica processes (own keys listed where the peer
/// has none, only worthwhile keys asked for), even ones exactly as upstream.
fn lists_own_keys(i: usize) -> bool {
    i % 2 == 1
}

struct Bus {
    nodes: Vec<Node>,
    /// (deliver at, destination index, its incarnation, message): a message
    /// queued for a process that died is lost, even if a new one takes the name.
    queue: Vec<(u64, usize, u32, Term)>,
    now: u64,
    rng: StdRng,
    next_ref: u32,
    /// Every message delivered, for inspecting rounds.
    log: Vec<Term>,
    max_delay: u64,
    kills: usize,
    /// (watcher, target, reference): who to tell when a node dies.
    monitors: Vec<(usize, Term, Term)>,
    /// Each node's `diff_depth`, kept across restarts.
    depths: Vec<u32>,
    /// [`Config::exact_context`] of every node.
    exact: bool,
    /// [`Config::push_writes`] of every node.
    push: bool,
}

impl Bus {
    fn new(n: usize, seed: u64) -> Bus {
        Bus::with_depths(seed, vec![DIFF_DEPTH; n])
    }

    fn cfg(&self, i: usize, incarnation: u32) -> Config {
        let mut c = cfg(i, incarnation);
        c.diff_depth = self.depths[i];
        c.list_own_keys = lists_own_keys(i);
        c.exact_context = self.exact;
        c.push_writes = self.push;
        c
    }

    /// One node per entry of `depths`, each cutting its diffs that deep.
    fn with_depths(seed: u64, depths: Vec<u32>) -> Bus {
        let nodes = (0..depths.len())
            .map(|i| {
                let mut c = cfg(i, 0);
                c.diff_depth = depths[i];
                c.list_own_keys = lists_own_keys(i);
                let replica = Replica::new(c);
                let stored = replica.storage_term();
                Node {
                    replica,
                    alive: true,
                    incarnation: 0,
                    stored,
                }
            })
            .collect();
        Bus {
            nodes,
            queue: Vec::new(),
            now: 0,
            rng: StdRng::seed_from_u64(seed),
            next_ref: 0,
            log: Vec::new(),
            max_delay: 50,
            monitors: Vec::new(),
            kills: 0,
            depths,
            exact: true,
            push: false,
        }
    }

    /// Which live node a `send` destination reaches: a pid only reaches
    /// the incarnation it belongs to, a name reaches whoever holds it.
    fn resolve(&self, to: &Term) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.alive
                && (to == &n.replica.config().self_pid
                    || Some(to) == n.replica.config().self_name.as_ref())
        })
    }

    fn run_actions(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    if let Some(dest) = self.resolve(&to) {
                        let delay = self.rng.random_range(0..=self.max_delay);
                        let inc = self.nodes[dest].incarnation;
                        self.queue.push((self.now + delay, dest, inc, msg));
                    }
                }
                Action::Monitor { target } => {
                    let r = Term::Reference(Box::new(Reference {
                        node: crate::term::Atom::from("n@127.0.0.1"),
                        id: vec![self.next_ref, 0, 0],
                        creation: 1,
                    }));
                    self.next_ref += 1;
                    // Half the nodes bind references, half rely on the DOWN's object.
                    if from.is_multiple_of(2) {
                        self.nodes[from].replica.bind_monitor(&target, r.clone());
                    }
                    if self.resolve(&target).is_none() {
                        // Monitoring something dead gives an immediate DOWN.
                        let inc = self.nodes[from].incarnation;
                        self.queue.push((self.now, from, inc, down(r, target)));
                    } else {
                        self.monitors.push((from, target, r));
                    }
                }
                Action::Demonitor { target, .. } => {
                    self.monitors
                        .retain(|(f, t, _)| !(*f == from && *t == target));
                }
                Action::Persist => {
                    self.nodes[from].stored = self.nodes[from].replica.storage_term();
                }
                Action::Diffs(_) => {}
                // Every simulated node is a Rust replica: none has a say.
                Action::AskMapSetForm { .. } => {}
            }
        }
    }

    fn deliver_due(&mut self) {
        loop {
            let due: Vec<usize> = (0..self.queue.len())
                .filter(|&i| self.queue[i].0 <= self.now)
                .collect();
            if due.is_empty() {
                return;
            }
            // Random order among the due messages.
            let pick = due[self.rng.random_range(0..due.len())];
            let (_, dest, inc, msg) = self.queue.swap_remove(pick);
            if !self.nodes[dest].alive || self.nodes[dest].incarnation != inc {
                continue;
            }
            self.log.push(msg.clone());
            let actions = self.nodes[dest]
                .replica
                .handle_message(&msg)
                .unwrap_or_else(|e| panic!("rejected at {dest}: {msg:?}: {e}"));
            self.run_actions(dest, actions);
        }
    }

    fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            self.deliver_due();
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive {
                    let a = self.nodes[i].replica.tick(self.now);
                    self.run_actions(i, a);
                }
            }
        }
    }

    fn kill(&mut self, i: usize) {
        self.kills += 1;
        self.nodes[i].alive = false;
        let watchers: Vec<(usize, Term, Term)> = self
            .monitors
            .iter()
            .filter(|(_, t, _)| *t == name(i) || *t == self.nodes[i].replica.config().self_pid)
            .cloned()
            .collect();
        let own_pid = self.nodes[i].replica.config().self_pid.clone();
        // Its monitors die with it, and nobody watches it any more.
        self.monitors
            .retain(|(w, t, _)| *w != i && *t != name(i) && *t != own_pid);
        for (w, t, r) in watchers {
            let inc = self.nodes[w].incarnation;
            self.queue.push((self.now, w, inc, down(r, t)));
        }
    }

    /// Restarts from storage with a new pid, as a supervisor would.
    fn revive(&mut self, i: usize) {
        self.nodes[i].incarnation += 1;
        let state = AwLwwMap::from_term(&self.nodes[i].stored).expect("stored state");
        let c = self.cfg(i, self.nodes[i].incarnation);
        let n = &mut self.nodes[i];
        n.replica = Replica::with_state(c, state);
        n.alive = true;
        let all: Vec<Term> = (0..self.nodes.len()).map(name).collect();
        let a = self.nodes[i].replica.set_neighbours(all);
        self.run_actions(i, a);
    }

    fn reads(&self) -> Vec<BTreeMap<OrdTerm, Term>> {
        self.nodes.iter().map(|n| n.replica.read()).collect()
    }
}

fn down(r: Term, obj: Term) -> Term {
    tuple(vec![
        atom("DOWN"),
        r,
        atom("process"),
        obj,
        atom("noconnection"),
    ])
}

/// Returns how many kills happened.
fn converge(seed: u64) -> usize {
    converge_with(Bus::new(3, seed), seed)
}

fn converge_with(mut bus: Bus, seed: u64) -> usize {
    let all: Vec<Term> = (0..3).map(name).collect();
    for i in 0..3 {
        // Each replica lists itself too, as Horde's member lists do.
        let a = bus.nodes[i].replica.set_neighbours(all.clone());
        bus.run_actions(i, a);
    }
    let mut ts = 0i64;
    for _step in 0..400 {
        let i = bus.rng.random_range(0..3);
        if bus.nodes[i].alive {
            let key = binary(format!("k{}", bus.rng.random_range(0..25)));
            let actions = if bus.rng.random_bool(0.7) {
                // Writers' clocks are not in step: conflicts resolve by ts.
                ts += 1;
                let t = ts * 10 + bus.rng.random_range(-30..30);
                bus.nodes[i]
                    .replica
                    .put(key, int(bus.rng.random_range(0..1000)), t)
            } else {
                bus.nodes[i].replica.delete(key)
            };
            bus.run_actions(i, actions);
        }
        if bus.rng.random_bool(0.01) {
            let k = bus.rng.random_range(0..3);
            if bus.nodes[k].alive {
                bus.kill(k);
            } else {
                bus.revive(k);
            }
        }
        let ms = bus.rng.random_range(0..40);
        bus.advance(ms);
    }
    for k in 0..3 {
        if !bus.nodes[k].alive {
            bus.revive(k);
        }
    }
    // Quiet period: no writes, until every read agrees.
    let mut rounds = 0;
    while {
        let r = bus.reads();
        r[0] != r[1] || r[1] != r[2]
    } {
        rounds += 1;
        assert!(
            rounds < 100,
            "seed {seed}: no convergence after 100 intervals"
        );
        bus.advance(300);
    }
    // Let in-flight rounds finish (a round at diff depth 1 takes a step per
    // level, each up to 50 ms on the bus), then watch two idle intervals:
    // with delivery delays one interval may see a pair's round twice or not
    // at all, two always see each pair.
    bus.advance(2000);
    let before = bus.reads();
    bus.log.clear();
    bus.advance(600);
    assert_eq!(before, bus.reads());
    let mut pairs = BTreeSet::new();
    for msg in &bus.log {
        let parts = as_tuple(msg).unwrap();
        assert!(
            !is_atom(&parts[0], "get_diff"),
            "seed {seed}: idle round asked for keys"
        );
        if is_atom(&parts[0], "diff") {
            assert_eq!(parts.len(), 2, "seed {seed}: idle round shipped state");
            let d = SyncDiff::from_term(&parts[1]).unwrap();
            assert!(d.continuation.keys.is_empty(), "seed {seed}: keys moved");
            assert_eq!(
                d.originator, d.from,
                "seed {seed}: idle rounds take one step"
            );
            pairs.insert((OrdTerm(d.from), OrdTerm(d.to)));
        }
    }
    assert_eq!(
        pairs.len(),
        6,
        "seed {seed}: every pair syncs each interval"
    );
    assert!(
        !bus.reads()[0].is_empty(),
        "seed {seed}: something survived"
    );
    for (i, n) in bus.nodes.iter().enumerate() {
        // Idle and equal, every replica has vouched its prefix to the
        // others: no dot is kept above a gap, no tombstone is left.
        assert_eq!(
            n.replica.exact_backlog(),
            (0, 0),
            "seed {seed}: replica {i} still keeps dots above gaps"
        );
    }
    bus.kills
}

#[test]
fn three_replicas_converge() {
    let kills: usize = (0..12).map(converge).sum();
    assert!(kills >= 12, "the runs must include kills ({kills})");
}

#[test]
fn replicas_cutting_diffs_at_different_depths_converge() {
    // Upstream's 8 next to compact depths, down to one level per step.
    for seed in 200..206 {
        let depths = vec![DIFF_DEPTH, COMPACT_DIFF_DEPTH, 1 + (seed as u32 % 3)];
        converge_with(Bus::with_depths(seed, depths), seed);
    }
}

#[test]
fn three_replicas_converge_with_upstream_resend() {
    // Upstream 0.6.4's policy: a new round on every tick even while one runs.
    for seed in 100..104 {
        let mut bus = Bus::new(3, seed);
        for n in &mut bus.nodes {
            let mut c = n.replica.config().clone();
            c.resend_while_outstanding = true;
            n.replica = Replica::new(c);
        }
        let all: Vec<Term> = (0..3).map(name).collect();
        for i in 0..3 {
            let a = bus.nodes[i].replica.set_neighbours(all.clone());
            bus.run_actions(i, a);
        }
        for step in 0..200i64 {
            let i = bus.rng.random_range(0..3);
            let key = binary(format!("k{}", bus.rng.random_range(0..25)));
            let a = bus.nodes[i].replica.put(key, int(step), step * 10);
            bus.run_actions(i, a);
            let ms = bus.rng.random_range(0..40);
            bus.advance(ms);
        }
        bus.advance(3000);
        let r = bus.reads();
        assert!(r[0] == r[1] && r[1] == r[2], "seed {seed}");
    }
}

// ---- single-replica rules ----------------------------------------------------

fn sends(actions: &[Action]) -> Vec<(Term, Term)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } => Some((to.clone(), msg.clone())),
            _ => None,
        })
        .collect()
}

fn ack(neighbour: Term) -> Term {
    tuple(vec![atom("ack_diff"), neighbour])
}

/// A replica with data, two neighbours, one of them bound by reference, and
/// a round outstanding with each.
fn busy() -> Replica {
    let mut r = Replica::new(cfg(0, 0));
    r.put(binary(*b"a"), int(1), 10);
    r.put(binary(*b"b"), int(2), 11);
    r.delete(binary(*b"a"));
    r.set_neighbours(vec![name(1), pid(2, 0)]);
    r.bind_monitor(&name(1), binary(*b"ref-1"));
    r
}

#[test]
fn one_round_per_neighbour_until_ack_or_down() {
    let mut r = busy();
    assert_eq!(r.outstanding().count(), 2);
    assert!(sends(&r.sync()).is_empty(), "rounds still open");
    r.handle_message(&ack(name(1))).unwrap();
    let s = sends(&r.sync());
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, name(1));
    // DOWN by reference clears the round and the monitor; the next sync
    // monitors again and starts a round.
    let d = down(binary(*b"ref-1"), name(1));
    r.handle_message(&d).unwrap();
    assert_eq!(r.outstanding().count(), 1);
    let a = r.sync();
    assert!(a.contains(&Action::Monitor { target: name(1) }));
    assert_eq!(sends(&a).len(), 1);
    // DOWN by object for the neighbour without a bound reference.
    r.handle_message(&down(binary(*b"whatever"), pid(2, 0)))
        .unwrap();
    assert_eq!(r.outstanding().count(), 1);
}

#[test]
fn a_round_lost_without_a_down_is_given_up_after_some_intervals() {
    let mut r = busy();
    let interval = r.config().sync_interval;
    let start = r.next_sync_at().unwrap_or(0);
    // No ack and no DOWN ever come: ticks keep quiet until the round is stale.
    let mut t = start;
    while t < start + interval * (STALE_ROUND_INTERVALS - 1) {
        assert!(sends(&r.tick(t)).is_empty(), "tick at {t}");
        t += interval;
    }
    let mut resent = 0;
    for _ in 0..3 {
        resent += sends(&r.tick(t)).len();
        t += interval;
    }
    assert_eq!(resent, 2, "a new round with each neighbour");
}

#[test]
fn a_round_that_keeps_moving_is_never_given_up() {
    let mut r = Replica::new(cfg(0, 0));
    r.put(binary(*b"a"), int(1), 10);
    let started = r.tick(0);
    let started = [started, r.set_neighbours(vec![name(1)])].concat();
    // The neighbour holds another key and asks for ours (`get_diff`); its
    // ack is never delivered here, so the round runs on (a step that found
    // the trees equal would end our round in place).
    let mut b = Replica::new(cfg(1, 0));
    b.put(binary(*b"b"), int(2), 10);
    let (_, ours) = sends(&started)
        .into_iter()
        .find(|(to, _)| to == &name(1))
        .expect("a round with the neighbour");
    let (_, reply) = sends(&b.handle_message(&ours).unwrap())
        .into_iter()
        .next()
        .expect("the neighbour answers");
    assert!(
        matches!(as_tuple(&reply), Some([t, _, _]) if is_atom(t, "get_diff")),
        "the neighbour asks: {reply}"
    );
    let interval = r.config().sync_interval;
    let mut t = 0;
    for _ in 0..STALE_ROUND_INTERVALS * 3 {
        t += interval;
        let new_rounds = sends(&r.tick(t));
        assert!(new_rounds.is_empty(), "round restarted at {t}");
        // A step of the same round comes back each interval.
        r.handle_message(&reply).unwrap();
    }
    // The neighbour's own rounds do not keep ours alive.
    let theirs = {
        let d = SyncDiff::from_term(&as_tuple(&reply).unwrap()[1]).unwrap();
        let d = SyncDiff {
            originator: name(1),
            ..d
        };
        tuple(vec![atom("diff"), d.to_term()])
    };
    let mut restarted = 0;
    for _ in 0..STALE_ROUND_INTERVALS + 2 {
        t += interval;
        restarted += sends(&r.tick(t)).len();
        let _ = r.handle_message(&theirs);
    }
    assert_eq!(restarted, 1, "a silent round of ours is given up once");
}

#[test]
fn set_neighbours_demonitors_and_forgets() {
    let mut r = busy();
    let a = r.set_neighbours(vec![pid(2, 0), name(0), pid(0, 0)]);
    assert_eq!(
        a[0],
        Action::Demonitor {
            target: name(1),
            monitor_ref: Some(binary(*b"ref-1"))
        }
    );
    // Itself (by name or pid) is never monitored nor synced; the pid
    // neighbour's round is still open.
    assert!(sends(&a).is_empty());
    assert!(!a.iter().any(|x| matches!(x, Action::Monitor { .. })));
    assert_eq!(
        r.outstanding().cloned().collect::<Vec<_>>(),
        vec![pid(2, 0)]
    );
    // The same list again as a message.
    let msg = tuple(vec![atom("set_neighbours"), list(vec![pid(2, 0)])]);
    assert!(r.handle_message(&msg).unwrap().is_empty());
}

#[test]
fn ticks_follow_the_interval() {
    let mut r = Replica::new(cfg(0, 0));
    r.set_neighbours(vec![name(1)]);
    r.handle_message(&ack(name(1))).unwrap();
    assert_eq!(sends(&r.tick(1_000)).len(), 1, "first tick syncs");
    r.handle_message(&ack(name(1))).unwrap();
    assert!(r.tick(1_299).is_empty());
    assert_eq!(sends(&r.tick(1_300)).len(), 1);
    assert_eq!(r.next_sync_at(), Some(1_600));
}

#[test]
fn a_full_round_between_two_replicas() {
    // A originates; B lacks A's key, so B asks A (get_diff) and acks; A
    // ships and does not ack itself again (upstream would: two acks).
    let mut a = Replica::new(cfg(0, 0));
    let mut b = Replica::new(cfg(1, 0));
    a.put(binary(*b"x"), int(7), 1);
    let start = sends(&a.set_neighbours(vec![name(1)]));
    assert_eq!(start.len(), 1);
    let mut to_b = vec![start[0].1.clone()];
    let mut to_a = Vec::new();
    let mut diffs = Vec::new();
    while !to_a.is_empty() || !to_b.is_empty() {
        for m in std::mem::take(&mut to_b) {
            for act in b.handle_message(&m).unwrap() {
                match act {
                    Action::Send { to, msg } => {
                        assert_eq!(to, pid(0, 0), "B answers A's pid");
                        to_a.push(msg)
                    }
                    Action::Diffs(d) => diffs.extend(d),
                    _ => {}
                }
            }
        }
        for m in std::mem::take(&mut to_a) {
            for (to, msg) in sends(&a.handle_message(&m).unwrap()) {
                if to == pid(0, 0) {
                    to_a.push(msg);
                } else {
                    assert_eq!(to, name(1), "A addresses B as given");
                    to_b.push(msg);
                }
            }
        }
    }
    assert_eq!(a.read(), b.read());
    assert_eq!(
        diffs,
        vec![awlww_map::Diff::Add {
            key: binary(*b"x"),
            value: int(7)
        }]
    );
    assert_eq!(a.outstanding().count(), 0);
}

#[test]
fn malformed_messages_change_nothing() {
    let r0 = busy();
    let good_diff = match &sends(&Replica::new(cfg(1, 0)).set_neighbours(vec![name(0)]))[0].1 {
        Term::Tuple(t) => t.elements[1].clone(),
        _ => unreachable!(),
    };
    let with = |field: &str, v: Term| match &good_diff {
        Term::Map(m) => {
            let mut m = m.clone();
            m.map.insert(atom(field), v);
            Term::Map(m)
        }
        _ => unreachable!(),
    };
    let mut deep = nil_list();
    for _ in 0..2_000 {
        deep = list(vec![deep]);
    }
    let state = r0.storage_term();
    let bad: Vec<Term> = vec![
        atom("nonsense"),
        int(5),
        tuple(vec![]),
        tuple(vec![int(1), int(2)]),
        tuple(vec![atom("diff"), atom("x")]),
        tuple(vec![atom("diff"), with("continuation", atom("x"))]),
        tuple(vec![atom("diff"), with("originator", pid(9, 9))]),
        tuple(vec![atom("diff"), with("__struct__", atom("Elixir.Other"))]),
        tuple(vec![atom("diff"), atom("state"), list(vec![])]),
        tuple(vec![atom("diff"), state.clone(), atom("not_a_list")]),
        tuple(vec![atom("diff"), state.clone(), list(vec![deep.clone()])]),
        tuple(vec![atom("get_diff"), good_diff.clone(), atom("x")]),
        tuple(vec![atom("get_diff"), atom("x"), list(vec![])]),
        tuple(vec![atom("ack_diff")]),
        tuple(vec![
            atom("DOWN"),
            binary(*b"nope"),
            atom("process"),
            name(7),
            atom("normal"),
        ]),
        tuple(vec![
            atom("DOWN"),
            binary(*b"ref-1"),
            atom("port"),
            name(1),
            atom("normal"),
        ]),
        tuple(vec![atom("set_neighbours"), atom("x")]),
        tuple(vec![atom("EXIT"), pid(3, 0), atom("killed")]),
    ];
    for m in &bad {
        let mut r = r0.clone();
        assert!(r.handle_message(m).is_err(), "accepted {m:?}");
        assert_eq!(r, r0, "changed by {m:?}");
    }
    let mut r = r0.clone();
    let op = tuple(vec![atom("add"), list(vec![deep])]);
    assert!(r.operation(&op, 1).is_err());
    assert!(r.operation(&atom("x"), 1).is_err());
    assert_eq!(r, r0);
}

fn nil_list() -> Term {
    list(vec![])
}

/// Delivers messages between two replicas, by name or pid, until none is
/// left; returns every message delivered.
fn exchange(rs: &mut [Replica; 2], first: Vec<Action>) -> Vec<Term> {
    let mut queue: std::collections::VecDeque<(usize, Term)> = Default::default();
    let mut log = Vec::new();
    let route = |rs: &[Replica; 2], to: &Term| {
        rs.iter()
            .position(|r| to == &r.config().self_pid || Some(to) == r.config().self_name.as_ref())
    };
    let push = |rs: &[Replica; 2],
                q: &mut std::collections::VecDeque<(usize, Term)>,
                acts: Vec<Action>| {
        for (to, msg) in sends(&acts) {
            if let Some(i) = route(rs, &to) {
                q.push_back((i, msg));
            }
        }
    };
    push(rs, &mut queue, first);
    while let Some((i, msg)) = queue.pop_front() {
        log.push(msg.clone());
        let acts = rs[i].handle_message(&msg).unwrap();
        push(rs, &mut queue, acts);
    }
    log
}

fn listing(i: usize) -> Replica {
    let mut c = cfg(i, 0);
    c.list_own_keys = true;
    Replica::new(c)
}

/// Two listing replicas: replica 0 holds 300 keys, replica 1 none.
fn full_and_empty() -> [Replica; 2] {
    let mut rs = [listing(0), listing(1)];
    for i in 0..300 {
        rs[0].put(int(i), int(i * 2), 10 + i);
    }
    rs
}

fn tagged(log: &[Term], tag: &str) -> usize {
    log.iter()
        .filter(|m| as_tuple(m).is_some_and(|p| is_atom(&p[0], tag) && p.len() == 3))
        .count()
}

#[test]
fn an_empty_originator_is_not_asked_for_values_it_cannot_have() {
    let mut rs = full_and_empty();
    // The empty replica starts a round with the full one: nothing can flow
    // its way in that round, and nothing is asked of it.
    let start = rs[1].set_neighbours(vec![name(0)]);
    let log = exchange(&mut rs, start);
    assert_eq!(tagged(&log, "get_diff"), 0, "{log:?}");
    assert_eq!(tagged(&log, "diff"), 0, "no state shipped");
    assert_eq!(rs[0].read().len(), 300);
    // The full one's own round fills the empty one.
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    assert_eq!(rs[1].read(), rs[0].read());
}

#[test]
fn an_originator_that_deleted_keys_is_still_asked_for_them() {
    let mut rs = full_and_empty();
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    assert_eq!(rs[1].read().len(), 300);
    // Replica 1 deletes everything: its tree is empty, its context has seen
    // every dot of replica 0's entries.
    for i in 0..300 {
        rs[1].delete(int(i));
    }
    rs[0].set_neighbours(vec![]);
    let start = rs[1].set_neighbours(vec![name(0)]);
    let log = exchange(&mut rs, start);
    assert_eq!(tagged(&log, "get_diff"), 1, "the deletes are asked for");
    assert!(rs[0].read().is_empty(), "the deletes reached replica 0");
}

// ---- the MapSet form follows the Elixir neighbours ----------------------------

fn asks(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AskMapSetForm { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

fn answer(i: usize, answer: Term) -> Term {
    tuple(vec![atom(MAPSET_FORM_ANSWER), node(i), answer])
}

/// The root hash of `r`'s state as a replica of `form` hashes it.
fn root_in(r: &Replica, form: MapSetForm) -> crate::crdt::merkle::Hash {
    let mut m = merkle_of(r.state(), form);
    m.update_hashes();
    m.root_hash()
}

#[test]
fn each_neighbour_node_is_asked_once_and_the_majority_form_wins() {
    let mut r = Replica::new(cfg(0, 0));
    r.put(binary(b"k".to_vec()), int(1), 5);
    assert_eq!(
        r.mapset_form(),
        MapSetForm::Sets2,
        "the default before any answer"
    );
    let a = r.set_neighbours(vec![name(0), name(1), name(2), name(3)]);
    assert_eq!(asks(&a), ["n1@127.0.0.1", "n2@127.0.0.1", "n3@127.0.0.1"]);
    // Asked once: the same nodes again ask nothing.
    assert!(asks(&r.set_neighbours(vec![name(1), name(2), name(3)])).is_empty());

    let versioned = elixir::mapset_in(MapSetForm::Versioned, []);
    let sets2 = elixir::mapset_in(MapSetForm::Sets2, []);
    r.handle_message(&answer(1, versioned.clone())).unwrap();
    assert_eq!(r.mapset_form(), MapSetForm::Versioned);
    // The merkle map is rebuilt in the new form at once.
    let mut m = r.merkle().clone();
    m.update_hashes();
    assert_eq!(m.root_hash(), root_in(&r, MapSetForm::Versioned));
    assert_ne!(m.root_hash(), root_in(&r, MapSetForm::Sets2));

    // A node that is not an Elixir node has no say.
    r.handle_message(&answer(2, atom("undefined"))).unwrap();
    assert_eq!(r.mapset_form(), MapSetForm::Versioned);
    // One each: the tie goes to the newer form.
    r.handle_message(&answer(3, sets2)).unwrap();
    assert_eq!(r.mapset_form(), MapSetForm::Sets2);
    let forms: Vec<_> = r.peer_mapset_forms().collect();
    assert_eq!(
        forms,
        [
            ("n1@127.0.0.1", Some(MapSetForm::Versioned)),
            ("n2@127.0.0.1", None),
            ("n3@127.0.0.1", Some(MapSetForm::Sets2)),
        ]
    );
    // A node that leaves takes its vote along.
    r.set_neighbours(vec![name(1), name(2)]);
    assert_eq!(r.mapset_form(), MapSetForm::Versioned);
}

#[test]
fn an_answer_for_a_node_never_asked_changes_nothing() {
    let mut r = Replica::new(cfg(0, 0));
    r.set_neighbours(vec![name(1)]);
    let versioned = elixir::mapset_in(MapSetForm::Versioned, []);
    r.handle_message(&answer(5, versioned)).unwrap();
    assert_eq!(r.mapset_form(), MapSetForm::Sets2);
    assert_eq!(r.peer_mapset_forms().count(), 0);
}

#[test]
fn a_fixed_form_asks_nobody_and_ships_that_form() {
    let mut c = cfg(0, 0);
    c.mapset = MapSetPolicy::Fixed(MapSetForm::Versioned);
    let mut r = Replica::new(c);
    r.put(binary(b"k".to_vec()), int(1), 5);
    assert!(asks(&r.set_neighbours(vec![name(1)])).is_empty());
    r.handle_message(&answer(1, elixir::mapset_in(MapSetForm::Sets2, [])))
        .unwrap();
    assert_eq!(r.mapset_form(), MapSetForm::Versioned);
    let stored = r.storage_term();
    assert_eq!(
        AwLwwMap::mapset_form_of(&stored),
        Some(MapSetForm::Versioned)
    );
}

#[test]
fn shipped_states_carry_the_current_form() {
    let mut r = Replica::new(cfg(0, 0));
    r.put(binary(b"k".to_vec()), int(1), 5);
    assert_eq!(
        AwLwwMap::mapset_form_of(&r.storage_term()),
        Some(MapSetForm::Sets2)
    );
    r.set_neighbours(vec![name(1)]);
    r.handle_message(&answer(1, elixir::mapset_in(MapSetForm::Versioned, [])))
        .unwrap();
    assert_eq!(
        AwLwwMap::mapset_form_of(&r.storage_term()),
        Some(MapSetForm::Versioned)
    );
    // A state in either form joins the same.
    for form in [MapSetForm::Versioned, MapSetForm::Sets2] {
        let term = r.state().to_term_in(form);
        assert_eq!(AwLwwMap::from_term(&term).as_ref(), Ok(r.state()));
    }
}

// ---- causal contexts we can vouch for ------------------------------------------

/// The loss found in `:active` redistribution, at its smallest. Replica X
/// writes `a` (dot x1) and then `b` (x2); F receives `b` first and
/// overwrites it, which removes x2. Upstream folds x2 into a compressed
/// context that now also claims x1, a dot F never received: `a` is refused
/// when it arrives, and F's round ships `a`'s absence under that context, so
/// X deletes its own live `a`. A replica keeping exact contexts neither
/// refuses `a` nor deletes it anywhere.
fn out_of_order_overwrite(exact: bool) -> [Replica; 2] {
    let mk = |i| {
        let mut c = cfg(i, 0);
        c.exact_context = exact;
        Replica::new(c)
    };
    let mut rs = [mk(0), mk(1)];
    let (a, b) = (binary("a"), binary("b"));
    rs[0].put(a.clone(), int(1), 10);
    rs[0].put(b.clone(), int(2), 20);
    // `b` reaches F alone, with X's whole context, as a round of X's whose
    // key list was computed before `a` was written would ship it.
    let form = rs[0].mapset_form();
    let only_b =
        rs[0]
            .state()
            .slice_term(std::slice::from_ref(&b), rs[0].state().dots.to_term(), form);
    rs[1]
        .handle_message(&tuple(vec![atom("diff"), only_b, list(vec![b.clone()])]))
        .unwrap();
    rs[1].put(b, int(3), 30);
    // F's round with X, then X's with F.
    let start = rs[1].set_neighbours(vec![name(0)]);
    exchange(&mut rs, start);
    rs[1].set_neighbours(vec![]);
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    rs
}

#[test]
fn an_entry_arriving_after_a_later_dot_was_overwritten_is_kept_everywhere() {
    let rs = out_of_order_overwrite(true);
    let want: BTreeMap<OrdTerm, Term> = [
        (OrdTerm(binary("a")), int(1)),
        (OrdTerm(binary("b")), int(3)),
    ]
    .into_iter()
    .collect();
    assert_eq!(rs[0].read(), want, "X keeps its own a");
    assert_eq!(rs[1].read(), want, "F takes a when it arrives");
}

#[test]
fn upstream_contexts_lose_that_entry() {
    // What DeltaCrdt 0.6.4 does (Config::exact_context off): a is gone on
    // both replicas, though nobody deleted it.
    let rs = out_of_order_overwrite(false);
    assert_eq!(rs[0].get(&binary("a")), None);
    assert_eq!(rs[1].get(&binary("a")), None);
    assert_eq!(rs[0].get(&binary("b")), Some(&int(3)));
}

#[test]
fn a_peer_that_holds_our_entries_fills_our_gaps() {
    let mut rs = [Replica::new(cfg(0, 0)), Replica::new(cfg(1, 0))];
    let (a, b) = (binary("a"), binary("b"));
    rs[0].put(a.clone(), int(1), 10);
    rs[0].put(b.clone(), int(2), 20);
    // X removes a before anyone saw it: x1 is a gap for F for good.
    rs[0].delete(a);
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    assert_eq!(rs[1].read(), rs[0].read());
    assert_eq!(rs[1].exact_backlog().0, 1, "x2 is kept above the gap x1");
    // X's next round finds no difference: F takes X's vouched prefix.
    let start = rs[0].tick(1_000);
    exchange(&mut rs, start);
    assert_eq!(rs[1].exact_backlog(), (0, 0), "the gap is filled");
}

/// The delta_crdt_ex #65 pattern, with the overwrites Horde members make:
/// three replicas write a new key each every few ms and overwrite keys the
/// others wrote (as a member takes over a child), over a bus that delays and
/// reorders. Returns the acknowledged new keys missing from some replica
/// once all is quiet.
fn steady_writes_lost(seed: u64, exact: bool) -> usize {
    steady_writes_lost_with(seed, exact, false, 30)
}

/// [`steady_writes_lost`], with [`Config::push_writes`] as given and up to
/// `max_gap` ms between two steps.
fn steady_writes_lost_with(seed: u64, exact: bool, push: bool, max_gap: u64) -> usize {
    let mut bus = Bus::new(3, seed);
    bus.exact = exact;
    bus.push = push;
    for i in 0..3 {
        let c = bus.cfg(i, 0);
        bus.nodes[i].replica = Replica::new(c);
    }
    let all: Vec<Term> = (0..3).map(name).collect();
    for i in 0..3 {
        let a = bus.nodes[i].replica.set_neighbours(all.clone());
        bus.run_actions(i, a);
    }
    let mut written = Vec::new();
    for step in 0..600i64 {
        let i = bus.rng.random_range(0..3);
        let key = binary(format!("w{i}-{step}"));
        let a = bus.nodes[i].replica.put(key.clone(), int(step), step * 10);
        bus.run_actions(i, a);
        written.push(key);
        // Overwrite a key another replica wrote, if this one holds it.
        let j = bus.rng.random_range(0..3);
        let theirs: Vec<OrdTerm> = bus.nodes[j]
            .replica
            .read()
            .into_keys()
            .filter(|k| !matches!(&k.0, Term::Binary(b) if b.bytes.starts_with(format!("w{j}-").as_bytes())))
            .collect();
        if !theirs.is_empty() {
            let k = theirs[bus.rng.random_range(0..theirs.len())].0.clone();
            let a = bus.nodes[j].replica.put(k, int(-step), step * 10 + 5);
            bus.run_actions(j, a);
        }
        let ms = bus.rng.random_range(0..max_gap);
        bus.advance(ms);
    }
    bus.advance(5_000);
    written
        .iter()
        .filter(|k| bus.nodes.iter().any(|n| n.replica.get(k).is_none()))
        .count()
}

#[test]
fn steady_writes_and_overwrites_lose_nothing() {
    for seed in 0..6 {
        assert_eq!(steady_writes_lost(seed, true), 0, "seed {seed}");
    }
}

#[test]
fn steady_writes_and_overwrites_lose_keys_with_upstream_contexts() {
    // The same runs with upstream's contexts: the test above would catch
    // the loss it guards against.
    let lost: usize = (0..6).map(|seed| steady_writes_lost(seed, false)).sum();
    assert!(lost > 0, "upstream lost nothing in these runs");
}

#[test]
fn an_upstream_peer_gets_only_our_round_start_context_and_loses_no_later_write() {
    // Replica 0 keeps exact contexts, replica 1 is upstream (it folds every
    // context it receives into its own). A key written by 0 while its round
    // with 1 runs was not compared in that round: the context 0 ships must
    // not claim its dot, or 1 would refuse it for good.
    let mut up = cfg(1, 0);
    up.exact_context = false;
    let mut rs = [Replica::new(cfg(0, 0)), Replica::new(up)];
    rs[0].put(binary("a"), int(1), 10);
    let mut queue: std::collections::VecDeque<Term> = sends(&rs[0].set_neighbours(vec![name(1)]))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let mut written = false;
    while let Some(msg) = queue.pop_front() {
        // Who gets it: 1 for what 0 sent, and the other way round.
        let to_one = as_tuple(&msg).is_some_and(|p| {
            is_atom(&p[0], "diff") && p.len() == 2 && {
                let d = SyncDiff::from_term(&p[1]).unwrap();
                d.to == name(1)
            } || is_atom(&p[0], "diff") && p.len() == 3
        });
        let (i, j) = if to_one { (1, 0) } else { (0, 1) };
        let acts = rs[i].handle_message(&msg).unwrap();
        if !written && i == 1 {
            rs[0].put(binary("late"), int(2), 20);
            written = true;
        }
        for (to, m) in sends(&acts) {
            if to == name(j) || to == rs[j].config().self_pid {
                queue.push_back(m);
            }
        }
    }
    let start = rs[0].tick(1_000);
    exchange(&mut rs, start);
    assert_eq!(rs[1].get(&binary("late")), Some(&int(2)));
    assert_eq!(rs[1].read(), rs[0].read());
}

/// Two replicas holding the same `n` keys, then `changed` more written on
/// replica 0; returns the bytes of every message of one round each way,
/// after checking that they converged.
fn round_bytes_after_writes(size_aware: bool, n: i64, changed: i64) -> usize {
    let mut rs = [0, 1].map(|i| {
        let mut c = cfg(i, 0);
        c.size_aware_steps = size_aware;
        Replica::new(c)
    });
    for i in 0..n {
        rs[0].put(int(i), binary(&b"a child spec of some size"[..]), 10 + i);
    }
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    let start = rs[1].set_neighbours(vec![name(0)]);
    exchange(&mut rs, start);
    assert_eq!(rs[1].read(), rs[0].read());
    for i in n..n + changed {
        rs[0].put(int(i), int(i), 10 + i);
    }
    let mut log = Vec::new();
    for i in [0, 1] {
        let start = rs[i].sync();
        log.extend(exchange(&mut rs, start));
    }
    assert_eq!(rs[1].read(), rs[0].read());
    assert_eq!(rs[1].read().len() as i64, n + changed);
    log.iter()
        .map(|m| crate::term::etf::to_binary(m).unwrap().len())
        .sum()
}

#[test]
fn size_aware_steps_ship_what_changed_not_the_whole_map() {
    // 500 new keys among 8,000: every one of the 256 locations of the
    // first step differs, so 8 more levels under each carry every leaf.
    let upstream = round_bytes_after_writes(false, 8000, 500);
    let aware = round_bytes_after_writes(true, 8000, 500);
    assert!(aware * 2 < upstream, "{aware} bytes vs {upstream}");
}

#[test]
fn size_aware_steps_change_nothing_for_small_maps() {
    assert_eq!(
        round_bytes_after_writes(false, 300, 20),
        round_bytes_after_writes(true, 300, 20)
    );
}

// ---- pushed writes -------------------------------------------------------------

fn pushing(i: usize) -> Replica {
    let mut c = cfg(i, 0);
    c.push_writes = true;
    Replica::new(c)
}

/// The states (`{:diff, state, keys}`) and round starts among `actions`.
fn states_and_rounds(actions: &[Action]) -> (Vec<Term>, usize) {
    let mut states = Vec::new();
    let mut rounds = 0;
    for (_, msg) in sends(actions) {
        match as_tuple(&msg) {
            Some([t, _, keys]) if is_atom(t, "diff") => states.push(keys.clone()),
            Some([t, _]) if is_atom(t, "diff") => rounds += 1,
            _ => {}
        }
    }
    (states, rounds)
}

/// Two pushing replicas that ran one round each way, so each knows the
/// other keeps exact contexts.
fn acquainted() -> [Replica; 2] {
    let mut rs = [pushing(0), pushing(1)];
    rs[0].put(binary("first"), int(0), 1);
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    let start = rs[1].set_neighbours(vec![name(0)]);
    exchange(&mut rs, start);
    rs
}

#[test]
fn a_burst_of_writes_is_pushed_to_an_exact_peer_instead_of_a_round() {
    let mut rs = acquainted();
    assert_eq!(rs[1].read(), rs[0].read());
    for i in 0..100 {
        rs[0].put(int(i), int(i), 10 + i);
    }
    // A key written twice goes once.
    rs[0].put(int(5), int(-5), 200);
    let acts = rs[0].tick(1_000);
    let (states, rounds) = states_and_rounds(&acts);
    assert_eq!(rounds, 0, "no round while the push carries the burst");
    let pushed: usize = states.iter().map(|k| as_list(k).unwrap().len()).sum();
    assert_eq!(pushed, 100);
    exchange(&mut rs, acts);
    assert_eq!(rs[1].read(), rs[0].read());
    // Nothing written since: the next sync is an ordinary round, and it
    // finds nothing differing.
    let acts = rs[0].tick(2_000);
    assert_eq!(states_and_rounds(&acts), (vec![], 1));
    let log = exchange(&mut rs, acts);
    assert!(log
        .iter()
        .all(|m| !matches!(as_tuple(m), Some([t, ..]) if is_atom(t, "get_diff"))));
    assert_eq!(rs[1].read(), rs[0].read());
}

#[test]
fn a_few_writes_are_pushed_and_the_round_runs_as_usual() {
    let mut rs = acquainted();
    for i in 0..3 {
        rs[0].put(int(i), int(i), 10 + i);
    }
    rs[0].delete(binary("first"));
    let acts = rs[0].tick(1_000);
    let (states, rounds) = states_and_rounds(&acts);
    assert_eq!((states.len(), rounds), (1, 1));
    exchange(&mut rs, acts);
    assert_eq!(rs[1].read(), rs[0].read());
    assert_eq!(
        rs[1].get(&binary("first")),
        None,
        "the delete was pushed too"
    );
}

#[test]
fn writes_that_never_stop_still_get_a_round_now_and_then() {
    let mut rs = acquainted();
    let mut rounds = 0;
    for t in 1..=(3 * MAX_INTERVALS_WITHOUT_ROUND as i64) {
        for i in 0..40 {
            rs[0].put(int(t * 100 + i), int(i), t * 100 + i);
        }
        let acts = rs[0].tick(t as u64 * 300);
        rounds += states_and_rounds(&acts).1;
        exchange(&mut rs, acts);
    }
    assert_eq!(rounds, 3);
    assert_eq!(rs[1].read(), rs[0].read());
}

#[test]
fn upstream_peers_get_no_pushes_and_every_round() {
    // Replica 1 keeps upstream's contexts: it never marks its steps.
    let mut up = cfg(1, 0);
    up.exact_context = false;
    let mut rs = [pushing(0), Replica::new(up)];
    let start = rs[0].set_neighbours(vec![name(1)]);
    exchange(&mut rs, start);
    for i in 0..100 {
        rs[0].put(int(i), int(i), 10 + i);
    }
    let acts = rs[0].tick(1_000);
    let (states, rounds) = states_and_rounds(&acts);
    assert_eq!((states.len(), rounds), (0, 1));
    exchange(&mut rs, acts);
    assert_eq!(rs[1].read(), rs[0].read());
}

#[test]
fn a_peer_is_pushed_to_again_only_after_a_round_after_its_down() {
    let mut rs = acquainted();
    let down_msg = down(binary("any"), name(1));
    rs[0].handle_message(&down_msg).unwrap();
    for i in 0..100 {
        rs[0].put(int(i), int(i), 10 + i);
    }
    // Monitored again at this sync, but not known to be exact: a round.
    let acts = rs[0].tick(1_000);
    assert_eq!(states_and_rounds(&acts), (vec![], 1));
    exchange(&mut rs, acts);
    assert_eq!(rs[1].read(), rs[0].read());
    rs[0].put(int(500), int(1), 900);
    let acts = rs[0].tick(2_000);
    assert_eq!(states_and_rounds(&acts).0.len(), 1, "exact again");
}

#[test]
fn three_pushing_replicas_converge() {
    for seed in 300..306 {
        let mut bus = Bus::new(3, seed);
        bus.push = true;
        for i in 0..3 {
            let c = bus.cfg(i, 0);
            bus.nodes[i].replica = Replica::new(c);
        }
        converge_with(bus, seed);
    }
}

#[test]
fn bursts_of_pushed_writes_and_overwrites_lose_nothing() {
    // Steps 0-3 ms apart: about a hundred writes per replica per interval,
    // so most syncs push instead of starting a round.
    for seed in 0..6 {
        assert_eq!(
            steady_writes_lost_with(seed, true, true, 3),
            0,
            "seed {seed}"
        );
    }
}
