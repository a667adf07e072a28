//! Replays every recording under `tests/fixtures/crdt/merkle/` (real
//! merkle_map 0.2.2 on OTP 25) and checks our terms are equal to upstream's.

use super::*;
use crate::term::phash2::{phash2, phash2_range};
use crate::term::{as_list, as_tuple, atom, binary, int, is_atom, list, nil, tuple};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crdt/merkle")
}

/// OTP 25's `term_to_binary` writes atoms that fit Latin-1 as `ATOM_EXT` /
/// `SMALL_ATOM_EXT` in Latin-1 (`:ünïcödé_atom` in the mixed-type fixtures);
/// our decoder reads those as the same atoms as their UTF-8 forms.
fn load(path: &std::path::Path) -> Term {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    crate::term::etf::from_binary(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixtures(sub: &str) -> Vec<(String, Term)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "etf"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                load(&p),
            )
        })
        .collect()
}

/// Field `name` of an atom-keyed map.
fn f<'a>(term: &'a Term, name: &str) -> &'a Term {
    match term {
        Term::Map(m) => m
            .map
            .get(&atom(name))
            .unwrap_or_else(|| panic!("no field {name}")),
        _ => panic!("not a map looking for {name}"),
    }
}

fn map_pairs(term: &Term) -> Vec<(Term, Term)> {
    match term {
        Term::Map(m) => m.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => panic!("not a map"),
    }
}

fn u32_of(term: &Term) -> u32 {
    crate::term::as_i64(term).unwrap() as u32
}

/// Where two terms first differ, for readable failures.
fn first_difference(a: &Term, b: &Term, path: &str) -> Option<String> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Term::Tuple(x), Term::Tuple(y)) if x.elements.len() == y.elements.len() => x
            .elements
            .iter()
            .zip(&y.elements)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}.{i}"))),
        (Term::List(x), Term::List(y)) if x.elements.len() == y.elements.len() => x
            .elements
            .iter()
            .zip(&y.elements)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        (Term::Map(x), Term::Map(y)) if x.map.len() == y.map.len() => {
            // Compare the entries in term order, so the first difference
            // reported is the same from run to run whatever the maps' order.
            super::diff::sorted_pairs(&x.map)
                .into_iter()
                .zip(super::diff::sorted_pairs(&y.map))
                .find_map(|((k1, v1), (k2, v2))| {
                    first_difference(k1, k2, &format!("{path}/key"))
                        .or_else(|| first_difference(v1, v2, &format!("{path}/{k1}")))
                })
        }
        _ => Some(format!("{path}:\n  ours:     {a}\n  upstream: {b}")),
    }
}

/// `term_to_binary` writes a list of bytes as `STRING_EXT`, which our
/// decoder gives as a `ByteList`; we build plain lists. Both are the same term.
fn normalize(t: &Term) -> Term {
    match t {
        Term::ByteList(b) => list(b.bytes.iter().map(|&x| int(i64::from(x))).collect()),
        Term::List(l) => list(l.elements.iter().map(normalize).collect()),
        Term::Tuple(x) => tuple(x.elements.iter().map(normalize).collect()),
        Term::Map(m) => Term::Map(crate::term::Map::from(
            m.map
                .iter()
                .map(|(k, v)| (normalize(k), normalize(v)))
                .collect::<HashMap<_, _>>(),
        )),
        other => other.clone(),
    }
}

#[track_caller]
fn assert_term_eq(ours: &Term, upstream: &Term, what: &str) {
    if let Some(d) = first_difference(&normalize(ours), &normalize(upstream), "") {
        panic!("{what}: terms differ at {d}");
    }
}

fn built(input: &Term) -> MerkleMap {
    let mut mm = MerkleMap::from_pairs(map_pairs(input));
    mm.update_hashes();
    mm
}

