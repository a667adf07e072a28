//! Interop with real `erl` nodes started by each test on a
//! private EPMD port. Each test starts a Rust node first, which finds no EPMD on
//! its port and starts the embedded one; the real `erl` then registers in it.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::time::Duration;

use beam_peer::term::{self, Term};
use beam_peer::{CallError, Dest, Node, NodeConfig, NodeEvent, Process};
use common::{eval, q, Beam, COOKIE};

const T: Duration = Duration::from_secs(10);

macro_rules! require_erl {
    ($name:expr) => {
        if !common::have_erl($name) {
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_epmd_serves_real_erl_and_ping_works_both_ways() {
    require_erl!("embedded_epmd_serves_real_erl_and_ping_works_both_ways");
    let (rust, beam) = common::rust_and_beam().await;
    // erl registered in our embedded EPMD: we can find it there.
    let epmd = std::net::SocketAddr::from(([127, 0, 0, 1], beam.epmd_port));
    let names = beam_peer::epmd::names(epmd).await.expect("names");
    let alive = beam.name.split('@').next().unwrap_or_default();
    assert!(names.iter().any(|(n, _)| n == alive), "{names:?}");

    assert!(rust.ping(&beam.name).await, "Rust pings erl");
    let mut p = rust.process();
    let v = eval(
        &mut p,
        &beam.name,
        &format!("net_adm:ping({}).", q(rust.name())),
    )
    .await;
    assert!(term::is_atom(&v, "pong"), "erl pings Rust: {v}");
    // erl lists us among its EPMD names too.
    let rust_alive = rust.name().split('@').next().unwrap_or_default();
    let v = eval(
        &mut p,
        &beam.name,
        &format!("{{ok, Names}} = net_adm:names(\"127.0.0.1\"), lists:keymember(\"{rust_alive}\", 1, Names)."),
    )
    .await;
    assert!(
        term::is_atom(&v, "true"),
        "erl's net_adm:names lists us: {v}"
    );
    let v = eval(&mut p, &beam.name, "nodes().").await;
    assert!(
        v.to_string().contains(rust.name()),
        "visible by default: {v}"
    );
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_server_calls_both_ways() {
    require_erl!("gen_server_calls_both_ways");
    let (rust, beam) = common::rust_and_beam().await;
    let mut p = rust.process();
    // BEAM -> Rust: gen_server:call/3 to our echo, by {Name, Node}.
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "gen_server:call({{echo, {}}}, {{hello, [1,2,3], <<\"bin\">>, #{{a => 1.5}}}}, 5000).",
            q(rust.name())
        ),
    )
    .await;
    assert_eq!(
        v.to_string(),
        "{hello,[1,2,3],<<\"bin\">>,#{a => 1.5}}".to_string(),
        "echo replies with the request"
    );
    // BEAM -> Rust: a call to a name we do not have exits with noproc at once.
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "catch gen_server:call({{nobody, {}}}, x, 5000).",
            q(rust.name())
        ),
    )
    .await;
    assert!(v.to_string().contains("noproc"), "{v}");
    // Rust -> BEAM: our call to erl's ctl is a gen_server call; now the errors.
    let err = p
        .call(
            Dest::Remote("nobody".into(), beam.name.clone()),
            term::atom("x"),
            T,
        )
        .await;
    assert_eq!(err, Err(CallError::NoProc));
    let err = p
        .call(
            Dest::Remote("ctl".into(), beam.name.clone()),
            beam_peer::tup![
                term::atom("eval"),
                Term::ByteList(term::ByteList::from("timer:sleep(3000)."))
            ],
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(err, Err(CallError::Timeout));
    let err = p
        .call(
            Dest::Remote("ctl".into(), "nobody_here@127.0.0.1".into()),
            term::atom("x"),
            T,
        )
        .await;
    assert_eq!(err, Err(CallError::NodeDown));
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_by_name_and_pid_both_ways() {
    require_erl!("send_by_name_and_pid_both_ways");
    let (rust, beam) = common::rust_and_beam().await;
    let mut p = rust.process();
    // BEAM -> Rust by name, then by pid (the pid reaches erl inside a message).
    let me = q(rust.name());
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "[{{sink, {me}}} ! {{m, I}} || I <- lists:seq(1, 10)], \
             {{sink, {me}}} ! {{report, self()}}, \
             receive {{count, N}} -> N after 5000 -> timeout end."
        ),
    )
    .await;
    assert_eq!(term::as_i64(&v), Some(10), "{v}");
    let mut q2 = rust.process();
    q2.register("rust_inbox2").expect("register");
    let code = format!(
        "{{rust_inbox2, {me}}} ! {{hello_by_name, self()}}, \
         receive {{reply_to_pid, X}} -> X after 5000 -> timeout end."
    );
    let beam_name = beam.name.clone();
    let eval_task = tokio::spawn({
        let rust = rust.clone();
        async move {
            let mut p = rust.process();
            eval(&mut p, &beam_name, &code).await
        }
    });
    let m = q2
        .receive_timeout(T)
        .await
        .expect("alive")
        .expect("a message");
    let from = match term::as_tuple(&m) {
        Some([tag, Term::Pid(from)]) if term::is_atom(tag, "hello_by_name") => from.clone(),
        _ => panic!("unexpected {m}"),
    };
    q2.send(
        &from,
        beam_peer::tup![term::atom("reply_to_pid"), term::int(7)],
    );
    let v = eval_task.await.expect("eval task");
    assert_eq!(term::as_i64(&v), Some(7));

    // Rust -> BEAM by name: erl registers a collector.
    let v = eval(
        &mut p,
        &beam.name,
        "Parent = self(), spawn(fun() -> register(collector, self()), Parent ! up, \
         receive M -> receive {get, F} -> F ! {got, M} end end end), \
         receive up -> ok end.",
    )
    .await;
    assert!(term::is_atom(&v, "ok"));
    p.send(
        Dest::Remote("collector".into(), beam.name.clone()),
        beam_peer::tup![
            term::atom("from_rust"),
            term::binary("hi"),
            // Small negative integers in a list: must not go out as STRING_EXT
            // (the BEAM would read [255, 251, 7]).
            term::list(vec![term::int(-1), term::int(-5), term::int(7)])
        ],
    );
    let v = eval(
        &mut p,
        &beam.name,
        "collector ! {get, self()}, receive {got, M} -> M after 5000 -> timeout end.",
    )
    .await;
    assert_eq!(v.to_string(), "{from_rust,<<\"hi\">>,[-1,-5,7]}");
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_monitors_both_ways_with_unlink_id() {
    require_erl!("links_and_monitors_both_ways_with_unlink_id");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    // An erl process that exits with `bye` when told.
    let v = eval(
        &mut ctl,
        &beam.name,
        "register(victim, spawn(fun() -> receive stop -> exit(bye) end end)), whereis(victim).",
    )
    .await;
    let Term::Pid(victim) = v else {
        panic!("pid expected, got {v}")
    };
    let mut w = rust.process();
    w.trap_exit(true);
    w.link(&victim);
    let mref = w.monitor(&victim);
    let mref_by_name = w.monitor(Dest::Remote("victim".into(), beam.name.clone()));
    // Make sure LINK and MONITOR_P were processed before the exit.
    let v = eval(
        &mut ctl,
        &beam.name,
        "{links, L} = process_info(whereis(victim), links), {monitored_by, M} = process_info(whereis(victim), monitored_by), {length(L), length(M)}.",
    )
    .await;
    assert_eq!(
        v.to_string(),
        "{1,2}",
        "link and two monitors are in place on the BEAM"
    );
    ctl.send(
        Dest::Remote("victim".into(), beam.name.clone()),
        term::atom("stop"),
    );
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = w.receive_timeout(T).await.expect("alive").expect("signal");
        seen.push(m);
    }
    let text: Vec<String> = seen.iter().map(|m| m.to_string()).collect();
    assert!(
        seen.contains(&beam_peer::tup![
            term::atom("EXIT"),
            Term::Pid(victim.clone()),
            term::atom("bye")
        ]),
        "{text:?}"
    );
    assert!(
        seen.contains(&beam_peer::tup![
            term::atom("DOWN"),
            Term::Reference(Box::new(mref)),
            term::atom("process"),
            Term::Pid(victim.clone()),
            term::atom("bye")
        ]),
        "{text:?}"
    );
    assert!(
        seen.contains(&beam_peer::tup![
            term::atom("DOWN"),
            Term::Reference(Box::new(mref_by_name)),
            term::atom("process"),
            beam_peer::tup![term::atom("victim"), term::atom(&beam.name)],
            term::atom("bye")
        ]),
        "{text:?}"
    );

    // BEAM -> Rust: erl links to and monitors a Rust process, which then exits.
    let target = rust.spawn(|mut p| async move {
        match p.receive().await {
            Ok(m) => beam_peer::ProcessExit::Reason(m),
            Err(e) => e.into(),
        }
    });
    rust.register("rust_target", &target).expect("register");
    let code = format!(
        "T = rpc:call({me}, erlang, whereis, [rust_target]), \
         Parent = self(), \
         spawn(fun() -> process_flag(trap_exit, true), link(T), R = monitor(process, T), \
                        Parent ! ready, \
                        receive {{'EXIT', T, Why}} -> receive {{'DOWN', R, process, T, Why2}} -> Parent ! {{got, Why, Why2}} end end end), \
         receive ready -> ok end, \
         {{rust_target, {me}}} ! {{custom, reason}}, \
         receive {{got, A, B}} -> {{A, B}} after 5000 -> timeout end.",
        me = q(rust.name())
    );
    let v = eval(&mut ctl, &beam.name, &code).await;
    assert_eq!(v.to_string(), "{{custom,reason},{custom,reason}}");

    // UNLINK_ID: after unlink, the peer's death does not reach us.
    let v = eval(
        &mut ctl,
        &beam.name,
        "register(victim2, spawn(fun() -> receive stop -> exit(bye2) end end)), whereis(victim2).",
    )
    .await;
    let Term::Pid(victim2) = v else {
        panic!("pid expected")
    };
    let u = rust.process();
    u.link(&victim2);
    u.unlink(&victim2);
    let v = eval(
        &mut ctl,
        &beam.name,
        "{links, L} = process_info(whereis(victim2), links), L.",
    )
    .await;
    assert_eq!(
        v.to_string(),
        "[]",
        "the BEAM removed the link (UNLINK_ID acknowledged)"
    );
    ctl.send(&victim2, term::atom("stop"));
    // The erl side unlinks from a Rust process too; the Rust process then dies.
    let u_pid = u.pid().clone();
    rust.register("unlinker", &u_pid).expect("register");
    let code = format!(
        "T = rpc:call({me}, erlang, whereis, [unlinker]), process_flag(trap_exit, true), \
         link(T), unlink(T), exit(T, kill), receive {{'EXIT', T, _}} -> linked after 500 -> unlinked end.",
        me = q(rust.name())
    );
    let v = eval(&mut ctl, &beam.name, &code).await;
    assert!(term::is_atom(&v, "unlinked"), "{v}");
    assert!(
        !rust.is_process_alive(&u_pid),
        "exit(T, kill) from erl killed it"
    );
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_of_the_beam_fires_noconnection_everywhere() {
    require_erl!("kill_dash_nine_of_the_beam_fires_noconnection_everywhere");
    let (rust, mut beam) = common::rust_and_beam().await;
    let mut events = rust.subscribe();
    let mut ctl = rust.process();
    let v = eval(
        &mut ctl,
        &beam.name,
        "spawn(fun() -> receive _ -> ok end end).",
    )
    .await;
    let Term::Pid(remote) = v else { panic!("pid") };
    let mut trapper = rust.process();
    trapper.trap_exit(true);
    trapper.link(&remote);
    let mref = trapper.monitor(&remote);
    // A non-trapping linked process dies with noconnection.
    let linked = rust.spawn(|mut p| async move {
        let _ = p.receive().await;
        beam_peer::ProcessExit::Normal
    });
    rust.link(&linked, &remote);
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!(
            "{{links, L}} = process_info({}, links), length(L).",
            remote_pid_literal(&remote)
        ),
    )
    .await;
    assert_eq!(term::as_i64(&v), Some(2));
    beam.kill9();
    let mut got_exit = false;
    let mut got_down = false;
    while !(got_exit && got_down) {
        let m = trapper
            .receive_timeout(T)
            .await
            .expect("alive")
            .expect("signal");
        match term::as_tuple(&m) {
            Some([t, _, r]) if term::is_atom(t, "EXIT") => {
                assert!(term::is_atom(r, "noconnection"), "{m}");
                got_exit = true;
            }
            Some([t, r, _, _, reason]) if term::is_atom(t, "DOWN") => {
                assert_eq!(r, &Term::Reference(Box::new(mref.clone())));
                assert!(term::is_atom(reason, "noconnection"), "{m}");
                got_down = true;
            }
            _ => panic!("unexpected {m}"),
        }
    }
    assert!(
        !rust.is_process_alive(&linked),
        "linked process died with noconnection"
    );
    loop {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Ok(NodeEvent::Down { node, .. })) if node == beam.name => break,
            Ok(Ok(_)) => continue,
            other => panic!("no nodedown: {other:?}"),
        }
    }
    rust.shutdown();
}

