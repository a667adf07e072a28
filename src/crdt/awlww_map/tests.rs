//! Unit tests: each operation against DeltaCrdt 0.6.4's behaviour, and the
//! wire format against bytes produced by Elixir 1.14 running upstream's module.

use super::*;
use crate::crdt::dots::{Context, Dot};
use crate::term::{binary, list, FixInteger, Float};

const A: NodeId = 1;
const B: NodeId = 2;

fn k(name: &str) -> Term {
    atom(name)
}

/// A local write, as DeltaCrdt's `handle_operation` does it: build the delta
/// from the current state, then join it for that one key.
fn put(state: &mut AwLwwMap, key: &Term, value: Term, node: NodeId, ts: i64) -> JoinOutcome {
    let delta = state.add(key.clone(), value, node, ts);
    state.apply(&delta, std::slice::from_ref(key))
}

fn del(state: &mut AwLwwMap, key: &Term, node: NodeId) -> JoinOutcome {
    let delta = state.remove(key, node);
    state.apply(&delta, std::slice::from_ref(key))
}

/// A full sync from `from` into `to`: every key either side has.
fn sync(to: &mut AwLwwMap, from: &AwLwwMap) -> JoinOutcome {
    let keys: BTreeSet<OrdTerm> = to
        .keys()
        .into_iter()
        .chain(from.keys())
        .map(OrdTerm)
        .collect();
    let keys: Vec<Term> = keys.into_iter().map(|k| k.0).collect();
    to.apply(from, &keys)
}

/// The read, with values compared as Erlang compares them.
fn read_vec(state: &AwLwwMap) -> Vec<(OrdTerm, OrdTerm)> {
    state
        .read()
        .into_iter()
        .map(|(k, v)| (k, OrdTerm(v)))
        .collect()
}

fn pairs(v: Vec<(Term, Term)>) -> Vec<(OrdTerm, OrdTerm)> {
    v.into_iter()
        .map(|(k, v)| (OrdTerm(k), OrdTerm(v)))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn add_sets_value_and_reports_diffs() {
    let mut s = AwLwwMap::new();
    let out = put(&mut s, &k("a"), int(1), A, -100);
    assert_eq!(s.get(&k("a")), Some(&int(1)));
    assert_eq!(s.dots, Dots::Context([(A, 1)].into_iter().collect()));
    assert_eq!(
        out.diffs,
        vec![Diff::Add {
            key: k("a"),
            value: int(1)
        }]
    );
    assert!(matches!(&out.raw[..], [RawChange::Put { key, .. }] if *key == k("a")));
    assert_eq!(
        out.diffs[0].to_term(),
        tuple(vec![atom("add"), k("a"), int(1)])
    );
}

#[test]
fn add_delta_carries_removed_dots_and_one_new_dot() {
    let mut s = AwLwwMap::new();
    put(&mut s, &k("a"), int(1), A, 1);
    let d = s.add(k("a"), int(2), A, 2);
    assert_eq!(
        d.dots,
        Dots::Set([Dot::new(A, 1), Dot::new(A, 2)].into_iter().collect())
    );
    assert_eq!(d.value.len(), 1);
    let entries = &d.value[&OrdTerm(k("a"))];
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries.values().next().unwrap(),
        &DotSet::from_iter([Dot::new(A, 2)])
    );
    s.apply(&d, &[k("a")]);
    // The overwritten entry is gone, not just shadowed.
    assert_eq!(s.value[&OrdTerm(k("a"))].len(), 1);
    assert_eq!(s.get(&k("a")), Some(&int(2)));
}

#[test]
fn writing_the_same_value_again_reports_no_diff_but_a_raw_change() {
    let mut s = AwLwwMap::new();
    put(&mut s, &k("a"), int(1), A, 1);
    let out = put(&mut s, &k("a"), int(1), A, 2);
    assert!(out.diffs.is_empty());
    assert_eq!(out.raw.len(), 1);
}

#[test]
fn concurrent_adds_latest_timestamp_wins_in_any_order() {
    let mut a = AwLwwMap::new();
    let mut b = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 20);
    put(&mut b, &k("x"), int(2), B, 10);
    let (a0, b0) = (a.clone(), b.clone());
    sync(&mut a, &b0);
    sync(&mut b, &a0);
    assert_eq!(a, b);
    assert_eq!(a.get(&k("x")), Some(&int(1)));
    // Neither write saw the other, so both entries stay.
    assert_eq!(a.value[&OrdTerm(k("x"))].len(), 2);
}

