//! Registry members wired together over an in-memory bus: registrations
//! spread, conflicts leave one winner whose loser gets the exit signal on
//! every member, exits and departed members take their keys with them, and
//! malformed CRDT entries are skipped.

use super::state::{Effect, RegistryEvent, RegistryState};
use crate::crdt::awlww_map::AwLwwMap;
use crate::crdt::sync::{Action, Config, Replica};
use crate::horde::member;
use crate::term::{self, atom, int, Pid, Term};

const R: &str = "Elixir.Test.Registry";

fn node(i: usize) -> String {
    format!("n{i}@127.0.0.1")
}

fn crdt_pid(i: usize) -> Pid {
    Pid::new(node(i), 1, 0, 1)
}

fn proc_pid(i: usize, n: u32) -> Pid {
    Pid::new(node(i), 100 + n, 0, 1)
}

fn state(i: usize) -> RegistryState {
    let cfg = Config::horde(
        1000 + i as i64,
        Term::Pid(crdt_pid(i)),
        Some(crate::tup![atom(&format!("{R}.Crdt")), atom(&node(i))]),
    );
    RegistryState::new(R, &node(i), Replica::new(cfg))
}

/// Members exchanging CRDT messages until quiet; every other effect is kept
/// per member for inspection.
struct Bus {
    members: Vec<RegistryState>,
    /// Pairs that cannot talk (a partition); their messages wait in `held`
    /// (a lost message would come with a DOWN, which this bus does not model).
    cut: Vec<(usize, usize)>,
    held: Vec<(usize, usize, Term)>,
    effects: Vec<Vec<Effect>>,
    queue: Vec<(usize, usize, Term)>,
    clock: i64,
    /// Sync timer time, ms.
    now: u64,
}

impl Bus {
    fn new(n: usize) -> Bus {
        let mut bus = Bus {
            members: (0..n).map(state).collect(),
            cut: Vec::new(),
            held: Vec::new(),
            effects: vec![Vec::new(); n],
            queue: Vec::new(),
            clock: 0,
            now: 0,
        };
        let all: Vec<Term> = (0..n).map(|i| member(R, &node(i))).collect();
        for i in 0..n {
            let e = bus.members[i].set_initial_members(&all, 0);
            bus.absorb(i, e);
        }
        bus.settle();
        bus
    }

