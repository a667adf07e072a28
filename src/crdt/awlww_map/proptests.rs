//! Property tests: the join laws and convergence, on states and deltas
//! produced the way DeltaCrdt produces them, plus wire round trips and the
//! term order's own laws.
//!
//! The laws are checked where DeltaCrdt relies on them: on replica states
//! (compressed contexts, shipped whole or sliced to keys) and on op deltas
//! among themselves (exact dot sets). Joining op deltas out of order into a
//! compressed state is *not* order-insensitive upstream (see the unit test
//! `out_of_order_op_deltas_lose_writes_as_upstream_does`), and DeltaCrdt
//! never ships op deltas, so no law is claimed there.

use super::*;
use crate::term::{binary, list, Float};
use proptest::prelude::*;

/// Node ids: small ones and the extremes of DeltaCrdt's range.
const NODES: [NodeId; 3] = [1, 2, 1_000_000_000];

#[derive(Debug, Clone)]
enum Op {
    Put {
        r: usize,
        key: usize,
        val: Term,
        ts: i64,
    },
    Del {
        r: usize,
        key: usize,
    },
    /// A full sync `from` -> `to`: every key either side holds.
    Sync {
        from: usize,
        to: usize,
    },
    /// What DeltaCrdt's merkle sync sends: only the keys whose raw entries differ.
    SyncDiffering {
        from: usize,
        to: usize,
    },
}

/// Keys that collide in interesting ways: `1` and `1.0` are distinct keys,
/// a small integer encoded big is the same key as its small encoding.
fn key_pool() -> Vec<Term> {
    vec![
        int(1),
        Term::Float(Float { value: 1.0 }),
        atom("a"),
        binary("a"),
        tuple(vec![atom("key"), int(5)]),
        Term::BigInteger(BigInteger::from(5i64)),
        int(5),
        list(vec![int(1), int(2)]),
    ]
}

fn leaf_term() -> impl Strategy<Value = Term> {
    prop_oneof![
        any::<i64>().prop_map(int),
        (-3i32..3).prop_map(|v| int(i64::from(v))),
        (-1e6f64..1e6).prop_map(|value| Term::Float(Float { value })),
        "[a-c]{0,2}".prop_map(|s| atom(&s)),
        proptest::collection::vec(any::<u8>(), 0..3).prop_map(binary),
        Just(list(vec![])),
    ]
}

fn any_term() -> impl Strategy<Value = Term> {
    leaf_term().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(tuple),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(list),
            proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(|kv| {
                Term::Map(Map {
                    map: kv.into_iter().collect(),
                })
            }),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..NODES.len();
    prop_oneof![
        4 => (r.clone(), 0..key_pool().len(), any_term(), prop_oneof![-3i64..3, any::<i64>()])
            .prop_map(|(r, key, val, ts)| Op::Put { r, key, val, ts }),
        2 => (r.clone(), 0..key_pool().len()).prop_map(|(r, key)| Op::Del { r, key }),
        2 => (r.clone(), r.clone()).prop_map(|(from, to)| Op::Sync { from, to }),
        2 => (r.clone(), r).prop_map(|(from, to)| Op::SyncDiffering { from, to }),
    ]
}

/// Every key `a` or `b` holds, once each.
fn all_keys(states: &[&AwLwwMap]) -> Vec<Term> {
    let set: BTreeSet<OrdTerm> = states
        .iter()
        .flat_map(|s| s.value.keys().cloned())
        .collect();
    set.into_iter().map(|k| k.0).collect()
}

fn differing_keys(to: &AwLwwMap, from: &AwLwwMap) -> Vec<Term> {
    all_keys(&[to, from])
        .into_iter()
        .filter(|k| {
            let k = OrdTerm(k.clone());
            to.value.get(&k) != from.value.get(&k)
        })
        .collect()
}

/// Runs a scenario and returns the replicas, every state any replica
/// passed through, and every op delta created.
struct Run {
    replicas: Vec<AwLwwMap>,
    snapshots: Vec<AwLwwMap>,
    deltas: Vec<AwLwwMap>,
}

