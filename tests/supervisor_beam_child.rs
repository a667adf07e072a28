//! Children with no Rust worker, run by a Rust Horde.DynamicSupervisor
//! member on a BEAM node (`horde::supervisor::on_beam`), against a plain
//! `erl` (no Horde needed: runs in CI; one SKIPPED line without `erl`).
//!
//! `a_child_without_a_rust_worker_runs_on_a_beam_node_under_the_rust_member`:
//! the Rust member is the only member; `erlang/src/beam_peer_sup_child.erl`
//! exists only on the `erl` node. Ten children of it:
//! - start there (their pids are on the `erl` node) and answer calls;
//! - are the member's children in `which_children`;
//! - a crash is restarted by the member (a new pid, on the `erl` node);
//! - `terminate_child` stops one through its parent there: the child traps
//!   exits, so only its parent's `shutdown` makes it run `terminate/2`;
//! - the member's node vanishing (`Node::halt`, as under kill -9) stops
//!   every one of them there, each with `shutdown`;
//! - a spec whose module no node has is refused with
//!   `{:error, {:no_rust_worker, M}}`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use beam_peer::horde::supervisor::{self, ChildSpec, Members};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Dest, Process};

const S: &str = "Elixir.BeamChild.Sup";
const CHILD: &str = "beam_peer_sup_child";

/// `erlang/src/beam_peer_sup_child.erl`, compiled for this run.
fn child_ebin() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sup_child_ebin_{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("ebin dir");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang/src/beam_peer_sup_child.erl");
    let status = common::beam_tool("erlc")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("erlc runs");
    assert!(status.success(), "erlc failed on {}", src.display());
    out
}

fn spec(module: &str, arg: i64) -> ChildSpec {
    ChildSpec::new(
        term::int(arg),
        module,
        "start_link",
        vec![term::int(arg)],
        [],
    )
}

async fn poll<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ping(p: &mut Process, pid: &Pid) -> Term {
    p.call(
        Dest::Pid(pid.clone()),
        term::atom("ping"),
        Duration::from_secs(5),
    )
    .await
    .expect("the child answers")
}

/// `arg -> pid` of the member's children (`which_children` has no ids:
/// each pid is asked).
async fn children(p: &mut Process, sup: &supervisor::Supervisor) -> Vec<(i64, Pid)> {
    let which = sup
        .call(term::atom("which_children"), Duration::from_secs(10))
        .await
        .expect("which_children");
    let mut v = Vec::new();
    for c in term::as_list(&which).unwrap_or_default() {
        let Some([_, Term::Pid(pid), _, _]) = term::as_tuple(&c) else {
            panic!("which_children entry {c}")
        };
        // A child that just exited may still be listed: skipped.
        let Ok(pong) = p
            .call(
                Dest::Pid(pid.clone()),
                term::atom("ping"),
                Duration::from_secs(5),
            )
            .await
        else {
            continue;
        };
        if let Some([_, arg, _]) = term::as_tuple(&pong) {
            v.push((term::as_i64(arg).expect("an arg"), pid.clone()));
        }
    }
    v.sort_by_key(|(a, _)| *a);
    v
}