fn remote_pid_literal(p: &beam_peer::term::Pid) -> String {
    // Only works from the pid's own node: <0.Id.Serial>.
    format!("list_to_pid(\"<0.{}.{}>\")", p.id, p.serial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_sync_erpc_and_rpc() {
    require_erl!("global_sync_erpc_and_rpc");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    assert!(rust.ping(&beam.name).await);
    let me = q(rust.name());
    let v = eval(
        &mut ctl,
        &beam.name,
        "Self = self(), spawn(fun() -> Self ! {synced, global:sync()} end), \
         receive {synced, R} -> R after 8000 -> blocked end.",
    )
    .await;
    assert!(term::is_atom(&v, "ok"), "global:sync() returned: {v}");
    let alive = rust.process();
    rust.register("alive_one", alive.pid()).expect("register");
    let dead = rust.process();
    let dead_pid = dead.pid().clone();
    drop(dead);
    rust.register_function("beam_peer_test", "dead_pid", 0, move |_, _| {
        Ok(Term::Pid(dead_pid.clone()))
    });
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!(
            "P = erpc:call({me}, erlang, whereis, [alive_one]), \
             D = erpc:call({me}, beam_peer_test, dead_pid, []), \
             {{erpc:call({me}, erlang, is_process_alive, [P]), \
               erpc:call({me}, erlang, is_process_alive, [D]), \
               erpc:call({me}, 'Elixir.Process', 'alive?', [P])}}."
        ),
    )
    .await;
    assert_eq!(v.to_string(), "{true,false,true}");
    drop(alive);
    rust.shutdown();
}

/// A function the Rust node does not implement fails as it fails on a BEAM
/// node without it: erl asks the Rust node and itself the same questions
/// (erpc:call and rpc:call of a missing module, of a missing function of a
/// module the Rust node answers for, and of a function called with an arity
/// it does not have; the rex server directly; a monitored and a linked
/// spawn) and gets the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undef_through_erpc_and_rpc_as_on_a_beam_node() {
    require_erl!("undef_through_erpc_and_rpc_as_on_a_beam_node");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    assert!(rust.ping(&beam.name).await);
    let me = q(rust.name());
    for (m, f, a) in [
        ("no_such_module", "no_such_function", "[1]"),
        ("erlang", "no_such_function", "[1, 2]"),
        ("erlang", "registered", "[x]"),
    ] {
        let ask = format!(
            "Ask = fun(N) -> {{try erpc:call(N, {m}, {f}, {a}) catch C:E -> {{C, E}} end, \
                              rpc:call(N, {m}, {f}, {a}), \
                              gen_server:call({{rex, N}}, {{call, {m}, {f}, {a}, group_leader()}}), \
                              begin {{P, R}} = spawn_monitor(N, {m}, {f}, {a}), \
                                    receive {{'DOWN', R, process, P, Why}} -> Why after 5000 -> no_down end \
                              end, \
                              begin Self = self(), \
                                    spawn(fun() -> process_flag(trap_exit, true), \
                                                   L = spawn_link(N, {m}, {f}, {a}), \
                                                   receive {{'EXIT', L, Why}} -> Self ! {{linked, Why}} \
                                                   after 5000 -> Self ! {{linked, no_exit}} end \
                                          end), \
                                    receive {{linked, Why}} -> Why end \
                              end}} \
                  end, "
        );
        let theirs = eval(&mut ctl, &beam.name, &format!("{ask} Ask(node()).")).await;
        let ours = eval(&mut ctl, &beam.name, &format!("{ask} Ask({me}).")).await;
        let stack = format!("[{{{m},{f},{},[]}}]", a.replace(' ', ""));
        assert_eq!(
            theirs.to_string(),
            format!(
                "{{{{error,{{exception,undef,{stack}}}}},\
                 {{badrpc,{{'EXIT',{{undef,{stack}}}}}}},\
                 {{badrpc,{{'EXIT',{{undef,{stack}}}}}}},\
                 {{undef,{stack}}},\
                 {{undef,{stack}}}}}"
            ),
            "what a BEAM node answers"
        );
        assert_eq!(ours.to_string(), theirs.to_string(), "{m}:{f}/{a}");
    }
    // What we do implement still answers, and a Rust function's own error
    // reaches rpc:call as rex reports an error: {badrpc, {'EXIT', {Reason, Stack}}}.
    rust.register_function("beam_peer_test", "fail", 0, |_, _| {
        Err(beam_peer::RpcError::Error(term::atom("boom")))
    });
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!(
            "{{erpc:call({me}, erlang, node, []), rpc:call({me}, beam_peer_test, fail, []), \
               gen_server:call({{rex, {me}}}, {{call, beam_peer_test, fail, [], group_leader()}})}}."
        ),
    )
    .await;
    assert_eq!(
        v.to_string(),
        format!(
            "{{{},{{badrpc,{{'EXIT',{{boom,[]}}}}}},{{badrpc,{{'EXIT',{{boom,[]}}}}}}}}",
            me
        )
    );
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_messages_each_way() {
    require_erl!("ten_megabyte_messages_each_way");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    // erl sends 10 MB to our echo (fragmented by the BEAM), which sends it back
    // (fragmented by us); erl checks it is the same.
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!(
            "B = crypto:strong_rand_bytes(10*1024*1024), \
             R = gen_server:call({{echo, {}}}, {{big, B}}, 30000), \
             {{R =:= {{big, B}}, byte_size(B)}}.",
            q(rust.name())
        ),
    )
    .await;
    assert_eq!(v.to_string(), "{true,10485760}");
    // Rust -> BEAM: 10 MB messages go out in fragments. A small message from
    // the same process stays behind its big one (signal order between a pair
    // of processes is kept); one from another process, sent right after
    // several big ones, overtakes the last of them (nothing stalls behind big
    // messages).
    let round = BigRound::run(&rust, &mut ctl, &beam.name, "coll_same", 1, true).await;
    assert_eq!(round.got, [BIG_SEEN, "{small,1}"], "same sender");
    // Overtaking is checked only in a round where the connection had not yet
    // written the big messages (all but two fragments) when the small one was
    // queued: a test thread held up that long by a busy machine proves nothing
    // about the writer, so such a round is run again.
    const BIGS: usize = 4;
    const ROUNDS: usize = 5;
    let big_bytes = (BIGS * BIG) as u64;
    let mut overtaking_checked = false;
    for n in 0..ROUNDS {
        let name = format!("coll_other_{n}");
        let round = BigRound::run(&rust, &mut ctl, &beam.name, &name, BIGS, false).await;
        assert_eq!(round.got.len(), BIGS + 1, "{:?}", round.got);
        assert_eq!(round.got.iter().filter(|t| *t == BIG_SEEN).count(), BIGS);
        if round.written_before_small + 2 * 64 * 1024 >= big_bytes {
            eprintln!(
                "round {n}: {} of {big_bytes} big bytes were written before the small \
                 message was queued; overtaking not checked",
                round.written_before_small
            );
            continue;
        }
        let at = round.got.iter().position(|t| t == "{small,2}");
        assert!(
            at.is_some_and(|i| i < BIGS),
            "the small message waited for every big one ({} of {big_bytes} big bytes \
             written when it was queued): {:?}",
            round.written_before_small,
            round.got
        );
        overtaking_checked = true;
        break;
    }
    assert!(
        overtaking_checked,
        "in {ROUNDS} rounds the small message was never queued before the big ones were written"
    );
    rust.shutdown();
}