#[test]
fn timestamps_compare_as_integers_including_large_negatives() {
    let mut a = AwLwwMap::new();
    let mut b = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, -576_460_751_099_710_811);
    put(&mut b, &k("x"), int(2), B, -576_460_751_099_710_812);
    sync(&mut a, &b);
    assert_eq!(a.get(&k("x")), Some(&int(1)));
}

#[test]
fn equal_timestamps_pick_the_smallest_value_in_term_order() {
    // Elixir: Enum.max_by(%{{:b, 5} => .., {:a, 5} => ..}, ts) picks {:a, 5},
    // and with {2, 5} vs {1.0, 5} picks {2, 5} (integers sort before floats).
    let mut a = AwLwwMap::new();
    let mut b = AwLwwMap::new();
    put(&mut a, &k("x"), atom("b"), A, 5);
    put(&mut b, &k("x"), atom("a"), B, 5);
    sync(&mut a, &b);
    assert_eq!(a.get(&k("x")), Some(&atom("a")));

    let mut a = AwLwwMap::new();
    let mut b = AwLwwMap::new();
    put(&mut a, &k("x"), Term::Float(Float { value: 1.0 }), A, 5);
    put(&mut b, &k("x"), int(2), B, 5);
    sync(&mut a, &b);
    assert_eq!(a.get(&k("x")), Some(&int(2)));
}

#[test]
fn concurrent_add_wins_over_remove() {
    let mut a = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 1);
    let mut b = AwLwwMap::new();
    sync(&mut b, &a);
    // Concurrently: b removes what it saw, a writes again.
    del(&mut b, &k("x"), B);
    put(&mut a, &k("x"), int(2), A, 2);
    let (a0, b0) = (a.clone(), b.clone());
    sync(&mut a, &b0);
    sync(&mut b, &a0);
    assert_eq!(a, b);
    assert_eq!(a.get(&k("x")), Some(&int(2)));
}

#[test]
fn remove_wins_over_what_it_has_seen() {
    let mut a = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 1);
    let mut b = AwLwwMap::new();
    sync(&mut b, &a);
    let out = del(&mut b, &k("x"), B);
    assert_eq!(out.diffs, vec![Diff::Remove { key: k("x") }]);
    assert_eq!(out.raw, vec![RawChange::Delete { key: k("x") }]);
    let out = sync(&mut a, &b);
    assert_eq!(out.diffs, vec![Diff::Remove { key: k("x") }]);
    assert!(a.read().is_empty());
    assert!(a.value.is_empty());
    // A remove neither consumes a dot nor touches the context.
    assert_eq!(b.dots, Dots::Context([(A, 1)].into_iter().collect()));
}

#[test]
fn remove_of_missing_key_is_an_empty_noop() {
    let mut s = AwLwwMap::new();
    let d = s.remove(&k("nope"), A);
    assert_eq!(d.dots, Dots::Set(DotSet::new()));
    assert!(d.value.is_empty());
    assert_eq!(s.apply(&d, &[k("nope")]), JoinOutcome::default());
}

#[test]
fn re_add_after_remove_reaches_a_replica_holding_the_old_value() {
    let mut a = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 1);
    let mut b = AwLwwMap::new();
    sync(&mut b, &a);
    del(&mut a, &k("x"), A);
    put(&mut a, &k("x"), int(3), A, 3);
    let out = sync(&mut b, &a);
    assert_eq!(
        out.diffs,
        vec![Diff::Add {
            key: k("x"),
            value: int(3)
        }]
    );
    assert_eq!(b, a);
    assert_eq!(b.value[&OrdTerm(k("x"))].len(), 1);
}

