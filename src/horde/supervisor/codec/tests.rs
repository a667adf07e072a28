//! The codec from hand-made terms and from two recordings of a real Horde
//! 0.10 member's CRDT (`tests/fixtures/horde/dynamic_supervisor_contents.etf`,
//! two members and five running children; `supervisor_crdt.etf`, a member
//! shutting down, a dead one and a relinquished child).

use super::*;
use crate::term::{atom, binary, etf, int, list, tuple};

const S: &str = "Elixir.MyApp.DSup";

fn name(node: &str) -> Term {
    tuple(vec![atom(S), atom(node)])
}

fn pid() -> Pid {
    Pid::new("a@127.0.0.1", 101, 0, 1)
}

fn spec() -> ChildSpec {
    ChildSpec::new(
        int(7),
        "Elixir.MyApp.Worker",
        "start_link",
        vec![int(1)],
        [],
    )
}

fn map(pairs: Vec<(Term, Term)>) -> Term {
    Term::Map(pairs.into())
}

#[test]
fn member_info_round_trips_with_exactly_its_two_fields() {
    for status in [
        MemberStatus::Uninitialized,
        MemberStatus::Alive,
        MemberStatus::ShuttingDown,
        MemberStatus::Dead,
    ] {
        let m = Member::new(name("a@h"), status);
        let t = m.to_term();
        let Term::Map(fields) = &t else { panic!() };
        assert_eq!(fields.map.len(), 3, "__struct__, name, status");
        assert_eq!(Member::from_term(&t), Ok(m));
    }
}

#[test]
fn malformed_member_info_is_an_error() {
    let good = Member::new(name("a@h"), MemberStatus::Alive).to_term();
    let Term::Map(mut m) = good else { panic!() };
    let mut unknown = m.clone();
    unknown.map.insert(atom("status"), atom("sleeping"));
    let mut other_struct = m.clone();
    other_struct
        .map
        .insert(atom("__struct__"), atom("Elixir.Other"));
    m.map.remove(&atom("name"));
    for bad in [
        Term::Map(unknown),
        Term::Map(other_struct),
        Term::Map(m),
        map(vec![
            (atom("name"), name("a@h")),
            (atom("status"), atom("alive")),
        ]),
        int(1),
    ] {
        assert!(Member::from_term(&bad).is_err(), "{bad}");
    }
}

#[test]
fn keys_round_trip_and_bad_keys_are_errors() {
    for k in [
        Key::Member(name("a@h")),
        Key::MemberNodeInfo(name("b@h")),
        Key::Process(int(12)),
        Key::Process(binary("any term")),
    ] {
        assert_eq!(Key::from_term(&k.to_term()), Ok(k));
    }
    for bad in [
        tuple(vec![atom("member"), atom("a@h")]),
        tuple(vec![atom("member"), tuple(vec![atom(S), int(1)])]),
        tuple(vec![atom("key"), int(1)]),
        tuple(vec![atom("process")]),
        atom("member"),
    ] {
        assert!(Key::from_term(&bad).is_err(), "{bad}");
    }
}

#[test]
fn process_values_round_trip() {
    for v in [
        ProcessValue::Running {
            member: name("a@h"),
            spec: spec(),
            pid: pid(),
        },
        ProcessValue::Relinquished { spec: spec() },
    ] {
        let t = v.to_term();
        assert_eq!(ProcessValue::from_term(&t), Ok(v.clone()));
        let e = Entry::from_terms(&Key::Process(int(7)).to_term(), &t).unwrap();
        assert_eq!(e, Entry::Process(int(7), v));
    }
}

#[test]
fn malformed_process_values_are_errors() {
    let s = spec().into_term();
    for bad in [
        tuple(vec![name("a@h"), s.clone(), atom("not_a_pid")]),
        tuple(vec![atom("a@h"), s.clone(), Term::Pid(pid())]),
        tuple(vec![name("a@h"), int(1), Term::Pid(pid())]),
        tuple(vec![name("a@h"), map(vec![]), Term::Pid(pid())]),
        tuple(vec![atom("undefined"), s.clone()]),
        tuple(vec![atom("nil"), list(vec![])]),
        tuple(vec![atom("nil"), s.clone(), Term::Pid(pid())]),
        s,
    ] {
        assert!(ProcessValue::from_term(&bad).is_err(), "{bad}");
    }
}

