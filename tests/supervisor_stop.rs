//! How a Horde.DynamicSupervisor member stops, between Rust members only
//! (no BEAM needed: runs in CI). Every node is in this test process; every
//! wait polls for its condition with a deadline, nothing is timed.
//!
//! * `a_partitioned_minority_stops_and_the_majority_runs_each_child_once`:
//!   three members with a static member list and UniformQuorumDistribution
//!   hold 60 children; one node is cut off from the other two
//!   ([`Node::block`], so the partition holds). The minority member loses
//!   its quorum: the whole member stops (its process exits) and every one
//!   of its children stops; the majority restarts each of them exactly once.
//! * `past_the_restart_intensity_the_member_stops_and_its_children_move_once`:
//!   two members; on the first, one child crashes at every start: the
//!   fourth restart within 5 s stops that whole member, as Horde's
//!   `one_for_all` tree does; its other children are relinquished and the
//!   crashing one (still named for the stopped member in the CRDT) is
//!   restarted for the dead member: each runs once on the second member.
//! * `node_stop_hands_the_members_children_over`: [`Node::stop`] runs the
//!   member's graceful stop through the node's shutdown hook: every child
//!   of the stopped node starts once on the other member, with no call to
//!   `Supervisor::stop`.
//! * `a_child_that_outlives_its_shutdown_time_is_killed`: children that
//!   trap exits and ignore `shutdown`: `terminate_child` and the member's
//!   graceful stop send them `shutdown`, then `kill` once their spec's
//!   `shutdown` milliseconds are up; a child with `shutdown: :infinity` is
//!   never killed.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beam_peer::horde::member;
use beam_peer::horde::supervisor::{
    self, ChildSpec, DistributionStrategy, MemberStatus, Members, Supervisor,
};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Node, ProcessExit};

const DEADLINE: Duration = Duration::from_secs(30);
const WORKER: &str = "Elixir.Stop.Worker";

use common::supervisor::Events;

/// A worker that records its children's starts and stops; with
/// `crash_on`, child `crash_on.0` exits at once on node `crash_on.1`.
fn worker(
    events: Events,
    crash_on: Option<(i64, String)>,
) -> impl Fn(&Node, Vec<Term>) -> Result<Pid, Term> + Send + Sync {
    move |node, args| {
        let arg = args.first().and_then(term::as_i64).unwrap_or(-1);
        let here = node.name().to_string();
        if crash_on.as_ref() == Some(&(arg, here.clone())) {
            events.lock().unwrap().push(("crash", arg, here));
            return Ok(node.spawn(|_| async { ProcessExit::from(term::atom("boom")) }));
        }
        common::supervisor::start_recorded(node, &events, arg)
    }
}

fn spec(arg: i64) -> ChildSpec {
    common::supervisor::spec(WORKER, arg)
}

async fn poll<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    common::poll_until(what, DEADLINE, f).await
}

async fn all_alive(sups: &[Supervisor], n: usize) {
    common::all_members_alive(sups, n, DEADLINE).await
}

async fn nodes(prefix: &str, n: usize) -> Vec<Node> {
    let port = common::free_port();
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(common::rust_node(prefix, port).await);
    }
    for n in &nodes[1..] {
        n.join(nodes[0].name()).await.expect("joins the first node");
    }
    nodes
}

/// Starts children `args` through `sup`; `arg -> node` of each.
async fn start_children(
    sup: &Supervisor,
    args: std::ops::RangeInclusive<i64>,
) -> BTreeMap<i64, Pid> {
    let mut placed = BTreeMap::new();
    for arg in args {
        let reply = sup
            .start_child(spec(arg), Duration::from_secs(10))
            .await
            .expect("start_child answered");
        let Some([_, Term::Pid(pid)]) = term::as_tuple(&reply) else {
            panic!("start_child {arg}: {reply}");
        };
        placed.insert(arg, pid.clone());
    }
    placed
}