#[test]
fn clear_removes_everything_seen_when_joined_for_every_key() {
    let mut s = AwLwwMap::new();
    put(&mut s, &k("x"), int(1), A, 1);
    put(&mut s, &k("y"), int(2), A, 2);
    let d = s.clear(A);
    assert!(d.value.is_empty());
    assert_eq!(d.dots, s.dots);
    let keys = s.keys();
    let out = s.apply(&d, &keys);
    assert!(s.read().is_empty());
    assert_eq!(out.diffs.len(), 2);
    assert_eq!(s.dots, Dots::Context([(A, 2)].into_iter().collect()));
    // Joined for one key only, it clears only that key.
    let mut s = AwLwwMap::new();
    put(&mut s, &k("x"), int(1), A, 1);
    put(&mut s, &k("y"), int(2), A, 2);
    let d = s.clear(A);
    s.apply(&d, &[k("x")]);
    assert_eq!(read_vec(&s), pairs(vec![(k("y"), int(2))]));
}

#[test]
fn join_outside_the_key_list_takes_the_right_side_wholesale() {
    let mut a = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 1);
    put(&mut a, &k("y"), int(1), A, 2);
    let mut b = AwLwwMap::new();
    put(&mut b, &k("y"), int(2), B, 1);
    // Join only "x": "y" is not joined, b's entries for it replace a's.
    let j = a.join(&b, &[k("x")]);
    assert_eq!(j.get(&k("x")), Some(&int(1)));
    assert_eq!(j.value[&OrdTerm(k("y"))], b.value[&OrdTerm(k("y"))]);
    // ...but the context is the union of both whole contexts.
    assert_eq!(
        j.dots,
        Dots::Context([(A, 2), (B, 1)].into_iter().collect())
    );
    // Keys only on the left survive untouched.
    let j = a.join(&AwLwwMap::new(), &[]);
    assert_eq!(j, a);
}

#[test]
fn a_slice_with_a_covering_context_removes_keys_it_omits_only_if_listed() {
    let mut a = AwLwwMap::new();
    put(&mut a, &k("x"), int(1), A, 1);
    let mut b = AwLwwMap::new();
    sync(&mut b, &a);
    del(&mut a, &k("x"), A);
    // a's slice for "x" has no entries but a context covering b's dot.
    let slice = a.slice(&[k("x")]);
    assert!(slice.value.is_empty());
    let mut b2 = b.clone();
    b2.apply(&slice, &[]);
    assert_eq!(b2.get(&k("x")), Some(&int(1)));
    b.apply(&slice, &[k("x")]);
    assert_eq!(b.get(&k("x")), None);
}

#[test]
fn out_of_order_op_deltas_lose_writes_as_upstream_does() {
    // DeltaCrdt never ships op deltas between replicas; this shows why.
    // A compressed context claims every counter below its max, so a later
    // delta joined first hides an earlier one. Checked against upstream's
    // module in Elixir 1.14.
    let mut a = AwLwwMap::new();
    let d1 = a.add(k("x"), int(1), A, 1);
    a.apply(&d1, &[k("x")]);
    let d2 = a.add(k("y"), int(2), A, 2);
    a.apply(&d2, &[k("y")]);
    let mut r = AwLwwMap::new();
    r.apply(&d2, &[k("y")]);
    r.apply(&d1, &[k("x")]);
    assert_eq!(read_vec(&r), pairs(vec![(k("y"), int(2))]));
}

#[test]
fn diffs_follow_key_order_and_treat_nil_as_absent() {
    let mut s = AwLwwMap::new();
    put(&mut s, &k("n"), int(1), A, 1);
    let out = put(&mut s, &k("n"), atom("nil"), A, 2);
    assert_eq!(out.diffs, vec![Diff::Remove { key: k("n") }]);
    assert_eq!(s.read().len(), 1);
    let mut t = AwLwwMap::new();
    let out = put(&mut t, &k("m"), atom("nil"), A, 1);
    assert!(out.diffs.is_empty());
    assert_eq!(out.raw.len(), 1);

    let mut a = AwLwwMap::new();
    put(&mut a, &k("p"), int(1), A, 1);
    put(&mut a, &k("q"), int(2), A, 2);
    let mut b = AwLwwMap::new();
    let out = b.apply(&a, &[k("q"), k("p"), k("q"), k("zz")]);
    let keys: Vec<Term> = out
        .diffs
        .iter()
        .map(|d| match d {
            Diff::Add { key, .. } | Diff::Remove { key } => key.clone(),
        })
        .collect();
    assert_eq!(keys, vec![k("q"), k("p"), k("q")]);
}

