//! Supervisor members wired over one in-memory CRDT that delivers every
//! write to every live member at once (as a sync would, later), with a fake
//! processes supervisor that starts every child. Each decision of Horde's
//! `DynamicSupervisorImpl` is checked from the effects.

use std::collections::VecDeque;

use super::*;
use crate::horde::supervisor::distribution::identifier;
use crate::term::{atom, int, list, tuple};

const S: &str = "Elixir.Test.DSup";

fn node(i: usize) -> String {
    format!("n{i}@127.0.0.1")
}

fn name(i: usize) -> Term {
    member(S, &node(i))
}

fn from(n: i64) -> Term {
    tuple(vec![
        Term::Pid(Pid::new("caller@127.0.0.1", 1, 0, 1)),
        int(n),
    ])
}

fn spec(arg: i64) -> Term {
    ChildSpec::new(
        atom("Elixir.Worker"),
        "Elixir.Worker",
        "start_link",
        vec![int(arg)],
        [],
    )
    .into_term()
}

fn start_child(arg: i64) -> Term {
    tuple(vec![atom("start_child"), spec(arg)])
}

/// The child argument of a spec (what the tests count children by).
fn arg_of(spec: &ChildSpec) -> i64 {
    let Some(Term::Map(m)) = Some(spec.as_term()) else {
        panic!()
    };
    let start = m.map.get(&atom("start")).unwrap();
    let [_, _, args] = term::as_tuple(start).unwrap() else {
        panic!()
    };
    term::as_i64(&term::as_list(args).unwrap()[0]).unwrap()
}

struct Bus {
    members: Vec<SupervisorState>,
    alive: Vec<bool>,
    crdt: BTreeMap<OrdTerm, Term>,
    queue: VecDeque<(usize, Effect)>,
    /// Every effect a member produced, except CRDT writes, in order.
    seen: Vec<Vec<Effect>>,
    /// `(member, spec)` of every child started.
    started: Vec<(usize, ChildSpec)>,
    monitors: Vec<BTreeSet<OrdTerm>>,
    next_pid: u32,
}

fn counter(seed: u128) -> Box<dyn FnMut() -> u128 + Send> {
    let mut n = seed;
    Box::new(move || {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        n % (1 << 120) + 1
    })
}

impl Bus {
    fn new(n: usize, settings: Settings) -> Bus {
        let mut bus = Bus {
            members: (0..n)
                .map(|i| SupervisorState::new(S, &node(i), settings.clone(), counter(i as u128)))
                .collect(),
            alive: vec![true; n],
            crdt: BTreeMap::new(),
            queue: VecDeque::new(),
            seen: vec![Vec::new(); n],
            started: Vec::new(),
            monitors: vec![BTreeSet::new(); n],
            next_pid: 100,
        };
        let all: Vec<Term> = (0..n).map(name).collect();
        for i in 0..n {
            let e = bus.members[i].init(Some(&all));
            bus.run(i, e);
        }
        bus
    }

    fn index_of(&self, member: &Term) -> Option<usize> {
        (0..self.members.len()).find(|&i| &name(i) == member)
    }

    fn run(&mut self, i: usize, effects: Vec<Effect>) {
        self.queue.extend(effects.into_iter().map(|e| (i, e)));
        while let Some((i, e)) = self.queue.pop_front() {
            if !self.alive[i] {
                continue;
            }
            let more = self.perform(i, e);
            self.queue.extend(more);
        }
    }

