//! Horde.Registry shared by Elixir members running real Horde and Rust
//! members: lookups and via calls both ways, a conflict between an Elixir
//! and a Rust registration resolved the same way on both, and kill -9 of
//! either side removing its names from the other's lookups.
//!
//! Needs Horde's compiled modules (BEAM_PEER_HORDE_EBIN or a built erlang/
//! mix project); without them each test prints one SKIPPED line.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::time::Duration;

use beam_peer::horde::registry::{self, Registry, RegistryOptions};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{Node, Process};
use common::Beam;

const T: Duration = Duration::from_secs(15);

fn key(s: &str) -> Term {
    term::binary(s.as_bytes())
}

/// A registry name unique to the test, as an Elixir module atom.
fn reg_name() -> String {
    format!("Elixir.{}", common::unique("LiveReg"))
}

/// `Horde.Registry.start_link(name: R, keys: :unique, members: :auto)` on
/// the Elixir node, owned by a process that outlives the evaluation.
async fn start_elixir_registry(p: &mut Process, beam: &Beam, name: &str) {
    let code = "{:ok, _} = :beam_peer_ctl.keep(fn -> Horde.Registry.start_link(name: r, keys: :unique, members: :auto, delta_crdt_options: [sync_interval: 50]) end); :ok";
    common::eval_elixir(p, &beam.name, code, vec![("r", term::atom(name))]).await;
}

fn start_rust_registry(node: &Node, name: &str) -> Registry {
    registry::start(node, RegistryOptions::new(name).sync_interval(50)).expect("registry starts")
}

/// `Horde.Registry.lookup(R, key)` on the Elixir node, as `Some(pid)`.
async fn elixir_lookup(p: &mut Process, beam: &Beam, name: &str, k: &str) -> Option<Pid> {
    let found = common::eval_elixir(
        p,
        &beam.name,
        "Horde.Registry.lookup(r, k)",
        vec![("r", term::atom(name)), ("k", key(k))],
    )
    .await;
    match term::as_list(&found)?.as_slice() {
        [entry] => match term::as_tuple(entry) {
            Some([Term::Pid(pid), _]) => Some(pid.clone()),
            _ => None,
        },
        _ => None,
    }
}

async fn elixir_count(p: &mut Process, beam: &Beam, name: &str) -> i64 {
    let n = common::eval_elixir(
        p,
        &beam.name,
        "Horde.Registry.count(r)",
        vec![("r", term::atom(name))],
    )
    .await;
    term::as_i64(&n).unwrap_or(-1)
}

/// A Rust node joined to an Elixir node with Horde, both members of one
/// fresh registry.
struct Shared {
    node: Node,
    beam: Beam,
    p: Process,
    name: String,
    reg: Registry,
}

