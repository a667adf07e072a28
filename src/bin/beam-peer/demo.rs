//! `beam-peer demo`: a real cluster of Rust nodes in this one process, on
//! the EPMD of `ERL_EPMD_PORT` (the embedded one when none answers), each
//! step checked and printed as `[ ok ]` or `[FAIL]`. Replies are printed in
//! Erlang syntax; only this run's own nodes are counted in EPMD.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use beam_peer::{term, Dest, Node, NodeConfig, NodeEvent};

fn step(label: &str, ok: bool, detail: String) -> anyhow::Result<()> {
    println!("[{}] {label}: {detail}", if ok { " ok " } else { "FAIL" });
    if ok {
        Ok(())
    } else {
        bail!("{label} failed")
    }
}

pub async fn run(count: usize, cookie: &str, messages: usize) -> anyhow::Result<()> {
    let run = std::process::id();
    println!(
        "starting {count} Rust nodes on 127.0.0.1 (EPMD port {})",
        beam_peer::epmd::epmd_port()
    );
    let mut nodes = Vec::new();
    for i in 0..count {
        let name = format!("demo{i}_{run}@127.0.0.1");
        let node = Node::start(NodeConfig::new(&name).cookie(cookie))
            .await
            .with_context(|| format!("starting {name}"))?;
        beam_peer::demo::start_echo_and_sink(&node)?;
        nodes.push(node);
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    let epmd = std::net::SocketAddr::from(([127, 0, 0, 1], beam_peer::epmd::epmd_port()));
    let registered = beam_peer::epmd::names(epmd).await?;
    // Only this run's own nodes: other programs' names in the same EPMD are
    // none of the demo's business.
    let ours = names
        .iter()
        .filter(|n| {
            let alive = n.split('@').next().unwrap_or_default();
            registered.iter().any(|(r, _)| r == alive)
        })
        .count();
    step(
        "EPMD registration",
        ours == names.len(),
        format!("{ours} of {} demo nodes registered", names.len()),
    )?;

    let first = nodes[0].clone();
    let mut events = first.subscribe();
    for peer in &names[1..] {
        let t = Instant::now();
        let pong = first.ping(peer).await;
        step(
            &format!("ping {peer}"),
            pong,
            format!("pong in {:?}", t.elapsed()),
        )?;
    }

    let mut me = first.process();
    let target = names[count - 1].clone();
    let request = beam_peer::tup![
        term::atom("hello"),
        term::binary("from Rust"),
        term::int(42)
    ];
    let t0 = Instant::now();
    let reply = me
        .call(
            Dest::Remote("echo".into(), target.clone()),
            request.clone(),
            Duration::from_secs(5),
        )
        .await;
    step(
        &format!("gen_server call to echo on {target}"),
        reply.as_ref() == Ok(&request),
        match &reply {
            Ok(t) => format!("replied {t} in {:?}", t0.elapsed()),
            Err(e) => format!("failed: {e}"),
        },
    )?;

    let t = Instant::now();
    let sink = Dest::Remote("sink".into(), names[1].clone());
    for i in 0..messages {
        me.send(
            sink.clone(),
            beam_peer::tup![term::atom("m"), term::int(i as i64)],
        );
    }
    me.send(
        sink,
        beam_peer::tup![term::atom("report"), term::Term::Pid(me.pid().clone())],
    );
    let count_msg = me
        .receive_match(
            |m| matches!(term::as_tuple(m), Some([t, _]) if term::is_atom(t, "count")),
            Some(Duration::from_secs(60)),
        )
        .await?;
    let got = count_msg
        .as_ref()
        .and_then(|m| term::as_tuple(m).and_then(|e| term::as_i64(&e[1])))
        .unwrap_or(-1);
    let secs = t.elapsed().as_secs_f64();
    step(
        &format!("{messages} messages to sink on {}", names[1]),
        got == messages as i64,
        format!("{got} counted, {:.0} msgs/s", messages as f64 / secs),
    )?;

    // A process on the last node, linked and monitored from the first.
    let last = nodes[count - 1].clone();
    let victim = last.spawn(|mut p| async move {
        let _ = p.receive().await;
        beam_peer::ProcessExit::Normal
    });
    let mut watcher = first.process();
    watcher.trap_exit(true);
    watcher.link(&victim);
    let mref = watcher.monitor(&victim);
    tokio::time::sleep(Duration::from_millis(100)).await;
    last.exit_process(&victim, term::atom("demo_kill"));
    let mut saw_exit = false;
    let mut saw_down = false;
    while !(saw_exit && saw_down) {
        match watcher.receive_timeout(Duration::from_secs(5)).await? {
            Some(m) => match term::as_tuple(&m) {
                Some([t, _, r]) if term::is_atom(t, "EXIT") => {
                    saw_exit = term::is_atom(r, "demo_kill")
                }
                Some([t, r, _, _, reason]) if term::is_atom(t, "DOWN") => {
                    saw_down = r == &term::Term::Reference(Box::new(mref.clone()))
                        && term::is_atom(reason, "demo_kill")
                }
                _ => {}
            },
            None => break,
        }
    }
    step(
        "link and monitor across nodes",
        saw_exit && saw_down,
        format!("EXIT seen: {saw_exit}, DOWN seen: {saw_down}"),
    )?;

    // Take the last node down; the first sees nodedown.
    last.shutdown();
    let t = Instant::now();
    let mut down = false;
    while t.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(NodeEvent::Down { node, reason })) if node == target => {
                down = true;
                println!("       nodedown {node} ({reason})");
                break;
            }
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    step(
        &format!("nodedown of {target} seen"),
        down,
        format!("after {:?}", t.elapsed()),
    )?;
    for n in &nodes {
        n.shutdown();
    }
    println!("demo finished: all checks passed");
    Ok(())
}