#[test]
fn a_member_key_holds_exactly_1() {
    let k = Key::Member(name("a@h")).to_term();
    assert_eq!(
        Entry::from_terms(&k, &int(1)),
        Ok(Entry::Member(name("a@h")))
    );
    assert!(Entry::from_terms(&k, &int(2)).is_err());
    assert!(Entry::from_terms(&k, &atom("true")).is_err());
}

#[test]
fn validation_fills_horde_defaults() {
    let v = spec().validate().unwrap();
    assert_eq!(v.restart, Restart::Permanent);
    assert_eq!(v.shutdown, Shutdown::Timeout(5000));
    assert_eq!(v.child_type, ChildType::Worker);
    assert_eq!(v.modules, list(vec![atom("Elixir.MyApp.Worker")]));
    assert_eq!(
        (v.module.as_str(), v.function.as_str()),
        ("Elixir.MyApp.Worker", "start_link")
    );
    assert_eq!(v.args, vec![int(1)]);
    let sup = ChildSpec::new(int(1), "M", "f", vec![], [("type", atom("supervisor"))]);
    assert_eq!(sup.validate().unwrap().shutdown, Shutdown::Infinity);
    let given = ChildSpec::new(
        int(1),
        "M",
        "f",
        vec![],
        [
            ("restart", atom("transient")),
            ("shutdown", atom("brutal_kill")),
            ("modules", atom("dynamic")),
        ],
    );
    let v = given.validate().unwrap();
    assert_eq!(
        (v.restart, v.shutdown),
        (Restart::Transient, Shutdown::BrutalKill)
    );
    assert_eq!(v.modules, atom("dynamic"));
}

#[test]
fn validation_answers_with_hordes_reason_for_the_first_bad_field() {
    let bad = |fields: Vec<(&'static str, Term)>| {
        let Term::Map(mut m) = spec().into_term() else {
            panic!()
        };
        for (k, v) in fields {
            m.map.insert(atom(k), v);
        }
        ChildSpec::from_term(&Term::Map(m))
            .unwrap()
            .validate()
            .unwrap_err()
    };
    let reason = |tag: &str, t: Term| tuple(vec![atom(tag), t]);
    let mfa = tuple(vec![int(1), atom("f"), list(vec![])]);
    assert_eq!(
        bad(vec![("start", mfa.clone()), ("restart", atom("x"))]),
        reason("invalid_mfa", mfa)
    );
    let improper = tuple(vec![atom("M"), atom("f"), atom("args")]);
    assert_eq!(
        bad(vec![("start", improper.clone())]),
        reason("invalid_mfa", improper)
    );
    assert_eq!(
        bad(vec![("restart", atom("sometimes")), ("shutdown", int(0))]),
        reason("invalid_restart_type", atom("sometimes"))
    );
    assert_eq!(
        bad(vec![("shutdown", int(0))]),
        reason("invalid_shutdown", int(0))
    );
    assert_eq!(
        bad(vec![("shutdown", int(-5))]),
        reason("invalid_shutdown", int(-5))
    );
    assert_eq!(
        bad(vec![("type", atom("daemon"))]),
        reason("invalid_child_type", atom("daemon"))
    );
    assert_eq!(
        bad(vec![("modules", list(vec![int(1)]))]),
        reason("invalid_modules", list(vec![int(1)]))
    );
    let no_start = map(vec![(atom("id"), int(1))]);
    assert_eq!(
        ChildSpec::from_term(&no_start)
            .unwrap()
            .validate()
            .unwrap_err(),
        reason("invalid_child_spec", no_start)
    );
}

#[test]
fn a_spec_needs_a_map_with_an_id_and_keeps_its_place_under_a_new_id() {
    assert!(ChildSpec::from_term(&map(vec![(atom("start"), int(1))])).is_err());
    assert!(ChildSpec::from_term(&list(vec![])).is_err());
    let moved = spec().with_id(binary("new"));
    assert_eq!(moved.id(), &binary("new"));
    assert_eq!(
        super::super::distribution::identifier(moved.as_term()),
        super::super::distribution::identifier(spec().as_term())
    );
    assert_eq!(spec().start_module(), Some("Elixir.MyApp.Worker"));
}

// ---- recorded from a real Horde ----------------------------------------------

