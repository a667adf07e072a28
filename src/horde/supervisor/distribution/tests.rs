//! The strategies against hand-made member lists and against
//! `tests/fixtures/horde/uniform_distribution.etf`, recorded from Horde
//! 0.10's own `choose_node/2` and libring's ring.

use super::*;
use crate::term::{atom, etf, int, tuple};

const S: &str = "Elixir.MyApp.DSup";

fn name(node: &str) -> Term {
    tuple(vec![atom(S), atom(node)])
}

fn m(node: &str, status: MemberStatus) -> Member {
    Member::new(name(node), status)
}

fn spec(n: i64) -> Term {
    Term::Map(
        vec![
            (atom("id"), int(n)),
            (
                atom("start"),
                tuple(vec![
                    atom("Elixir.MyApp.Worker"),
                    atom("start_link"),
                    term::list(vec![int(n)]),
                ]),
            ),
        ]
        .into(),
    )
}

use MemberStatus::{Alive, Dead, ShuttingDown, Uninitialized};

#[test]
fn identifier_ignores_the_id() {
    let a = spec(1);
    let Term::Map(mut b) = spec(1) else {
        unreachable!()
    };
    b.map.insert(atom("id"), term::binary("another id"));
    assert_eq!(identifier(&a), identifier(&Term::Map(b.clone())));
    b.map.remove(&atom("id"));
    assert_eq!(identifier(&a).unwrap(), phash2(&Term::Map(b)));
    assert_eq!(identifier(&int(1)), Err(ChooseError::BadChildSpec));
}

#[test]
fn no_alive_member_is_an_error_for_every_strategy() {
    let members = [
        m("a@h", Dead),
        m("b@h", ShuttingDown),
        m("c@h", Uninitialized),
    ];
    for s in [
        DistributionStrategy::Uniform,
        DistributionStrategy::UniformRandom,
    ] {
        assert_eq!(
            s.choose_node(&spec(1), &members, 7),
            Err(ChooseError::NoAliveNodes)
        );
        assert_eq!(
            s.choose_node(&spec(1), &[], 7),
            Err(ChooseError::NoAliveNodes)
        );
    }
    assert_eq!(
        DistributionStrategy::UniformQuorum.choose_node(&spec(1), &members, 7),
        Err(ChooseError::QuorumNotMet)
    );
}

#[test]
fn a_spec_that_is_not_a_map_is_an_error_value() {
    let members = [m("a@h", Alive)];
    assert_eq!(
        DistributionStrategy::Uniform.choose_node(&atom("x"), &members, 0),
        Err(ChooseError::BadChildSpec)
    );
    // The random strategy never looks at the spec, as Horde's.
    assert!(DistributionStrategy::UniformRandom
        .choose_node(&atom("x"), &members, 0)
        .is_ok());
}

#[test]
fn quorum_is_a_strict_majority_of_the_members_not_shutting_down() {
    let q = |members: &[Member]| DistributionStrategy::UniformQuorum.has_quorum(members);
    assert!(!q(&[]));
    assert!(q(&[m("a@h", Alive)]));
    assert!(!q(&[m("a@h", Dead)]));
    assert!(!q(&[m("a@h", Uninitialized)]));
    // Only shutting-down members: nobody votes.
    assert!(!q(&[m("a@h", ShuttingDown), m("b@h", ShuttingDown)]));
    // Three voters: two alive is a majority, one is not.
    assert!(q(&[m("a@h", Alive), m("b@h", Alive), m("c@h", Dead)]));
    assert!(!q(&[m("a@h", Alive), m("b@h", Dead), m("c@h", Dead)]));
    // Shutting-down members do not count at all.
    assert!(q(&[
        m("a@h", Alive),
        m("b@h", ShuttingDown),
        m("c@h", ShuttingDown)
    ]));
}

#[test]
fn an_even_count_drops_the_smallest_name_before_voting() {
    let q = |members: &[Member]| DistributionStrategy::UniformQuorum.has_quorum(members);
    // a < b: a is dropped, so b alone decides, whatever the list order.
    assert!(q(&[m("a@h", Dead), m("b@h", Alive)]));
    assert!(q(&[m("b@h", Alive), m("a@h", Dead)]));
    assert!(!q(&[m("a@h", Alive), m("b@h", Dead)]));
    assert!(!q(&[m("b@h", Dead), m("a@h", Alive)]));
    // Four voters, two alive: after dropping `a`, 2 of 3 or 1 of 3.
    assert!(q(&[
        m("a@h", Dead),
        m("b@h", Alive),
        m("c@h", Alive),
        m("d@h", Dead)
    ]));
    assert!(!q(&[
        m("a@h", Alive),
        m("b@h", Alive),
        m("c@h", Dead),
        m("d@h", Dead)
    ]));
    // The other strategies always have quorum.
    assert!(DistributionStrategy::Uniform.has_quorum(&[]));
    assert!(DistributionStrategy::UniformRandom.has_quorum(&[m("a@h", Dead)]));
}