/// The size of each big message in `ten_megabyte_messages_each_way`, and
/// how the BEAM collector shows one that arrived whole.
const BIG: usize = 10 * 1024 * 1024;
const BIG_SEEN: &str = "{big,10485760,7}";

/// One round of big messages to a collector on the BEAM node, followed by a
/// small one from the same process or another.
struct BigRound {
    /// What the collector received, in order, as Erlang text.
    got: Vec<String>,
    /// Bytes the connection had written since the first big message was
    /// sent, read just after the small one was queued.
    written_before_small: u64,
}

impl BigRound {
    async fn run(
        rust: &Node,
        ctl: &mut Process,
        beam: &str,
        name: &str,
        bigs: usize,
        small_from_same_sender: bool,
    ) -> BigRound {
        let collector = format!(
            "Parent = self(), spawn(fun() -> register({name}, self()), Parent ! up, \
             L = [receive {{big, B}} -> {{big, byte_size(B), binary:at(B, 99)}}; \
                          {{small, X}} -> {{small, X}} end || _ <- lists:seq(1, {})], \
             receive {{get, F}} -> F ! {{got, L}} end end), \
             receive up -> ok end.",
            bigs + 1
        );
        assert!(term::is_atom(&eval(ctl, beam, &collector).await, "ok"));
        let bytes_out = || common::connection_to(rust, beam).map_or(0, |s| s.bytes_out);
        let dest = Dest::Remote(name.into(), beam.into());
        // Built up front: copying 10 MB between the sends would give the
        // writer time to finish the messages already queued.
        let big = term::binary(vec![7u8; BIG]);
        let messages: Vec<Term> = (0..bigs)
            .map(|_| beam_peer::tup![term::atom("big"), big.clone()])
            .collect();
        let (sender, other) = (rust.process(), rust.process());
        let before = bytes_out();
        for m in messages {
            sender.send(dest.clone(), m);
        }
        let (small_from, n) = if small_from_same_sender {
            (&sender, 1)
        } else {
            (&other, 2)
        };
        small_from.send(
            dest.clone(),
            beam_peer::tup![term::atom("small"), term::int(n)],
        );
        let written_before_small = bytes_out() - before;
        let v = eval(
            ctl,
            beam,
            &format!(
                "{name} ! {{get, self()}}, receive {{got, L}} -> L after 20000 -> timeout end."
            ),
        )
        .await;
        let got = term::as_list(&v)
            .unwrap_or_else(|| panic!("collected {v}"))
            .iter()
            .map(|t| t.to_string())
            .collect();
        BigRound {
            got,
            written_before_small,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_beam_to_rust_none_lost_order_kept() {
    require_erl!("a_million_messages_beam_to_rust_none_lost_order_kept");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    const N: i64 = 1_000_000;
    let checker = rust.spawn(|mut p| async move {
        let mut expected = 1i64;
        loop {
            let m = match p.receive().await {
                Ok(m) => m,
                Err(e) => return e.into(),
            };
            match term::as_tuple(&m) {
                Some([t, i]) if term::is_atom(t, "m") => {
                    if term::as_i64(i) != Some(expected) {
                        return beam_peer::ProcessExit::Reason(beam_peer::tup![
                            term::atom("out_of_order"),
                            term::int(expected),
                            i.clone()
                        ]);
                    }
                    expected += 1;
                }
                Some([t, Term::Pid(to)]) if term::is_atom(t, "report") => {
                    p.send(
                        to,
                        beam_peer::tup![term::atom("count"), term::int(expected - 1)],
                    );
                }
                _ => {}
            }
        }
    });
    rust.register("ordered", &checker).expect("register");
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!(
            "T = {{ordered, {me}}}, \
             lists:foreach(fun(I) -> T ! {{m, I}} end, lists:seq(1, {N})), \
             T ! {{report, self()}}, \
             receive {{count, C}} -> C after 60000 -> timeout end.",
            me = q(rust.name())
        ),
    )
    .await;
    assert_eq!(
        term::as_i64(&v),
        Some(N),
        "all messages arrived in order: {v}"
    );
    println!("1,000,000 messages BEAM -> Rust: all received in order");
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_is_refused_both_ways() {
    require_erl!("wrong_cookie_is_refused_both_ways");
    let port = common::free_port();
    let rust = common::rust_node("rust", port).await;
    let beam = Beam::start("erl", "a_different_cookie", port, &[]);
    let err = rust.connect(&beam.name).await;
    assert!(
        matches!(&err, Err(beam_peer::ConnectError::Handshake { .. })),
        "{err:?}"
    );
    assert!(!rust.ping(&beam.name).await);
    // erl with the wrong cookie pinging us gets pang; ask it through a second,
    // correctly-cookied Rust node that can talk to it.
    let helper = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("helper")))
            .cookie("a_different_cookie"),
        port,
    )
    .await;
    let mut p = helper.process();
    let v = eval(
        &mut p,
        &beam.name,
        &format!("net_adm:ping({}).", q(rust.name())),
    )
    .await;
    assert!(term::is_atom(&v, "pang"), "{v}");
    assert!(!rust.nodes().contains(&beam.name));
    helper.shutdown();
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_node_is_not_in_nodes_but_in_nodes_hidden() {
    require_erl!("hidden_node_is_not_in_nodes_but_in_nodes_hidden");
    let port = common::free_port();
    let rust = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("hidden"))).hidden(true),
        port,
    )
    .await;
    let beam = Beam::start("erl", COOKIE, port, &[]);
    let mut p = rust.process();
    let v = eval(&mut p, &beam.name, "{nodes(), nodes(hidden)}.").await;
    let Some([visible, hidden]) = term::as_tuple(&v) else {
        panic!("{v}")
    };
    assert!(!visible.to_string().contains(rust.name()));
    assert!(hidden.to_string().contains(rust.name()));
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_declared_down_after_the_tick_limit() {
    require_erl!("a_silent_peer_is_declared_down_after_the_tick_limit");
    let port = common::free_port();
    let rust = common::rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", common::unique("ticky")))
            .net_ticktime(Duration::from_secs(2)),
        port,
    )
    .await;
    let beam = Beam::start("erl", COOKIE, port, &[]);
    assert!(rust.ping(&beam.name).await);
    let mut events = rust.subscribe();
    beam.signal("STOP");
    let t = std::time::Instant::now();
    let reason = loop {
        match tokio::time::timeout(T, events.recv()).await {
            Ok(Ok(NodeEvent::Down { node, reason })) if node == beam.name => break reason,
            Ok(Ok(_)) => continue,
            other => panic!("no nodedown: {other:?}"),
        }
    };
    beam.signal("CONT");
    assert_eq!(reason, "net_tick_timeout");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connects_with_a_real_beam_leave_one_connection() {
    require_erl!("simultaneous_connects_with_a_real_beam_leave_one_connection");
    let (rust, beam) = common::rust_and_beam().await;
    let helper = common::rust_node("helper", beam.epmd_port).await;
    let mut ctl = helper.process();
    let me = q(rust.name());
    for round in 0..8 {
        // erl dials us while we dial it.
        let code = format!("net_kernel:connect_node({me}).");
        let beam_name = beam.name.clone();
        let helper_node = helper.clone();
        let dial = tokio::spawn(async move {
            let mut p = helper_node.process();
            eval(&mut p, &beam_name, &code).await
        });
        let ours = rust.connect(&beam.name).await;
        let theirs = dial.await.expect("eval task");
        assert_eq!(ours, Ok(()), "round {round}");
        assert!(term::is_atom(&theirs, "true"), "round {round}: {theirs}");
        assert_eq!(rust.nodes().iter().filter(|n| **n == beam.name).count(), 1);
        let v = eval(
            &mut ctl,
            &beam.name,
            &format!("lists:member({me}, nodes())."),
        )
        .await;
        assert!(term::is_atom(&v, "true"), "round {round}: erl lists us");
        assert!(rust.ping(&beam.name).await, "round {round}: traffic flows");
        // Drop the connection and wait until both sides agree it is gone. A
        // message in flight may legitimately reconnect (sends auto-connect, as
        // on the BEAM), so disconnect again until the state is clean.
        let mut gone = false;
        for _ in 0..5 {
            rust.disconnect(&beam.name);
            let v = eval(
                &mut ctl,
                &beam.name,
                &format!(
                    "(fun W(0) -> still_connected; W(N) -> case lists:member({me}, nodes()) of \
                     true -> timer:sleep(10), W(N - 1); false -> gone end end)(200)."
                ),
            )
            .await;
            if term::is_atom(&v, "gone") && !rust.is_connected(&beam.name) {
                gone = true;
                break;
            }
        }
        assert!(gone, "round {round}: the connection went away");
    }
    helper.shutdown();
    rust.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_beam_encodes_we_decode_including_compressed() {
    require_erl!("what_the_beam_encodes_we_decode_including_compressed");
    let (rust, beam) = common::rust_and_beam().await;
    let mut ctl = rust.process();
    let v = eval(
        &mut ctl,
        &beam.name,
        "T = {'é', [-1, -5, 300], 1 bsl 100, -(1 bsl 70), 3.5, -0.0, <<1,2,3:5>>, \
              maps:from_list([{I, I * I} || I <- lists:seq(1, 40)]), \
              fun lists:map/2, self(), make_ref(), lists:duplicate(300, <<\"abc\">>)}, \
         {T, term_to_binary(T), term_to_binary(T, [compressed]), \
          term_to_binary(T, [{minor_version, 2}])}.",
    )
    .await;
    let Some([t, plain, compressed, v2]) = term::as_tuple(&v) else {
        panic!("{v}")
    };
    for (label, bin) in [
        ("plain", plain),
        ("compressed", compressed),
        ("minor 2", v2),
    ] {
        let Term::Binary(b) = bin else {
            panic!("{label}: binary expected")
        };
        let decoded =
            beam_peer::term::etf::from_binary(&b.bytes).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(&decoded, t, "{label}");
    }
    // And what we encode, the BEAM decodes to the same term (sent back to us).
    let ours = beam_peer::term::etf::to_binary(t).expect("encode");
    let v = eval(
        &mut ctl,
        &beam.name,
        &format!("binary_to_term(list_to_binary({ours:?}))."),
    )
    .await;
    assert_eq!(&v, t);
    rust.shutdown();
}

/// `DIST_HDR_ATOM_CACHE` with a real BEAM, both ways: after the first
/// message, atoms cross as cache slots, not as text. Shown by the bytes per
/// message on the connection against the same message with its atoms as
/// text: a reference costs about three bytes, so what a message saves is
/// at least half the text of its node name (and tag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atoms_cross_as_cache_references_both_ways() {
    require_erl!("atoms_cross_as_cache_references_both_ways");
    use beam_peer::dist::codec::encode_control_headered;
    use beam_peer::dist::message::Message;
    const N: u64 = 1000;
    const TAG: &str = "a_rather_long_message_tag_for_this_test";
    let (rust, beam) = common::rust_and_beam().await;
    let mut p = rust.process();
    let stats = |rust: &Node| common::connection_to(rust, &beam.name).expect("connected");
    // A frame with its atoms as text: length, header without references,
    // body.
    let as_text = |from: &str, to: &str, tag: &str| {
        let m = Message::reg_send(
            term::Pid::new(from, 100, 0, 1),
            term::Atom::from(to),
            beam_peer::tup![term::atom(tag), term::int(N as i64)],
        );
        4 + 3 + encode_control_headered(m).expect("encodes").len() as u64
    };
    let me = q(rust.name());
    // Connect, and let a first message fill the caches.
    let warm = format!("{{sink, {me}}} ! {{m, 0}}, ok.");
    assert!(term::is_atom(&eval(&mut p, &beam.name, &warm).await, "ok"));

    // BEAM -> Rust, to `sink` (which counts `{m, _}`).
    let before = stats(&rust);
    let code = format!(
        "[{{sink, {me}}} ! {{m, I}} || I <- lists:seq(1, {N})], \
         {{sink, {me}}} ! {{report, self()}}, \
         receive {{count, C}} -> C after 5000 -> timeout end."
    );
    let v = eval(&mut p, &beam.name, &code).await;
    assert_eq!(term::as_i64(&v), Some(N as i64 + 1), "{v}");
    let per_message = (stats(&rust).bytes_in - before.bytes_in) / N;
    let text = as_text(&beam.name, "sink", "m");
    assert!(
        per_message + beam.name.len() as u64 / 2 <= text,
        "{per_message} bytes per message in, {text} with atoms as text"
    );

    // Rust -> BEAM: erl counts what arrives and keeps the last one.
    let setup = format!(
        "Parent = self(), spawn(fun() -> register(counter, self()), Parent ! up, \
         Loop = fun L(C, Last) -> receive {{get, F}} -> F ! {{C, Last}}; \
         {{{TAG}, _}} = M -> L(C + 1, M) end end, Loop(0, none) end), \
         receive up -> ok end."
    );
    assert!(term::is_atom(&eval(&mut p, &beam.name, &setup).await, "ok"));
    let before = stats(&rust);
    for i in 1..=N {
        p.send(
            Dest::Remote("counter".into(), beam.name.clone()),
            beam_peer::tup![term::atom(TAG), term::int(i as i64)],
        );
    }
    let v = eval(
        &mut p,
        &beam.name,
        "counter ! {get, self()}, receive R -> R after 5000 -> timeout end.",
    )
    .await;
    assert_eq!(v.to_string(), format!("{{{N},{{{TAG},{N}}}}}"));
    let per_message = (stats(&rust).bytes_out - before.bytes_out) / N;
    let text = as_text(rust.name(), "counter", TAG);
    assert!(
        per_message + (rust.name().len() + TAG.len()) as u64 / 2 <= text,
        "{per_message} bytes per message out, {text} with atoms as text"
    );
    rust.shutdown();
}

