//! Horde.Registry among Rust members only, over real dist connections:
//! registrations on three nodes are seen on all, `via` names work for send
//! and call, a conflict after a partition heals leaves one winner and tells
//! the loser, and kill -9 of a member's OS process removes its names.

mod common;

use std::time::Duration;

use beam_peer::horde::registry::{self, Registry, RegistryOptions};
use beam_peer::term::{self, Term};
use beam_peer::{Node, Process};

const T: Duration = Duration::from_secs(10);

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

fn reg_name() -> String {
    format!("Elixir.{}", common::unique("Reg"))
}

async fn start(node: &Node, name: &str) -> Registry {
    registry::start(node, RegistryOptions::new(name).sync_interval(50)).expect("registry starts")
}

/// A process that stays alive and reports the exit signal that ends it.
fn holder(node: &Node, report_to: &beam_peer::term::Pid) -> beam_peer::term::Pid {
    let report_to = report_to.clone();
    node.spawn(move |mut p: Process| async move {
        p.trap_exit(true);
        loop {
            match p.receive().await {
                Ok(m) => match term::as_tuple(&m) {
                    Some([tag, _, reason]) if term::is_atom(tag, "EXIT") => {
                        p.send(
                            &report_to,
                            beam_peer::tup![
                                term::atom("lost"),
                                Term::Pid(p.pid().clone()),
                                reason.clone()
                            ],
                        );
                        return beam_peer::ProcessExit::Normal;
                    }
                    _ => {}
                },
                Err(e) => return e.into(),
            }
        }
    })
}