fn run(ops: &[Op]) -> Run {
    let keys = key_pool();
    let mut replicas = vec![AwLwwMap::new(); NODES.len()];
    let mut snapshots = vec![AwLwwMap::new()];
    let mut deltas = Vec::new();
    for op in ops {
        let touched = match op {
            Op::Put { r, key, val, ts } => {
                let key = &keys[*key];
                let d = replicas[*r].add(key.clone(), val.clone(), NODES[*r], *ts);
                replicas[*r].apply(&d, std::slice::from_ref(key));
                deltas.push(d);
                *r
            }
            Op::Del { r, key } => {
                let key = &keys[*key];
                let d = replicas[*r].remove(key, NODES[*r]);
                replicas[*r].apply(&d, std::slice::from_ref(key));
                deltas.push(d);
                *r
            }
            Op::Sync { from, to } => {
                let from_state = replicas[*from].clone();
                let k = all_keys(&[&replicas[*to], &from_state]);
                replicas[*to].apply(&from_state, &k);
                *to
            }
            Op::SyncDiffering { from, to } => {
                let k = differing_keys(&replicas[*to], &replicas[*from]);
                let slice = replicas[*from].slice(&k);
                replicas[*to].apply(&slice, &k);
                *to
            }
        };
        snapshots.push(replicas[touched].clone());
    }
    Run {
        replicas,
        snapshots,
        deltas,
    }
}

fn scenario() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 0..40)
}

