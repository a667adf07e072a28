//! `beam-peer registry --node` and `supervisor --node` read through an
//! Elixir member running the real Horde 0.10 (needs its ebins, see
//! `common::horde_ebin`; one SKIPPED line otherwise): the same calls the
//! tool makes of a Rust member (`:members`, `DeltaCrdt.to_map/1`) give the
//! real registry's keys and the real supervisor's members and children.

mod common;

use std::process::Command;

use beam_peer::term::{self, Term};
use common::{Beam, COOKIE};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_beam-peer");

fn run_json(args: &[&str], port: u16) -> Value {
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .env("ERL_EPMD_PORT", port.to_string())
        .output()
        .expect("beam-peer runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "$ beam-peer {args:?} --json\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_supervisor_through_an_elixir_member() {
    let Some(ebins) = common::horde_or_skip("registry_and_supervisor_through_an_elixir_member")
    else {
        return;
    };
    let port = common::free_port();
    let rust = common::rust_node("ops_live", port).await;
    let beam = Beam::start_horde("ops_ex", COOKIE, port, &ebins);
    let mut p = rust.process();
    let code = r#"
{:ok, _} = :beam_peer_ctl.keep(fn -> Horde.Registry.start_link(name: r, keys: :unique, members: :auto) end)
{:ok, _} = :beam_peer_ctl.keep(fn -> Horde.DynamicSupervisor.start_link(name: s, strategy: :one_for_one, members: :auto) end)
{:ok, holder} = :beam_peer_ctl.keep(fn -> Agent.start_link(fn -> 1 end) end)
{:ok, _} = Horde.Registry.register(r, "elixir-key", :the_value)
{:ok, child} = Horde.DynamicSupervisor.start_child(s, %{id: :w1, start: {Agent, :start_link, [fn -> 2 end]}})
{holder, child, self()}
"#;
    // Registered from the evaluating process, which ends: register from a
    // kept process instead.
    let code = code.replace(
        "{:ok, _} = Horde.Registry.register(r, \"elixir-key\", :the_value)",
        ":ok = Agent.get(holder, fn _ -> {:ok, _} = Horde.Registry.register(r, \"elixir-key\", :the_value); :ok end)",
    );
    let v = common::eval_elixir(
        &mut p,
        &beam.name,
        &code,
        vec![
            ("r", term::atom("Elixir.OpsLive.Registry")),
            ("s", term::atom("Elixir.OpsLive.Sup")),
        ],
    )
    .await;
    let Some([Term::Pid(holder), Term::Pid(child), _]) = term::as_tuple(&v) else {
        panic!("{v}")
    };
    let base = ["--node", beam.name.as_str(), "--cookie", COOKIE];
    let mut args = vec!["registry", "Elixir.OpsLive.Registry"];
    args.extend(base);
    let mut found;
    common::eventually!(
        std::time::Duration::from_secs(10),
        {
            found = run_json(&args, port);
            found["entries"].as_array().is_some_and(|e| !e.is_empty())
        },
        "the key is listed: {found}"
    );
    let e = &found["entries"][0];
    assert_eq!(e["key"], "<<\"elixir-key\">>", "{found}");
    assert_eq!(e["value"], "the_value", "{found}");
    assert_eq!(e["pid"], format!("<0.{}.{}>", holder.id, holder.serial));
    assert_eq!(e["node"], beam.name.as_str());
    // With `members: :auto` Horde lists every visible node, ours included.
    assert!(
        found["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == beam.name.as_str())),
        "{found}"
    );
    let mut args = vec!["supervisor", "Elixir.OpsLive.Sup"];
    args.extend(base);
    let v = run_json(&args, port);
    assert_eq!(v["members"][0]["member"], beam.name.as_str(), "{v}");
    assert_eq!(v["members"][0]["status"], "alive", "{v}");
    assert_eq!(
        v["children"][0]["pid"],
        format!("<0.{}.{}>", child.id, child.serial)
    );
    assert!(
        v["children"][0]["start"]
            .as_str()
            .is_some_and(|s| s.contains("Elixir.Agent")),
        "{v}"
    );
    rust.shutdown();
}