/// [`Shared`], or `None` (after one SKIPPED line) without Horde.
async fn shared(test: &str) -> Option<Shared> {
    let ebins = common::horde_or_skip(test)?;
    let port = common::free_port();
    let node = common::rust_node("hl_rust", port).await;
    let beam = Beam::start_horde("hl_ex", common::COOKIE, port, &ebins);
    let mut p = node.process();
    let name = reg_name();
    node.join(&beam.name).await.expect("joins the Elixir node");
    start_elixir_registry(&mut p, &beam, &name).await;
    let reg = start_rust_registry(&node, &name);
    Some(Shared {
        node,
        beam,
        p,
        name,
        reg,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elixir_and_rust_find_and_call_each_other_through_the_registry() {
    let Some(Shared {
        node,
        beam,
        mut p,
        name,
        reg,
    }) = shared("elixir_and_rust_find_and_call_each_other_through_the_registry").await
    else {
        return;
    };

    // A Rust server registered in Rust is found and called from Elixir.
    let echo = beam_peer::gen_server::start(&node, beam_peer::demo::Echo, Default::default())
        .expect("echo starts");
    reg.register(key("rust-echo"), term::atom("nil"), &echo)
        .await
        .expect("registers");
    common::eventually!(
        T,
        elixir_lookup(&mut p, &beam, &name, "rust-echo").await == Some(echo.clone()),
        "Elixir's Horde.Registry.lookup/2 finds the Rust process"
    );
    let reply = common::eval_elixir(
        &mut p,
        &beam.name,
        "GenServer.call({:via, Horde.Registry, {r, \"rust-echo\"}}, {:hello, 1})",
        vec![("r", term::atom(&name))],
    )
    .await;
    assert_eq!(reply, beam_peer::tup![term::atom("hello"), term::int(1)]);
    let members = common::eval_elixir(
        &mut p,
        &beam.name,
        "Horde.Cluster.members(r)",
        vec![("r", term::atom(&name))],
    )
    .await;
    assert_eq!(
        term::as_list(&members).map(|m| m.len()),
        Some(2),
        "{members}"
    );

    // An Elixir GenServer registered with a via tuple is found and called from Rust.
    let define = "defmodule LiveEcho do
        use GenServer
        def init(x), do: {:ok, x}
        def handle_call(m, _from, s), do: {:reply, {:echoed, m}, s}
      end
      {:ok, pid} = :beam_peer_ctl.keep(fn -> GenServer.start_link(LiveEcho, nil, name: {:via, Horde.Registry, {r, \"elixir-echo\"}}) end)
      pid";
    let elixir_echo =
        common::eval_elixir(&mut p, &beam.name, define, vec![("r", term::atom(&name))]).await;
    common::eventually!(
        T,
        reg.whereis(&key("elixir-echo")).map(Term::Pid).as_ref() == Some(&elixir_echo),
        "Rust lookup finds the Elixir process"
    );
    let reply = p
        .call(reg.via(key("elixir-echo")), term::atom("hi"), T)
        .await
        .expect("call through via");
    assert_eq!(
        reply,
        beam_peer::tup![term::atom("echoed"), term::atom("hi")]
    );
    // Rust refuses a key Elixir holds.
    assert_eq!(
        reg.register(key("elixir-echo"), term::atom("nil"), &echo)
            .await,
        Err(registry::RegistryError::AlreadyRegistered(
            match &elixir_echo {
                Term::Pid(pid) => pid.clone(),
                other => panic!("not a pid: {other}"),
            }
        ))
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_between_elixir_and_rust_resolves_the_same_on_both() {
    let Some(ebins) =
        common::horde_or_skip("a_conflict_between_elixir_and_rust_resolves_the_same_on_both")
    else {
        return;
    };
    let port = common::free_port();
    let node = common::rust_node("hlc_rust", port).await;
    let beam = Beam::start_horde("hlc_ex", common::COOKIE, port, &ebins);
    let mut p = node.process();
    let name = reg_name();
    // Both halves hold a registration of "dup" before they ever meet.
    let collector =
        common::eval_elixir(&mut p, &beam.name, ":beam_peer_ctl.collector()", vec![]).await;
    start_elixir_registry(&mut p, &beam, &name).await;
    let elixir_holder = common::eval_elixir(
        &mut p,
        &beam.name,
        "spawn(fn ->
           Process.flag(:trap_exit, true)
           {:ok, _} = Horde.Registry.register(r, \"dup\", :elixir)
           send(c, {:registered, self()})
           receive do
             {:EXIT, _, reason} -> send(c, {:lost, self(), reason})
           end
         end)",
        vec![("r", term::atom(&name)), ("c", collector.clone())],
    )
    .await;
    common::eventually!(
        T,
        elixir_lookup(&mut p, &beam, &name, "dup")
            .await
            .map(Term::Pid)
            .as_ref()
            == Some(&elixir_holder),
        "the Elixir registration is in place"
    );
    let reg = start_rust_registry(&node, &name);
    let mut watcher = node.process();
    let report_to = watcher.pid().clone();
    let rust_holder = node.spawn(move |mut h: Process| async move {
        h.trap_exit(true);
        loop {
            match h.receive().await {
                Ok(m) => {
                    if let Some([tag, _, reason]) = term::as_tuple(&m) {
                        if term::is_atom(tag, "EXIT") {
                            h.send(&report_to, reason.clone());
                            return beam_peer::ProcessExit::Normal;
                        }
                    }
                }
                Err(e) => return e.into(),
            }
        }
    });
    reg.register(key("dup"), term::atom("rust"), &rust_holder)
        .await
        .expect("registers");

    // Heal: connect. Both members must settle on one holder.
    node.join(&beam.name).await.expect("joins");
    let mut agreed = None;
    common::eventually!(
        T,
        {
            let ours = reg.whereis(&key("dup"));
            let theirs = elixir_lookup(&mut p, &beam, &name, "dup").await;
            let same = ours.is_some() && ours == theirs;
            if same {
                agreed = ours;
            }
            same
        },
        "both members agree on one holder of \"dup\""
    );
    let winner = agreed.expect("a winner");
    let (loser_value, loser_is_rust) = if Term::Pid(winner.clone()) == elixir_holder {
        (term::atom("rust"), true)
    } else {
        assert_eq!(winner, rust_holder);
        (term::atom("elixir"), false)
    };
    let reason = beam_peer::tup![
        term::atom("name_conflict"),
        beam_peer::tup![key("dup"), loser_value],
        term::atom(&name),
        Term::Pid(winner.clone())
    ];
    if loser_is_rust {
        let got = watcher
            .receive_timeout(T)
            .await
            .expect("alive")
            .expect("loser told");
        assert_eq!(got, reason);
    } else {
        let mut lost = None;
        common::eventually!(
            T,
            {
                let got = common::eval_elixir(
                    &mut p,
                    &beam.name,
                    ":beam_peer_ctl.collected(c)",
                    vec![("c", collector.clone())],
                )
                .await;
                for m in term::as_list(&got).unwrap_or_default() {
                    if let Some([tag, _, r]) = term::as_tuple(&m) {
                        if term::is_atom(tag, "lost") {
                            lost = Some(r.clone());
                        }
                    }
                }
                lost.is_some()
            },
            "the Elixir loser got its exit signal"
        );
        assert_eq!(lost, Some(reason));
        assert!(node.is_process_alive(&rust_holder), "the Rust winner lives");
    }
    println!(
        "conflict winner: {} holder",
        if loser_is_rust { "Elixir" } else { "Rust" }
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_rust_node_removes_its_names_from_elixir_lookups() {
    let Some(ebins) =
        common::horde_or_skip("kill_9_of_the_rust_node_removes_its_names_from_elixir_lookups")
    else {
        return;
    };
    let port = common::free_port();
    let node = common::rust_node("hlk_rust", port).await;
    let beam = Beam::start_horde("hlk_ex", common::COOKIE, port, &ebins);
    let mut p = node.process();
    let name = reg_name();
    start_elixir_registry(&mut p, &beam, &name).await;
    let mut member = common::RegistryMember::start(&beam.name, port, &name, "victim-echo");
    common::eventually!(
        T,
        elixir_lookup(&mut p, &beam, &name, "victim-echo")
            .await
            .is_some(),
        "Elixir sees the Rust member's name"
    );
    member.kill9();
    common::eventually!(
        T,
        elixir_lookup(&mut p, &beam, &name, "victim-echo")
            .await
            .is_none()
            && elixir_count(&mut p, &beam, &name).await == 0,
        "Elixir dropped the dead Rust member's names"
    );
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_elixir_node_removes_its_names_from_rust_lookups() {
    let Some(ebins) =
        common::horde_or_skip("kill_9_of_an_elixir_node_removes_its_names_from_rust_lookups")
    else {
        return;
    };
    let port = common::free_port();
    let node = common::rust_node("hle_rust", port).await;
    let mut beam = Beam::start_horde("hle_ex", common::COOKIE, port, &ebins);
    let mut p = node.process();
    let name = reg_name();
    node.join(&beam.name).await.expect("joins");
    start_elixir_registry(&mut p, &beam, &name).await;
    let reg = start_rust_registry(&node, &name);
    common::eval_elixir(
        &mut p,
        &beam.name,
        "{:ok, pid} = :beam_peer_ctl.keep(fn -> Agent.start_link(fn -> 0 end, name: {:via, Horde.Registry, {r, \"elixir-agent\"}}) end); pid",
        vec![("r", term::atom(&name))],
    )
    .await;
    common::eventually!(
        T,
        reg.lookup(&key("elixir-agent")).is_some(),
        "Rust sees the Elixir name"
    );
    beam.kill9();
    common::eventually!(
        T,
        reg.lookup(&key("elixir-agent")).is_none() && reg.count() == 0,
        "Rust dropped the dead Elixir member's names"
    );
    assert_eq!(reg.members().await.expect("members"), vec![reg.member()]);
    node.shutdown();
}

/// Once an Elixir and a Rust member hold the same 200 names, their syncs
/// end at the merkle root in both directions: no key list and no values
/// cross while nothing changes. This is what the MapSet form decides: on
/// Elixir 1.15+ a Rust member writing the 1.14 form re-sent every key on
/// every interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_registry_syncs_without_moving_keys() {
    let Some(Shared {
        node,
        beam,
        mut p,
        name,
        reg,
    }) = shared("an_idle_registry_syncs_without_moving_keys").await
    else {
        return;
    };
    common::eval_elixir(
        &mut p,
        &beam.name,
        "for i <- 1..100 do
           :beam_peer_ctl.keep(fn -> {:ok, _} = Horde.Registry.register(r, \"elixir-#{i}\", i) end)
         end
         :ok",
        vec![("r", term::atom(&name))],
    )
    .await;
    let mut holders = Vec::new();
    for i in 0..100 {
        let holder = node.process();
        reg.register(key(&format!("rust-{i}")), term::int(i), holder.pid())
            .await
            .expect("registers");
        holders.push(holder);
    }
    common::eventually!(
        T,
        reg.count() == 200 && elixir_count(&mut p, &beam, &name).await == 200,
        "both members hold all 200 names"
    );
    // Let the rounds that carried the names finish, then watch 8 intervals.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let watched = Duration::from_millis(8 * 50);
    let counts = common::crdt_traffic(&mut p, &beam.name, &format!("{name}.Crdt"), watched).await;
    println!("Elixir registry CRDT traffic over {watched:?} while idle: {counts:?}");
    common::assert_idle_sync(&counts, 4);
    assert_eq!(elixir_count(&mut p, &beam, &name).await, 200);
    drop(holders);
    node.shutdown();
}