/// `{terminated, Arg, Reason}` reports collected on the erl node so far.
async fn terminated(p: &mut Process, beam: &str) -> Vec<(i64, String)> {
    let t = common::eval(
        p,
        beam,
        "beam_peer_ctl:collected(whereis(beam_peer_sup_watch)).",
    )
    .await;
    term::as_list(&t)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| match term::as_tuple(m) {
            Some([_, a, r]) => Some((term::as_i64(a)?, r.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_without_a_rust_worker_runs_on_a_beam_node_under_the_rust_member() {
    let test = "a_child_without_a_rust_worker_runs_on_a_beam_node_under_the_rust_member";
    if !common::have_erl(test) {
        return;
    }
    let port = common::free_port();
    // The watcher hosts the embedded EPMD and outlives the member's node.
    let watcher = common::rust_node("bc_watch", port).await;
    let node = common::rust_node("bc_rust", port).await;
    let ebin = child_ebin();
    let ebin = ebin.to_string_lossy().to_string();
    let beam = common::Beam::start("bc_erl", common::COOKIE, port, &["-pa", &ebin]);
    node.join(&beam.name).await.expect("joins erl");
    watcher
        .join(&beam.name)
        .await
        .expect("the watcher joins erl");
    let mut p = node.process();
    let mut w = watcher.process();
    common::eval(
        &mut w,
        &beam.name,
        "register(beam_peer_sup_watch, beam_peer_ctl:collector()), true.",
    )
    .await;
    let sup = supervisor::start(
        &node,
        supervisor::SupervisorOptions::new(S)
            .members(Members::List(vec![]))
            .sync_interval(50),
    )
    .expect("the member starts");

    // Ten children, each on the erl node.
    let mut pids = Vec::new();
    for arg in 1..=10 {
        let reply = sup
            .start_child(spec(CHILD, arg), Duration::from_secs(10))
            .await
            .expect("answered");
        let Some([ok, Term::Pid(pid)]) = term::as_tuple(&reply) else {
            panic!("start_child {arg}: {reply}")
        };
        assert!(term::is_atom(ok, "ok"));
        assert_eq!(pid.node.name, beam.name, "child {arg} runs on the erl node");
        assert_eq!(
            ping(&mut p, pid).await,
            beam_peer::tup![term::atom("pong"), term::int(arg), term::atom(&beam.name)]
        );
        pids.push(pid.clone());
    }
    let listed = children(&mut p, &sup).await;
    assert_eq!(
        listed.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );

    // A crash: restarted by the member, on the erl node, under a new pid.
    let crashed = p
        .call(
            Dest::Pid(pids[0].clone()),
            term::atom("crash"),
            Duration::from_secs(5),
        )
        .await
        .expect("answers before it goes");
    assert_eq!(crashed, term::atom("ok"));
    poll("child 1 runs again under a new pid", || {
        let (sup, old) = (sup.clone(), pids[0].clone());
        let mut p = node.process();
        async move {
            let c = children(&mut p, &sup).await;
            c.len() == 10 && c[0].0 == 1 && c[0].1 != old
        }
    })
    .await;
    let restarted = children(&mut p, &sup).await[0].1.clone();
    assert_eq!(restarted.node.name, beam.name);

    // terminate_child: stopped through its parent (it traps exits).
    let reply = sup
        .terminate_child(&pids[1], Duration::from_secs(10))
        .await
        .expect("answered");
    assert_eq!(reply, term::atom("ok"));
    poll("child 2 terminated with shutdown", || {
        let beam = beam.name.clone();
        let mut w = watcher.process();
        async move {
            let t = terminated(&mut w, &beam).await;
            t.contains(&(2, "shutdown".into()))
        }
    })
    .await;
    assert_eq!(children(&mut p, &sup).await.len(), 9);

    // A module no node has.
    let reply = sup
        .start_child(spec("Elixir.Nowhere", 99), Duration::from_secs(10))
        .await
        .expect("answered");
    assert_eq!(
        reply,
        beam_peer::tup![
            term::atom("error"),
            beam_peer::tup![term::atom("no_rust_worker"), term::atom("Elixir.Nowhere")]
        ]
    );

    // The member's node vanishes: the parents stop every child there.
    node.halt();
    drop(sup);
    let mut gone: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gone.iter().filter(|(_, r)| r == "shutdown").count() < 9 {
        assert!(
            Instant::now() < deadline,
            "never happened: the nine children terminated with shutdown on erl: {gone:?}"
        );
        gone.extend(terminated(&mut w, &beam.name).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut args: Vec<i64> = gone.iter().map(|(a, _)| *a).collect();
    args.sort();
    assert_eq!(
        args,
        vec![1, 3, 4, 5, 6, 7, 8, 9, 10],
        "each once: {gone:?}"
    );
    let left = common::eval(
        &mut w,
        &beam.name,
        "length([P || P <- processes(), proc_lib:translate_initial_call(P) =:= {beam_peer_sup_child, init, 1}]).",
    )
    .await;
    assert_eq!(left, term::int(0), "no child left running on erl");
    println!(
        "10 BEAM-hosted children: started, restarted, terminated, and stopped with their member"
    );
    watcher.halt();
}