#[test]
fn read_keys_and_empty_entries() {
    let mut s = AwLwwMap::new();
    put(&mut s, &k("x"), int(1), A, 1);
    put(&mut s, &k("y"), int(2), A, 2);
    let r = s.read_keys(&[k("y"), k("missing")]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[&OrdTerm(k("y"))], int(2));
    // An empty entry map (a malformed peer's) reads as absent, not a crash.
    s.value.insert(OrdTerm(k("e")), Entries::new());
    assert_eq!(s.get(&k("e")), None);
    assert_eq!(s.read().len(), 2);
}

#[test]
fn keys_are_compared_by_value_not_encoding() {
    let mut s = AwLwwMap::new();
    let small = Term::FixInteger(FixInteger { value: 5 });
    let big = Term::BigInteger(BigInteger::from(5i64));
    put(&mut s, &small, int(1), A, 1);
    assert_eq!(s.get(&big), Some(&int(1)));
    let bytes = Term::ByteList(crate::term::ByteList { bytes: vec![1, 2] });
    put(&mut s, &list(vec![int(1), int(2)]), int(2), A, 2);
    assert_eq!(s.get(&bytes), Some(&int(2)));
    // 1 and 1.0 are different keys, as in an Elixir map.
    put(&mut s, &int(1), atom("int"), A, 3);
    put(
        &mut s,
        &Term::Float(Float { value: 1.0 }),
        atom("float"),
        A,
        4,
    );
    assert_eq!(s.get(&int(1)), Some(&atom("int")));
}

// ---- wire ----------------------------------------------------------------

/// `:erlang.term_to_binary(MapSet.new([{1, 2}]))` on Elixir 1.14.
const MAPSET_1_2: &str = "83740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610161026a64000776657273696f6e6102";

/// Upstream's module on Elixir 1.14, node 7: add(:a, 1); add("b", {1, 2});
/// add(:a, 2); then node 9: add({:k, 3}, [1, 2]) (this delta, then the
/// state), and remove("b").
const UPSTREAM_DELTA: &str = "83740000000364000a5f5f7374727563745f5f640019456c697869722e44656c7461437264742e41574c57574d6170640004646f7473740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610961016a64000776657273696f6e610264000576616c7565740000000168026400016b6103740000000168026b000201026e0801546740b8ffffff07740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610961016a64000776657273696f6e6102";
const UPSTREAM_REMOVE: &str = "83740000000364000a5f5f7374727563745f5f640019456c697869722e44656c7461437264742e41574c57574d6170640004646f7473740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610761026a64000776657273696f6e610264000576616c75657400000000";
const UPSTREAM_STATE: &str = "83740000000364000a5f5f7374727563745f5f640019456c697869722e44656c7461437264742e41574c57574d6170640004646f74737400000002610761036109610164000576616c75657400000003640001617400000001680261026e08015bcd40b8ffffff07740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610761036a64000776657273696f6e610268026400016b6103740000000168026b000201026e0801546740b8ffffff07740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610961016a64000776657273696f6e61026d0000000162740000000168026802610161026e0801992b41b8ffffff07740000000364000a5f5f7374727563745f5f64000d456c697869722e4d61705365746400036d617074000000016802610761026a64000776657273696f6e6102";

fn decode(h: &str) -> Term {
    crate::term::etf::from_binary(&hex(h)[..]).unwrap()
}

#[test]
fn mapset_encoding_matches_elixir() {
    let ours = DotSet::from_iter([Dot::new(1, 2)]).to_term();
    assert_eq!(ours, decode(MAPSET_1_2));
    let mut bytes = Vec::new();
    bytes.extend(crate::term::etf::to_binary(&ours).unwrap());
    assert_eq!(
        crate::term::etf::from_binary(&bytes[..]).unwrap(),
        decode(MAPSET_1_2)
    );
}