    fn ts(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn index_of(&self, to: &Term) -> Option<usize> {
        let node_name = match to {
            Term::Pid(p) => p.node.name.to_string(),
            _ => term::as_atom(term::as_tuple(to)?.get(1)?)?.to_string(),
        };
        (0..self.members.len()).find(|&i| node(i) == node_name)
    }

    fn absorb(&mut self, from: usize, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Crdt(Action::Send { to, msg }) => {
                    if let Some(to) = self.index_of(&to) {
                        if self.is_cut(from, to) {
                            self.held.push((from, to, msg));
                        } else {
                            self.queue.push((from, to, msg));
                        }
                    }
                }
                Effect::Crdt(_) => {}
                other => self.effects[from].push(other),
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
        self.queue.append(&mut self.held);
    }

    fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&(a, b)) || self.cut.contains(&(b, a))
    }

    /// Delivers messages and runs sync rounds until nothing moves.
    fn settle(&mut self) {
        for _ in 0..50 {
            while !self.queue.is_empty() {
                let batch = std::mem::take(&mut self.queue);
                for (_, to, msg) in batch {
                    let e = self.members[to]
                        .crdt_message(&msg)
                        .expect("valid CRDT message");
                    self.absorb(to, e);
                }
            }
            self.now += 1000;
            for i in 0..self.members.len() {
                let e = self.members[i].tick(self.now);
                self.absorb(i, e);
            }
            if self.queue.is_empty() {
                return;
            }
        }
    }

    fn lookup(&self, i: usize, key: &Term) -> Option<Pid> {
        self.members[i].read().lookup(key).map(|e| e.pid.clone())
    }

    fn exits(&self, i: usize) -> Vec<(Pid, Term)> {
        self.effects[i]
            .iter()
            .filter_map(|e| match e {
                Effect::Exit { pid, reason } => Some((pid.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }
}

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

#[test]
fn a_registration_is_seen_by_every_member() {
    let mut bus = Bus::new(3);
    let ts = bus.ts();
    let e = bus.members[0].register(key("a"), int(7), proc_pid(0, 1), ts);
    assert!(e.contains(&Effect::Link(proc_pid(0, 1))));
    assert!(e.contains(&Effect::Event(RegistryEvent::Register {
        key: key("a"),
        pid: proc_pid(0, 1),
        value: int(7)
    })));
    bus.absorb(0, e);
    bus.settle();
    for i in 0..3 {
        let t = bus.members[i].read();
        let entry = t.lookup(&key("a")).expect("registered everywhere");
        assert_eq!(entry.pid, proc_pid(0, 1));
        assert_eq!(entry.value, int(7));
        assert_eq!(entry.member, member(R, &node(0)));
        assert_eq!(t.keys_of(&proc_pid(0, 1)), vec![key("a")]);
        assert_eq!(t.members().count(), 3);
    }
    // Only the member the process lives on links to it.
    assert!(!bus.effects[1].contains(&Effect::Link(proc_pid(0, 1))));
}

/// Registered through member 0 for a process on a node with no member: the
/// registry links to it, so its death (or its node's: `noconnection`)
/// takes the key everywhere instead of leaving an entry for a dead pid.
#[test]
fn a_process_elsewhere_registered_through_a_member_is_linked_and_its_exit_clears_it() {
    let mut bus = Bus::new(2);
    let elsewhere = proc_pid(7, 3);
    let ts = bus.ts();
    let e = bus.members[0].register(key("far"), int(1), elsewhere.clone(), ts);
    assert!(e.contains(&Effect::Link(elsewhere.clone())));
    bus.absorb(0, e);
    bus.settle();
    assert_eq!(bus.lookup(1, &key("far")), Some(elsewhere.clone()));
    let (held, e) = bus.members[0].process_exited(&elsewhere);
    assert!(held);
    bus.absorb(0, e);
    bus.settle();
    for i in 0..2 {
        assert_eq!(bus.members[i].read().count(), 0, "member {i}");
    }
}

#[test]
fn concurrent_registrations_leave_one_winner_and_the_loser_is_told() {
    let mut bus = Bus::new(2);
    bus.cut.push((0, 1));
    let t0 = bus.ts();
    let e = bus.members[0].register(key("k"), int(0), proc_pid(0, 1), t0);
    bus.absorb(0, e);
    let t1 = bus.ts();
    let e = bus.members[1].register(key("k"), int(1), proc_pid(1, 1), t1);
    bus.absorb(1, e);
    bus.settle();
    assert_eq!(bus.lookup(0, &key("k")), Some(proc_pid(0, 1)));
    assert_eq!(bus.lookup(1, &key("k")), Some(proc_pid(1, 1)));

    bus.heal();
    bus.settle();
    // The later write wins on both members.
    let winner = proc_pid(1, 1);
    assert_eq!(bus.lookup(0, &key("k")), Some(winner.clone()));
    assert_eq!(bus.lookup(1, &key("k")), Some(winner.clone()));
    let reason = crate::tup![
        atom("name_conflict"),
        crate::tup![key("k"), int(0)],
        atom(R),
        Term::Pid(winner.clone())
    ];
    assert_eq!(bus.exits(0), vec![(proc_pid(0, 1), reason)]);
    assert!(
        bus.exits(1).is_empty(),
        "the winner's member had nothing to resolve"
    );
    assert!(bus.members[0].read().keys_of(&proc_pid(0, 1)).is_empty());
}

#[test]
fn an_exited_process_takes_its_keys_everywhere() {
    let mut bus = Bus::new(3);
    for k in ["x", "y"] {
        let ts = bus.ts();
        let e = bus.members[1].register(key(k), atom("nil"), proc_pid(1, 5), ts);
        bus.absorb(1, e);
    }
    bus.settle();
    assert_eq!(bus.members[2].read().count(), 2);
    let (held, e) = bus.members[1].process_exited(&proc_pid(1, 5));
    assert!(held);
    bus.absorb(1, e);
    bus.settle();
    for i in 0..3 {
        assert_eq!(bus.members[i].read().count(), 0, "member {i}");
    }
    let unregisters = bus.effects[2]
        .iter()
        .filter(|e| matches!(e, Effect::Event(RegistryEvent::Unregister { .. })))
        .count();
    assert_eq!(unregisters, 2);
    let (held, _) = bus.members[1].process_exited(&proc_pid(1, 5));
    assert!(!held, "a second exit finds nothing");
}

#[test]
fn a_departed_member_takes_the_keys_registered_through_it() {
    let mut bus = Bus::new(3);
    let ts = bus.ts();
    let e = bus.members[2].register(key("gone"), int(1), proc_pid(2, 1), ts);
    bus.absorb(2, e);
    let ts = bus.ts();
    let e = bus.members[0].register(key("stays"), int(1), proc_pid(0, 1), ts);
    bus.absorb(0, e);
    bus.settle();
    // Member 2 dies; members 0 and 1 follow nodedown with set_members.
    bus.cut.extend([(0, 2), (1, 2)]);
    let survivors = [member(R, &node(0)), member(R, &node(1))];
    for i in 0..2 {
        let ts = bus.ts();
        let e = bus.members[i].set_members(&survivors, ts);
        bus.absorb(i, e);
    }
    bus.settle();
    for i in 0..2 {
        let t = bus.members[i].read();
        assert!(t.entry(&key("gone")).is_none(), "member {i}");
        assert!(t.lookup(&key("stays")).is_some(), "member {i}");
        assert!(!t.is_member(&member(R, &node(2))));
        drop(t);
        let members: Vec<Term> = bus.members[i].members();
        assert_eq!(members.len(), 2);
    }
}

#[test]
fn update_value_and_unregister_only_touch_the_holders_key() {
    let mut bus = Bus::new(2);
    let ts = bus.ts();
    let e = bus.members[0].register(key("v"), int(1), proc_pid(0, 1), ts);
    bus.absorb(0, e);
    bus.settle();
    let ts = bus.ts();
    let (done, _) = bus.members[0].update_value(&key("v"), &proc_pid(0, 2), int(99), ts);
    assert!(!done, "another process cannot update the value");
    assert!(bus.members[0]
        .unregister(&key("v"), &proc_pid(0, 2))
        .is_empty());
    let ts = bus.ts();
    let (done, e) = bus.members[0].update_value(&key("v"), &proc_pid(0, 1), int(2), ts);
    assert!(done);
    bus.absorb(0, e);
    bus.settle();
    assert_eq!(
        bus.members[1]
            .read()
            .lookup(&key("v"))
            .map(|e| e.value.clone()),
        Some(int(2))
    );
    let e = bus.members[0].unregister(&key("v"), &proc_pid(0, 1));
    bus.absorb(0, e);
    bus.settle();
    assert_eq!(bus.lookup(1, &key("v")), None);
}

#[test]
fn meta_is_shared() {
    let mut bus = Bus::new(2);
    let ts = bus.ts();
    let e = bus.members[0].put_meta(atom("color"), atom("blue"), ts);
    bus.absorb(0, e);
    bus.settle();
    assert_eq!(
        bus.members[1].read().meta(&atom("color")),
        Some(&atom("blue"))
    );
    let e = bus.members[1].delete_meta(&atom("color"));
    bus.absorb(1, e);
    bus.settle();
    assert_eq!(bus.members[0].read().meta(&atom("color")), None);
}

#[test]
fn malformed_registrations_from_a_peer_are_skipped() {
    let mut bus = Bus::new(2);
    let ts = bus.ts();
    let e = bus.members[0].register(key("good"), int(1), proc_pid(0, 1), ts);
    bus.absorb(0, e);
    bus.settle();
    // A peer ships junk under registry keys, as a `{:diff, state, keys}`.
    let junk = [
        (crate::tup![atom("key"), key("no-pid")], int(1)),
        (
            crate::tup![atom("key"), key("bad-member")],
            crate::tup![int(1), Term::Pid(proc_pid(9, 1)), int(2)],
        ),
        (crate::tup![atom("what"), int(1)], int(1)),
        (atom("bare"), int(1)),
        (crate::tup![atom("member"), atom("not-a-member")], int(1)),
    ];
    for (n, (k, v)) in junk.into_iter().enumerate() {
        let delta = AwLwwMap::new().add(k.clone(), v, 4242, n as i64);
        let msg = crate::tup![atom("diff"), delta.to_term(), term::list(vec![k])];
        let e = bus.members[1]
            .crdt_message(&msg)
            .expect("a well-formed CRDT message");
        assert!(
            e.iter().all(|e| matches!(e, Effect::Crdt(_))),
            "junk caused {e:?}"
        );
    }
    let t = bus.members[1].read();
    assert_eq!(t.count(), 1);
    assert!(t.lookup(&key("good")).is_some());
    assert_eq!(t.members().count(), 2);
}

/// What real Horde 0.10 members wrote (tests/fixtures/horde, recorded from
/// two Elixir nodes), shipped to a Rust member as a BEAM replica ships it.
#[test]
fn a_recorded_horde_registry_state_reads_as_horde_reads_it() {
    fn struct_field<'a>(t: &'a Term, name: &str) -> Option<&'a Term> {
        match t {
            Term::Map(m) => m.map.get(&atom(name)),
            _ => None,
        }
    }
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/horde/registry_contents.etf");
    let bytes = std::fs::read(&path).expect("fixture");
    let recorded = crate::term::etf::from_binary(&bytes).expect("fixture decodes");
    let a = struct_field(&recorded, "crdt")
        .and_then(|c| struct_field(c, "a"))
        .expect("crdt.a");
    let crdt_state = struct_field(a, "crdt_state").expect("crdt_state").clone();
    let keys = AwLwwMap::from_term(&crdt_state)
        .expect("an AWLWWMap")
        .keys();
    let name = "Elixir.MyApp.Registry";
    let cfg = Config::horde(
        77,
        Term::Pid(Pid::new("c@127.0.0.1", 1, 0, 1)),
        Some(crate::tup![
            atom("Elixir.MyApp.Registry.Crdt"),
            atom("c@127.0.0.1")
        ]),
    );
    let mut member = RegistryState::new(name, "c@127.0.0.1", Replica::new(cfg));
    let msg = crate::tup![atom("diff"), crdt_state, term::list(keys)];
    let effects = member
        .crdt_message(&msg)
        .expect("a BEAM replica's state is accepted");
    let registered = effects
        .iter()
        .filter(|e| matches!(e, Effect::Event(RegistryEvent::Register { .. })))
        .count();
    assert_eq!(registered, 5);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Exit { .. } | Effect::Link(_))));
    let t = member.read();
    assert_eq!(t.count(), 5);
    assert_eq!(t.members().count(), 2);
    // Every lookup Horde made on node a gives the same answer here.
    let lookups = struct_field(&recorded, "lookups")
        .and_then(|l| struct_field(l, "a"))
        .and_then(term::as_list)
        .expect("lookups.a");
    assert_eq!(lookups.len(), 4);
    for l in lookups {
        let Some([k, found]) = term::as_tuple(&l) else {
            panic!("lookup record {l}")
        };
        let expected = term::as_list(found).expect("a list");
        let ours: Vec<Term> = t
            .lookup(k)
            .map(|e| crate::tup![Term::Pid(e.pid.clone()), e.value.clone()])
            .into_iter()
            .collect();
        assert_eq!(ours, expected, "lookup of {k}");
    }
    let b_member = crate::horde::member(name, "b@127.0.0.1");
    assert!(t.is_member(&b_member));
}

