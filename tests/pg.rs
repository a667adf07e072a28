//! `services::pg` against OTP's own `pg` on a real `erl` node: joins and
//! leaves cross both ways, a member that exits leaves everywhere, a node
//! that dies takes its members along, scopes other than `pg` work, scope
//! monitors hear the BEAM's joins, and the BEAM's scope never crashes on
//! what we send it.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against.

mod common;

use std::time::Duration;

use beam_peer::services::pg;
use beam_peer::term::{self, Pid, Term};
use beam_peer::Node;
use common::{eval, Beam, COOKIE};

const T: Duration = Duration::from_secs(10);

macro_rules! require_erl {
    ($name:expr) => {
        if !common::have_erl($name) {
            return;
        }
    };
}

/// A Rust node and an erl node whose kernel runs the `pg` scope, connected.
async fn pair() -> (Node, Beam) {
    let port = common::free_port();
    let rust = common::rust_node("pg_rs", port).await;
    let beam = Beam::start("pg_erl", COOKIE, port, &["-kernel", "start_pg", "true"]);
    rust.connect(&beam.name).await.expect("connects");
    (rust, beam)
}

fn pids_of(t: &Term) -> Vec<Pid> {
    term::as_list(t)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Term::Pid(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// `pg:get_members(Scope, Group)` on erl.
async fn erl_members(
    p: &mut beam_peer::Process,
    beam: &Beam,
    scope: &str,
    group: &str,
) -> Vec<Pid> {
    pids_of(&eval(p, &beam.name, &format!("pg:get_members({scope}, {group}).")).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_leaves_and_exits_cross_both_ways() {
    require_erl!("joins_leaves_and_exits_cross_both_ways");
    let (rust, beam) = pair().await;
    let pg = pg::default_scope(&rust).expect("the default scope runs");
    let mut p = rust.process();
    let scope_before = eval(&mut p, &beam.name, "whereis(pg).").await;

    // Rust joins: erl's pg:get_members sees it.
    let worker = rust.process();
    pg.join(term::atom("rust_workers"), worker.pid())
        .await
        .expect("joins");
    common::eventually!(
        T,
        erl_members(&mut p, &beam, "pg", "rust_workers").await == [worker.pid().clone()],
        "erl sees the Rust member"
    );
    // Twice joined, once left: still a member, as pg counts joins.
    pg.join(term::atom("rust_workers"), worker.pid())
        .await
        .unwrap();
    assert_eq!(
        pg.leave(term::atom("rust_workers"), worker.pid()).await,
        Ok(true)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        erl_members(&mut p, &beam, "pg", "rust_workers").await,
        [worker.pid().clone()]
    );

    // erl joins: Rust sees it.
    let erl_pid = eval(
        &mut p,
        &beam.name,
        "P = spawn(fun() -> ok = pg:join(erl_workers, self()), receive stop -> ok end end), register(pg_test_worker, P), P.",
    )
    .await;
    let Term::Pid(erl_pid) = erl_pid else {
        panic!("{erl_pid}")
    };
    common::eventually!(
        T,
        pg.get_members(&term::atom("erl_workers")) == [erl_pid.clone()],
        "Rust sees the erl member"
    );
    assert!(pg.get_local_members(&term::atom("erl_workers")).is_empty());
    assert!(pg.which_groups().contains(&term::atom("erl_workers")));

    // The erl member exits: gone from the Rust view.
    eval(&mut p, &beam.name, "pg_test_worker ! stop, ok.").await;
    common::eventually!(
        T,
        pg.get_members(&term::atom("erl_workers")).is_empty(),
        "the exited erl member left"
    );

    // The Rust member exits without leaving: gone from erl's view.
    drop(worker);
    common::eventually!(
        T,
        erl_members(&mut p, &beam, "pg", "rust_workers")
            .await
            .is_empty(),
        "the exited Rust member left on erl"
    );
    // Never a crash of the BEAM scope.
    assert_eq!(eval(&mut p, &beam.name, "whereis(pg).").await, scope_before);
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_a_killed_node_go_and_other_scopes_work() {
    require_erl!("members_of_a_killed_node_go_and_other_scopes_work");
    let (rust, mut beam) = pair().await;
    let mut p = rust.process();
    // A scope the BEAM starts after the connection, then ours.
    eval(&mut p, &beam.name, "{ok, _} = pg:start(my_scope), ok.").await;
    let mine = pg::scope(&rust, "my_scope").expect("starts");
    let watcher = rust.process();
    let (r, now) = mine.monitor_scope(watcher.pid()).await.expect("monitors");
    assert!(now.is_empty());
    let mut watcher = watcher;
    eval(
        &mut p,
        &beam.name,
        "spawn(fun() -> ok = pg:join(my_scope, g, self()), receive stop -> ok end end), ok.",
    )
    .await;
    common::eventually!(
        T,
        mine.get_members(&term::atom("g")).len() == 1,
        "Rust sees the member of my_scope"
    );
    let note = watcher
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("a join notification");
    match term::as_tuple(&note) {
        Some([Term::Reference(got), what, group, pids]) => {
            assert_eq!(**got, r);
            assert!(term::is_atom(what, "join"));
            assert_eq!(group, &term::atom("g"));
            assert_eq!(pids_of(pids).len(), 1);
        }
        _ => panic!("{note}"),
    }
    // A Rust member in the same scope, seen by erl.
    let worker = rust.process();
    mine.join(term::atom("g"), worker.pid()).await.unwrap();
    common::eventually!(
        T,
        erl_members(&mut p, &beam, "my_scope", "g").await.len() == 2,
        "erl sees both members"
    );
    // The default scope knows nothing of it.
    assert!(pg::default_scope(&rust)
        .unwrap()
        .get_members(&term::atom("g"))
        .is_empty());

    // kill -9: the node's members go, ours stays.
    beam.kill9();
    common::eventually!(
        T,
        mine.get_members(&term::atom("g")) == [worker.pid().clone()],
        "the killed node's member went"
    );
    assert_eq!(
        mine.get_local_members(&term::atom("g")),
        [worker.pid().clone()]
    );
    assert_eq!(mine.demonitor(&r).await, Ok(true));
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_pid_cannot_join() {
    let rust = common::rust_node("pg_rs", common::free_port()).await;
    let pg = pg::default_scope(&rust).unwrap();
    let stranger = Pid::new("other@127.0.0.1", 5, 0, 1);
    assert_eq!(
        pg.join(term::atom("g"), &stranger).await,
        Err(pg::PgCallError::NotLocal(stranger))
    );
    rust.shutdown();
}

/// The same with no BEAM at all: two Rust nodes share pg groups and
/// PubSub topics, and a node that leaves takes its members along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_only_cluster_shares_groups_and_topics() {
    use beam_peer::pubsub::PubSub;
    let port = common::free_port();
    let a = common::rust_node("pg_a", port).await;
    let b = common::rust_node("pg_b", port).await;
    a.join(b.name()).await.expect("joins");
    let (pa, pb) = (
        pg::default_scope(&a).unwrap(),
        pg::default_scope(&b).unwrap(),
    );
    let on_b = b.process();
    pb.join(term::atom("g"), on_b.pid()).await.unwrap();
    common::eventually!(
        T,
        pa.get_members(&term::atom("g")) == [on_b.pid().clone()],
        "a sees b's member"
    );
    let (sa, sb) = (
        PubSub::start(&a, "Elixir.Rust.PubSub").await.unwrap(),
        PubSub::start(&b, "Elixir.Rust.PubSub").await.unwrap(),
    );
    let scope = pg::scope(&a, beam_peer::pubsub::PG_SCOPE).unwrap();
    common::eventually!(
        T,
        scope
            .get_members(&term::atom("Elixir.Rust.PubSub.Adapter"))
            .len()
            == 2,
        "a sees both adapter workers"
    );
    let mut sub = b.process();
    sb.subscribe(sub.pid(), "t", None);
    for i in 0..100 {
        sa.broadcast("t", term::int(i));
    }
    for i in 0..100 {
        assert_eq!(
            sub.receive_timeout(T).await.unwrap(),
            Some(term::int(i)),
            "in order"
        );
    }
    b.shutdown();
    common::eventually!(
        T,
        pa.get_members(&term::atom("g")).is_empty(),
        "b's member went with b"
    );
    common::eventually!(
        T,
        scope
            .get_members(&term::atom("Elixir.Rust.PubSub.Adapter"))
            .len()
            == 1,
        "b's adapter worker went with b"
    );
    a.shutdown();
}

/// `publish_cluster_events` and `publish_registry_events`: a subscriber on
/// another node hears a nodeup and a registration as the README's tuples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_registry_events_are_published_on_a_topic() {
    use beam_peer::horde::registry::{self, RegistryOptions};
    use beam_peer::pubsub::PubSub;
    let port = common::free_port();
    let a = common::rust_node("ev_a", port).await;
    let b = common::rust_node("ev_b", port).await;
    a.join(b.name()).await.expect("joins");
    let (sa, sb) = (
        PubSub::start(&a, "Elixir.Ev.PubSub").await.unwrap(),
        PubSub::start(&b, "Elixir.Ev.PubSub").await.unwrap(),
    );
    let scope = pg::scope(&a, beam_peer::pubsub::PG_SCOPE).unwrap();
    common::eventually!(
        T,
        scope
            .get_members(&term::atom("Elixir.Ev.PubSub.Adapter"))
            .len()
            == 2,
        "a sees both adapter workers"
    );
    let mut sub = b.process();
    sb.subscribe(sub.pid(), "cluster", None);
    sa.publish_cluster_events("cluster");
    let reg = registry::start(
        &a,
        RegistryOptions::new("Elixir.Ev.Registry").sync_interval(50),
    )
    .expect("registry");
    sa.publish_registry_events(&reg, "cluster");

    let c = common::rust_node("ev_c", port).await;
    c.connect(a.name()).await.expect("connects");
    let got = sub.receive_timeout(T).await.unwrap().expect("an event");
    assert_eq!(
        got,
        beam_peer::tup![
            term::atom("beam_peer_cluster"),
            term::atom("nodeup"),
            term::atom(a.name()),
            term::atom(c.name())
        ]
    );
    let holder = a.process();
    reg.register(term::atom("k"), term::int(1), holder.pid())
        .await
        .unwrap();
    let got = sub.receive_timeout(T).await.unwrap().expect("an event");
    assert_eq!(
        got,
        beam_peer::tup![
            term::atom("register"),
            term::atom("Elixir.Ev.Registry"),
            term::atom("k"),
            Term::Pid(holder.pid().clone()),
            term::int(1)
        ]
    );
    c.shutdown();
    let got = sub.receive_timeout(T).await.unwrap().expect("an event");
    match term::as_tuple(&got) {
        Some([tag, what, observer, node, _reason]) => {
            assert!(term::is_atom(tag, "beam_peer_cluster"));
            assert!(term::is_atom(what, "nodedown"));
            assert_eq!(observer, &term::atom(a.name()));
            assert_eq!(node, &term::atom(c.name()));
        }
        _ => panic!("{got}"),
    }
    a.shutdown();
    b.shutdown();
}

/// Records what a real OTP `pg` scope sends a peer scope (its answer to our
/// discover, joins of one pid and of a list, a leave, and the leave of a
/// member that exits) to `tests/fixtures/pg/otp-<release>.etf`, for
/// `recorded_otp_scope_messages_replay` to check everywhere. Run with
/// `cargo nextest run --test pg --run-ignored only` (and BEAM_PEER_BEAM_BIN
/// for another release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records fixtures; run with --run-ignored only"]
async fn record_what_an_otp_scope_sends() {
    require_erl!("record_what_an_otp_scope_sends");
    let port = common::free_port();
    let rust = common::rust_node("pg_rec", port).await;
    let beam = Beam::start("pg_erl", COOKIE, port, &[]);
    let mut p = rust.process();
    let rust_node = term::atom(rust.name());
    // The BEAM scope starts before we connect, traced, with a member.
    eval(
        &mut p,
        &beam.name,
        "{ok, S} = pg:start(rec_scope),
         C = spawn(fun Loop() -> receive {get, From} -> From ! {got, get(m)}, Loop(); M -> put(m, [M | case get(m) of undefined -> []; L -> L end]), Loop() end end),
         register(rec_tracer, C),
         erlang:trace(S, true, [send, {tracer, C}]),
         A = spawn(fun() -> receive stop -> ok end end), register(rec_a, A),
         ok = pg:join(rec_scope, early, A), ok.",
    )
    .await;
    rust.connect(&beam.name).await.unwrap();
    let ours = pg::scope(&rust, "rec_scope").unwrap();
    let probe = rust.process();
    ours.join(term::atom("from_rust"), probe.pid())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    eval(
        &mut p,
        &beam.name,
        "B = spawn(fun() -> receive stop -> ok end end), register(rec_b, B),
         ok = pg:join(rec_scope, one, B),
         ok = pg:join(rec_scope, many, [B, whereis(rec_a)]),
         ok = pg:leave(rec_scope, many, B),
         rec_a ! stop, ok.",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = eval(
        &mut p,
        &beam.name,
        &format!(
            "rec_tracer ! {{get, self()}}, receive {{got, L}} -> ok end,
             ToRust = fun(P) when is_pid(P) -> node(P) =:= {n}; ({{_, N}}) -> N =:= {n}; (_) -> false end,
             [{{To, M}} || {{trace, _, send, M, To}} <- lists:reverse(L), ToRust(To)].",
            n = common::q(rust.name())
        ),
    )
    .await;
    let release = common::beam_versions().map_or(0, |v| v.otp);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg");
    std::fs::create_dir_all(&dir).unwrap();
    let record = beam_peer::tup![term::int(i64::from(release)), rust_node, sent];
    let path = dir.join(format!("otp-{release}.etf"));
    std::fs::write(&path, beam_peer::term::etf::to_binary(&record).unwrap()).unwrap();
    println!("wrote {}", path.display());
    rust.shutdown();
}

/// The recordings of `record_what_an_otp_scope_sends`, replayed into our
/// scope state machine: every message is taken, and the view ends as the
/// BEAM's did (`one` holds b; `many` holds a until a exits; `early`, a's
/// group from before we connected, empty after its exit).
#[test]
fn recorded_otp_scope_messages_replay() {
    use beam_peer::services::pg::Scope;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/pg") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let t = beam_peer::term::etf::from_binary(&bytes[..]).unwrap();
        let Some([release, _node, sent]) = term::as_tuple(&t) else {
            panic!("{}", path.display())
        };
        let me = Pid::new("rust@127.0.0.1", 9, 0, 1);
        let mut scope = Scope::new("rec_scope", me);
        let mut groups_seen = Vec::new();
        for m in term::as_list(sent).unwrap() {
            let Some([_to, msg]) = term::as_tuple(&m) else {
                panic!("{m}")
            };
            scope
                .handle_message(msg)
                .unwrap_or_else(|e| panic!("OTP {release}: {msg} refused: {e}"));
            groups_seen.push(scope.groups().len());
        }
        assert!(
            groups_seen.iter().any(|&n| n >= 2),
            "OTP {release}: {groups_seen:?}"
        );
        assert_eq!(scope.members(&term::atom("one")).len(), 1, "OTP {release}");
        assert!(
            scope.members(&term::atom("many")).is_empty(),
            "OTP {release}"
        );
        assert!(
            scope.members(&term::atom("early")).is_empty(),
            "OTP {release}"
        );
        seen += 1;
    }
    assert!(seen >= 2, "recordings of OTP 25 and 27");
}

/// A `beam-peer pubsub` member in its own OS process, killed with -9: OTP's
/// pg on an erl node drops its adapter worker at once (the nodedown), after
/// the erl node had talked to it the PG2 adapter's way (an erl process in
/// the adapter group gets the member's `{:forward_to_local, ..}` echo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_rust_pubsub_member_drops_it_from_the_beams_groups() {
    require_erl!("kill_9_of_a_rust_pubsub_member_drops_it_from_the_beams_groups");
    let port = common::free_port();
    let rust = common::rust_node("pg_rs", port).await;
    let beam = Beam::start("pg_erl", COOKIE, port, &[]);
    let mut p = rust.process();
    // The erl node runs the Phoenix.PubSub pg scope and an erl process in
    // the adapter group, as an Elixir member's adapter worker would be.
    eval(
        &mut p,
        &beam.name,
        "{ok, _} = pg:start('Elixir.Phoenix.PubSub'),
         W = spawn(fun Loop() -> receive {get, From} -> From ! {got, get(m)}, Loop(); M -> put(m, [M | case get(m) of undefined -> []; L -> L end]), Loop() end end),
         register(fake_worker, W),
         ok = pg:join('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter', W), ok.",
    )
    .await;
    let name = format!("{}@127.0.0.1", common::unique("pubsub_member"));
    let mut member = common::RegistryMember(
        std::process::Command::new(env!("CARGO_BIN_EXE_beam-peer"))
            .args([
                "pubsub", "--name", &name, "--cookie", COOKIE, "--join", &beam.name,
            ])
            .env("ERL_EPMD_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("beam-peer pubsub runs"),
    );
    async fn members(p: &mut beam_peer::Process, beam: &str) -> Vec<Pid> {
        pids_of(
            &eval(
                p,
                beam,
                "pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter').",
            )
            .await,
        )
    }
    common::eventually!(
        T,
        members(&mut p, &beam.name).await.len() == 2,
        "erl sees the Rust member's adapter worker"
    );
    // A broadcast on "events", sent the PG2 adapter's way, is echoed on "echo".
    eval(
        &mut p,
        &beam.name,
        &format!(
            "[P ! {{forward_to_local, <<\"events\">>, hello, 'Elixir.Phoenix.PubSub'}} || P <- pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter'), node(P) =:= {}], ok.",
            common::q(&name)
        ),
    )
    .await;
    common::eventually!(
        T,
        eval(
            &mut p,
            &beam.name,
            "fake_worker ! {get, self()}, receive {got, L} -> L end."
        )
        .await
        .to_string()
        .contains("{forward_to_local,<<\"echo\">>,{echo,hello},'Elixir.Phoenix.PubSub'}"),
        "the echo reached the erl adapter worker"
    );
    member.kill9();
    common::eventually!(
        T,
        members(&mut p, &beam.name).await.len() == 1,
        "the killed member's worker is gone from erl's group"
    );
    rust.shutdown();
}
