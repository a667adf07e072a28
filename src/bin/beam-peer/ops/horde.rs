//! `registry R` and `supervisor S`: a Horde registry's or dynamic
//! supervisor's contents, read through one member.
//!
//! What it owns: asking the member on `--node` with the calls Horde's own
//! API makes (`GenServer.call(R, :members)`; `DeltaCrdt.to_map/1`, that is
//! `GenServer.call(R.Crdt, :read)`), which BEAM members and Rust members
//! answer alike, and laying out the CRDT's keys as Horde 0.10 writes them
//! (see `horde::registry::state` and `horde::supervisor::codec`).
//!
//! What it must never do: write to the CRDT, or show an entry whose shape
//! it does not know as if it did (such entries are counted and named).

use anyhow::{anyhow, bail};
use beam_peer::horde::supervisor::Member;
use beam_peer::term::{self, Term};
use beam_peer::Dest;
use serde_json::{json, Value};

use super::table::Table;
use super::{pid_text, term_text, Session};

/// A gen_server call to `name` on the session's target.
async fn call(s: &Session, name: &str, request: Term) -> anyhow::Result<Term> {
    let mut p = s.node.process();
    p.call(Dest::Remote(name.into(), s.target.clone()), request, s.timeout)
        .await
        .map_err(|e| match e {
            beam_peer::CallError::NoProc => anyhow!(
                "{name} is not running on {} (is it a member? the name is the module as the BEAM spells it, e.g. Elixir.MyApp.Registry)",
                s.target
            ),
            other => anyhow!("calling {name} on {}: {other}", s.target),
        })
}

/// The member's whole CRDT, as `DeltaCrdt.to_map/1` returns it.
async fn crdt_map(s: &Session, name: &str) -> anyhow::Result<Vec<(Term, Term)>> {
    let crdt = format!("{name}.Crdt");
    match call(s, &crdt, term::atom("read")).await? {
        Term::Map(m) => Ok(m.map.into_iter().collect()),
        other => bail!(
            "{crdt} on {} answered read with {other}, not a map",
            s.target
        ),
    }
}

fn member_text(m: &Term) -> String {
    match term::as_tuple(m) {
        Some([_, node]) => term::as_atom(node).unwrap_or("?").to_string(),
        _ => m.to_string(),
    }
}

fn tagged<'a>(k: &'a Term, tag: &str) -> Option<&'a Term> {
    match term::as_tuple(k) {
        Some([t, v]) if term::is_atom(t, tag) => Some(v),
        _ => None,
    }
}

pub async fn registry(s: &Session, name: &str) -> anyhow::Result<()> {
    let members = call(s, name, term::atom("members")).await?;
    let members: Vec<String> = term::as_list(&members)
        .unwrap_or_default()
        .iter()
        .map(member_text)
        .collect();
    let map = crdt_map(s, name).await?;
    let mut entries = Vec::new();
    let mut odd = 0;
    for (k, v) in &map {
        if let Some(key) = tagged(k, "key") {
            match term::as_tuple(v) {
                Some([member, Term::Pid(pid), value]) => {
                    entries.push((key.clone(), pid.clone(), member_text(member), value.clone()))
                }
                _ => odd += 1,
            }
        }
    }
    entries.sort_by_key(|e| e.0.to_string());
    if s.json {
        let e: Vec<Value> = entries
            .iter()
            .map(|(k, p, m, v)| {
                json!({"key": term_text(k, &p.node.name), "pid": pid_text(p), "node": p.node.name.as_str(),
                       "member": m, "value": term_text(v, &p.node.name)})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"registry": name, "read_through": s.target,
                "members": members, "entries": e, "unreadable_entries": odd}))?
        );
        return Ok(());
    }
    println!("registry {name} (read through {})", s.target);
    println!("members: {}", members.join(", "));
    println!();
    let mut t = Table::new(&["KEY", "PID", "NODE", "VALUE"]);
    for (k, p, _, v) in &entries {
        t.row(vec![
            term_text(k, &p.node.name),
            pid_text(p),
            p.node.name.to_string(),
            term_text(v, &p.node.name),
        ]);
    }
    print!("{}", t.render());
    println!("{} entries", entries.len());
    if odd > 0 {
        println!("{odd} entries of a shape Horde 0.10 does not write were left out");
    }
    Ok(())
}

pub async fn supervisor(s: &Session, name: &str) -> anyhow::Result<()> {
    let map = crdt_map(s, name).await?;
    let mut members: Vec<(String, String)> = Vec::new();
    let mut children = Vec::new();
    let mut odd = 0;
    for (k, v) in &map {
        if let Some(m) = tagged(k, "member_node_info") {
            match Member::from_term(v) {
                Ok(info) => members.push((member_text(m), info.status.as_atom().to_string())),
                Err(_) => odd += 1,
            }
        } else if let Some(id) = tagged(k, "process") {
            match term::as_tuple(v) {
                Some([member, spec, Term::Pid(pid)]) => children.push((
                    member_text(member),
                    Some(pid.clone()),
                    spec.clone(),
                    id.clone(),
                )),
                Some([_, spec]) => children.push(("(none)".into(), None, spec.clone(), id.clone())),
                _ => odd += 1,
            }
        }
    }
    // A member Horde knows of with no info yet.
    for (k, _) in &map {
        if let Some(m) = tagged(k, "member") {
            let n = member_text(m);
            if !members.iter().any(|(x, _)| x == &n) {
                members.push((n, "uninitialized".into()));
            }
        }
    }
    members.sort();
    children.sort_by(|a, b| (&a.0, a.2.to_string()).cmp(&(&b.0, b.2.to_string())));
    let spec_text = |spec: &Term, pid: &Option<beam_peer::term::Pid>| {
        let node = pid
            .as_ref()
            .map(|p| p.node.name.to_string())
            .unwrap_or_default();
        match spec {
            Term::Map(m) => m
                .map
                .get(&term::atom("start"))
                .map(|st| term_text(st, &node))
                .unwrap_or_else(|| term_text(spec, &node)),
            other => term_text(other, &node),
        }
    };
    if s.json {
        let m: Vec<Value> = members
            .iter()
            .map(|(n, st)| json!({"member": n, "status": st}))
            .collect();
        let c: Vec<Value> = children
            .iter()
            .map(|(m, p, spec, id)| {
                json!({"member": m, "pid": p.as_ref().map(pid_text), "start": spec_text(spec, p),
                       "spec": spec.to_string(), "id": id.to_string()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"supervisor": name, "read_through": s.target,
                "members": m, "children": c, "unreadable_entries": odd}))?
        );
        return Ok(());
    }
    println!("supervisor {name} (read through {})", s.target);
    let mut t = Table::new(&["MEMBER", "STATUS"]);
    for (n, st) in &members {
        t.row(vec![n.clone(), st.clone()]);
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(&["MEMBER", "PID", "START"]);
    for (m, p, spec, _) in &children {
        t.row(vec![
            m.clone(),
            p.as_ref().map(pid_text).unwrap_or_else(|| "-".into()),
            spec_text(spec, p),
        ]);
    }
    print!("{}", t.render());
    println!("{} children", children.len());
    if odd > 0 {
        println!("{odd} entries of a shape Horde 0.10 does not write were left out");
    }
    Ok(())
}