#[test]
fn upstream_state_and_deltas_decode_and_reencode_identically() {
    let state_term = decode(UPSTREAM_STATE);
    let state = AwLwwMap::from_term(&state_term).unwrap();
    assert_eq!(state.to_term(), state_term);
    assert_eq!(
        state.dots,
        Dots::Context([(7, 3), (9, 1)].into_iter().collect())
    );
    assert_eq!(
        read_vec(&state),
        pairs(vec![
            (k("a"), int(2)),
            (tuple(vec![k("k"), int(3)]), list(vec![int(1), int(2)])),
            (binary("b"), tuple(vec![int(1), int(2)])),
        ])
    );
    for h in [UPSTREAM_DELTA, UPSTREAM_REMOVE] {
        let t = decode(h);
        let d = AwLwwMap::from_term(&t).unwrap();
        assert!(matches!(d.dots, Dots::Set(_)));
        assert_eq!(d.to_term(), t);
    }
    // Our remove on upstream's state is upstream's remove delta.
    let ours = state.remove(&binary("b"), 9);
    assert_eq!(ours.to_term(), decode(UPSTREAM_REMOVE));
}

#[test]
fn our_add_matches_upstream_given_the_same_timestamp() {
    // Rebuild the upstream state with the timestamps upstream used.
    let upstream = AwLwwMap::from_term(&decode(UPSTREAM_STATE)).unwrap();
    let ts_of = |key: &Term| {
        upstream.value[&OrdTerm(key.clone())]
            .keys()
            .next()
            .unwrap()
            .ts
    };
    let mut s = AwLwwMap::new();
    put(&mut s, &k("a"), int(1), 7, ts_of(&k("a")) - 1);
    put(
        &mut s,
        &binary("b"),
        tuple(vec![int(1), int(2)]),
        7,
        ts_of(&binary("b")),
    );
    put(&mut s, &k("a"), int(2), 7, ts_of(&k("a")));
    let key = tuple(vec![k("k"), int(3)]);
    let value = Term::ByteList(crate::term::ByteList { bytes: vec![1, 2] });
    let delta = s.add(key.clone(), value, 9, ts_of(&key));
    assert_eq!(delta.to_term(), decode(UPSTREAM_DELTA));
    s.apply(&delta, &[key]);
    assert_eq!(s, upstream);
}

#[test]
fn from_term_accepts_extra_struct_fields() {
    let Term::Map(mut m) = AwLwwMap::new().to_term() else {
        unreachable!()
    };
    m.map.insert(
        atom("keys"),
        crate::crdt::elixir::build_mapset(crate::crdt::elixir::MapSetForm::Versioned, []),
    );
    assert_eq!(AwLwwMap::from_term(&Term::Map(m)), Ok(AwLwwMap::new()));
}

fn with_field(field: &str, value: Term) -> Term {
    let Term::Map(mut m) = AwLwwMap::new().to_term() else {
        unreachable!()
    };
    m.map.insert(atom(field), value);
    Term::Map(m)
}

fn one_entry(key: Term, stamped: Term, dots: Term) -> Term {
    let entries = Term::Map(Map {
        map: [(stamped, dots)].into_iter().collect(),
    });
    with_field(
        "value",
        Term::Map(Map {
            map: [(key, entries)].into_iter().collect(),
        }),
    )
}