/// A netsplit {0}|{1} with a name registered through each side before it:
/// Horde drops a lost member's keys at once, and after the heal those
/// removals win the merge (Horde #258); with a grace longer than the split
/// both names survive, hidden from lookups during it.
fn names_from_before_a_split(grace_ms: u64) -> [bool; 2] {
    let mut bus = Bus::new(2);
    for m in bus.members.iter_mut() {
        let s = std::mem::replace(m, state(0));
        *m = s.lost_member_grace(grace_ms);
    }
    for i in 0..2 {
        let ts = bus.ts();
        let e = bus.members[i].register(key(&format!("k{i}")), int(1), proc_pid(i, 1), ts);
        bus.absorb(i, e);
    }
    bus.settle();
    bus.cut.push((0, 1));
    for i in 0..2 {
        let ts = bus.ts();
        let e = bus.members[i].set_members(&[member(R, &node(i))], ts);
        bus.absorb(i, e);
    }
    bus.settle();
    let other = key("k1");
    assert!(bus.lookup(0, &other).is_none(), "hidden during the split");
    bus.heal();
    let all = [member(R, &node(0)), member(R, &node(1))];
    for i in 0..2 {
        let ts = bus.ts();
        let e = bus.members[i].set_members(&all, ts);
        bus.absorb(i, e);
    }
    bus.settle();
    [0, 1].map(|k| (0..2).all(|i| bus.lookup(i, &key(&format!("k{k}"))).is_some()))
}