/// `Node::rpc` against a real erl: values, each kind of exception, a
/// function that does not exist, a timeout, and a node that is not there,
/// each its own `RpcCallError`, as `erpc:call/5` tells them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_functions_on_a_beam_node_as_erpc_does() {
    require_erl!("rust_calls_functions_on_a_beam_node_as_erpc_does");
    use beam_peer::RpcCallError;
    let (rust, beam) = common::rust_and_beam().await;
    let b = beam.name.as_str();
    let ints = |v: &[i64]| term::list(v.iter().map(|&i| term::int(i)).collect());
    assert_eq!(
        rust.rpc(b, "lists", "reverse", vec![ints(&[1000, 2000, 3000])], T)
            .await,
        Ok(ints(&[3000, 2000, 1000]))
    );
    assert_eq!(
        rust.rpc(b, "erlang", "node", vec![], T).await,
        Ok(term::atom(b))
    );
    fn raised(class: &str, reason: Term) -> impl Fn(Result<Term, RpcCallError>) -> bool + '_ {
        move |r| match r {
            Err(RpcCallError::Exception {
                class: c,
                reason: why,
                ..
            }) => c == class && why == reason,
            _ => false,
        }
    }
    let r = rust.rpc(b, "no_such_module", "f", vec![], T).await;
    assert!(raised("error", term::atom("undef"))(r.clone()), "{r:?}");
    let r = rust
        .rpc(b, "erlang", "error", vec![term::atom("boom")], T)
        .await;
    assert!(raised("error", term::atom("boom"))(r.clone()), "{r:?}");
    let r = rust
        .rpc(b, "erlang", "throw", vec![term::atom("ball")], T)
        .await;
    assert!(raised("throw", term::atom("ball"))(r.clone()), "{r:?}");
    let r = rust
        .rpc(b, "erlang", "exit", vec![term::atom("bye")], T)
        .await;
    assert!(raised("exit", term::atom("bye"))(r.clone()), "{r:?}");
    let r = rust
        .rpc(
            b,
            "timer",
            "sleep",
            vec![term::int(3000)],
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(r, Err(RpcCallError::Timeout));
    let r = rust
        .rpc("nobody_here@127.0.0.1", "erlang", "node", vec![], T)
        .await;
    assert_eq!(r, Err(RpcCallError::NoConnection));
    // The answer to the timed-out call arrives after we stopped waiting;
    // the next call still gets its own answer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rust.rpc(b, "erlang", "length", vec![ints(&[1, 2])], T)
            .await,
        Ok(term::int(2))
    );
    rust.shutdown();
}