    fn perform(&mut self, i: usize, e: Effect) -> Vec<(usize, Effect)> {
        let diff = match &e {
            Effect::Put { key, value } => {
                if self.crdt.get(&OrdTerm(key.clone())) == Some(value) {
                    None
                } else {
                    self.crdt.insert(OrdTerm(key.clone()), value.clone());
                    Some(Diff::Add {
                        key: key.clone(),
                        value: value.clone(),
                    })
                }
            }
            Effect::Delete { key } => self
                .crdt
                .remove(&OrdTerm(key.clone()))
                .map(|_| Diff::Remove { key: key.clone() }),
            _ => None,
        };
        if matches!(e, Effect::Put { .. } | Effect::Delete { .. }) {
            let mut out = Vec::new();
            if let Some(d) = diff {
                for j in 0..self.members.len() {
                    if self.alive[j] {
                        let effects = self.members[j].crdt_update(std::slice::from_ref(&d));
                        out.extend(effects.into_iter().map(|e| (j, e)));
                    }
                }
            }
            return out;
        }
        self.seen[i].push(e.clone());
        match e {
            Effect::StartChild { spec, reply_to } => {
                self.next_pid += 1;
                let pid = Pid::new(node(i), self.next_pid, 0, 1);
                self.started.push((i, spec.clone()));
                let result = tuple(vec![atom("ok"), Term::Pid(pid)]);
                let effects = self.members[i].child_started(spec, &result, reply_to);
                effects.into_iter().map(|e| (i, e)).collect()
            }
            Effect::Send { to, msg } => match self.index_of(&to) {
                Some(j) if self.alive[j] => {
                    let effects = self.members[j].info(&msg);
                    effects.into_iter().map(|e| (j, e)).collect()
                }
                _ => Vec::new(),
            },
            Effect::Monitor(m) => {
                self.monitors[i].insert(OrdTerm(m));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn call(&mut self, i: usize, from: Term, request: Term) {
        let e = self.members[i].call(from, &request);
        self.run(i, e);
    }

    fn cast(&mut self, i: usize, msg: Term) {
        let e = self.members[i].cast(&msg);
        self.run(i, e);
    }

    /// kill -9 of member `k`: the others that monitor it see the DOWN.
    fn kill(&mut self, k: usize) {
        self.alive[k] = false;
        for j in 0..self.members.len() {
            if self.alive[j] && self.monitors[j].remove(&OrdTerm(name(k))) {
                let e = self.members[j].member_down(&name(k));
                self.run(j, e);
            }
        }
    }

    fn replies_to(&self, to: &Term) -> Vec<Term> {
        self.seen
            .iter()
            .flatten()
            .filter_map(|e| match e {
                Effect::Reply { to: t, reply } if t == to => Some(reply.clone()),
                _ => None,
            })
            .collect()
    }

    /// `(member index, arg)` of every running child in the CRDT.
    fn running(&self) -> Vec<(usize, i64)> {
        let mut v: Vec<(usize, i64)> = self
            .crdt
            .iter()
            .filter_map(|(k, v)| match Key::from_term(&k.0) {
                Ok(Key::Process(_)) => match ProcessValue::from_term(v).unwrap() {
                    ProcessValue::Running { member, spec, .. } => {
                        Some((self.index_of(&member).unwrap(), arg_of(&spec)))
                    }
                    ProcessValue::Relinquished { .. } => None,
                },
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Where Horde's strategy puts `arg` among the given members.
    fn owner(&self, arg: i64, alive: &[usize]) -> usize {
        let members: Vec<Member> = alive
            .iter()
            .map(|&i| Member::new(name(i), MemberStatus::Alive))
            .collect();
        let chosen = DistributionStrategy::Uniform
            .choose_node(&spec(arg), &members, 0)
            .unwrap();
        self.index_of(&chosen.name).unwrap()
    }
}

fn settings() -> Settings {
    Settings::default()
}

#[test]
fn start_up_writes_members_alive_and_syncs_with_the_others() {
    let bus = Bus::new(3, settings());
    for i in 0..3 {
        let members = bus.members[i].members();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m.status == MemberStatus::Alive));
        // Everyone monitors every alive member, itself included, as Horde.
        assert_eq!(bus.monitors[i].len(), 3);
        let last_neighbours = bus.seen[i]
            .iter()
            .rev()
            .find_map(|e| match e {
                Effect::SetNeighbours(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(last_neighbours.len(), 2);
        assert!(!last_neighbours.contains(&crdt_neighbour(&name(i)).unwrap()));
    }
}

#[test]
fn a_child_starts_on_the_member_the_strategy_picks_from_any_member() {
    let mut bus = Bus::new(3, settings());
    for arg in 0..30 {
        let caller = (arg % 3) as usize;
        bus.call(caller, from(arg), start_child(arg));
        let replies = bus.replies_to(&from(arg));
        assert_eq!(replies.len(), 1, "one reply for {arg}");
        let [ok, Term::Pid(pid)] = term::as_tuple(&replies[0]).unwrap() else {
            panic!("{}", replies[0])
        };
        assert!(term::is_atom(ok, "ok"));
        let owner = bus.owner(arg, &[0, 1, 2]);
        assert_eq!(pid.node.name, node(owner));
        // Not the chosen member: it proxied, with no ttl by default.
        if caller != owner {
            assert!(bus.seen[caller].iter().any(|e| matches!(
                e,
                Effect::Send { to, msg } if to == &name(owner)
                    && term::as_tuple(msg).map(|t| t.len()) == Some(3)
            )));
        }
    }
    assert_eq!(bus.running().len(), 30);
    // Ids are random integers, the spec otherwise as given.
    for (k, v) in &bus.crdt {
        if let Ok(Key::Process(id)) = Key::from_term(&k.0) {
            let stored = ProcessValue::from_term(v).unwrap().spec().clone();
            assert_eq!(stored.id(), &id);
            assert!(matches!(id, Term::BigInteger(_) | Term::FixInteger(_)));
            assert_eq!(
                identifier(stored.as_term()),
                identifier(&spec(arg_of(&stored)))
            );
        }
    }
}

#[test]
fn a_proxied_start_carries_its_ttl_and_starts_where_it_runs_out() {
    let s = Settings {
        proxy_message_ttl: Ttl::Hops(1),
        ..settings()
    };
    let mut bus = Bus::new(2, s);
    let arg = (0..).find(|&a| bus.owner(a, &[0, 1]) == 1).unwrap();
    bus.call(0, from(1), start_child(arg));
    let sent = bus.seen[0]
        .iter()
        .find_map(|e| match e {
            Effect::Send { msg, .. } => Some(msg.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sent,
        tuple(vec![
            atom("proxy_operation"),
            start_child(arg),
            from(1),
            int(1)
        ])
    );
    assert_eq!(bus.running(), vec![(1, arg)]);
    // A proxied operation whose ttl is spent starts where it arrives,
    // whoever the strategy picks.
    let op = tuple(vec![
        atom("proxy_operation"),
        start_child(arg),
        from(2),
        int(1),
    ]);
    let e = bus.members[0].info(&op);
    bus.run(0, e);
    assert_eq!(bus.running(), vec![(0, arg), (1, arg)]);
}

#[test]
fn a_shutting_down_member_refuses_children_and_says_so_in_the_crdt() {
    let mut bus = Bus::new(2, settings());
    bus.call(0, from(1), atom("horde_shutting_down"));
    assert_eq!(bus.replies_to(&from(1)), vec![atom("ok")]);
    let info = bus
        .crdt
        .get(&OrdTerm(Key::MemberNodeInfo(name(0)).to_term()));
    assert_eq!(
        info.map(|t| Member::from_term(t).unwrap().status),
        Some(MemberStatus::ShuttingDown)
    );
    bus.call(0, from(2), start_child(5));
    assert_eq!(
        bus.replies_to(&from(2)),
        vec![error2(
            "shutting_down",
            term::binary("this node is shutting down.")
        )]
    );
    // The other member no longer places anything on it.
    for arg in 0..20 {
        bus.call(1, from(100 + arg), start_child(arg));
    }
    assert!(bus.running().iter().all(|(m, _)| *m == 1));
}

#[test]
fn a_dead_members_children_restart_exactly_once_on_their_new_owners() {
    let mut bus = Bus::new(3, settings());
    for arg in 0..60 {
        bus.call((arg % 3) as usize, from(arg), start_child(arg));
    }
    let before = bus.running();
    let on_dead: Vec<i64> = before
        .iter()
        .filter(|(m, _)| *m == 2)
        .map(|(_, a)| *a)
        .collect();
    assert!(!on_dead.is_empty());
    let old_ids: Vec<Term> = bus
        .crdt
        .keys()
        .filter(|k| matches!(Key::from_term(&k.0), Ok(Key::Process(_))))
        .map(|k| k.0.clone())
        .collect();
    let starts_before = bus.started.len();
    bus.kill(2);
    // Marked dead by those who saw the DOWN.
    let info = bus
        .crdt
        .get(&OrdTerm(Key::MemberNodeInfo(name(2)).to_term()));
    assert_eq!(
        info.map(|t| Member::from_term(t).unwrap().status),
        Some(MemberStatus::Dead)
    );
    let restarts = &bus.started[starts_before..];
    let mut restarted: Vec<i64> = restarts.iter().map(|(_, s)| arg_of(s)).collect();
    restarted.sort();
    assert_eq!(restarted, on_dead, "each restarted exactly once");
    for (i, s) in restarts {
        assert_eq!(
            *i,
            bus.owner(arg_of(s), &[0, 1]),
            "by the member the strategy picks"
        );
        // Not Horde 0.10's new random id: a netsplit's two sides then
        // restart a child under one key, and the CRDT keeps one copy.
        assert!(
            old_ids.contains(&Key::Process(s.id().clone()).to_term()),
            "under its own id"
        );
    }
    // The CRDT now holds every child once, under its old id (the dead
    // member's entries were overwritten), none on the dead member.
    let after = bus.running();
    assert_eq!(after.len(), 60);
    let ids_after: Vec<Term> = bus
        .crdt
        .keys()
        .filter(|k| matches!(Key::from_term(&k.0), Ok(Key::Process(_))))
        .map(|k| k.0.clone())
        .collect();
    assert_eq!(ids_after, old_ids);
    assert!(after.iter().all(|(m, _)| *m != 2));
    let mut args: Vec<i64> = after.iter().map(|(_, a)| *a).collect();
    args.sort();
    assert_eq!(args, (0..60).collect::<Vec<_>>());
}

#[test]
fn a_relinquished_child_is_started_by_its_new_owner_under_the_same_id() {
    let mut bus = Bus::new(2, settings());
    for arg in 0..20 {
        bus.call(0, from(arg), start_child(arg));
    }
    bus.call(0, from(99), atom("horde_shutting_down"));
    // The processes supervisor stops each child and casts relinquish.
    let local = bus.members[0].local_children();
    assert!(!local.is_empty());
    let starts_before = bus.started.len();
    for (id, _) in &local {
        bus.cast(0, tuple(vec![atom("relinquish_child_process"), id.clone()]));
    }
    let restarts = &bus.started[starts_before..];
    assert_eq!(restarts.len(), local.len());
    for (i, s) in restarts {
        assert_eq!(*i, 1);
        assert!(local.iter().any(|(id, _)| id == s.id()), "same id");
    }
    assert!(bus.running().iter().all(|(m, _)| *m == 1));
    assert_eq!(bus.running().len(), 20);
}

#[test]
fn with_no_alive_member_a_relinquished_child_waits_in_the_crdt() {
    let mut bus = Bus::new(1, settings());
    bus.call(0, from(1), start_child(1));
    bus.call(0, from(2), atom("horde_shutting_down"));
    let (id, _) = bus.members[0].local_children()[0].clone();
    let before = bus.started.len();
    bus.cast(0, tuple(vec![atom("relinquish_child_process"), id.clone()]));
    assert_eq!(bus.started.len(), before);
    let v = bus.crdt.get(&OrdTerm(Key::Process(id).to_term())).unwrap();
    assert!(matches!(
        ProcessValue::from_term(v),
        Ok(ProcessValue::Relinquished { .. })
    ));
}

#[test]
fn active_redistribution_signals_children_that_now_belong_elsewhere() {
    for mode in [Redistribution::Passive, Redistribution::Active] {
        let s = Settings {
            process_redistribution: mode,
            ..settings()
        };
        let mut bus = Bus::new(2, s);
        // Member 1 leaves the member list of both, then comes back.
        for i in 0..2 {
            let e = bus.members[i].set_members_call(&[name(0)]);
            bus.run(i, e);
        }
        for arg in 0..20 {
            bus.call(0, from(arg), start_child(arg));
        }
        assert!(bus.running().iter().all(|(m, _)| *m == 0));
        for i in 0..2 {
            let e = bus.members[i].set_members_call(&[name(0), name(1)]);
            bus.run(i, e);
        }
        let moving: Vec<i64> = (0..20).filter(|&a| bus.owner(a, &[0, 1]) == 1).collect();
        assert!(!moving.is_empty());
        let signals: Vec<&Effect> = bus.seen[0]
            .iter()
            .filter(|e| matches!(e, Effect::ExitSignal { .. }))
            .collect();
        match mode {
            Redistribution::Passive => assert!(signals.is_empty()),
            Redistribution::Active => {
                assert_eq!(signals.len(), moving.len());
                for e in signals {
                    let Effect::ExitSignal { reason, .. } = e else {
                        unreachable!()
                    };
                    assert_eq!(
                        reason,
                        &tuple(vec![atom("shutdown"), atom("process_redistribution")])
                    );
                }
            }
        }
    }
}

#[test]
fn quorum_loss_stops_the_member_with_children_and_its_return_answers_waiters() {
    let s = Settings {
        distribution_strategy: DistributionStrategy::UniformQuorum,
        ..settings()
    };
    let mut bus = Bus::new(3, s);
    for arg in 0..30 {
        bus.call(0, from(arg), start_child(arg));
    }
    assert!(bus.members[0].has_quorum());
    bus.kill(1);
    assert!(bus.members[0].has_quorum(), "2 of 3 alive");
    assert!(!bus.seen[0].contains(&Effect::StopMember));
    bus.kill(2);
    assert!(!bus.members[0].has_quorum());
    // The whole member stops, once, written `:shutting_down` first.
    let stops = bus.seen[0]
        .iter()
        .filter(|e| **e == Effect::StopMember)
        .count();
    assert_eq!(stops, 1);
    assert!(bus.members[0].is_shutting_down());
    let status = bus
        .crdt
        .get(&OrdTerm(Key::MemberNodeInfo(name(0)).to_term()));
    assert_eq!(
        status.map(|v| Member::from_term(v).unwrap().status),
        Some(MemberStatus::ShuttingDown)
    );
    bus.call(0, from(100), atom("wait_for_quorum"));
    assert!(bus.replies_to(&from(100)).is_empty(), "waits");
    bus.call(0, from(101), start_child(1));
    assert_eq!(
        bus.replies_to(&from(101)),
        vec![tuple(vec![
            atom("error"),
            tuple(vec![
                atom("shutting_down"),
                term::binary("this node is shutting down.")
            ])
        ])]
    );
}

#[test]
fn a_member_without_children_waits_out_a_quorum_loss_and_answers_its_waiters() {
    let s = Settings {
        distribution_strategy: DistributionStrategy::UniformQuorum,
        ..settings()
    };
    let mut bus = Bus::new(3, s);
    bus.kill(1);
    bus.kill(2);
    assert!(!bus.members[0].has_quorum());
    assert!(
        !bus.seen[0].contains(&Effect::StopMember),
        "nothing to stop"
    );
    assert!(!bus.members[0].is_shutting_down());
    bus.call(0, from(100), atom("wait_for_quorum"));
    assert!(bus.replies_to(&from(100)).is_empty(), "waits");
    // Back to quorum: the dead members leave the member list.
    let e = bus.members[0].set_members_call(&[name(0)]);
    bus.run(0, e);
    assert_eq!(bus.replies_to(&from(100)), vec![atom("ok")]);
}

#[test]
fn terminate_child_runs_here_proxies_to_its_member_or_is_not_found() {
    let mut bus = Bus::new(2, settings());
    let mut by_member = [None, None];
    for arg in 0..20 {
        bus.call(0, from(arg), start_child(arg));
        let r = bus.replies_to(&from(arg));
        let [_, Term::Pid(pid)] = term::as_tuple(&r[0]).unwrap() else {
            panic!()
        };
        let i = (0..2).find(|&i| pid.node.name == node(i)).unwrap();
        by_member[i].get_or_insert(pid.clone());
    }
    let (here, there) = (by_member[0].clone().unwrap(), by_member[1].clone().unwrap());
    let t = |p: &Pid| tuple(vec![atom("terminate_child"), Term::Pid(p.clone())]);
    bus.call(0, from(200), t(&here));
    assert!(bus.seen[0]
        .iter()
        .any(|e| matches!(e, Effect::TerminateChild { reply_to, .. } if reply_to == &from(200))));
    bus.call(0, from(201), t(&there));
    assert!(bus.seen[1]
        .iter()
        .any(|e| matches!(e, Effect::TerminateChild { reply_to, .. } if reply_to == &from(201))));
    assert_eq!(bus.running().len(), 18);
    bus.call(0, from(202), t(&Pid::new(node(0), 9999, 0, 1)));
    assert_eq!(
        bus.replies_to(&from(202)),
        vec![tuple(vec![atom("error"), atom("not_found")])]
    );
}

#[test]
fn a_child_on_a_dead_member_cannot_be_terminated_through_it() {
    let mut bus = Bus::new(3, settings());
    let arg = (0..).find(|&a| bus.owner(a, &[0, 1, 2]) == 2).unwrap();
    bus.call(0, from(1), start_child(arg));
    let r = bus.replies_to(&from(1));
    let [_, Term::Pid(pid)] = term::as_tuple(&r[0]).unwrap() else {
        panic!()
    };
    let pid = pid.clone();
    // Member 0 alone learns that 2 is dead (its own restart effects are
    // dropped, so it still holds the old entry).
    let _ = bus.members[0].crdt_update(&[Diff::Add {
        key: Key::MemberNodeInfo(name(2)).to_term(),
        value: Member::new(name(2), MemberStatus::Dead).to_term(),
    }]);
    let e = bus.members[0].call(
        from(2),
        &tuple(vec![atom("terminate_child"), Term::Pid(pid)]),
    );
    assert!(e.contains(&Effect::Reply {
        to: from(2),
        reply: error2(
            "node_dead_or_shutting_down",
            term::binary(
                "the node responsible for this process is shutting down or dead, try again soon"
            )
        )
    }));
}

#[test]
fn restarts_and_exits_reported_by_the_processes_supervisor_update_the_crdt() {
    let mut bus = Bus::new(1, settings());
    bus.call(0, from(1), start_child(1));
    bus.call(0, from(2), start_child(2));
    let local = bus.members[0].local_children();
    let (id1, _) = local[0].clone();
    let (id2, _) = local[1].clone();
    let new_pid = Pid::new(node(0), 5000, 0, 1);
    bus.cast(
        0,
        tuple(vec![
            atom("update_child_pid"),
            id1.clone(),
            Term::Pid(new_pid.clone()),
        ]),
    );
    let v = bus.crdt.get(&OrdTerm(Key::Process(id1).to_term())).unwrap();
    assert!(matches!(
        ProcessValue::from_term(v),
        Ok(ProcessValue::Running { pid, .. }) if pid == new_pid
    ));
    assert_eq!(bus.members[0].local_process_count(), 2);
    bus.cast(0, tuple(vec![atom("disown_child_process"), id2.clone()]));
    assert!(!bus.crdt.contains_key(&OrdTerm(Key::Process(id2).to_term())));
    assert_eq!(bus.members[0].local_process_count(), 1);
}

#[test]
fn members_telemetry_and_unknown_calls_are_answered() {
    let mut bus = Bus::new(3, settings());
    bus.call(1, from(1), atom("members"));
    assert_eq!(
        bus.replies_to(&from(1)),
        vec![list(vec![name(0), name(1), name(2)])]
    );
    bus.call(1, from(2), start_child(7));
    bus.call(1, from(3), atom("get_telemetry"));
    let t = &bus.replies_to(&from(3))[0];
    let Term::Map(m) = t else { panic!() };
    assert_eq!(
        m.map.get(&atom("global_supervised_process_count")),
        Some(&int(1))
    );
    bus.call(1, from(4), atom("which_children"));
    assert!(bus.seen[1].iter().any(|e| matches!(
        e,
        Effect::WhichChildren { supervisors, .. } if supervisors.len() == 3
    )));
    bus.call(1, from(5), tuple(vec![atom("no_such_call")]));
    assert_eq!(bus.replies_to(&from(5)).len(), 1);
    bus.call(
        1,
        from(6),
        tuple(vec![atom("start_child"), atom("not_a_map")]),
    );
    assert_eq!(bus.replies_to(&from(6)).len(), 1);
}

#[test]
fn malformed_crdt_entries_are_skipped() {
    let mut bus = Bus::new(2, settings());
    let junk = [
        Diff::Add {
            key: Key::MemberNodeInfo(name(1)).to_term(),
            value: int(3),
        },
        Diff::Add {
            key: Key::Process(int(1)).to_term(),
            value: tuple(vec![atom("garbage")]),
        },
        Diff::Add {
            key: Key::Member(name(5)).to_term(),
            value: int(2),
        },
        Diff::Add {
            key: atom("what"),
            value: int(1),
        },
        Diff::Remove {
            key: Key::Process(int(99)).to_term(),
        },
    ];
    let e = bus.members[0].crdt_update(&junk);
    bus.run(0, e);
    assert_eq!(bus.members[0].members().len(), 2);
    assert!(bus.members[0].children().is_empty());
}

// ---- against a recording of the real Horde -------------------------------------

/// The first CRDT write among `effects`, as the diff it comes back as.
fn first_put(effects: &[Effect]) -> Option<Diff> {
    effects.iter().find_map(|e| match e {
        Effect::Put { key, value } => Some(Diff::Add {
            key: key.clone(),
            value: value.clone(),
        }),
        _ => None,
    })
}

fn recorded() -> Term {
    let bytes = include_bytes!("../../../../tests/fixtures/horde/supervisor_crdt.etf");
    crate::term::etf::from_binary(bytes).unwrap()
}

fn get(t: &Term, key: &str) -> Term {
    match t {
        Term::Map(m) => m.map.get(&atom(key)).cloned().unwrap(),
        _ => panic!("not a map"),
    }
}

fn as_diffs(to_map: &Term) -> Vec<Diff> {
    let Term::Map(m) = to_map else { panic!() };
    let mut pairs: Vec<(OrdTerm, Term)> = m
        .map
        .iter()
        .map(|(k, v)| (OrdTerm(k.clone()), v.clone()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
        .into_iter()
        .map(|(k, v)| Diff::Add { key: k.0, value: v })
        .collect()
}

fn process_specs(to_map: &Term) -> Vec<(Term, Term, Term)> {
    let Term::Map(m) = to_map else { panic!() };
    m.map
        .iter()
        .filter_map(
            |(k, v)| match (Key::from_term(k), ProcessValue::from_term(v)) {
                (Ok(Key::Process(id)), Ok(ProcessValue::Running { member, spec, .. })) => {
                    let Term::Map(mut s) = spec.into_term() else {
                        panic!()
                    };
                    s.map.remove(&atom("id"));
                    Some((id, member, Term::Map(s)))
                }
                _ => None,
            },
        )
        .collect()
}

#[test]
fn the_recorded_failover_is_the_one_we_decide() {
    // Member a of the recording, fed a's CRDT as it was before b was
    // killed, then b's DOWN: we must restart exactly the children Horde's a
    // restarted. One deliberate difference: Horde's a deleted b's entries
    // and restarted the children under new random ids; our member keeps
    // each child's id where Horde picks a new one, and overwrites b's entry
    // instead of deleting it (so the two sides of a netsplit restart a
    // child under one key and the CRDT keeps one copy; see
    // `handoff_processes`). The ids it keeps are exactly the ones Horde
    // deleted.
    let fx = recorded();
    let (s, a, b) = (get(&fx, "s"), get(&fx, "a"), get(&fx, "b"));
    let (a_name, b_name) = (tuple(vec![s.clone(), a.clone()]), tuple(vec![s.clone(), b]));
    let mut st = SupervisorState::new(
        term::as_atom(&s).unwrap(),
        term::as_atom(&a).unwrap(),
        settings(),
        counter(7),
    );
    st.init(Some(&[a_name.clone(), b_name.clone()]));
    st.crdt_update(as_diffs(&get(&fx, "before_kill")));
    assert_eq!(st.children().len(), 5);
    let down = st.member_down(&b_name);
    let dead = first_put(&down).expect("b is written dead");
    let effects = st.crdt_update(&[dead]);
    let deleted: Vec<Term> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Delete { key } => Some(key.clone()),
            _ => None,
        })
        .collect();
    let mut restarted: Vec<Term> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartChild {
                spec,
                reply_to: None,
            } => {
                let Term::Map(mut m) = spec.as_term().clone() else {
                    panic!()
                };
                m.map.remove(&atom("id"));
                Some(Term::Map(m))
            }
            _ => None,
        })
        .collect();
    let before = process_specs(&get(&fx, "before_kill"));
    let after = process_specs(&get(&fx, "failed_over"));
    let mut horde_deleted: Vec<Term> = before
        .iter()
        .filter(|(id, _, _)| !after.iter().any(|(i, _, _)| i == id))
        .map(|(id, _, _)| Key::Process(id.clone()).to_term())
        .collect();
    let mut horde_restarted: Vec<Term> = after
        .iter()
        .filter(|(id, _, _)| !before.iter().any(|(i, _, _)| i == id))
        .map(|(_, m, spec)| {
            assert_eq!(m, &a_name);
            spec.clone()
        })
        .collect();
    assert_eq!(horde_restarted.len(), 2, "the recording moved two children");
    assert!(
        deleted.is_empty(),
        "Horde deletes here, we do not: {deleted:?}"
    );
    let starts: Vec<ChildSpec> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartChild {
                spec,
                reply_to: None,
            } => Some(spec.clone()),
            _ => None,
        })
        .collect();
    let mut kept: Vec<Term> = starts
        .iter()
        .map(|s| Key::Process(s.id().clone()).to_term())
        .collect();
    for v in [
        &mut kept,
        &mut horde_deleted,
        &mut restarted,
        &mut horde_restarted,
    ] {
        v.sort_by_key(|x| OrdTerm(x.clone()));
    }
    assert_eq!(
        kept, horde_deleted,
        "each child keeps the id Horde replaced"
    );
    assert_eq!(restarted, horde_restarted);
    // Once started, each child's entry names a, under its old key.
    for (n, spec) in starts.into_iter().enumerate() {
        let key = Key::Process(spec.id().clone()).to_term();
        let pid = Pid::new(term::as_atom(&a).unwrap(), 900 + n as u32, 0, 1);
        let e = st.child_started(spec, &tuple(vec![atom("ok"), Term::Pid(pid)]), None);
        let written = e.iter().find_map(|e| match e {
            Effect::Put { key: k, value } if k == &key => Some(value.clone()),
            _ => None,
        });
        match written.map(|v| ProcessValue::from_term(&v)) {
            Some(Ok(ProcessValue::Running { member, .. })) => assert_eq!(member, a_name),
            other => panic!("no running entry written for {key}: {other:?}"),
        }
    }
    assert_eq!(st.children().len(), 5);
    assert!(st.children().iter().all(|(_, m, _)| m != &b_name));
}

/// A leaving member's relinquished children and its `:dead` status can
/// reach a survivor in one `crdt_update` (a third member forwards both once
/// the leaver is gone). Horde starts the relinquished child before it looks
/// at the dead member's children, so it sees the child as its own by then;
/// the start here is an effect performed later, so the decision must not
/// count the child as the dead member's a second time (that restarted it
/// a second time: two copies on one survivor).
#[test]
fn a_relinquished_child_arriving_with_its_members_death_starts_once() {
    let mut m = SupervisorState::new(S, &node(1), settings(), counter(1));
    let all: Vec<Term> = (0..2).map(name).collect();
    m.init(Some(&all));
    let alive = |i| Diff::Add {
        key: Key::MemberNodeInfo(name(i)).to_term(),
        value: Member::new(name(i), MemberStatus::Alive).to_term(),
    };
    let joined = |i| Diff::Add {
        key: Key::Member(name(i)).to_term(),
        value: int(1),
    };
    m.crdt_update(&[joined(0), joined(1), alive(0), alive(1)]);
    // Children of member 0 that member 1 owns once 0 is gone.
    let mine: Vec<ChildSpec> = (0..40)
        .map(|arg| {
            let mut s = spec(arg);
            if let Term::Map(map) = &mut s {
                map.map.insert(atom("id"), int(1000 + arg));
            }
            ChildSpec::from_term(&s).unwrap()
        })
        .collect();
    let running: Vec<Diff> = mine
        .iter()
        .enumerate()
        .map(|(n, s)| Diff::Add {
            key: Key::Process(s.id().clone()).to_term(),
            value: ProcessValue::Running {
                member: name(0),
                spec: s.clone(),
                pid: Pid::new(node(0), 500 + n as u32, 0, 1),
            }
            .to_term(),
        })
        .collect();
    m.crdt_update(&*running);
    let mut batch = vec![Diff::Add {
        key: Key::MemberNodeInfo(name(0)).to_term(),
        value: Member::new(name(0), MemberStatus::Dead).to_term(),
    }];
    batch.extend(mine.iter().map(|s| Diff::Add {
        key: Key::Process(s.id().clone()).to_term(),
        value: ProcessValue::Relinquished { spec: s.clone() }.to_term(),
    }));
    let effects = m.crdt_update(&*batch);
    let mut starts: Vec<i64> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartChild { spec, .. } => Some(arg_of(spec)),
            _ => None,
        })
        .collect();
    starts.sort();
    assert_eq!(
        starts,
        (0..40).collect::<Vec<_>>(),
        "each child started once"
    );
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Delete { .. })),
        "no relinquished entry is deleted: {effects:?}"
    );
}