#[test]
fn names_from_before_a_netsplit_survive_it_within_the_lost_member_grace() {
    assert_eq!(names_from_before_a_split(0), [false, false], "Horde's loss");
    assert_eq!(names_from_before_a_split(3_600_000), [true, true]);
}

#[test]
fn a_dead_members_keys_go_when_the_grace_ends() {
    let mut bus = Bus::new(2);
    for m in bus.members.iter_mut() {
        let s = std::mem::replace(m, state(0));
        *m = s.lost_member_grace(5_000);
    }
    let ts = bus.ts();
    let e = bus.members[1].register(key("gone"), int(1), proc_pid(1, 1), ts);
    bus.absorb(1, e);
    bus.settle();
    bus.cut.push((0, 1));
    let ts = bus.ts();
    let e = bus.members[0].set_members(&[member(R, &node(0))], ts);
    bus.absorb(0, e);
    let now = bus.now;
    let e = bus.members[0].tick(now + 100);
    bus.absorb(0, e);
    assert!(bus.lookup(0, &key("gone")).is_none(), "hidden at once");
    assert!(bus.members[0].read().entry(&key("gone")).is_some(), "kept");
    let e = bus.members[0].tick(now + 5_100);
    bus.absorb(0, e);
    assert!(
        bus.members[0].read().entry(&key("gone")).is_none(),
        "dropped"
    );
}