/// `Node::multicall` asks several nodes at once (a BEAM node, ourselves,
/// another Rust node, one that is not there) and `Node::rpc_cast` runs a
/// function on a BEAM node without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicall_and_cast_reach_beam_and_rust_nodes() {
    require_erl!("multicall_and_cast_reach_beam_and_rust_nodes");
    use beam_peer::RpcCallError;
    let (rust, beam) = common::rust_and_beam().await;
    let other = common::rust_node("rust_b", beam.epmd_port).await;
    let nodes = vec![
        beam.name.clone(),
        rust.name().to_string(),
        other.name().to_string(),
        "nobody_here@127.0.0.1".to_string(),
    ];
    let answers = rust.multicall(&nodes, "erlang", "node", vec![], T).await;
    assert_eq!(answers.len(), 4);
    for (n, r) in &answers[..3] {
        assert_eq!(r, &Ok(term::atom(n)), "{n}");
    }
    assert_eq!(answers[3].1, Err(RpcCallError::NoConnection));

    assert!(
        rust.rpc_cast(
            &beam.name,
            "persistent_term",
            "put",
            vec![term::atom("cast_test"), term::int(42)]
        )
        .await
    );
    common::eventually!(
        T,
        rust.rpc(
            &beam.name,
            "persistent_term",
            "get",
            vec![term::atom("cast_test"), term::atom("none")],
            T
        )
        .await
            == Ok(term::int(42)),
        "the cast ran on erl"
    );
    assert!(
        !rust
            .rpc_cast("nobody_here@127.0.0.1", "erlang", "node", vec![])
            .await
    );
    other.shutdown();
    rust.shutdown();
}