fn get<'a>(t: &'a Term, key: &str) -> &'a Term {
    match t {
        Term::Map(m) => m
            .map
            .get(&atom(key))
            .unwrap_or_else(|| panic!("no {key} in {t}")),
        _ => panic!("not a map: {t}"),
    }
}

/// Parses every entry; checks each re-encodes to the recorded term.
fn entries(to_map: &Term) -> Vec<Entry> {
    let Term::Map(m) = to_map else {
        panic!("to_map is a map")
    };
    m.map
        .iter()
        .map(|(k, v)| {
            let e = Entry::from_terms(k, v).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&e.key().to_term(), k);
            assert_eq!(&e.value(), v);
            e
        })
        .collect()
}

#[test]
fn a_two_member_crdt_with_five_children_parses_entry_by_entry() {
    let bytes = include_bytes!("../../../../tests/fixtures/horde/dynamic_supervisor_contents.etf");
    let fx = etf::from_binary(bytes).unwrap();
    for side in ["a", "b"] {
        let all = entries(get(get(get(&fx, "crdt"), side), "to_map"));
        assert_eq!(all.len(), 9);
        let mut members = 0;
        for e in &all {
            match e {
                Entry::Member(_) => members += 1,
                Entry::MemberNodeInfo(m, info) => {
                    assert_eq!(&info.name, m);
                    assert_eq!(info.status, MemberStatus::Alive);
                }
                Entry::Process(id, ProcessValue::Running { spec, .. }) => {
                    assert_eq!(spec.id(), id);
                    // Random ids below 2^128.
                    assert!(matches!(id, Term::BigInteger(b) if b.value.bits() <= 128));
                    assert!(spec.validate().is_ok(), "{}", spec.as_term());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(members, 2);
    }
}

#[test]
fn a_shutting_down_member_a_dead_one_and_a_relinquished_child_parse() {
    let bytes = include_bytes!("../../../../tests/fixtures/horde/supervisor_crdt.etf");
    let fx = etf::from_binary(bytes).unwrap();
    let a = tuple(vec![get(&fx, "s").clone(), get(&fx, "a").clone()]);
    let b = tuple(vec![get(&fx, "s").clone(), get(&fx, "b").clone()]);
    // Every step of the recording parses.
    let before = entries(get(&fx, "before_kill"));
    entries(get(&fx, "failed_over"));
    let all = entries(get(&fx, "to_map"));
    let info = |who: &Term| {
        all.iter().find_map(|e| match e {
            Entry::MemberNodeInfo(m, info) if m == who => Some(info.status),
            _ => None,
        })
    };
    assert_eq!(info(&a), Some(MemberStatus::ShuttingDown));
    assert_eq!(info(&b), Some(MemberStatus::Dead));
    let relinquished: Vec<(&Term, &ChildSpec)> = all
        .iter()
        .filter_map(|e| match e {
            Entry::Process(id, ProcessValue::Relinquished { spec }) => Some((id, spec)),
            _ => None,
        })
        .collect();
    assert_eq!(relinquished.len(), 1);
    // Given up under the id it ran with.
    let (id, spec) = relinquished[0];
    assert!(before.iter().any(|e| matches!(
        e,
        Entry::Process(i, ProcessValue::Running { spec: s, .. }) if i == id && s == spec
    )));
    let running: Vec<ValidChild> = all
        .iter()
        .filter_map(|e| match e {
            Entry::Process(_, ProcessValue::Running { member, spec, .. }) => {
                assert_eq!(member, &a);
                Some(spec.validate().unwrap())
            }
            _ => None,
        })
        .collect();
    assert_eq!(running.len(), 4);
    let all_specs: Vec<ValidChild> = before
        .iter()
        .filter_map(|e| match e {
            Entry::Process(_, v) => Some(v.spec().validate().unwrap()),
            _ => None,
        })
        .collect();
    let sup = all_specs
        .iter()
        .find(|c| c.child_type == ChildType::Supervisor)
        .expect("the supervisor child");
    assert_eq!(sup.shutdown, Shutdown::Infinity);
    let w2 = all_specs
        .iter()
        .find(|c| c.restart == Restart::Transient)
        .expect("w2");
    assert_eq!(
        (w2.shutdown, w2.modules.clone()),
        (Shutdown::Timeout(1000), list(vec![atom("Elixir.Agent")]))
    );
}