/// Found by chaos scenario 1 (tests/chaos_netns.rs, 2 failing runs in 13
/// under load): a split {0}|{1,2}, during which member 2 registers a name;
/// at the heal member 0 sees node 1 come back (and syncs with it) before
/// node 2. Member 0's removal of `{:member, 2}` (made at its nodedown of
/// 2) then reaches member 1, which still sees node 2. Horde's rule (and
/// ours before) drops every key of member 2 there, the name registered
/// during the split included, which member 1 had observed: that removal
/// then wins on every member and the name is gone everywhere although its
/// process runs and its member never left member 1's cluster. A member
/// following the nodes (`members: :auto`) now writes back a member it
/// still sees, and keeps its keys.
#[test]
fn a_member_still_seen_keeps_its_names_when_a_heal_reaches_the_others_one_at_a_time() {
    let mut bus = Bus::new(3);
    let all: Vec<Term> = (0..3).map(|i| member(R, &node(i))).collect();
    for i in 0..3 {
        let ts = bus.ts();
        let e = bus.members[i].set_members_from_nodes(&all, ts);
        bus.absorb(i, e);
    }
    bus.settle();
    bus.cut.push((0, 1));
    bus.cut.push((0, 2));
    let ts = bus.ts();
    let e = bus.members[0].set_members_from_nodes(&all[..1], ts);
    bus.absorb(0, e);
    for i in 1..3 {
        let ts = bus.ts();
        let e = bus.members[i].set_members_from_nodes(&all[1..], ts);
        bus.absorb(i, e);
    }
    bus.settle();
    let ts = bus.ts();
    let e = bus.members[2].register(key("during"), int(1), proc_pid(2, 1), ts);
    bus.absorb(2, e);
    bus.settle();
    assert!(bus.lookup(1, &key("during")).is_some());

    // Node 0 and node 1 see each other again; node 2 is not back for 0 yet.
    bus.cut.retain(|&c| c != (0, 1));
    let (back, held): (Vec<_>, Vec<_>) = std::mem::take(&mut bus.held)
        .into_iter()
        .partition(|&(f, t, _)| (f, t) == (0, 1) || (f, t) == (1, 0));
    bus.held = held;
    bus.queue.extend(back);
    let ts = bus.ts();
    let e = bus.members[0].set_members_from_nodes(&all[..2], ts);
    bus.absorb(0, e);
    let ts = bus.ts();
    let e = bus.members[1].set_members_from_nodes(&all, ts);
    bus.absorb(1, e);
    bus.settle();
    assert!(
        bus.members[1].read().entry(&key("during")).is_some(),
        "member 1 keeps the name of member 2, which it still sees"
    );

    // Then node 2 is back for node 0 too.
    bus.heal();
    for i in [0, 2] {
        let ts = bus.ts();
        let e = bus.members[i].set_members_from_nodes(&all, ts);
        bus.absorb(i, e);
    }
    bus.settle();
    for i in 0..3 {
        assert_eq!(
            bus.lookup(i, &key("during")),
            Some(proc_pid(2, 1)),
            "member {i} holds the name"
        );
        assert_eq!(bus.members[i].read().members().count(), 3);
    }
}