/// `{location, kind, stored_hash, hashed_term, ...}` in pre-order.
fn node_records(node: &Node, loc: Loc, out: &mut Vec<(Loc, &'static str, Hash, Term)>) {
    match node {
        Node::Empty | Node::Partial(_) => {}
        Node::Leaf(l) => out.push((loc, "leaf", l.hash, l.contents_term())),
        Node::Inner(i) => {
            let hashed = tuple(vec![hash_term(i.left.hash()), hash_term(i.right.hash())]);
            out.push((loc, "inner", i.hash, hashed));
            node_records(&i.left, loc.child(0), out);
            node_records(&i.right, loc.child(1), out);
        }
    }
}

#[track_caller]
fn check_node_hashes(mm: &MerkleMap, records: &Term, what: &str) {
    let mut ours = Vec::new();
    node_records(mm.tree(), Loc::ROOT, &mut ours);
    let records = as_list(records).unwrap();
    assert_eq!(ours.len(), records.len(), "{what}: node count");
    for ((loc, kind, hash, hashed), rec) in ours.iter().zip(&records) {
        let [rloc, rkind, rstored, rhashed, p, p1, p2] = as_tuple(rec).unwrap() else {
            panic!("{what}: node record shape")
        };
        assert_term_eq(&loc.to_term(), rloc, what);
        assert!(is_atom(rkind, kind), "{what}: kind at {}", rloc);
        assert_term_eq(&hash_term(*hash), rstored, what);
        if !is_atom(rhashed, "nil") {
            assert_term_eq(hashed, rhashed, what);
            assert_eq!(phash2(hashed), u32_of(p), "{what}: phash2 of {hashed}");
            assert_eq!(
                phash2_range(hashed, 4294967295),
                u32_of(p1),
                "{what}: {hashed}"
            );
            assert_eq!(
                phash2_range(hashed, 1 << 32),
                u32_of(p2),
                "{what}: {hashed}"
            );
        }
        assert_eq!(*hash, Some(u32_of(p2)), "{what}: stored hash at {rloc}");
    }
}

#[track_caller]
fn check_key_hash(rec: &Term, what: &str) {
    let [key, p, p1, p2, bin] = as_tuple(rec).unwrap() else {
        panic!("{what}: key record shape")
    };
    assert_eq!(phash2(key), u32_of(p), "{what}: phash2({key})");
    assert_eq!(phash2_range(key, 4294967295), u32_of(p1), "{what}: {key}");
    assert_eq!(phash2_range(key, 1 << 32), u32_of(p2), "{what}: {key}");
    assert_term_eq(&binary(key_hash(key).to_be_bytes()), bin, what);
}

#[test]
fn maps_replay() {
    let all = fixtures("maps");
    assert_eq!(all.len(), 30);
    for (name, fx) in &all {
        let upstream = f(fx, "merkle_map");
        let input = match f(fx, "input") {
            i if is_atom(i, "same_as_merkle_map_map") => f(upstream, "map"),
            i => i,
        };
        for rec in as_list(f(fx, "key_hashes")).unwrap() {
            check_key_hash(&rec, name);
        }
        let mut mm = MerkleMap::from_pairs(map_pairs(input));
        let before = f(fx, "merkle_map_before_update_hashes");
        if !is_atom(before, "omitted_for_size") {
            assert_term_eq(&mm.to_term(), before, name);
        }
        mm.update_hashes();
        assert_term_eq(&mm.to_term(), upstream, name);
        assert_term_eq(&hash_term(mm.root_hash()), f(fx, "root_hash"), name);
        assert_eq!(
            i64::from(mm.max_depth()),
            crate::term::as_i64(f(fx, "max_depth")).unwrap()
        );
        let keys: Vec<Term> = mm.tree_keys().into_iter().cloned().collect();
        assert_term_eq(&list(keys), f(fx, "tree_keys"), name);
        check_node_hashes(&mm, f(fx, "node_hashes"), name);
        let prepared = DiffStep::Continue(mm.prepare_partial_diff(8).unwrap());
        assert_term_eq(&prepared.to_term(), f(fx, "prepare_partial_diff_8"), name);

        // Wire round trips on upstream's own terms.
        let parsed = MerkleMap::from_term(upstream).unwrap();
        assert_eq!(parsed, mm, "{name}: from_term");
        let step = DiffStep::from_term(f(fx, "prepare_partial_diff_8")).unwrap();
        assert_eq!(step, prepared, "{name}: diff from_term");
        if !is_atom(before, "omitted_for_size") {
            let stale = MerkleMap::from_term(before).unwrap();
            assert_term_eq(&stale.to_term(), before, name);
            assert!(!stale.hashes_current() || stale.is_empty());
        }
    }
}

#[test]
fn diffs_replay() {
    let all = fixtures("diffs");
    assert_eq!(all.len(), 20);
    for (name, fx) in &all {
        let a = built(f(fx, "a_input"));
        let b = built(f(fx, "b_input"));
        for (mm, side) in [(&a, "a"), (&b, "b")] {
            let rec = f(fx, &format!("{side}_merkle_map"));
            if !is_atom(rec, "omitted_for_size") {
                assert_term_eq(&mm.to_term(), rec, name);
            }
            assert_term_eq(
                &hash_term(mm.root_hash()),
                f(fx, &format!("{side}_root_hash")),
                name,
            );
        }
        let ok = |keys: Vec<Term>| tuple(vec![atom("ok"), list(keys)]);
        assert_term_eq(&ok(a.diff_keys(&b).unwrap()), f(fx, "diff_keys_a_b"), name);
        assert_term_eq(&ok(b.diff_keys(&a).unwrap()), f(fx, "diff_keys_b_a"), name);
        let equal = a.equal(&b).unwrap();
        assert!(
            is_atom(f(fx, "equal"), if equal { "true" } else { "false" }),
            "{name}"
        );

        let max = crate::term::as_i64(f(fx, "max_sync_size")).map(|n| n as usize);
        let steps = as_list(f(fx, "steps")).unwrap();
        let mut sent: Option<PartialDiff> = None;
        for (i, step) in steps.iter().enumerate() {
            let what = format!("{name} step {i}");
            let actor = if is_atom(f(step, "actor"), "originator_a") {
                &a
            } else {
                &b
            };
            let outcome = match &sent {
                None => DiffStep::Continue(actor.prepare_partial_diff(8).unwrap()),
                Some(prev) => actor.continue_partial_diff(prev, 8).unwrap(),
            };
            let (sent_term, next) = match &outcome {
                // The first message is not truncated; DeltaCrdt truncates
                // only the continuations it answers with.
                DiffStep::Continue(d) if i == 0 => (d.to_term(), Some(d.clone())),
                DiffStep::Continue(d) => {
                    let t = max.map_or_else(|| d.clone(), |n| d.truncate(n));
                    (t.to_term(), Some(t))
                }
                DiffStep::Done(keys) => {
                    let k: Vec<Term> = keys
                        .iter()
                        .take(max.unwrap_or(usize::MAX))
                        .cloned()
                        .collect();
                    (list(k), None)
                }
            };
            let result = f(step, "result");
            if !is_atom(result, "same_as_sent") {
                assert_term_eq(&outcome.to_term(), result, &what);
            }
            assert_term_eq(&sent_term, f(step, "sent"), &what);
            if let Some(d) = &next {
                assert_eq!(
                    &PartialDiff::from_term(&sent_term).unwrap(),
                    d,
                    "{what}: from_term"
                );
            }
            let last = i + 1 == steps.len();
            assert_eq!(last, next.is_none(), "{what}: round ends here");
            if last {
                let keys = as_list(&sent_term).unwrap();
                let action = if keys.is_empty() {
                    atom("ack_only")
                } else if std::ptr::eq(actor, &b) {
                    tuple(vec![atom("get_diff_to_originator"), sent_term.clone()])
                } else {
                    tuple(vec![atom("diff_state_to_neighbour"), sent_term.clone()])
                };
                assert_term_eq(&action, f(step, "action"), &what);
            }
            sent = next;
        }
    }
}

#[test]
fn put_sequence_replay() {
    let fx = load(&fixture_dir().join("put_sequence.etf"));
    let mut mm = MerkleMap::new();
    let steps = as_list(f(&fx, "steps")).unwrap();
    assert!(!steps.is_empty());
    for (i, step) in steps.iter().enumerate() {
        let what = format!("put step {i}");
        let [k, v] = as_tuple(f(step, "put")).unwrap() else {
            panic!()
        };
        check_key_hash(f(step, "key_hash"), &what);
        mm.put(k.clone(), v.clone());
        assert_term_eq(&mm.to_term(), f(step, "after_put"), &what);
        mm.update_hashes();
        assert_term_eq(&mm.to_term(), f(step, "after_update_hashes"), &what);
        assert_term_eq(&hash_term(mm.root_hash()), f(step, "root_hash"), &what);
        check_node_hashes(&mm, f(step, "node_hashes"), &what);
    }
}

#[test]
fn delete_sequence_replay() {
    let fx = load(&fixture_dir().join("delete_sequence.etf"));
    let mut mm = built(f(&fx, "base"));
    assert_term_eq(&mm.to_term(), f(&fx, "base_merkle_map"), "base");
    let order = as_list(f(&fx, "delete_order")).unwrap();
    let steps = as_list(f(&fx, "steps")).unwrap();
    assert_eq!(order.len(), steps.len());
    for (i, (key, step)) in order.iter().zip(&steps).enumerate() {
        let what = format!("delete step {i}");
        assert_term_eq(key, f(step, "deleted_key"), &what);
        check_key_hash(f(step, "key_hash"), &what);
        mm.delete(key);
        let recorded = f(step, "after_delete");
        if !is_atom(recorded, "omitted_for_size") {
            assert_term_eq(&mm.to_term(), recorded, &what);
        }
        mm.update_hashes();
        assert_term_eq(&mm.to_term(), f(step, "after_update_hashes"), &what);
        assert_term_eq(&hash_term(mm.root_hash()), f(step, "root_hash"), &what);
        check_node_hashes(&mm, f(step, "node_hashes"), &what);
        let now = mm.to_term();
        let fresh = built(f(&now, "map"));
        assert_eq!(
            fresh.tree() == mm.tree(),
            is_atom(f(step, "equal_to_fresh_build"), "true")
        );
    }
}

#[test]
fn truncate_diff_replay() {
    let fx = load(&fixture_dir().join("truncate_diff.etf"));
    let diff = PartialDiff::from_term(f(&fx, "diff")).unwrap();
    assert_term_eq(&diff.to_term(), f(&fx, "diff"), "diff");
    let results = as_list(f(&fx, "results")).unwrap();
    assert_eq!(results.len(), 8);
    for r in results {
        let [n, want] = as_tuple(&r).unwrap() else {
            panic!()
        };
        let n = crate::term::as_i64(n).unwrap() as usize;
        assert_term_eq(&diff.truncate(n).to_term(), want, &format!("truncate {n}"));
    }
}

/// Reports every hash sample phash2 gets wrong (the hash module is owned
/// elsewhere; this only checks the values MerkleMap depends on).
#[test]
fn hash_samples() {
    let fx = load(&fixture_dir().join("hash_samples.etf"));
    let mut bad = Vec::new();
    for s in as_list(f(&fx, "samples")).unwrap() {
        let t = f(&s, "term");
        let got = (
            phash2(t),
            phash2_range(t, 4294967295),
            phash2_range(t, 1 << 32),
        );
        let want = (
            u32_of(f(&s, "phash2")),
            u32_of(f(&s, "phash2_4294967295")),
            u32_of(f(&s, "phash2_4294967296")),
        );
        if got != want {
            bad.push(format!("{t}: ours {got:?}, upstream {want:?}"));
        }
    }
    assert!(bad.is_empty(), "phash2 mismatches:\n{}", bad.join("\n"));
}

// ---- behaviour pinned by hand -------------------------------------------------

#[test]
fn locations_round_trip_as_bitstrings() {
    for len in 0..=32u32 {
        let loc = Loc::new(0xA5C3_F00F, len).unwrap();
        let t = loc.to_term();
        if len % 8 == 0 {
            assert!(matches!(t, Term::Binary(_)), "{len}");
        } else {
            assert!(matches!(t, Term::BitBinary(_)), "{len}");
        }
        assert_eq!(Loc::from_term(&t).unwrap(), loc);
        let encoded = t.clone();
        let mut buf = Vec::new();
        buf.extend(crate::term::etf::to_binary(&encoded).unwrap());
        assert_eq!(crate::term::etf::from_binary(buf.as_slice()).unwrap(), t);
    }
    assert!(Loc::new(0, 33).is_none());
    assert!(Loc::from_term(&binary(vec![0u8; 5])).is_err());
    assert!(Loc::from_term(&atom("x")).is_err());
}

#[test]
fn stale_trees_are_refused_like_upstream() {
    let mut mm = MerkleMap::from_pairs([(int(1), int(2))]);
    assert_eq!(mm.prepare_partial_diff(8), Err(MerkleError::StaleHashes));
    mm.update_hashes();
    assert!(mm.prepare_partial_diff(8).is_ok());
    assert_eq!(mm.prepare_partial_diff(0), Err(MerkleError::ZeroDepth));
    // A received subtree with a `[]` hash on top.
    let stale = PartialDiff {
        keys: vec![],
        trees: vec![(
            Loc::ROOT,
            MerkleMap::from_pairs([(int(1), int(3))]).tree().clone(),
        )],
    };
    assert_eq!(
        mm.continue_partial_diff(&stale, 8),
        Err(MerkleError::StaleHashes)
    );
}

#[test]
fn nil_values_against_missing_keys_are_not_reported() {
    // Upstream compares `Map.get(map1, k) == Map.get(map2, k)`: a missing key
    // reads as nil.
    let mut a = MerkleMap::from_pairs([(int(1), atom("nil"))]);
    let mut b = MerkleMap::new();
    a.update_hashes();
    b.update_hashes();
    assert_eq!(a.diff_keys(&b).unwrap(), vec![int(1)]); // leaf vs empty: listed whole
    let mut c = MerkleMap::from_pairs([(binary(*b"c-1100"), atom("nil"))]);
    let mut d = MerkleMap::from_pairs([(binary(*b"c-14815"), int(1))]);
    c.update_hashes();
    d.update_hashes();
    // Colliding keys share a leaf: only the key d has is reported.
    assert_eq!(c.diff_keys(&d).unwrap(), vec![binary(*b"c-14815")]);
    assert_eq!(
        d.diff_keys(&c).unwrap(),
        vec![binary(*b"c-1100"), binary(*b"c-14815")]
    );
}

#[test]
fn values_compare_with_erlang_double_equals() {
    assert!(arith_eq(
        &int(1),
        &Term::from(crate::term::Float::try_from(1.0).unwrap())
    ));
    let one_f = Term::from(crate::term::Float::try_from(1.0).unwrap());
    assert!(arith_eq(&tuple(vec![int(1)]), &tuple(vec![one_f.clone()])));
    assert!(!arith_eq(
        &int(1),
        &Term::from(crate::term::Float::try_from(1.5).unwrap())
    ));
    let big = Term::from(crate::term::BigInteger::from(1i64 << 60));
    let big_f = Term::from(crate::term::Float::try_from((1u64 << 60) as f64).unwrap());
    assert!(arith_eq(&big, &big_f));
    let m1: crate::term::TermMap = [(int(1), int(1))].into_iter().collect();
    let m2: crate::term::TermMap = [(one_f.clone(), int(1))].into_iter().collect();
    let m3: crate::term::TermMap = [(int(1), one_f)].into_iter().collect();
    let map = |m| Term::Map(crate::term::Map::from(m));
    assert!(!arith_eq(&map(m1.clone()), &map(m2)), "map keys stay exact");
    assert!(arith_eq(&map(m1), &map(m3)), "map values compare with ==");
    assert!(arith_eq(
        &list(vec![int(97)]),
        &Term::ByteList(vec![97u8].into())
    ));
    assert!(!arith_eq(&nil(), &list(vec![int(1)])));
}

#[test]
fn malformed_terms_are_errors() {
    let tree = |t: Term| {
        crate::term::elixir::StructBuilder::new(MERKLE_TREE_STRUCT)
            .field("tree", t)
            .build()
    };
    let diff = |trees: Term| {
        crate::term::elixir::StructBuilder::new(DIFF_STRUCT)
            .field("keys", nil())
            .field("trees", trees)
            .build()
    };
    // 40 nested inner nodes.
    let mut deep = nil();
    for _ in 0..40 {
        deep = tuple(vec![nil(), deep, nil()]);
    }
    let one = |t: Term| diff(list(vec![tuple(vec![binary(vec![]), tree(t)])]));
    assert!(PartialDiff::from_term(&one(deep)).is_err());
    assert!(PartialDiff::from_term(&one(tuple(vec![nil(), atom("x")]))).is_err());
    assert!(PartialDiff::from_term(&one(atom("x"))).is_err());
    assert!(PartialDiff::from_term(&diff(atom("x"))).is_err());
    let leaf = |h: Term, kh: Term, c: Term| tuple(vec![h, tuple(vec![kh, c])]);
    let contents = Term::Map(crate::term::Map::from(HashMap::from([(int(1), int(1))])));
    assert!(PartialDiff::from_term(&one(leaf(
        binary(vec![1u8; 3]),
        binary(vec![0u8; 4]),
        contents.clone()
    )))
    .is_err());
    assert!(
        PartialDiff::from_term(&one(leaf(nil(), binary(vec![0u8; 5]), contents.clone()))).is_err()
    );
    assert!(PartialDiff::from_term(&one(leaf(nil(), binary(vec![0u8; 4]), nil()))).is_err());
    assert!(PartialDiff::from_term(&one(leaf(nil(), binary(vec![0u8; 4]), contents))).is_ok());
    // A key nested far too deep.
    let mut k = nil();
    for _ in 0..1_000 {
        k = list(vec![k]);
    }
    let keys = crate::term::elixir::StructBuilder::new(DIFF_STRUCT)
        .field("keys", list(vec![k]))
        .field("trees", nil())
        .build();
    assert!(PartialDiff::from_term(&keys).is_err());
    // A merkle map whose leaf is off its path, or whose map disagrees.
    let mut mm = MerkleMap::from_pairs([(int(1), int(1)), (int(2), int(2))]);
    mm.update_hashes();
    let good = mm.to_term();
    assert!(MerkleMap::from_term(&good).is_ok());
    let mut bad = good.clone();
    if let Term::Map(m) = &mut bad {
        m.map.insert(
            atom("map"),
            Term::Map(crate::term::Map::from(HashMap::from([(int(1), int(1))]))),
        );
    }
    assert!(MerkleMap::from_term(&bad).is_err());
    assert!(MerkleMap::from_term(&atom("nil")).is_err());
}

#[test]
fn a_leaf_meeting_a_cut_inner_node_is_listed_once_per_partial() {
    // A has one key at the top; B has many keys, so B's tree is cut at depth 8.
    let mut a = MerkleMap::from_pairs([(binary(*b"key-1"), int(1))]);
    let mut b = MerkleMap::from_pairs((0..2000).map(|i| (int(i), int(i))));
    a.update_hashes();
    b.update_hashes();
    let start = b.prepare_partial_diff(8).unwrap();
    let DiffStep::Continue(next) = a.continue_partial_diff(&start, 8).unwrap() else {
        panic!("B's tree is deeper than 8 levels")
    };
    // Every one of B's partials is answered with A's single leaf.
    assert!(next.trees.len() > 1);
    assert!(next.trees.iter().all(|(_, t)| t == a.tree()));
}

#[test]
fn listing_own_keys_answers_an_empty_peer_in_one_step() {
    let mut full = MerkleMap::from_pairs((0..5000).map(|i| (int(i), int(i))));
    let mut empty = MerkleMap::new();
    full.update_hashes();
    empty.update_hashes();
    // The empty side starts; upstream's answer is our cut tree, and the
    // keys only come back after more steps.
    let start = empty.prepare_partial_diff(4).unwrap();
    let DiffStep::Continue(_) = full.continue_partial_diff(&start, 4).unwrap() else {
        panic!("5000 keys go deeper than 4 levels")
    };
    let (DiffStep::Done(keys), own_only) =
        full.continue_partial_diff_listing_own(&start, 4).unwrap()
    else {
        panic!("our keys are listed at once")
    };
    assert_eq!(own_only.len(), keys.len());
    assert!(
        own_only.iter().all(|&o| o),
        "all listed where the peer has none"
    );
    let mut keys: Vec<i64> = keys
        .iter()
        .map(|k| match k {
            Term::FixInteger(i) => i64::from(i.value),
            other => panic!("unexpected key {other:?}"),
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..5000).collect::<Vec<_>>());
    // Where the peer has a cut subtree of its own, we still go deeper.
    let start = full.prepare_partial_diff(4).unwrap();
    let other = MerkleMap::from_pairs((0..5000).map(|i| (int(i), int(i + 1))));
    let mut other = other;
    other.update_hashes();
    assert!(matches!(
        other
            .continue_partial_diff_listing_own(&start, 4)
            .unwrap()
            .0,
        DiffStep::Continue(_)
    ));
}