#[test]
fn the_quorum_strategy_places_like_the_uniform_one_when_it_has_quorum() {
    let members = [m("a@h", Alive), m("b@h", Alive), m("c@h", Dead)];
    for n in 0..200 {
        assert_eq!(
            DistributionStrategy::UniformQuorum.choose_node(&spec(n), &members, 0),
            DistributionStrategy::Uniform.choose_node(&spec(n), &members, 0)
        );
    }
}

#[test]
fn the_random_strategy_picks_among_the_alive_members_by_the_number_given() {
    let members = [m("a@h", Alive), m("b@h", Dead), m("c@h", Alive)];
    let s = DistributionStrategy::UniformRandom;
    assert_eq!(
        s.choose_node(&spec(1), &members, 0).unwrap().name,
        name("a@h")
    );
    assert_eq!(
        s.choose_node(&spec(1), &members, 1).unwrap().name,
        name("c@h")
    );
    assert_eq!(
        s.choose_node(&spec(1), &members, 2).unwrap().name,
        name("a@h")
    );
}

#[test]
fn placement_does_not_depend_on_member_order_or_non_alive_members() {
    let a = [m("a@h", Alive), m("b@h", Alive), m("c@h", Alive)];
    let b = [
        m("c@h", Alive),
        m("x@h", Dead),
        m("a@h", Alive),
        m("y@h", ShuttingDown),
        m("b@h", Alive),
    ];
    let (pa, pb) = (
        Placement::new(DistributionStrategy::Uniform, &a),
        Placement::new(DistributionStrategy::Uniform, &b),
    );
    for n in 0..500 {
        assert_eq!(
            pa.choose_node(&spec(n), 0).unwrap().name,
            pb.choose_node(&spec(n), 0).unwrap().name
        );
    }
}

#[test]
fn a_cached_ring_places_as_a_fresh_one_through_membership_changes() {
    let lists = [
        vec![m("a@h", Alive), m("b@h", Alive)],
        vec![m("b@h", Alive), m("a@h", Alive), m("x@h", Dead)],
        vec![m("a@h", Alive), m("b@h", ShuttingDown)],
        vec![m("a@h", Alive), m("b@h", Alive), m("c@h", Alive)],
        vec![m("c@h", Alive), m("a@h", Alive), m("b@h", Alive)],
        vec![],
        vec![m("b@h", Alive), m("a@h", Alive)],
    ];
    let mut cache = RingCache::default();
    for members in &lists {
        let fresh = Placement::new(DistributionStrategy::Uniform, members);
        let cached = Placement::cached(DistributionStrategy::Uniform, members, &mut cache);
        for n in 0..300 {
            let (f, c) = (
                fresh.choose_node(&spec(n), 0),
                cached.choose_node(&spec(n), 0),
            );
            assert_eq!(f.map(|m| &m.name), c.map(|m| &m.name));
        }
    }
}

#[test]
fn a_name_listed_twice_answers_with_its_last_alive_entry() {
    // Horde's `Map.new/2` keeps the last member under a name.
    let mut first = m("a@h", Alive);
    first.name = name("a@h");
    let members = [first, m("a@h", Dead), m("a@h", Alive)];
    let chosen = DistributionStrategy::Uniform
        .choose_node(&spec(1), &members, 0)
        .unwrap();
    assert!(std::ptr::eq(chosen, &members[2]));
}

/// The first two names (in generation order) with a ring point in common.
fn colliding_names() -> (Term, Term, u32) {
    let mut seen: BTreeMap<u32, Term> = BTreeMap::new();
    for i in 0.. {
        let n = name(&format!("n{i}@127.0.0.1"));
        let mut ring = HashRing::new();
        ring.add_node(&n);
        let points: Vec<u32> = ring.points().map(|(p, _)| p).collect();
        for p in &points {
            if let Some(other) = seen.get(p) {
                return (other.clone(), n, *p);
            }
        }
        for p in points {
            seen.insert(p, n.clone());
        }
    }
    unreachable!()
}

#[test]
fn a_shared_point_stays_with_the_node_added_first() {
    let (x, y, point) = colliding_names();
    let mut xy = HashRing::new();
    xy.add_node(&x);
    xy.add_node(&y);
    let mut yx = HashRing::new();
    yx.add_node(&y);
    yx.add_node(&x);
    assert_eq!(xy.point_to_node(point), Some(&x));
    assert_eq!(yx.point_to_node(point), Some(&y));
    assert!(xy.points().count() < 2 * WEIGHT as usize);
    // Members are added in term order of their names, whatever the list.
    let first = if term_cmp(&x, &y).is_lt() { &x } else { &y };
    for members in [
        [Member::new(x.clone(), Alive), Member::new(y.clone(), Alive)],
        [Member::new(y.clone(), Alive), Member::new(x.clone(), Alive)],
    ] {
        let p = Placement::new(DistributionStrategy::Uniform, &members);
        assert_eq!(p.ring().point_to_node(point), Some(first));
    }
}