/// The introspection calls BEAM tools make, asked by a real erl through
/// erpc: `processes/0`, `nodes/1`, `system_info/1`, `statistics/1` and
/// `exit/2` answer for the Rust node, and what we do not answer raises
/// `badarg` as a BEAM does for an unknown key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_tools_can_look_inside_a_rust_node() {
    require_erl!("beam_tools_can_look_inside_a_rust_node");
    let (rust, beam) = common::rust_and_beam().await;
    let mut p = rust.process();
    let r = q(rust.name());
    let victim = rust.process();
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "Ps = erpc:call({r}, erlang, processes, []),
             N = erpc:call({r}, erlang, system_info, [process_count]),
             Rel = erpc:call({r}, erlang, system_info, [otp_release]),
             {{W, _}} = erpc:call({r}, erlang, statistics, [wall_clock]),
             {{Cpu, _}} = erpc:call({r}, erlang, statistics, [runtime]),
             Nodes = erpc:call({r}, erlang, nodes, [[this, visible]]),
             Bad = try erpc:call({r}, erlang, system_info, [no_such_key]) catch error:{{exception, badarg, _}} -> badarg end,
             {{length(Ps), N, Rel, is_integer(W) andalso is_integer(Cpu), Nodes, Bad}}."
        ),
    )
    .await;
    let Some([count, n, release, times, nodes, bad]) = term::as_tuple(&v) else {
        panic!("{v}")
    };
    assert_eq!(count, n, "processes/0 lists process_count processes");
    assert!(term::as_i64(n).unwrap_or(0) >= 4, "{v}");
    assert_eq!(
        term::elixir::as_charlist(release).as_deref(),
        Some(beam_peer::services::introspection::WHAT_WE_ARE)
    );
    assert!(term::is_atom(times, "true"), "{v}");
    assert_eq!(
        nodes,
        &term::list(vec![term::atom(rust.name()), term::atom(&beam.name)])
    );
    assert!(term::is_atom(bad, "badarg"), "{v}");
    // exit/2 ends a Rust process.
    let pid = victim.pid().clone();
    eval(
        &mut p,
        &beam.name,
        &format!(
            "true = erpc:call({r}, erlang, exit, [erpc:call({r}, erlang, whereis, [sink]), kill]), ok."
        ),
    )
    .await;
    assert!(rust.whereis("sink").is_none(), "sink was killed");
    assert!(rust.is_process_alive(&pid));
    rust.shutdown();
}

