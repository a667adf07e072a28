//! What real Elixir Phoenix.PubSub members put on the wire, replayed where
//! no BEAM runs: the recordings in `tests/fixtures/pubsub/` (one per Elixir
//! release, made by the ignored `pubsub_live::record_the_wire_of_an_elixir_member`)
//! hold what an Elixir member's pg
//! scope answered our discover with, and a broadcast's
//! `{:forward_to_local, ..}`. Our pg scope must take the sync as the
//! Elixir member's adapter workers, and our adapter worker must hand the
//! broadcast to its subscribers bare.

mod common;

use std::time::Duration;

use beam_peer::pubsub::{PubSub, PubSubOptions};
use beam_peer::services::pg::{Effect, Scope};
use beam_peer::term::{self, Pid, Term};

const NAME: &str = "Elixir.Fixture.PubSub";

struct Recording {
    elixir: String,
    /// `(from, to, msg)` as the Elixir node sent them.
    sent: Vec<(Term, Term, Term)>,
}

fn recordings() -> Vec<Recording> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pubsub");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("fixtures/pubsub") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("etf") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let t = term::etf::from_binary(&bytes[..]).expect("a recorded term");
        let Some([version, _rust_node, sent]) = term::as_tuple(&t) else {
            panic!("{}: not a recording", path.display())
        };
        let sent = term::as_list(sent)
            .unwrap()
            .iter()
            .map(|s| match term::as_tuple(s) {
                Some([from, to, msg]) => (from.clone(), to.clone(), msg.clone()),
                _ => panic!("{s}"),
            })
            .collect();
        out.push(Recording {
            elixir: term::elixir::as_str(version).unwrap().to_string(),
            sent,
        });
    }
    assert!(out.len() >= 2, "recordings for Elixir 1.14 and 1.18");
    out
}

#[test]
fn the_recorded_pg_sync_is_taken_as_the_elixir_members_workers() {
    for rec in recordings() {
        let me = Pid::new("rust@127.0.0.1", 7, 0, 1);
        let mut scope = Scope::new(beam_peer::pubsub::PG_SCOPE, me.clone());
        let mut monitored = Vec::new();
        for (_from, _to, msg) in rec.sent.iter().filter(|(_, _, m)| {
            !matches!(term::as_tuple(m), Some([t, ..]) if term::is_atom(t, "forward_to_local"))
        }) {
            let effects = scope
                .handle_message(msg)
                .unwrap_or_else(|e| panic!("Elixir {}: {msg} refused: {e}", rec.elixir));
            for e in effects {
                if let Effect::Monitor(p) = e {
                    monitored.push(Term::Pid(p));
                }
            }
        }
        for (i, group) in beam_peer::pubsub::adapter_groups(NAME, 2)
            .iter()
            .enumerate()
        {
            let members = scope.members(&term::atom(group));
            assert_eq!(members.len(), 1, "Elixir {}: {group}", rec.elixir);
            assert!(scope.local_members(&term::atom(group)).is_empty());
            assert!(
                members[0].node.name.starts_with("ps_ex_"),
                "Elixir {} group {i}: {members:?}",
                rec.elixir
            );
        }
        // The Elixir scope is monitored, as pg monitors a peer it syncs with.
        assert_eq!(monitored.len(), 1, "Elixir {}", rec.elixir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_broadcast_reaches_rust_subscribers_bare() {
    let node = common::rust_node("wire_rs", common::free_port()).await;
    let pubsub = PubSub::start_with(&node, PubSubOptions::new(NAME).pool_size(2))
        .await
        .expect("starts");
    let mut sub = node.process();
    pubsub.subscribe(sub.pid(), "fixture:topic", None);
    let sender = node.process();
    for rec in recordings() {
        let forwards: Vec<&Term> = rec
            .sent
            .iter()
            .filter_map(|(_, _, m)| match term::as_tuple(m) {
                Some([t, ..]) if term::is_atom(t, "forward_to_local") => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(forwards.len(), 1, "Elixir {}", rec.elixir);
        let Some([_, _, message, _]) = term::as_tuple(forwards[0]) else {
            unreachable!()
        };
        // Whichever worker the Elixir publisher's hash picked, both deliver.
        for group in beam_peer::pubsub::adapter_groups(NAME, 2) {
            sender.send(beam_peer::Dest::Name(group), forwards[0].clone());
            let got = sub
                .receive_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .expect("delivered");
            assert_eq!(&got, message, "Elixir {}", rec.elixir);
        }
    }
    // A worker ignores what it does not know, and keeps serving.
    let first = beam_peer::pubsub::adapter_groups(NAME, 1).remove(0);
    sender.send(beam_peer::Dest::Name(first.clone()), term::atom("junk"));
    pubsub.local_broadcast("fixture:topic", term::atom("after"));
    assert_eq!(
        sub.receive_timeout(Duration::from_secs(5)).await.unwrap(),
        Some(term::atom("after"))
    );
    assert!(node.whereis(&first).is_some());
    node.shutdown();
}