/// The args of `event`s on `node` from `from` on, sorted.
fn args_of(events: &Events, from: usize, event: &str, node: Option<&str>) -> Vec<i64> {
    let mut v: Vec<i64> = events.lock().unwrap()[from..]
        .iter()
        .filter(|(e, _, n)| *e == event && node.is_none_or(|want| n == want))
        .map(|(_, a, _)| *a)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_stops_and_the_majority_runs_each_child_once() {
    const S: &str = "Elixir.Stop.QuorumSup";
    let events: Events = Default::default();
    let nodes = nodes("quorum", 3).await;
    let list: Vec<Term> = nodes.iter().map(|n| member(S, n.name())).collect();
    let sups: Vec<Supervisor> = nodes
        .iter()
        .map(|n| {
            supervisor::start(
                n,
                supervisor::SupervisorOptions::new(S)
                    .members(Members::List(list.clone()))
                    .distribution_strategy(DistributionStrategy::UniformQuorum)
                    .sync_interval(50)
                    .worker(WORKER, worker(events.clone(), None)),
            )
            .expect("the member starts")
        })
        .collect();
    all_alive(&sups, 3).await;
    let placed = start_children(&sups[1], 1..=60).await;
    let minority = nodes[0].name().to_string();
    let cut_off: Vec<i64> = placed
        .iter()
        .filter(|(_, p)| p.node.name == minority)
        .map(|(a, _)| *a)
        .collect();
    assert!(!cut_off.is_empty(), "the minority node runs children");
    // Children a member knows of only once its CRDT has them: the
    // majority must hold every child before the split.
    for s in &sups {
        poll(&format!("{} knows the 60", s.member()), || async {
            common::supervisor::telemetry(s, "global_supervised_process_count").await
                == Some(term::int(60))
        })
        .await;
    }
    let mark = events.lock().unwrap().len();

    // The partition: nodes[0] | nodes[1], nodes[2].
    // All at once on the minority side: were node 0 still connected to
    // node 2 when it sees node 1 go, its write of node 1 `:dead` would
    // reach node 2, which would then count one alive member of three
    // (Horde's members trust each other's `:dead` alike).
    nodes[0].block(&[nodes[1].name(), nodes[2].name()]);
    for other in &nodes[1..] {
        other.block(&[&minority]);
    }
    poll("the minority member stops", || async {
        !nodes[0].is_process_alive(sups[0].pid())
    })
    .await;
    for (arg, pid) in placed.iter().filter(|(_, p)| p.node.name == minority) {
        assert!(
            !nodes[0].is_process_alive(pid),
            "child {arg} stopped with its member"
        );
    }
    let deadline = Instant::now() + DEADLINE;
    let majority_starts = || {
        args_of(&events, mark, "start", Some(nodes[1].name())).len()
            + args_of(&events, mark, "start", Some(nodes[2].name())).len()
    };
    while majority_starts() < cut_off.len() {
        if Instant::now() > deadline {
            for s in &sups[1..] {
                eprintln!("{}: {:?}", s.member(), s.member_statuses().await);
            }
            panic!(
                "the majority restarts every cut-off child: {cut_off:?}; events {:?}",
                &events.lock().unwrap()[mark..]
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Settled: both majority members know all 60 children, none on node 0.
    for s in &sups[1..] {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let t = s
                .call(term::atom("get_telemetry"), Duration::from_secs(5))
                .await;
            let global = match &t {
                Ok(Term::Map(m)) => m
                    .map
                    .get(&term::atom("global_supervised_process_count"))
                    .cloned(),
                _ => None,
            };
            if global == Some(term::int(60)) {
                break;
            }
            if Instant::now() > deadline {
                let which = s
                    .call(term::atom("which_children"), Duration::from_secs(5))
                    .await;
                panic!(
                    "{} never held the 60: {t:?}; which_children {which:?}; events {:?}",
                    s.member(),
                    &events.lock().unwrap()[mark..]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut on_majority = args_of(&events, mark, "start", Some(nodes[1].name()));
    on_majority.extend(args_of(&events, mark, "start", Some(nodes[2].name())));
    on_majority.sort();
    let log = events.lock().unwrap()[mark..].to_vec();
    assert_eq!(
        on_majority, cut_off,
        "each cut-off child restarted once, by the majority: {log:?}"
    );
    // Before its second DOWN, the minority member still had quorum (two of
    // three alive) and took over the children of the first member it saw
    // go, as Horde's does; then it stopped them all with itself.
    let taken = args_of(&events, mark, "start", Some(&minority));
    let mut ran = cut_off.clone();
    ran.extend(taken.iter().copied());
    ran.sort();
    assert_eq!(
        args_of(&events, mark, "stop", Some(&minority)),
        ran,
        "the minority stopped each child it ran: {log:?}"
    );
    assert!(
        args_of(&events, mark, "stop", Some(nodes[1].name())).is_empty()
            && args_of(&events, mark, "stop", Some(nodes[2].name())).is_empty(),
        "the majority's own children ran on: {log:?}"
    );
    println!(
        "{} of 60 children moved from the minority member to the majority, each once",
        cut_off.len()
    );
    drop(sups);
    for n in nodes {
        n.halt();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_restart_intensity_the_member_stops_and_its_children_move_once() {
    const S: &str = "Elixir.Stop.IntensitySup";
    let events: Events = Default::default();
    let nodes = nodes("intensity", 2).await;
    // Which child crashes: the first that the ring puts on node 0.
    let both = [
        supervisor::Member::new(member(S, nodes[0].name()), MemberStatus::Alive),
        supervisor::Member::new(member(S, nodes[1].name()), MemberStatus::Alive),
    ];
    let on_first = |arg: i64| {
        DistributionStrategy::Uniform
            .choose_node(spec(arg).as_term(), &both, 0)
            .expect("placed")
            .name
            == member(S, nodes[0].name())
    };
    let crashing = (100..).find(|a| on_first(*a)).expect("some arg");
    let crash_on = Some((crashing, nodes[0].name().to_string()));
    let sups: Vec<Supervisor> = nodes
        .iter()
        .map(|n| {
            supervisor::start(
                n,
                supervisor::SupervisorOptions::new(S)
                    .sync_interval(50)
                    .max_restarts(3, 5)
                    .worker(WORKER, worker(events.clone(), crash_on.clone())),
            )
            .expect("the member starts")
        })
        .collect();
    all_alive(&sups, 2).await;
    let placed = start_children(&sups[1], 1..=20).await;
    let first = nodes[0].name().to_string();
    let mut moving: Vec<i64> = placed
        .iter()
        .filter(|(_, p)| p.node.name == first)
        .map(|(a, _)| *a)
        .collect();
    assert!(!moving.is_empty());
    // Wait until the other member knows every child where it runs (it
    // restarts them from what its CRDT holds).
    poll("the second member knows the 20", || async {
        let Ok(Term::Map(m)) = sups[1]
            .call(term::atom("get_telemetry"), Duration::from_secs(5))
            .await
        else {
            return false;
        };
        m.map.get(&term::atom("global_supervised_process_count")) == Some(&term::int(20))
    })
    .await;
    let mark = events.lock().unwrap().len();

    // The crashing child: started once, restarted three times, and the
    // fourth restart within 5 s is one too many.
    let reply = sups[0]
        .start_child(spec(crashing), Duration::from_secs(10))
        .await
        .expect("answered");
    assert!(
        matches!(term::as_tuple(&reply), Some([ok, Term::Pid(p)]) if term::is_atom(ok, "ok") && p.node.name == first),
        "{reply}"
    );
    poll("the first member stops", || async {
        !nodes[0].is_process_alive(sups[0].pid())
    })
    .await;
    moving.push(crashing);
    moving.sort();
    let deadline = Instant::now() + DEADLINE;
    while args_of(&events, mark, "start", Some(nodes[1].name())).len() < moving.len() {
        if Instant::now() > deadline {
            eprintln!("statuses {:?}", sups[1].member_statuses().await);
            eprintln!(
                "which {:?}",
                sups[1]
                    .call(term::atom("which_children"), Duration::from_secs(5))
                    .await
            );
            panic!(
                "every child of the stopped member runs on the other: {moving:?}; events {:?}",
                &events.lock().unwrap()[mark..]
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    poll("the second member holds all 21", || async {
        let Ok(Term::Map(m)) = sups[1]
            .call(term::atom("get_telemetry"), Duration::from_secs(5))
            .await
        else {
            return false;
        };
        m.map.get(&term::atom("local_supervised_process_count")) == Some(&term::int(21))
    })
    .await;
    assert_eq!(
        args_of(&events, mark, "start", Some(nodes[1].name())),
        moving,
        "each child of the stopped member started once on the other"
    );
    assert_eq!(
        args_of(&events, mark, "crash", Some(&first)),
        vec![crashing; 4],
        "started and restarted three times on the first member"
    );
    let mut stopped = args_of(&events, mark, "stop", Some(&first));
    stopped.push(crashing);
    stopped.sort();
    assert_eq!(
        stopped, moving,
        "the first member stopped each of its children"
    );
    println!(
        "the restart limit stopped a member; {} children moved, each once",
        moving.len()
    );
    drop(sups);
    for n in nodes {
        n.halt();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stop_hands_the_members_children_over() {
    const S: &str = "Elixir.Stop.HandOverSup";
    let events: Events = Default::default();
    let nodes = nodes("handover", 2).await;
    let sups: Vec<Supervisor> = nodes
        .iter()
        .map(|n| {
            supervisor::start(
                n,
                supervisor::SupervisorOptions::new(S)
                    .sync_interval(50)
                    .worker(WORKER, worker(events.clone(), None)),
            )
            .expect("the member starts")
        })
        .collect();
    all_alive(&sups, 2).await;
    let placed = start_children(&sups[1], 1..=30).await;
    let leaving = nodes[0].name().to_string();
    let moving: Vec<i64> = placed
        .iter()
        .filter(|(_, p)| p.node.name == leaving)
        .map(|(a, _)| *a)
        .collect();
    assert!(!moving.is_empty());
    let mark = events.lock().unwrap().len();
    // The member's handle stays alive: only the node's stop ends it.
    nodes[0].stop(Duration::from_secs(5)).await;
    assert_eq!(
        args_of(&events, mark, "stop", Some(&leaving)),
        moving,
        "the leaving member stopped each of its children before its node closed"
    );
    poll(
        "every handed-over child runs on the other member",
        || async { args_of(&events, mark, "start", Some(nodes[1].name())).len() >= moving.len() },
    )
    .await;
    poll("the other member holds all 30", || async {
        let Ok(Term::Map(m)) = sups[1]
            .call(term::atom("get_telemetry"), Duration::from_secs(5))
            .await
        else {
            return false;
        };
        m.map.get(&term::atom("local_supervised_process_count")) == Some(&term::int(30))
    })
    .await;
    assert_eq!(
        args_of(&events, mark, "start", Some(nodes[1].name())),
        moving,
        "each started once"
    );
    println!("Node::stop handed {} children over", moving.len());
    drop(sups);
    for n in nodes {
        n.halt();
    }
}

const STUBBORN: &str = "Elixir.Stop.Stubborn";

/// `(arg, what)`: `trapping` once child `arg` traps exits, or the reason
/// of each exit signal it trapped.
type Trapped = Arc<Mutex<Vec<(i64, Term)>>>;

/// Children that trap exits and never exit on a signal they can trap.
fn stubborn(trapped: Trapped) -> impl Fn(&Node, Vec<Term>) -> Result<Pid, Term> + Send + Sync {
    move |node, args| {
        let arg = args.first().and_then(term::as_i64).unwrap_or(-1);
        let trapped = trapped.clone();
        Ok(node.spawn(move |mut p| async move {
            p.trap_exit(true);
            trapped.lock().unwrap().push((arg, term::atom("trapping")));
            loop {
                match p.receive().await {
                    Ok(m) => {
                        if let Some([t, _, reason]) = term::as_tuple(&m) {
                            if term::is_atom(t, "EXIT") {
                                trapped.lock().unwrap().push((arg, reason.clone()));
                            }
                        }
                    }
                    Err(e) => return e.into(),
                }
            }
        }))
    }
}

fn stubborn_spec(arg: i64, shutdown: Term) -> ChildSpec {
    ChildSpec::new(
        term::int(arg),
        STUBBORN,
        "start_link",
        vec![term::int(arg)],
        [("shutdown", shutdown)],
    )
}

fn trapped_of(trapped: &Trapped, arg: i64) -> Vec<Term> {
    trapped
        .lock()
        .unwrap()
        .iter()
        .filter(|(a, _)| *a == arg)
        .map(|(_, t)| t.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_outlives_its_shutdown_time_is_killed() {
    const S: &str = "Elixir.Stop.StubbornSup";
    let trapped: Trapped = Default::default();
    let nodes = nodes("stubborn", 1).await;
    let node = &nodes[0];
    let sup = supervisor::start(
        node,
        supervisor::SupervisorOptions::new(S)
            .sync_interval(50)
            .worker(STUBBORN, stubborn(trapped.clone())),
    )
    .expect("the member starts");
    all_alive(std::slice::from_ref(&sup), 1).await;
    let mut pids = BTreeMap::new();
    for (arg, shutdown) in [
        (1, term::int(100)),
        (2, term::atom("infinity")),
        (3, term::int(100)),
    ] {
        let reply = sup
            .start_child(stubborn_spec(arg, shutdown), Duration::from_secs(10))
            .await
            .expect("start_child answered");
        let Some([_, Term::Pid(pid)]) = term::as_tuple(&reply) else {
            panic!("start_child {arg}: {reply}");
        };
        pids.insert(arg, pid.clone());
    }
    poll("every child traps exits", || async {
        (1..=3).all(|a| trapped_of(&trapped, a).contains(&term::atom("trapping")))
    })
    .await;
    for arg in [1, 2] {
        let r = sup
            .terminate_child(&pids[&arg], Duration::from_secs(10))
            .await
            .expect("terminate_child answered");
        assert!(term::is_atom(&r, "ok"), "{r}");
    }
    poll("child 1 is killed after its 100 ms", || async {
        !node.is_process_alive(&pids[&1])
    })
    .await;
    assert!(
        trapped_of(&trapped, 1).contains(&term::atom("shutdown")),
        "child 1 was asked to stop first: {:?}",
        trapped_of(&trapped, 1)
    );
    assert!(
        trapped_of(&trapped, 2).contains(&term::atom("shutdown")),
        "child 2 got the shutdown signal"
    );
    // Signalled before child 1 was killed: with `:infinity` it is left
    // to exit when it will.
    assert!(
        node.is_process_alive(&pids[&2]),
        "child 2 (:infinity) runs on"
    );
    // The graceful stop waits for child 3, and kills it after its 100 ms.
    tokio::time::timeout(DEADLINE, sup.stop())
        .await
        .expect("the member's stop ends")
        .expect("the member was running");
    assert!(!node.is_process_alive(&pids[&3]), "child 3 is gone");
    assert!(trapped_of(&trapped, 3).contains(&term::atom("shutdown")));
    node.exit_process(&pids[&2], term::atom("kill"));
    for n in nodes {
        n.halt();
    }
}
