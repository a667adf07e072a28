//! The pg scope state machine from terms: what it sends peers, how it folds
//! in what they send, and what it refuses.

use super::scope::{Effect, PidOrPids, Scope};
use crate::term::{self, atom, Pid, Reference, Term};

fn pid(node: &str, n: u32) -> Pid {
    Pid::new(node, n, 0, 1)
}

const ME: &str = "rust@127.0.0.1";
const PEER: &str = "erl@127.0.0.1";

fn scope() -> Scope {
    Scope::new("pg", pid(ME, 1))
}

fn sends(effects: &[Effect]) -> Vec<(Term, Term)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg, .. } => Some((to.clone(), msg.clone())),
            _ => None,
        })
        .collect()
}

fn g(name: &str) -> Term {
    atom(name)
}

fn pids(v: &[Pid]) -> Term {
    term::list(v.iter().cloned().map(Term::Pid).collect())
}

/// A peer scope that discovered us: known, and told our groups.
fn with_peer(s: &mut Scope) -> Pid {
    let peer = pid(PEER, 50);
    let out = s
        .handle_message(&crate::tup![atom("discover"), Term::Pid(peer.clone())])
        .unwrap();
    let sent = sends(&out);
    assert_eq!(sent[0].0, Term::Pid(peer.clone()));
    assert!(out.contains(&Effect::Monitor(peer.clone())));
    peer
}

#[test]
fn a_start_discovers_every_node_and_a_nodeup_the_new_one() {
    let s = scope();
    let out = s.start(&[PEER.to_string()]);
    assert_eq!(
        sends(&out),
        [(
            crate::tup![atom("pg"), atom(PEER)],
            crate::tup![atom("discover"), Term::Pid(pid(ME, 1))]
        )]
    );
    assert!(matches!(
        s.nodeup(PEER).as_slice(),
        [Effect::Send {
            noconnect: true,
            ..
        }]
    ));
    assert!(s.nodeup(ME).is_empty());
}