/// A child started on member `on`: its id and its CRDT key.
fn started_on(bus: &mut Bus, on: usize, n: i64) -> (Term, Term) {
    let arg = (0..).find(|&a| bus.owner(a, &[0, 1]) == on).unwrap();
    bus.call(on, from(n), start_child(arg));
    let (_, s) = bus.started.last().unwrap().clone();
    let id = s.id().clone();
    (id.clone(), Key::Process(id).to_term())
}

fn drops(bus: &Bus, i: usize) -> Vec<Term> {
    bus.seen[i]
        .iter()
        .filter_map(|e| match e {
            Effect::DropDuplicate { id } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

/// Found by chaos scenario 2 (tests/supervisor_chaos_netns.rs): after a
/// netsplit a Horde member (Elixir; ours keep the id) restarts the other
/// side's children under new ids and deletes their old entries; once
/// healed, the member still running a child whose entry another member
/// deleted must stop it, or both copies run for good (Horde 0.8+ leaves
/// that to `Horde.Registry`).
#[test]
fn a_child_whose_entry_another_member_deleted_stops_here() {
    let mut bus = Bus::new(2, settings());
    let (id, key) = started_on(&mut bus, 0, 1);
    assert!(drops(&bus, 0).is_empty());
    bus.run(1, vec![Effect::Delete { key }]);
    assert_eq!(drops(&bus, 0), vec![id]);
    assert!(drops(&bus, 1).is_empty());
}

/// Found by chaos scenario 2 (churn): a re-joining member took a stale
/// relinquished entry while it saw only itself alive and started a child
/// that another member already ran under the same id. The converged entry
/// names one member; the other stops its copy.
#[test]
fn a_child_whose_entry_another_member_overwrote_stops_here() {
    let mut bus = Bus::new(2, settings());
    let (id, key) = started_on(&mut bus, 0, 1);
    let spec = ChildSpec::from_term(
        &bus.crdt
            .values()
            .find_map(|v| match ProcessValue::from_term(v) {
                Ok(ProcessValue::Running { spec, .. }) if spec.id() == &id => {
                    Some(spec.into_term())
                }
                _ => None,
            })
            .unwrap(),
    )
    .unwrap();
    let other = ProcessValue::Running {
        member: name(1),
        spec,
        pid: Pid::new(node(1), 999, 0, 1),
    };
    bus.run(
        1,
        vec![Effect::Put {
            key,
            value: other.to_term(),
        }],
    );
    assert_eq!(drops(&bus, 0), vec![id]);
    assert!(drops(&bus, 1).is_empty());
}

/// Our own deletes and restarts are no duplicates.
#[test]
fn terminating_or_restarting_a_child_here_drops_nothing() {
    let mut bus = Bus::new(2, settings());
    let (id, _) = started_on(&mut bus, 0, 1);
    let r = bus.replies_to(&from(1));
    let [_, Term::Pid(pid)] = term::as_tuple(&r[0]).unwrap() else {
        panic!()
    };
    let new_pid = Pid::new(node(0), 777, 0, 1);
    bus.cast(
        0,
        tuple(vec![
            atom("update_child_pid"),
            id,
            Term::Pid(new_pid.clone()),
        ]),
    );
    bus.call(
        0,
        from(2),
        tuple(vec![atom("terminate_child"), Term::Pid(new_pid)]),
    );
    let _ = pid;
    assert!(drops(&bus, 0).is_empty() && drops(&bus, 1).is_empty());
}

/// A dead member's child restarted under its own id whose start fails is
/// given up as Horde gives it up (Horde deleted the entry before its
/// start): the entry naming the dead member goes, and no later membership
/// change tries it again. The entry stays when the start works.
#[test]
fn a_failover_start_that_fails_deletes_the_dead_members_entry() {
    let mut bus = Bus::new(2, settings());
    let (id, key) = started_on(&mut bus, 0, 1);
    let mut m = std::mem::replace(
        &mut bus.members[1],
        SupervisorState::new(S, &node(9), settings(), counter(9)),
    );
    let dead = Diff::Add {
        key: Key::MemberNodeInfo(name(0)).to_term(),
        value: Member::new(name(0), MemberStatus::Dead).to_term(),
    };
    let effects = m.crdt_update(&[dead]);
    let spec = effects
        .iter()
        .find_map(|e| match e {
            Effect::StartChild {
                spec,
                reply_to: None,
            } => Some(spec.clone()),
            _ => None,
        })
        .expect("member 1 restarts member 0's child");
    assert_eq!(spec.id(), &id, "under its own id");
    let error = tuple(vec![atom("error"), atom("boom")]);
    let e = m.child_started(spec.clone(), &error, None);
    assert_eq!(e, vec![Effect::Delete { key: key.clone() }]);
    assert!(m.children().is_empty());
    // A start that works writes over the entry instead.
    let mut bus = Bus::new(2, settings());
    let (_, key) = started_on(&mut bus, 0, 1);
    bus.kill(0);
    assert!(bus.crdt.contains_key(&OrdTerm(key)));
    assert_eq!(
        bus.running().iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        vec![1]
    );
}

/// A child started on member `on` of the three: its spec and its CRDT key.
fn started_on_of_three(bus: &mut Bus, on: usize, n: i64) -> (ChildSpec, Term, Pid) {
    let arg = (0..).find(|&a| bus.owner(a, &[0, 1, 2]) == on).unwrap();
    bus.call(on, from(n), start_child(arg));
    let r = bus.replies_to(&from(n));
    let [_, Term::Pid(pid)] = term::as_tuple(&r[0]).unwrap() else {
        panic!("{r:?}")
    };
    let (_, s) = bus.started.last().unwrap().clone();
    let key = Key::Process(s.id().clone()).to_term();
    (s, key, pid.clone())
}

fn terminate(bus: &mut Bus, i: usize, n: i64, pid: &Pid) {
    bus.call(
        i,
        from(n),
        tuple(vec![atom("terminate_child"), Term::Pid(pid.clone())]),
    );
}

/// Member 2, cut off from 0 and 1, restarted 0's child under its id; the
/// heal brings that entry (its dot unseen by 0's delete) back to 0.
fn resurfaced(spec: &ChildSpec, on: usize) -> Diff {
    Diff::Add {
        key: Key::Process(spec.id().clone()).to_term(),
        value: ProcessValue::Running {
            member: name(on),
            spec: spec.clone(),
            pid: Pid::new(node(on), 4242, 0, 1),
        }
        .to_term(),
    }
}

fn dead(i: usize) -> Diff {
    Diff::Add {
        key: Key::MemberNodeInfo(name(i)).to_term(),
        value: Member::new(name(i), MemberStatus::Dead).to_term(),
    }
}

/// Found by the chaos soak: a child terminated on A while C was cut off
/// and restarting it under its id ran on after the heal (the CRDT's
/// delete removes only the entries it saw), then failed over again when C
/// died. The member that ended it ends the copy where it runs.
#[test]
fn a_child_ended_here_that_a_cut_off_member_restarted_is_ended_there_after_the_heal() {
    let mut bus = Bus::new(3, settings());
    let (spec, _, pid) = started_on_of_three(&mut bus, 0, 1);
    terminate(&mut bus, 0, 2, &pid);
    let e = bus.members[0].crdt_update(&[resurfaced(&spec, 2)]);
    assert_eq!(
        e,
        vec![Effect::EndResurfaced {
            member: name(2),
            pid: Pid::new(node(2), 4242, 0, 1)
        }]
    );
    // Until member 2 ends it, the copy is what the table says runs there.
    assert_eq!(bus.members[0].children().len(), 1);
    // A member that never ended it takes the entry as any other.
    let e = bus.members[1].crdt_update(&[resurfaced(&spec, 2)]);
    assert!(e.is_empty(), "{e:?}");
}

/// The copy's member died before it could be ended there: its entry is
/// deleted, and no failover starts the child again, whichever way the
/// death and the entry arrive.
#[test]
fn a_child_ended_here_that_resurfaces_on_a_dead_member_is_not_started_again() {
    // The entry arrives after the death.
    let mut bus = Bus::new(3, settings());
    let (spec, key, pid) = started_on_of_three(&mut bus, 0, 1);
    terminate(&mut bus, 0, 2, &pid);
    let _ = bus.members[0].crdt_update(&[dead(2)]);
    let e = bus.members[0].crdt_update(&[resurfaced(&spec, 2)]);
    assert!(e.contains(&Effect::Delete { key: key.clone() }), "{e:?}");
    assert!(!e.iter().any(|e| matches!(e, Effect::StartChild { .. })));
    // The death arrives after the entry, with member 0 the one the ring
    // now picks for the child.
    let mut bus = Bus::new(3, settings());
    let arg = (0..)
        .find(|&a| bus.owner(a, &[0, 1, 2]) == 2 && bus.owner(a, &[0, 1]) == 0)
        .unwrap();
    bus.call(0, from(1), start_child(arg));
    let (_, spec) = bus.started.last().unwrap().clone();
    let key = Key::Process(spec.id().clone()).to_term();
    // Member 2 ran it; it was moved to 0 and terminated there (a
    // stand-in for "0 ended it"), then 2's copy came back.
    let moved = ProcessValue::Running {
        member: name(0),
        spec: spec.clone(),
        pid: Pid::new(node(0), 77, 0, 1),
    };
    let _ = bus.members[0].crdt_update(&[Diff::Add {
        key: key.clone(),
        value: moved.to_term(),
    }]);
    let _ = bus.members[0].call(
        from(3),
        &tuple(vec![
            atom("terminate_child"),
            Term::Pid(Pid::new(node(0), 77, 0, 1)),
        ]),
    );
    let e = bus.members[0].crdt_update(&[resurfaced(&spec, 2)]);
    assert!(
        matches!(e.as_slice(), [Effect::EndResurfaced { .. }]),
        "{e:?}"
    );
    let e = bus.members[0].crdt_update(&[dead(2)]);
    assert!(e.contains(&Effect::Delete { key }), "{e:?}");
    assert!(
        !e.iter().any(|e| matches!(e, Effect::StartChild { .. })),
        "{e:?}"
    );
}

/// A relinquished entry of a child ended here stays ended, even where
/// this member is the one that would start it.
#[test]
fn a_child_ended_here_that_resurfaces_relinquished_is_not_started() {
    let mut bus = Bus::new(3, settings());
    let (spec, key, pid) = started_on_of_three(&mut bus, 0, 1);
    terminate(&mut bus, 0, 2, &pid);
    let e = bus.members[0].crdt_update(&[Diff::Add {
        key: key.clone(),
        value: ProcessValue::Relinquished { spec }.to_term(),
    }]);
    assert_eq!(e, vec![Effect::Delete { key }]);
}

#[test]
fn a_member_remembers_the_latest_ended_children_only() {
    let mut s = SupervisorState::new(S, &node(0), settings(), counter(1));
    for i in 0..ENDED_REMEMBERED as i64 + 10 {
        s.remember_ended(&int(i));
    }
    assert_eq!(s.ended.len(), ENDED_REMEMBERED);
    assert!(!s.was_ended(&int(9)));
    assert!(s.was_ended(&int(10)));
}

/// Every start comes back to its member as a CRDT diff of its own write:
/// it changes nothing, while an entry naming another member for the same
/// child still makes the local copy a duplicate.
#[test]
fn a_members_own_entry_coming_back_changes_nothing() {
    let mut st = SupervisorState::new(S, &node(1), settings(), counter(1));
    st.init(Some(&[name(1)]));
    let spec = ChildSpec::from_term(&spec(7)).unwrap();
    let id = spec.id().clone();
    let pid = Pid::new(node(1), 900, 0, 1);
    let e = st.child_started(spec, &tuple(vec![atom("ok"), Term::Pid(pid.clone())]), None);
    let own = first_put(&e).expect("the child is written");
    let before = st.children();
    assert_eq!(st.crdt_update(std::slice::from_ref(&own)), vec![]);
    assert_eq!(st.children(), before);
    assert_eq!(st.local_process_count(), 1);
    // The same entry naming another member (with another pid): a duplicate.
    let Diff::Add { key, value } = own else {
        unreachable!()
    };
    let Some([_, spec_term, _]) = term::as_tuple(&value) else {
        panic!("{value}")
    };
    let theirs = tuple(vec![
        name(2),
        spec_term.clone(),
        Term::Pid(Pid::new(node(2), 900, 0, 1)),
    ]);
    let e = st.crdt_update(&[Diff::Add { key, value: theirs }]);
    assert_eq!(e, vec![Effect::DropDuplicate { id }]);
}

/// What a terminated child leaves in its members' tables: nothing but its
/// id's fingerprint on the member that ended it. Horde keeps the pid's
/// mapping on that member for good, which a soak saw as heap growing with
/// every child ended; here 300 children, 100 started on each of three
/// members and terminated through any of them, leave no mapping anywhere.
#[test]
fn a_terminated_child_leaves_no_pid_mapping_behind() {
    let mut bus = Bus::new(3, settings());
    let mut n = 0;
    for round in 0..100 {
        for on in 0..3 {
            n += 1;
            let (_, _, pid) = started_on_of_three(&mut bus, on, n);
            terminate(&mut bus, (on + round) % 3, n, &pid);
            let ended = bus.seen[on].iter().any(
                |e| matches!(e, Effect::TerminateChild { reply_to, .. } if *reply_to == from(n)),
            );
            assert!(ended, "child {n} terminated by the member running it");
        }
    }
    assert!(bus.running().is_empty());
    for m in &bus.members {
        assert!(m.process_pid_to_id.is_empty() && m.processes_by_id.is_empty());
        assert_eq!(m.ended.len(), m.ended_order.len());
    }
    assert_eq!(
        bus.members.iter().map(|m| m.ended.len()).sum::<usize>(),
        300,
        "each ended child remembered by the member that ended it"
    );
}

/// The same `{nil, spec}` entry reported twice before this member's start
/// of it answered (a push and a sync round can both bring it) starts one
/// copy, not two; once that start answered, a later relinquish of the
/// child is taken over again.
#[test]
fn a_relinquished_child_reported_twice_starts_once() {
    let mut m = SupervisorState::new(S, &node(1), settings(), counter(1));
    m.init(Some(&[name(1)]));
    m.crdt_update(&[
        Diff::Add {
            key: Key::Member(name(1)).to_term(),
            value: int(1),
        },
        Diff::Add {
            key: Key::MemberNodeInfo(name(1)).to_term(),
            value: Member::new(name(1), MemberStatus::Alive).to_term(),
        },
    ]);
    let child = ChildSpec::from_term(&spec(7)).unwrap();
    let relinquished = Diff::Add {
        key: Key::Process(child.id().clone()).to_term(),
        value: ProcessValue::Relinquished {
            spec: child.clone(),
        }
        .to_term(),
    };
    let starts = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::StartChild { .. }))
            .count()
    };
    let first = m.crdt_update(&[relinquished.clone(), relinquished.clone()]);
    let again = m.crdt_update(std::slice::from_ref(&relinquished));
    assert_eq!(starts(&first) + starts(&again), 1, "{first:?} {again:?}");
    m.child_started(
        child.clone(),
        &tuple(vec![atom("ok"), Term::Pid(Pid::new(node(1), 900, 0, 1))]),
        None,
    );
    // It ran here, moved away and came back relinquished: taken over again.
    let later = m.crdt_update(&[relinquished]);
    assert_eq!(starts(&later), 1, "{later:?}");
}