/// What a member holds, for a failure message: its node's visible peers,
/// the registry's members and every registration.
async fn describe(node: &Node, r: &Registry) -> String {
    let keys = r.select(|k, pid, _| Some(format!("{k} => {pid}")));
    format!(
        "nodes {:?}, members {:?}, {} keys {keys:?}",
        node.visible_nodes(),
        r.members().await,
        r.count()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_see_every_registration_and_via_names_work() {
    let port = common::free_port();
    let nodes = [
        common::rust_node("reg_a", port).await,
        common::rust_node("reg_b", port).await,
        common::rust_node("reg_c", port).await,
    ];
    for n in &nodes[1..] {
        n.join(nodes[0].name()).await.expect("joins");
    }
    assert!(common::wait_until(T, || nodes.iter().all(|n| n.visible_nodes().len() == 2)).await);
    let name = reg_name();
    let regs: Vec<Registry> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push(start(n, &name).await);
        }
        v
    };
    let mut servers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let echo = beam_peer::gen_server::start(n, beam_peer::demo::Echo, Default::default())
            .expect("echo starts");
        regs[i]
            .register(key(&format!("echo-{i}")), term::int(i as i64), &echo)
            .await
            .expect("registers");
        servers.push(echo);
    }
    assert!(
        common::wait_until(T, || regs.iter().all(|r| r.count() == 3)).await,
        "every member sees three keys: {:?}",
        regs.iter().map(|r| r.count()).collect::<Vec<_>>()
    );
    for r in &regs {
        for (i, s) in servers.iter().enumerate() {
            assert_eq!(
                r.lookup(&key(&format!("echo-{i}"))),
                Some((s.clone(), term::int(i as i64)))
            );
        }
        assert_eq!(r.members().await.expect("members").len(), 3);
    }
    // A second registration of a held key is refused on any member.
    let other = nodes[2].spawn(|mut p: Process| async move {
        p.receive()
            .await
            .err()
            .map(Into::into)
            .unwrap_or(beam_peer::ProcessExit::Normal)
    });
    assert_eq!(
        regs[2].register(key("echo-0"), term::int(9), &other).await,
        Err(registry::RegistryError::AlreadyRegistered(
            servers[0].clone()
        ))
    );
    // via: a call from node c to the server registered on node a.
    let mut p = nodes[2].process();
    let reply = p
        .call(regs[2].via(key("echo-0")), term::atom("hello"), T)
        .await
        .expect("call through via");
    assert_eq!(reply, term::atom("hello"));
    assert!(matches!(
        p.call(regs[2].via(key("nobody")), term::atom("hello"), T)
            .await,
        Err(beam_peer::CallError::NoProc)
    ));
    // The registry server answers Horde's gen_server calls from anyone.
    let members = p
        .call((name.as_str(), nodes[0].name()), term::atom("members"), T)
        .await
        .expect(":members call");
    assert_eq!(term::as_list(&members).map(|m| m.len()), Some(3));
    let unknown = p
        .call((name.as_str(), nodes[0].name()), term::atom("nonsense"), T)
        .await
        .expect("an unknown call is answered");
    assert_eq!(
        term::as_tuple(&unknown).map(|t| t[0].clone()),
        Some(term::atom("error"))
    );
    // Unregister on a; everyone forgets it; keys/2 follows.
    assert_eq!(regs[0].keys(&servers[0]), vec![key("echo-0")]);
    regs[0]
        .unregister(key("echo-0"), &servers[0])
        .await
        .expect("unregisters");
    assert!(
        common::wait_until(T, || regs
            .iter()
            .all(|r| r.lookup(&key("echo-0")).is_none()))
        .await
    );
    assert!(regs[0].keys(&servers[0]).is_empty());
    // A registered process that exits takes its key with it.
    nodes[1].exit_process(&servers[1], term::atom("shutdown"));
    assert!(common::wait_until(T, || regs.iter().all(|r| r.count() == 1)).await);
    for n in &nodes {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_after_a_partition_heals_leaves_one_winner() {
    let port = common::free_port();
    let a = common::rust_node("conf_a", port).await;
    let b = common::rust_node("conf_b", port).await;
    let name = reg_name();
    // Not connected: two halves of a partition, each with its own holder.
    let ra = start(&a, &name).await;
    let rb = start(&b, &name).await;
    let mut watch_a = a.process();
    let mut watch_b = b.process();
    let ha = holder(&a, watch_a.pid());
    let hb = holder(&b, watch_b.pid());
    ra.register(key("the-one"), term::atom("a"), &ha)
        .await
        .expect("a registers");
    tokio::time::sleep(Duration::from_millis(5)).await;
    rb.register(key("the-one"), term::atom("b"), &hb)
        .await
        .expect("b registers");
    assert_eq!(ra.whereis(&key("the-one")), Some(ha.clone()));
    assert_eq!(rb.whereis(&key("the-one")), Some(hb.clone()));

    // Heal: connect; `members: :auto` makes them members of one registry.
    a.connect(b.name()).await.expect("connects");
    assert!(
        common::wait_until(T, || ra.whereis(&key("the-one")).is_some()
            && ra.whereis(&key("the-one")) == rb.whereis(&key("the-one")))
        .await,
        "both members agree"
    );
    // b wrote later, so b's holder wins, and a's holder is told.
    let winner = rb.whereis(&key("the-one")).expect("a winner");
    assert_eq!(winner, hb);
    let lost = watch_a
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("loser told");
    let reason = beam_peer::tup![
        term::atom("name_conflict"),
        beam_peer::tup![key("the-one"), term::atom("a")],
        term::atom(&name),
        Term::Pid(hb.clone())
    ];
    assert_eq!(
        lost,
        beam_peer::tup![term::atom("lost"), Term::Pid(ha.clone()), reason]
    );
    assert!(b.is_process_alive(&hb), "the winner lives");
    assert!(watch_b
        .receive_timeout(Duration::from_millis(300))
        .await
        .expect("alive")
        .is_none());
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_member_removes_its_names_everywhere() {
    let port = common::free_port();
    let a = common::rust_node("k9_a", port).await;
    let b = common::rust_node("k9_b", port).await;
    b.join(a.name()).await.expect("joins");
    let name = reg_name();
    let ra = start(&a, &name).await;
    let rb = start(&b, &name).await;
    let mut member = common::RegistryMember::start(a.name(), port, &name, "victim-echo");
    let seen = |r: &Registry| r.lookup(&key("victim-echo")).is_some();
    if !common::wait_until(T, || seen(&ra) && seen(&rb)).await {
        panic!(
            "victim's key not seen on both:\n a: {}\n b: {}",
            describe(&a, &ra).await,
            describe(&b, &rb).await
        );
    }
    let mut p = a.process();
    assert_eq!(
        p.call(ra.via(key("victim-echo")), term::atom("ping"), T)
            .await,
        Ok(term::atom("ping"))
    );
    member.kill9();
    let gone = common::wait_until(T, || {
        !seen(&ra) && !seen(&rb) && ra.count() == 0 && rb.count() == 0
    })
    .await;
    if !gone {
        panic!(
            "the dead member's names are not gone everywhere:\n a: {}\n b: {}",
            describe(&a, &ra).await,
            describe(&b, &rb).await
        );
    }
    a.shutdown();
    b.shutdown();
}