#[test]
fn a_key_above_the_highest_point_wraps_to_the_lowest() {
    let mut ring = HashRing::new();
    ring.add_node(&name("a@h"));
    ring.add_node(&name("b@h"));
    let (lowest, lowest_node) = ring.points().next().unwrap();
    let (highest, _) = ring.points().last().unwrap();
    assert!(highest < u32::MAX);
    assert_eq!(ring.point_to_node(highest + 1), Some(lowest_node));
    assert_eq!(ring.point_to_node(0), Some(lowest_node));
    assert_eq!(ring.point_to_node(lowest), Some(lowest_node));
    assert_eq!(HashRing::new().point_to_node(5), None);
}

// ---- the recorded fixture ---------------------------------------------------

fn fixture() -> Term {
    let bytes = include_bytes!("../../../../tests/fixtures/horde/uniform_distribution.etf");
    etf::from_binary(bytes).expect("the fixture decodes")
}

fn field<'a>(t: &'a Term, key: &str) -> &'a Term {
    match t {
        Term::Map(m) => m.map.get(&atom(key)).unwrap_or_else(|| panic!("no {key}")),
        _ => panic!("not a map: {t}"),
    }
}

fn members_of(case: &Term) -> Vec<Member> {
    term::as_list(field(case, "members"))
        .unwrap()
        .iter()
        .map(|t| Member::from_term(t).expect("a recorded member"))
        .collect()
}

#[test]
fn identifiers_and_key_points_match_the_recording() {
    let fx = fixture();
    for s in term::as_list(field(&fx, "specs")).unwrap() {
        let id = identifier(field(&s, "spec")).unwrap();
        assert_eq!(Some(i64::from(id)), term::as_i64(field(&s, "identifier")));
        assert_eq!(
            Some(i64::from(key_point(&int(i64::from(id))))),
            term::as_i64(field(&s, "key_point"))
        );
    }
}

#[test]
fn rings_match_libring_point_for_point() {
    let fx = fixture();
    let cases = term::as_list(field(&fx, "cases")).unwrap();
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let ring_rec = field(case, "ring");
        let add_order = term::as_list(field(ring_rec, "add_order")).unwrap();
        let members = members_of(case);
        let placement = Placement::new(DistributionStrategy::Uniform, &members);
        assert_eq!(placement.ring().nodes(), &add_order[..], "add order");
        let recorded: Vec<(u32, Term)> =
            term::as_list(field(ring_rec, "points_as_point_and_add_order_index"))
                .unwrap()
                .iter()
                .map(|p| match term::as_tuple(p).unwrap() {
                    [point, index] => (
                        term::as_i64(point).unwrap() as u32,
                        add_order[term::as_i64(index).unwrap() as usize].clone(),
                    ),
                    _ => panic!("point {p}"),
                })
                .collect();
        let ours: Vec<(u32, Term)> = placement
            .ring()
            .points()
            .map(|(p, n)| (p, n.clone()))
            .collect();
        assert_eq!(ours, recorded, "ring of {}", field(case, "case"));
        assert_eq!(
            Some(ours.len() as i64),
            term::as_i64(field(ring_rec, "point_count"))
        );
    }
}

#[test]
fn choices_match_horde_for_every_recorded_case() {
    let fx = fixture();
    let specs: Vec<Term> = term::as_list(field(&fx, "specs"))
        .unwrap()
        .iter()
        .map(|s| field(s, "spec").clone())
        .collect();
    let mut checked = 0;
    for case in term::as_list(field(&fx, "cases")).unwrap() {
        let members = members_of(&case);
        let placement = Placement::new(DistributionStrategy::Uniform, &members);
        let chosen = term::as_list(field(&case, "chosen_by_spec_index")).unwrap();
        assert_eq!(chosen.len(), specs.len());
        for (spec, theirs) in specs.iter().zip(&chosen) {
            let ours = placement.choose_node(spec, 0).unwrap();
            assert_eq!(&ours.name, theirs, "{} / {spec}", field(&case, "case"));
            checked += 1;
        }
    }
    assert_eq!(checked, 300);
    let no_alive = field(&fx, "no_alive");
    assert_eq!(
        no_alive,
        &tuple(vec![atom("error"), ChooseError::NoAliveNodes.reason()])
    );
}