#[test]
fn discover_is_answered_with_a_sync_of_local_members_and_our_own_discover() {
    let mut s = scope();
    let a = pid(ME, 7);
    s.join(g("workers"), PidOrPids::One(a.clone()));
    s.join(g("workers"), PidOrPids::One(a.clone()));
    let peer = pid(PEER, 50);
    // OTP 26+'s three-element discover too.
    let out = s
        .handle_message(&crate::tup![
            atom("discover"),
            Term::Pid(peer.clone()),
            term::int(1)
        ])
        .unwrap();
    let sent = sends(&out);
    assert_eq!(
        sent[0],
        (
            Term::Pid(peer.clone()),
            crate::tup![
                atom("$gen_cast"),
                crate::tup![
                    atom("sync"),
                    Term::Pid(pid(ME, 1)),
                    term::list(vec![crate::tup![g("workers"), pids(&[a.clone(), a])]])
                ]
            ]
        )
    );
    assert_eq!(
        sent[1],
        (
            Term::Pid(peer.clone()),
            crate::tup![atom("discover"), Term::Pid(pid(ME, 1))]
        )
    );
    // A second discover from a known peer only syncs.
    let out = s
        .handle_message(&crate::tup![atom("discover"), Term::Pid(peer)])
        .unwrap();
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn joins_and_leaves_reach_peers_in_pgs_shapes() {
    let mut s = scope();
    let peer = with_peer(&mut s);
    let a = pid(ME, 7);
    let out = s.join(g("g"), PidOrPids::One(a.clone()));
    assert!(out.contains(&Effect::Monitor(a.clone())));
    assert_eq!(
        sends(&out),
        [(
            Term::Pid(peer.clone()),
            crate::tup![
                atom("join"),
                Term::Pid(pid(ME, 1)),
                g("g"),
                Term::Pid(a.clone())
            ]
        )]
    );
    assert_eq!(s.members(&g("g")), std::slice::from_ref(&a));
    assert_eq!(s.local_members(&g("g")), std::slice::from_ref(&a));
    let out = s.leave(&g("g"), PidOrPids::One(a.clone())).unwrap();
    assert!(out.contains(&Effect::Demonitor(a.clone())));
    assert_eq!(
        sends(&out),
        [(
            Term::Pid(peer),
            crate::tup![
                atom("leave"),
                Term::Pid(pid(ME, 1)),
                Term::Pid(a.clone()),
                term::list(vec![g("g")])
            ]
        )]
    );
    assert!(s.members(&g("g")).is_empty());
    assert!(s.groups().is_empty());
    // not_joined
    assert!(s.leave(&g("g"), PidOrPids::One(a)).is_none());
}

#[test]
fn a_sync_replaces_what_the_peer_had_and_its_down_drops_it() {
    let mut s = scope();
    let peer = with_peer(&mut s);
    let (x, y) = (pid(PEER, 8), pid(PEER, 9));
    let sync = |groups: Term| {
        crate::tup![
            atom("$gen_cast"),
            crate::tup![atom("sync"), Term::Pid(pid(PEER, 50)), groups]
        ]
    };
    s.handle_message(&sync(term::list(vec![
        crate::tup![g("a"), pids(std::slice::from_ref(&x))],
        crate::tup![g("b"), pids(std::slice::from_ref(&y))],
    ])))
    .unwrap();
    assert_eq!(s.members(&g("a")), std::slice::from_ref(&x));
    assert_eq!(s.members(&g("b")), std::slice::from_ref(&y));
    s.handle_message(&sync(term::list(vec![crate::tup![
        g("a"),
        pids(&[x.clone(), y.clone()])
    ]])))
    .unwrap();
    let mut a = s.members(&g("a"));
    a.sort_by_key(|p| p.id);
    assert_eq!(a, [x.clone(), y.clone()]);
    assert!(s.members(&g("b")).is_empty(), "b left with the new sync");
    // Remote join and leave.
    let z = pid(PEER, 10);
    s.handle_message(&crate::tup![
        atom("join"),
        Term::Pid(peer.clone()),
        g("c"),
        pids(std::slice::from_ref(&z))
    ])
    .unwrap();
    assert_eq!(s.members(&g("c")), std::slice::from_ref(&z));
    s.handle_message(&crate::tup![
        atom("leave"),
        Term::Pid(peer.clone()),
        Term::Pid(z),
        term::list(vec![g("c")])
    ])
    .unwrap();
    assert!(s.members(&g("c")).is_empty());
    // The peer scope's DOWN (noconnection) drops all it had.
    s.handle_message(&crate::tup![
        atom("DOWN"),
        Term::Reference(Box::new(Reference::from((ME, 3)))),
        atom("process"),
        Term::Pid(peer),
        atom("noconnection")
    ])
    .unwrap();
    assert!(s.groups().is_empty());
}

#[test]
fn joins_from_a_peer_never_synced_are_ignored() {
    let mut s = scope();
    let stranger = pid(PEER, 99);
    let out = s
        .handle_message(&crate::tup![
            atom("join"),
            Term::Pid(stranger),
            g("g"),
            Term::Pid(pid(PEER, 3))
        ])
        .unwrap();
    assert!(out.is_empty());
    assert!(s.groups().is_empty());
}

#[test]
fn a_local_member_that_exits_leaves_everywhere() {
    let mut s = scope();
    let peer = with_peer(&mut s);
    let a = pid(ME, 7);
    s.join(g("x"), PidOrPids::One(a.clone()));
    s.join(g("y"), PidOrPids::Many(vec![a.clone()]));
    let out = s
        .handle_message(&crate::tup![
            atom("DOWN"),
            Term::Reference(Box::new(Reference::from((ME, 4)))),
            atom("process"),
            Term::Pid(a.clone()),
            atom("normal")
        ])
        .unwrap();
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    let (to, msg) = &sent[0];
    assert_eq!(to, &Term::Pid(peer));
    match term::as_tuple(msg) {
        Some([tag, _, who, groups]) => {
            assert!(term::is_atom(tag, "leave"));
            assert_eq!(who, &Term::Pid(a));
            assert_eq!(term::as_list(groups).map(|l| l.len()), Some(2));
        }
        _ => panic!("{msg}"),
    }
    assert!(s.groups().is_empty());
}

#[test]
fn watchers_hear_joins_and_leaves() {
    let mut s = scope();
    let w = pid(ME, 20);
    let r = Reference::from((ME, 77));
    let (now, effects) = s.monitor_group(w.clone(), r.clone(), g("g"));
    assert!(now.is_empty());
    assert_eq!(effects, [Effect::Monitor(w.clone())]);
    let a = pid(ME, 7);
    let out = s.join(g("g"), PidOrPids::One(a.clone()));
    assert!(sends(&out).contains(&(
        Term::Pid(w.clone()),
        crate::tup![
            Term::Reference(Box::new(r.clone())),
            atom("join"),
            g("g"),
            pids(std::slice::from_ref(&a))
        ]
    )));
    // Another group is none of its business.
    let out = s.join(g("other"), PidOrPids::One(a));
    assert!(sends(&out).is_empty());
    let (was, effects) = s.demonitor(&r);
    assert!(was);
    assert_eq!(effects, [Effect::Demonitor(w)]);
    assert!(!s.demonitor(&r).0);
}

#[test]
fn anything_else_is_refused_and_changes_nothing() {
    let mut s = scope();
    let peer = with_peer(&mut s);
    for bad in [
        atom("hello"),
        crate::tup![atom("discover"), atom("not_a_pid")],
        crate::tup![atom("join"), Term::Pid(peer.clone()), g("g"), atom("x")],
        crate::tup![
            atom("leave"),
            Term::Pid(peer.clone()),
            Term::Pid(pid(PEER, 1)),
            atom("not_a_list")
        ],
        crate::tup![
            atom("$gen_cast"),
            crate::tup![atom("sync"), Term::Pid(peer.clone()), atom("x")]
        ],
        crate::tup![atom("$gen_cast"), atom("other")],
    ] {
        assert!(s.handle_message(&bad).is_err(), "{bad}");
    }
    assert!(s.groups().is_empty());
}