fn pick(pool: &[AwLwwMap], i: prop::sample::Index) -> &AwLwwMap {
    &pool[i.index(pool.len())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn join_of_states_is_commutative_associative_idempotent(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
        l in any::<prop::sample::Index>(),
    ) {
        let run = run(&ops);
        let (a, b, c) = (pick(&run.snapshots, i), pick(&run.snapshots, j), pick(&run.snapshots, l));
        let k = all_keys(&[a, b, c]);
        prop_assert_eq!(a.join(b, &k), b.join(a, &k));
        prop_assert_eq!(a.join(b, &k).join(c, &k), a.join(&b.join(c, &k), &k));
        prop_assert_eq!(&a.join(a, &k), a);
    }

    #[test]
    fn join_of_deltas_is_commutative_associative_idempotent(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
        l in any::<prop::sample::Index>(),
    ) {
        let run = run(&ops);
        prop_assume!(!run.deltas.is_empty());
        let (a, b, c) = (pick(&run.deltas, i), pick(&run.deltas, j), pick(&run.deltas, l));
        let k = all_keys(&[a, b, c]);
        prop_assert_eq!(a.join(b, &k), b.join(a, &k));
        prop_assert_eq!(a.join(b, &k).join(c, &k), a.join(&b.join(c, &k), &k));
        prop_assert_eq!(&a.join(a, &k), a);
    }

    #[test]
    fn any_delivery_order_of_shipped_states_reads_the_same(
        ops in scenario(),
        order in proptest::collection::vec(any::<u64>(), 41),
        start in any::<prop::sample::Index>(),
    ) {
        let run = run(&ops);
        let receiver = pick(&run.snapshots, start).clone();
        let deliver = |mut to: AwLwwMap, states: &[&AwLwwMap]| {
            for s in states {
                let k = all_keys(&[&to, s]);
                to.apply(s, &k);
            }
            to
        };
        let in_order: Vec<&AwLwwMap> = run.snapshots.iter().collect();
        let mut shuffled = in_order.clone();
        let mut keyed: Vec<(u64, &AwLwwMap)> =
            order.iter().copied().zip(shuffled.drain(..)).collect();
        keyed.sort_by_key(|(o, _)| *o);
        let shuffled: Vec<&AwLwwMap> = keyed.into_iter().map(|(_, s)| s).collect();
        let x = deliver(receiver.clone(), &in_order);
        let y = deliver(receiver, &shuffled);
        prop_assert_eq!(x.read(), y.read());
        prop_assert_eq!(x, y);
    }

    #[test]
    fn syncing_only_differing_keys_equals_a_full_join(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
    ) {
        let run = run(&ops);
        let (a, b) = (pick(&run.snapshots, i), pick(&run.snapshots, j));
        let d = differing_keys(a, b);
        prop_assert_eq!(a.join(&b.slice(&d), &d), a.join(b, &all_keys(&[a, b])));
    }

    #[test]
    fn replicas_converge_after_a_full_exchange(ops in scenario()) {
        let mut replicas = run(&ops).replicas;
        for i in 1..replicas.len() {
            let from = replicas[i].clone();
            let k = all_keys(&[&replicas[0], &from]);
            replicas[0].apply(&from, &k);
        }
        for i in 1..replicas.len() {
            let from = replicas[0].clone();
            let k = all_keys(&[&replicas[i], &from]);
            replicas[i].apply(&from, &k);
        }
        for r in &replicas[1..] {
            prop_assert_eq!(r, &replicas[0]);
        }
    }

    #[test]
    fn apply_in_place_equals_join_then_compare(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let run = run(&ops);
        let mut pool: Vec<&AwLwwMap> = run.snapshots.iter().collect();
        pool.extend(&run.deltas);
        let (a, b) = (pool[i.index(pool.len())], pool[j.index(pool.len())]);
        // Any keys, some repeated, some held by neither side.
        let key_pool = key_pool();
        let keys: Vec<Term> = picks.iter().map(|p| key_pool[p.index(key_pool.len())].clone()).collect();
        let joined = a.join(b, &keys);
        let raw = raw_changes(a, &joined, &keys);
        let changed: Vec<Term> = raw.iter().map(|c| match c {
            RawChange::Put { key, .. } | RawChange::Delete { key } => key.clone(),
        }).collect();
        let expected = JoinOutcome { diffs: diffs(a, &joined, &changed), raw };
        let mut s = a.clone();
        prop_assert_eq!(s.apply(b, &keys), expected);
        prop_assert_eq!(s, joined);
    }

    #[test]
    fn an_owned_delta_joins_as_a_borrowed_one(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        seen_a in any::<bool>(),
    ) {
        // The owned joins move a new key's entries out of the delta
        // instead of copying them: same outcome, state, seen dots and
        // tombstones as the borrowed joins, for any keys and either side.
        let run = run(&ops);
        let mut pool: Vec<&AwLwwMap> = run.snapshots.iter().collect();
        pool.extend(&run.deltas);
        let (a, b) = (pool[i.index(pool.len())], pool[j.index(pool.len())]);
        let key_pool = key_pool();
        let mut keys: Vec<Term> = picks.iter().map(|p| key_pool[p.index(key_pool.len())].clone()).collect();
        keys.extend(all_keys(&[b]));
        let form = MapSetForm::Versioned;
        let (mut x, mut y) = (a.clone(), a.clone());
        prop_assert_eq!(x.apply_in(b, &keys, form), y.apply_in_owned(b.clone(), &keys, form));
        prop_assert_eq!(&x, &y);
        // Exact: start from a's own dots as seen, or from nothing seen.
        let mut seen = Seen::default();
        if seen_a {
            for e in a.value.values() {
                for d in e.values().flat_map(|d| d.iter()) {
                    seen.insert(*d);
                }
            }
        }
        let (mut sx, mut sy) = (seen.clone(), seen);
        let (mut tx, mut ty) = (Tombstones::default(), Tombstones::default());
        let (mut x, mut y) = (a.clone(), a.clone());
        prop_assert_eq!(
            x.apply_exact(b, &keys, form, &mut sx, &mut tx),
            y.apply_exact_owned(b.clone(), &keys, form, &mut sy, &mut ty)
        );
        prop_assert_eq!(&x, &y);
        prop_assert_eq!(sx, sy);
        prop_assert_eq!(
            tx.iter().map(|(k, c)| (k.clone(), c.clone())).collect::<BTreeMap<_, _>>(),
            ty.iter().map(|(k, c)| (k.clone(), c.clone())).collect::<BTreeMap<_, _>>()
        );
    }

    #[test]
    fn diffs_describe_the_read_change(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
    ) {
        let run = run(&ops);
        let (a, b) = (pick(&run.snapshots, i), pick(&run.snapshots, j));
        let mut s = a.clone();
        let k = all_keys(&[a, b]);
        let out = s.apply(b, &k);
        // Replaying the diffs onto the old read gives the new read
        // (a value of `nil` reads as absent, as upstream's callers see it).
        let nil = OrdTerm(atom("nil"));
        let visible = |m: BTreeMap<OrdTerm, Term>| -> BTreeMap<OrdTerm, OrdTerm> {
            m.into_iter().map(|(k, v)| (k, OrdTerm(v))).filter(|(_, v)| *v != nil).collect()
        };
        let mut replay = visible(a.read());
        for d in &out.diffs {
            match d {
                Diff::Add { key, value } => { replay.insert(OrdTerm(key.clone()), OrdTerm(value.clone())); }
                Diff::Remove { key } => { replay.remove(&OrdTerm(key.clone())); }
            }
        }
        prop_assert_eq!(replay, visible(s.read()));
    }

    #[test]
    fn apply_in_place_is_the_join(
        ops in scenario(),
        i in any::<prop::sample::Index>(),
        j in any::<prop::sample::Index>(),
        mask in any::<u64>(),
        extra in any::<bool>(),
    ) {
        // States and deltas alike, any subset of keys, duplicates and absent keys too.
        let run = run(&ops);
        let pool: Vec<AwLwwMap> = run.snapshots.iter().chain(&run.deltas).cloned().collect();
        let (a, b) = (pick(&pool, i), pick(&pool, j));
        let mut k: Vec<Term> = all_keys(&[a, b])
            .into_iter()
            .enumerate()
            .filter(|(n, _)| mask >> (n % 64) & 1 == 1)
            .map(|(_, k)| k)
            .collect();
        if extra {
            k.push(atom("absent_key"));
            if let Some(first) = k.first().cloned() {
                k.push(first);
            }
        }
        let joined = a.join(b, &k);
        let mut s = a.clone();
        let out = s.apply(b, &k);
        prop_assert_eq!(&s, &joined);
        let raw = raw_changes(a, &joined, &k);
        let changed: Vec<Term> = raw
            .iter()
            .map(|c| match c {
                RawChange::Put { key, .. } | RawChange::Delete { key } => key.clone(),
            })
            .collect();
        prop_assert_eq!(out.raw, raw);
        prop_assert_eq!(out.diffs, diffs(a, &joined, &changed));
    }

    #[test]
    fn wire_round_trip(ops in scenario()) {
        let run = run(&ops);
        for x in run.snapshots.iter().chain(&run.deltas) {
            let t = x.to_term();
            prop_assert_eq!(&AwLwwMap::from_term(&t).unwrap(), x);
            // Through bytes too, for every term: the decoder may give other
            // shapes on the way back (a STRING_EXT comes back as a ByteList).
            let mut bytes = Vec::new();
            bytes.extend(crate::term::etf::to_binary(&t).unwrap());
            let back = crate::term::etf::from_binary(&bytes[..]).unwrap();
            prop_assert_eq!(&AwLwwMap::from_term(&back).unwrap(), x);
        }
    }

    #[test]
    fn term_order_is_a_total_order(a in any_term(), b in any_term(), c in any_term()) {
        prop_assert_eq!(term_cmp(&a, &a), Ordering::Equal);
        prop_assert_eq!(term_cmp(&a, &b), term_cmp(&b, &a).reverse());
        if term_cmp(&a, &b) != Ordering::Greater && term_cmp(&b, &c) != Ordering::Greater {
            prop_assert_ne!(term_cmp(&a, &c), Ordering::Greater);
        }
        // For terms built the canonical way, `=:=` is structural equality.
        prop_assert_eq!(term_cmp(&a, &b) == Ordering::Equal, a == b);
    }
}