#[test]
fn from_term_rejects_malformed_input() {
    let good_dots = DotSet::from_iter([Dot::new(1, 1)]).to_term();
    let good_stamp = tuple(vec![int(1), int(2)]);
    let mut deep = int(0);
    for _ in 0..MAX_TERM_DEPTH + 1 {
        deep = tuple(vec![deep]);
    }
    let dup_keys = with_field(
        "value",
        Term::Map(Map {
            map: [
                (
                    Term::FixInteger(FixInteger { value: 5 }),
                    Term::Map(Map::from([])),
                ),
                (
                    Term::BigInteger(BigInteger::from(5i64)),
                    Term::Map(Map::from([])),
                ),
            ]
            .into_iter()
            .collect(),
        }),
    );
    let cases: Vec<(&str, Term)> = vec![
        ("not a map", atom("x")),
        ("plain map", Term::Map(Map::from([]))),
        (
            "other struct",
            crate::crdt::elixir::build_struct("Elixir.Other", vec![]),
        ),
        (
            "missing value",
            crate::crdt::elixir::build_struct(
                STRUCT_NAME,
                vec![("dots", Context::new().to_term())],
            ),
        ),
        ("dots not a map", with_field("dots", list(vec![]))),
        (
            "context value not int",
            with_field("dots", Term::Map(Map::from([(int(1), atom("x"))]))),
        ),
        ("value not a map", with_field("value", list(vec![]))),
        (
            "entries not a map",
            with_field("value", Term::Map(Map::from([(int(1), int(2))]))),
        ),
        (
            "stamp not a tuple",
            one_entry(int(1), int(2), good_dots.clone()),
        ),
        (
            "stamp 3-tuple",
            one_entry(
                int(1),
                tuple(vec![int(1), int(2), int(3)]),
                good_dots.clone(),
            ),
        ),
        (
            "ts float",
            one_entry(
                int(1),
                tuple(vec![int(1), Term::Float(Float { value: 1.0 })]),
                good_dots.clone(),
            ),
        ),
        (
            "ts beyond i64",
            one_entry(int(1), tuple(vec![int(1), two_pow_64()]), good_dots.clone()),
        ),
        (
            "dots not a mapset",
            one_entry(int(1), good_stamp.clone(), Term::Map(Map::from([]))),
        ),
        (
            "dot not a pair",
            one_entry(
                int(1),
                good_stamp.clone(),
                crate::crdt::elixir::build_mapset(
                    crate::crdt::elixir::MapSetForm::Versioned,
                    [int(1)],
                ),
            ),
        ),
        (
            "deep key",
            one_entry(deep.clone(), good_stamp.clone(), good_dots.clone()),
        ),
        (
            "deep value",
            one_entry(int(1), tuple(vec![deep, int(1)]), good_dots.clone()),
        ),
        ("duplicate keys", dup_keys),
    ];
    for (name, term) in cases {
        assert!(AwLwwMap::from_term(&term).is_err(), "{name} was accepted");
    }
    // Depth right at the limit is fine.
    let mut ok = int(0);
    for _ in 0..MAX_TERM_DEPTH - 1 {
        ok = list(vec![ok]);
    }
    assert!(AwLwwMap::from_term(&one_entry(ok, good_stamp, good_dots)).is_ok());
}

/// 2^64 as SMALL_BIG_EXT: an integer no i64 holds.
fn two_pow_64() -> Term {
    crate::term::etf::from_binary(&hex("836e0900000000000000000001")[..]).unwrap()
}

// ---- term order ----------------------------------------------------------

/// Elixir 1.14 / OTP 25: `{terms, Map.keys(Map.new(terms, &{&1, 1}))}` for
/// 31 mixed terms (numbers of both kinds and sizes, atoms, tuples, maps,
/// nil, proper and improper lists, binaries and bitstrings). A map of at
/// most 32 keys iterates in exact term order, so the second list is the
/// first sorted as the BEAM sorts map keys.
const TERM_ORDER: &str = "8368026c0000001f6101463ff0000000000000610262ffffffff463fe00000000000006e09000000000000000000406e09010000000000000000406400016164000162640008456c697869722e416801610168026101610268036100610061006802610264000161740000000074000000016400016161017400000001640001626100740000000261016102610361046a6b0001016c00000001610161026b000201026b000200056c00000001640001616a6d00000001616d0000000261626d000000004d0000000101804d0000000101006d00000001804d0000000102c06a6c0000001f6e090100000000000000004062ffffffff610161026e0900000000000000000040463fe0000000000000463ff0000000000000640008456c697869722e4164000161640001626801610168026101610268026102640001616803610061006100740000000074000000016400016161017400000001640001626100740000000261016102610361046a6b000200056c00000001610161026b0001016b000201026c00000001640001616a6d000000004d0000000101006d00000001616d0000000261624d0000000101806d00000001804d0000000102c06a";

#[test]
fn term_order_matches_beam_map_key_order() {
    let t = decode(TERM_ORDER);
    let [terms, sorted] = as_tuple(&t).unwrap() else {
        unreachable!()
    };
    let mut ours = crate::term::as_list(terms).unwrap();
    ours.sort_by(term_cmp);
    assert_eq!(ours, crate::term::as_list(sorted).unwrap());
}