/// `process_info/1,2`, `memory/0,1` and `list_to_pid/1` of Rust processes,
/// asked by a real erl through erpc: the mailbox length counts messages in
/// and out, links, monitors, trap_exit and the registered name are the
/// table's, and a dead pid is `undefined`, an unknown item `badarg`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_tools_read_process_info_of_rust_processes() {
    require_erl!("beam_tools_read_process_info_of_rust_processes");
    let (rust, beam) = common::rust_and_beam().await;
    let mut p = rust.process();
    let r = q(rust.name());
    let mut inbox = rust.process();
    inbox.register("inbox").expect("registers");
    inbox.trap_exit(true);
    let echo = rust.whereis("echo").expect("echo runs");
    inbox.link(&echo);
    let _mref = inbox.monitor(Dest::Name("sink".into()));
    let items = "[registered_name, message_queue_len, status, trap_exit, links, monitors, memory, reductions]";
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "I = erpc:call({r}, erlang, whereis, [inbox]),
             [{{inbox, {r}}} ! {{m, N}} || N <- [1, 2, 3]],
             erpc:call({r}, erlang, process_info, [I, {items}])."
        ),
    )
    .await;
    let get = |v: &Term, k: &str| -> Term {
        term::as_list(v)
            .unwrap_or_default()
            .iter()
            .find_map(|kv| match term::as_tuple(kv) {
                Some([key, val]) if term::is_atom(key, k) => Some(val.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {k} in {v}"))
    };
    assert!(term::is_atom(&get(&v, "registered_name"), "inbox"), "{v}");
    assert_eq!(get(&v, "message_queue_len"), term::int(3), "{v}");
    assert!(term::is_atom(&get(&v, "trap_exit"), "true"), "{v}");
    assert_eq!(get(&v, "links"), term::list(vec![Term::Pid(echo.clone())]));
    let sink = rust.whereis("sink").expect("sink runs");
    assert_eq!(
        get(&v, "monitors"),
        term::list(vec![beam_peer::tup![
            term::atom("process"),
            beam_peer::tup![term::atom("sink"), term::atom(rust.name())]
        ]])
    );
    assert!(term::as_i64(&get(&v, "memory")).unwrap_or(0) > 0, "{v}");
    assert_eq!(get(&v, "reductions"), term::int(0), "{v}");
    // Taking one message: the queue shrinks, the work count grows.
    inbox.receive().await.expect("a message");
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "I = erpc:call({r}, erlang, whereis, [inbox]),
             {{erpc:call({r}, erlang, process_info, [I, message_queue_len]),
               erpc:call({r}, erlang, process_info, [I, reductions]),
               erpc:call({r}, erlang, process_info, [erpc:call({r}, erlang, whereis, [sink]), monitored_by])}}."
        ),
    )
    .await;
    assert_eq!(
        v,
        beam_peer::tup![
            beam_peer::tup![term::atom("message_queue_len"), term::int(2)],
            beam_peer::tup![term::atom("reductions"), term::int(1)],
            beam_peer::tup![
                term::atom("monitored_by"),
                term::list(vec![Term::Pid(inbox.pid().clone())])
            ]
        ]
    );
    // process_info/1 of a gen_server; a process waiting on an empty mailbox.
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "erpc:call({r}, erlang, process_info, [erpc:call({r}, erlang, whereis, [echo])])."
        ),
    )
    .await;
    assert!(term::is_atom(&get(&v, "registered_name"), "echo"), "{v}");
    assert!(term::is_atom(&get(&v, "status"), "waiting"), "{v}");
    let call = get(&v, "initial_call");
    let Some([m, f, a]) = term::as_tuple(&call) else {
        panic!("{v}")
    };
    assert!(
        term::as_atom(m).unwrap_or("").ends_with("Echo") && term::is_atom(f, "init"),
        "{v}"
    );
    assert_eq!(a, &term::int(1));
    // Dead pids, unknown items, remote pids, memory, list_to_pid.
    let dead = {
        let gone = rust.process();
        gone.pid().clone()
    };
    let v = eval(
        &mut p,
        &beam.name,
        &format!(
            "Dead = erpc:call({r}, erlang, list_to_pid, [\"<0.{}.{}>\"]),
             Bad = try erpc:call({r}, erlang, process_info, [Dead, heap_size]) catch error:{{exception, badarg, _}} -> badarg end,
             Remote = try erpc:call({r}, erlang, process_info, [self()]) catch error:{{exception, badarg, _}} -> badarg end,
             Mem = erpc:call({r}, erlang, memory, []),
             {{Dead, erpc:call({r}, erlang, process_info, [Dead, status]), Bad, Remote,
               proplists:get_value(total, Mem) > proplists:get_value(processes, Mem),
               erpc:call({r}, erlang, memory, [total]) > 0}}.",
            dead.id, dead.serial
        ),
    )
    .await;
    assert_eq!(
        v,
        beam_peer::tup![
            Term::Pid(dead),
            term::atom("undefined"),
            term::atom("badarg"),
            term::atom("badarg"),
            term::atom("true"),
            term::atom("true")
        ]
    );
    let _ = sink;
    rust.shutdown();
}