#[test]
fn term_order_equalities() {
    let eq = |a: &Term, b: &Term| term_cmp(a, b) == Ordering::Equal;
    assert!(eq(&int(5), &Term::BigInteger(BigInteger::from(5i64))));
    assert!(!eq(&int(1), &Term::Float(Float { value: 1.0 })));
    assert!(eq(
        &Term::ByteList(crate::term::ByteList { bytes: vec![1, 2] }),
        &list(vec![int(1), int(2)])
    ));
    // [1 | [2]] is [1, 2]; [| x] is x.
    let improper = Term::ImproperList(crate::term::ImproperList {
        elements: vec![int(1)],
        last: Box::new(list(vec![int(2)])),
    });
    assert!(eq(&improper, &list(vec![int(1), int(2)])));
    let bare = Term::ImproperList(crate::term::ImproperList {
        elements: vec![],
        last: Box::new(atom("x")),
    });
    assert!(eq(&bare, &atom("x")));
    // A whole-byte bitstring is a binary.
    let bits = Term::BitBinary(crate::term::BitBinary {
        bytes: vec![7],
        tail_bits_size: 8,
    });
    assert!(eq(&bits, &binary([7u8])));
}

#[test]
fn a_truncated_sync_can_lose_the_keys_it_left_out_as_upstream_does() {
    // A sync sends values for some keys but the sender's whole context. The
    // receiver's context then covers writes it never received; when the
    // omitted key is synced later, in either direction, it is dropped.
    // (Upstream truncates key lists to max_sync_size, 200 by default.)
    let mut a = AwLwwMap::new();
    put(&mut a, &k("k1"), int(1), A, 1);
    put(&mut a, &k("k2"), int(2), A, 2);
    let mut b = AwLwwMap::new();
    b.apply(&a.slice(&[k("k2")]), &[k("k2")]);
    assert!(b.dots.covers(&Dot::new(A, 1)));
    // a -> b for k1: b already "saw" a's dot, so it keeps nothing.
    let mut b1 = b.clone();
    b1.apply(&a.slice(&[k("k1")]), &[k("k1")]);
    assert_eq!(b1.get(&k("k1")), None);
    // b -> a for k1: a's entry is covered by b's context, so a drops it.
    let mut a1 = a.clone();
    a1.apply(&b.slice(&[k("k1")]), &[k("k1")]);
    assert_eq!(a1.get(&k("k1")), None);
}

#[test]
fn integers_compare_by_value_whatever_their_encoding() {
    use crate::term::BigInteger;
    let big = |v: i128| Term::BigInteger(BigInteger::from(v));
    let values: [i128; 9] = [
        -(1 << 100),
        i128::from(i64::MIN) - 1,
        -(1 << 40),
        -5,
        0,
        7,
        1 << 40,
        i128::from(i64::MAX) + 1,
        1 << 127,
    ];
    for &x in &values {
        for &y in &values {
            let mut forms = vec![(big(x), big(y))];
            if let Ok(x32) = i32::try_from(x) {
                forms.push((crate::term::int(i64::from(x32)), big(y)));
            }
            if let Ok(y32) = i32::try_from(y) {
                forms.push((big(x), crate::term::int(i64::from(y32))));
            }
            for (a, b) in forms {
                assert_eq!(term_cmp(&a, &b), x.cmp(&y), "{a} vs {b}");
            }
        }
    }
}

#[test]
fn maps_compare_by_sorted_pairs_whatever_their_layout() {
    let map = |pairs: &[(i64, i64)]| {
        Term::Map(crate::term::Map {
            map: pairs.iter().map(|&(k, v)| (int(k), int(v))).collect(),
        })
    };
    // The same pairs in another order: equal.
    let a = map(&[(1, 10), (2, 20), (3, 30)]);
    assert_eq!(
        term_cmp(&a, &map(&[(3, 30), (1, 10), (2, 20)])),
        Ordering::Equal
    );
    assert_eq!(term_cmp(&a, &a.clone()), Ordering::Equal);
    // Built alike with one value apart: ordered by the values in key
    // order, not by the order the pairs were put in.
    let b = map(&[(3, 0), (1, 10), (2, 20)]);
    let c = map(&[(3, 30), (1, 10), (2, 0)]);
    assert_eq!(term_cmp(&b, &c), Ordering::Greater, "2 => 20 beats 2 => 0");
    assert_eq!(term_cmp(&c, &b), Ordering::Less);
    // Keys come before values: {1, 4} against {1, 5} is decided by 4 < 5
    // even where the first map's values are larger.
    assert_eq!(
        term_cmp(&map(&[(4, 99), (1, 99)]), &map(&[(1, 0), (5, 0)])),
        Ordering::Less
    );
}
