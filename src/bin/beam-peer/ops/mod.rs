//! The operator's commands: `status`, `ps`, `info`, `kill`, `send`, `trace`
//! (in [`trace`]), and
//! (in [`horde`]) reading a Horde registry or supervisor through a member.
//!
//! What it owns: joining a cluster as a hidden node for one command, asking
//! each node through erpc with the standard OTP functions (which Rust nodes
//! answer too, see `services::introspection`), and printing the answers as a
//! table or as JSON. Every bad input (an unknown node, a wrong cookie, a
//! malformed term, a process that is not there) is one clear error: the
//! caller prints it and exits 1.
//!
//! What it must never do: change anything on a node but what the command
//! says (`kill` sends one exit signal, `send` one message), or guess an
//! answer a node did not give: a node that does not answer is shown as such.

pub mod horde;
pub mod table;
pub mod top;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use beam_peer::term::{self, Pid, Term};
use beam_peer::{ConnectError, Node, NodeConfig, RpcCallError};
use clap::Args;
use serde_json::{json, Value};

use crate::args;
use table::Table;

/// What every operator command takes.
#[derive(Args, Clone)]
pub struct OpsOpts {
    /// A node of the cluster to join through, `alive@host`.
    #[arg(long, value_name = "NODE", value_parser = args::full_node_name)]
    pub node: String,
    /// The distribution cookie. Default: the contents of ~/.erlang.cookie.
    #[arg(long, value_name = "COOKIE")]
    pub cookie: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for each node's answer (e.g. 500ms, 5s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = args::duration)]
    pub timeout: Duration,
}

impl OpsOpts {
    /// The options of `registry R --node N` / `supervisor S --node N`,
    /// which read a Horde member through `node` with the default timeout.
    pub fn reading_through(node: String, cookie: Option<String>, json: bool) -> OpsOpts {
        OpsOpts {
            node,
            cookie,
            json,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A hidden node joined to the cluster through `target`.
pub struct Session {
    pub node: Node,
    pub target: String,
    pub timeout: Duration,
    pub json: bool,
}

impl Session {
    /// Starts a hidden node named like `target` (long or short names) and
    /// connects to it; pang and a refused handshake are errors of their own.
    pub async fn join(opts: &OpsOpts) -> anyhow::Result<Session> {
        let name = args::unique_name("beam_peer_ops", args::host_like(&opts.node));
        let mut config = NodeConfig::new(name).hidden(true);
        if let Some(c) = &opts.cookie {
            config = config.cookie(c.clone());
        }
        config.connect_timeout = opts.timeout;
        let node = Node::start(config)
            .await
            .context("starting the hidden node")?;
        let s = Session {
            node,
            target: opts.node.clone(),
            timeout: opts.timeout,
            json: opts.json,
        };
        s.connect(&opts.node).await?;
        Ok(s)
    }

    pub async fn connect(&self, peer: &str) -> anyhow::Result<()> {
        match self.node.connect(peer).await {
            Ok(()) => Ok(()),
            Err(e) => Err(explain_connect(peer, e)),
        }
    }

    /// erpc:call on `node`, with the session's timeout.
    pub async fn rpc(
        &self,
        node: &str,
        m: &str,
        f: &str,
        args: Vec<Term>,
    ) -> Result<Term, RpcCallError> {
        self.node.rpc(node, m, f, args, self.timeout).await
    }

    /// [`Session::rpc`] with the failure as an error naming the call.
    pub async fn call(
        &self,
        node: &str,
        m: &str,
        f: &str,
        args: Vec<Term>,
    ) -> anyhow::Result<Term> {
        self.rpc(node, m, f, args)
            .await
            .map_err(|e| anyhow!("{m}:{f} on {node}: {}", rpc_text(&e)))
    }

    /// Whether the resolved process is alive (`erlang:is_process_alive/1`
    /// on its node).
    pub async fn is_alive(&self, r: &Resolved) -> anyhow::Result<bool> {
        let alive = self
            .call(
                &r.node,
                "erlang",
                "is_process_alive",
                vec![Term::Pid(r.pid.clone())],
            )
            .await?;
        Ok(term::is_atom(&alive, "true"))
    }

    /// The nodes `node` sees (`erlang:nodes/0`: visible ones, as the BEAM
    /// keeps a cluster's membership).
    pub async fn nodes_of(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let t = self.call(node, "erlang", "nodes", vec![]).await?;
        Ok(term::as_list(&t)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| term::as_atom(n).map(str::to_string))
            .collect())
    }

    /// The target and every node it sees.
    pub async fn cluster(&self) -> anyhow::Result<Vec<String>> {
        let mut all = vec![self.target.clone()];
        all.extend(self.nodes_of(&self.target).await?);
        Ok(all)
    }

    pub fn finish(self) {
        self.node.shutdown();
    }
}

fn explain_connect(peer: &str, e: ConnectError) -> anyhow::Error {
    match e {
        ConnectError::NotRegistered(_) => anyhow!(
            "pang: {peer} is not registered in its host's EPMD (is the node running, and named exactly so?)"
        ),
        ConnectError::Handshake { reason, .. } => anyhow!(
            "pang: {peer} refused the handshake ({reason}); is the cookie right? (--cookie, else ~/.erlang.cookie)"
        ),
        other => anyhow!("pang: {other}"),
    }
}

/// An rpc failure in words.
pub fn rpc_text(e: &RpcCallError) -> String {
    match e {
        RpcCallError::Exception { class, reason, .. } => format!("raised {class}:{reason}"),
        RpcCallError::Timeout => "no answer within the timeout".into(),
        RpcCallError::NoConnection => "no connection to the node".into(),
        other => other.to_string(),
    }
}

/// A pid as its own node prints it (`<0.I.S>`).
pub fn pid_text(p: &Pid) -> String {
    p.in_node(&p.node.name).to_string()
}

/// A term as `node` prints it.
pub fn term_text(t: &Term, node: &str) -> String {
    t.in_node(node).to_string()
}

/// `{M, F, A}` as `M:F/A`, other terms as they are.
fn mfa_text(t: &Term, node: &str) -> String {
    match term::as_tuple(t) {
        Some([m, f, Term::FixInteger(a)]) => match (term::as_atom(m), term::as_atom(f)) {
            (Some(m), Some(f)) => format!("{m}:{f}/{}", a.value),
            _ => term_text(t, node),
        },
        _ => term_text(t, node),
    }
}

/// The `{Key, Value}` pairs of a proplist.
fn proplist(t: &Term) -> BTreeMap<String, Term> {
    term::as_list(t)
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| match term::as_tuple(kv) {
            Some([k, v]) => term::as_atom(k).map(|k| (k.to_string(), v.clone())),
            _ => None,
        })
        .collect()
}

fn int_of(t: Option<&Term>) -> i64 {
    t.and_then(term::as_i64).unwrap_or(0)
}

// ------------------------------------------------------------------ status

/// One node as the session saw it.
struct NodeStatus {
    name: String,
    /// `Err` when the node did not answer.
    facts: Result<Facts, String>,
}

struct Facts {
    kind: String,
    release: String,
    uptime_ms: i64,
    processes: i64,
    memory: i64,
    sees: Vec<String>,
}

async fn facts(s: &Session, node: &str) -> anyhow::Result<Facts> {
    let h = health(s, node).await?;
    Ok(Facts {
        kind: h.kind,
        release: h.release,
        uptime_ms: h.uptime_ms,
        processes: h.processes,
        memory: h.memory,
        sees: s.nodes_of(node).await?,
    })
}

/// What `status` and `top` show of one node, from standard OTP calls.
pub(super) struct Health {
    pub(super) kind: String,
    pub(super) release: String,
    pub(super) uptime_ms: i64,
    pub(super) processes: i64,
    pub(super) memory: i64,
}

pub(super) async fn health(s: &Session, node: &str) -> anyhow::Result<Health> {
    s.connect(node).await?;
    let release = s
        .call(
            node,
            "erlang",
            "system_info",
            vec![term::atom("otp_release")],
        )
        .await?;
    let release = term::elixir::as_charlist(&release).unwrap_or_else(|| release.to_string());
    let kind = if release.starts_with("beam_peer") {
        "Rust".to_string()
    } else {
        format!("BEAM OTP {release}")
    };
    let wall = s
        .call(node, "erlang", "statistics", vec![term::atom("wall_clock")])
        .await?;
    let uptime_ms = term::as_tuple(&wall)
        .and_then(|t| t.first())
        .and_then(term::as_i64)
        .unwrap_or(0);
    let processes = s
        .call(
            node,
            "erlang",
            "system_info",
            vec![term::atom("process_count")],
        )
        .await?;
    let memory = s
        .call(node, "erlang", "memory", vec![term::atom("total")])
        .await?;
    Ok(Health {
        kind,
        release,
        uptime_ms,
        processes: term::as_i64(&processes).unwrap_or(0),
        memory: term::as_i64(&memory).unwrap_or(0),
    })
}

/// Every node reachable from the target (and every node any of them
/// names), each asked what it sees.
async fn survey(s: &Session) -> anyhow::Result<Vec<NodeStatus>> {
    let mut known: BTreeSet<String> = s.cluster().await?.into_iter().collect();
    let mut done: BTreeMap<String, NodeStatus> = BTreeMap::new();
    while let Some(next) = known.iter().find(|n| !done.contains_key(*n)).cloned() {
        let f = facts(s, &next).await.map_err(|e| format!("{e:#}"));
        if let Ok(f) = &f {
            known.extend(f.sees.iter().cloned());
        }
        done.insert(
            next.clone(),
            NodeStatus {
                name: next,
                facts: f,
            },
        );
    }
    Ok(done.into_values().collect())
}

/// Pairs of answering nodes that do not both see each other.
fn partitions(nodes: &[NodeStatus]) -> Vec<(String, String, bool, bool)> {
    let mut out = Vec::new();
    let ok: Vec<(&str, &Facts)> = nodes
        .iter()
        .filter_map(|n| n.facts.as_ref().ok().map(|f| (n.name.as_str(), f)))
        .collect();
    for (i, (a, fa)) in ok.iter().enumerate() {
        for (b, fb) in ok.iter().skip(i + 1) {
            let ab = fa.sees.iter().any(|x| x == b);
            let ba = fb.sees.iter().any(|x| x == a);
            if !(ab && ba) {
                out.push((a.to_string(), b.to_string(), ab, ba));
            }
        }
    }
    out
}

pub fn duration_text(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

pub async fn status(s: &Session) -> anyhow::Result<()> {
    let nodes = survey(s).await?;
    let parts = partitions(&nodes);
    if s.json {
        let list: Vec<Value> = nodes
            .iter()
            .map(|n| match &n.facts {
                Ok(f) => json!({
                    "node": n.name, "reachable": true, "kind": f.kind, "release": f.release,
                    "uptime_ms": f.uptime_ms, "processes": f.processes, "memory": f.memory,
                    "sees": f.sees,
                }),
                Err(e) => json!({"node": n.name, "reachable": false, "error": e}),
            })
            .collect();
        let p: Vec<Value> = parts
            .iter()
            .map(|(a, b, ab, ba)| json!({"a": a, "b": b, "a_sees_b": ab, "b_sees_a": ba}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"nodes": list, "partitions": p}))?
        );
        return Ok(());
    }
    let mut t = Table::new(&["NODE", "KIND", "UPTIME", "PROCESSES", "MEMORY"]).numeric(&[3, 4]);
    for n in &nodes {
        match &n.facts {
            Ok(f) => t.row(vec![
                n.name.clone(),
                f.kind.clone(),
                duration_text(f.uptime_ms),
                f.processes.to_string(),
                f.memory.to_string(),
            ]),
            Err(e) => t.row(vec![
                n.name.clone(),
                format!("unreachable: {e}"),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
    }
    print!("{}", t.render());
    println!();
    println!("connections (row sees column):");
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut headers = vec![""];
    headers.extend(names.iter().copied());
    let mut m = Table::new(&headers);
    for n in &nodes {
        let mut row = vec![n.name.clone()];
        for other in &names {
            row.push(match &n.facts {
                _ if *other == n.name => "-".into(),
                Ok(f) if f.sees.iter().any(|x| x == other) => "yes".into(),
                Ok(_) => "NO".into(),
                Err(_) => "?".into(),
            });
        }
        m.row(row);
    }
    print!("{}", m.render());
    println!();
    if parts.is_empty() {
        println!("partitions: none (every answering node sees every other)");
    } else {
        for (a, b, ab, ba) in &parts {
            let how = match (ab, ba) {
                (false, false) => "neither sees the other".to_string(),
                (true, false) => format!("{a} sees {b}, not the other way"),
                _ => format!("{b} sees {a}, not the other way"),
            };
            println!("partition: {a} <-/-> {b} ({how})");
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ ps

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Reductions,
    Memory,
    Mq,
}

/// One process as `ps` lists it.
pub struct ProcRow {
    pub node: String,
    pub pid: Pid,
    pub name: Option<String>,
    pub current: String,
    pub initial: String,
    pub mq: i64,
    pub memory: i64,
    pub reductions: i64,
}

impl ProcRow {
    pub fn key(&self, by: SortBy) -> i64 {
        match by {
            SortBy::Reductions => self.reductions,
            SortBy::Memory => self.memory,
            SortBy::Mq => self.mq,
        }
    }

    fn matches(&self, filter: &str) -> bool {
        let f = filter.to_lowercase();
        [
            self.name.clone().unwrap_or_default(),
            self.current.clone(),
            self.initial.clone(),
            pid_text(&self.pid),
            self.node.clone(),
        ]
        .iter()
        .any(|x| x.to_lowercase().contains(&f))
    }

    fn json(&self) -> Value {
        json!({
            "node": self.node, "pid": pid_text(&self.pid), "name": self.name,
            "current_function": self.current, "initial_call": self.initial,
            "message_queue_len": self.mq, "memory": self.memory, "reductions": self.reductions,
        })
    }
}

const PS_ITEMS: &[&str] = &[
    "registered_name",
    "current_function",
    "initial_call",
    "message_queue_len",
    "memory",
    "reductions",
];

/// Every process of `node` with its `ps` items (processes that exit
/// meanwhile are left out, as `process_info` says `undefined` for them).
pub async fn processes_of(s: &Session, node: &str) -> anyhow::Result<Vec<ProcRow>> {
    s.connect(node).await?;
    let pids = s.call(node, "erlang", "processes", vec![]).await?;
    let pids: Vec<Pid> = term::as_list(&pids)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Term::Pid(p) => Some(p),
            _ => None,
        })
        .collect();
    let items = term::list(PS_ITEMS.iter().map(|i| term::atom(i)).collect());
    let mut rows = Vec::with_capacity(pids.len());
    // A few calls in flight at once: each is a process on the node, and
    // a thousand at once would be felt there.
    for chunk in pids.chunks(16) {
        let calls = chunk.iter().map(|p| {
            s.rpc(
                node,
                "erlang",
                "process_info",
                vec![Term::Pid(p.clone()), items.clone()],
            )
        });
        let answers = futures_join(calls).await;
        for (p, a) in chunk.iter().zip(answers) {
            let Ok(info) = a else { continue };
            if term::is_atom(&info, "undefined") {
                continue;
            }
            let kv = proplist(&info);
            rows.push(ProcRow {
                node: node.to_string(),
                pid: p.clone(),
                name: kv
                    .get("registered_name")
                    .and_then(term::as_atom)
                    .map(str::to_string),
                current: kv
                    .get("current_function")
                    .map(|t| mfa_text(t, node))
                    .unwrap_or_default(),
                initial: kv
                    .get("initial_call")
                    .map(|t| mfa_text(t, node))
                    .unwrap_or_default(),
                mq: int_of(kv.get("message_queue_len")),
                memory: int_of(kv.get("memory")),
                reductions: int_of(kv.get("reductions")),
            });
        }
    }
    Ok(rows)
}

/// Runs the futures concurrently and returns their outputs in order.
pub async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut pending: Vec<(usize, std::pin::Pin<Box<F>>)> = futs.into_iter().enumerate().collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            std::task::Poll::Pending => true,
        });
        if pending.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

pub struct PsOpts {
    pub all: bool,
    pub sort: SortBy,
    pub limit: Option<usize>,
    pub filter: Option<String>,
}

pub async fn ps(s: &Session, o: &PsOpts) -> anyhow::Result<()> {
    let nodes = if o.all {
        s.cluster().await?
    } else {
        vec![s.target.clone()]
    };
    let mut rows = Vec::new();
    for n in &nodes {
        match processes_of(s, n).await {
            Ok(r) => rows.extend(r),
            // With --all one silent node must not hide the others.
            Err(e) if o.all => eprintln!("warning: {n}: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    if let Some(f) = &o.filter {
        rows.retain(|r| r.matches(f));
    }
    rows.sort_by_key(|r| (std::cmp::Reverse(r.key(o.sort)), r.node.clone(), r.pid.id));
    if let Some(l) = o.limit {
        rows.truncate(l);
    }
    if s.json {
        let v: Vec<Value> = rows.iter().map(ProcRow::json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", ps_table(&rows, o.all).render());
    Ok(())
}

pub fn ps_table(rows: &[ProcRow], with_node: bool) -> Table {
    let mut headers = vec![];
    if with_node {
        headers.push("NODE");
    }
    headers.extend(["PID", "NAME", "FUNCTION", "MQ", "MEMORY", "REDUCTIONS"]);
    let off = usize::from(with_node);
    let mut t = Table::new(&headers).numeric(&[3 + off, 4 + off, 5 + off]);
    for r in rows {
        let mut row = vec![];
        if with_node {
            row.push(r.node.clone());
        }
        row.extend([
            pid_text(&r.pid),
            r.name.clone().unwrap_or_default(),
            r.current.clone(),
            r.mq.to_string(),
            r.memory.to_string(),
            r.reductions.to_string(),
        ]);
        t.row(row);
    }
    t
}

// ------------------------------------------------------------------ one process

/// A process named on the command line: `<0.I.S>` or a registered name,
/// on `--on NODE` (default: the node joined through).
pub struct Resolved {
    pub node: String,
    pub pid: Pid,
    pub name: Option<String>,
}

impl Resolved {
    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({n}) on {}", pid_text(&self.pid), self.node),
            None => format!("{} on {}", pid_text(&self.pid), self.node),
        }
    }
}

/// [`resolve`], and an error when the process is not alive.
pub async fn resolve_alive(s: &Session, what: &str, on: Option<&str>) -> anyhow::Result<Resolved> {
    let r = resolve(s, what, on).await?;
    if !s.is_alive(&r).await? {
        bail!("{} is not alive", r.describe());
    }
    Ok(r)
}

pub async fn resolve(s: &Session, what: &str, on: Option<&str>) -> anyhow::Result<Resolved> {
    let node = on.unwrap_or(&s.target).to_string();
    if node != s.target {
        let cluster = s.cluster().await?;
        if !cluster.contains(&node) {
            bail!(
                "{node} is not in the cluster of {} (it sees: {})",
                s.target,
                cluster[1..].join(", ")
            );
        }
    }
    s.connect(&node).await?;
    if what.starts_with('<') {
        let Some(inner) = what.strip_prefix('<').and_then(|w| w.strip_suffix('>')) else {
            bail!("{what:?} is not a pid: write it as <0.ID.SERIAL>");
        };
        let parts: Vec<&str> = inner.split('.').collect();
        let valid = parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok());
        if !valid {
            bail!("{what:?} is not a pid: write it as <0.ID.SERIAL>");
        }
        if parts[0] != "0" {
            bail!(
                "{what} is a pid as another node prints it; give the node with --on NODE and the pid as <0.{}.{}>, as `ps` shows it",
                parts[1],
                parts[2]
            );
        }
        let pid = match s
            .rpc(
                &node,
                "erlang",
                "list_to_pid",
                vec![term::elixir::charlist(what)],
            )
            .await
        {
            Ok(p) => p,
            // Out of the node's range of pid numbers: no process has it.
            Err(RpcCallError::Exception { class, reason, .. })
                if class == "error" && term::is_atom(&reason, "badarg") =>
            {
                bail!("{what} on {node} is not alive (no pid of that node has this number)")
            }
            Err(e) => bail!("erlang:list_to_pid on {node}: {}", rpc_text(&e)),
        };
        let Term::Pid(pid) = pid else {
            bail!("{node} did not read {what} as a pid: {pid}");
        };
        return Ok(Resolved {
            node,
            pid,
            name: None,
        });
    }
    let atom = match term::parse::parse(what) {
        Ok(Term::Atom(a)) => a.name.to_string(),
        _ => bail!("{what:?} is neither a pid (<0.ID.SERIAL>) nor a registered name (an atom)"),
    };
    let found = s
        .call(&node, "erlang", "whereis", vec![term::atom(&atom)])
        .await?;
    match found {
        Term::Pid(pid) => Ok(Resolved {
            node,
            pid,
            name: Some(atom),
        }),
        _ => bail!("{atom} is not registered on {node}"),
    }
}

const INFO_ITEMS: &[&str] = &[
    "registered_name",
    "current_function",
    "initial_call",
    "status",
    "message_queue_len",
    "memory",
    "reductions",
    "links",
    "monitors",
    "monitored_by",
    "trap_exit",
];

pub async fn info(s: &Session, what: &str, on: Option<&str>) -> anyhow::Result<()> {
    let r = resolve(s, what, on).await?;
    let items = term::list(INFO_ITEMS.iter().map(|i| term::atom(i)).collect());
    let info = s
        .call(
            &r.node,
            "erlang",
            "process_info",
            vec![Term::Pid(r.pid.clone()), items],
        )
        .await?;
    if term::is_atom(&info, "undefined") {
        bail!("{} is not alive", r.describe());
    }
    let kv = proplist(&info);
    if s.json {
        let mut obj = serde_json::Map::new();
        obj.insert("node".into(), json!(r.node));
        obj.insert("pid".into(), json!(pid_text(&r.pid)));
        for item in INFO_ITEMS {
            let v = kv.get(*item);
            let j = match v {
                Some(t) if term::as_i64(t).is_some() => json!(term::as_i64(t)),
                Some(t)
                    if *item == "registered_name"
                        && term::as_list(t).is_some_and(|l| l.is_empty()) =>
                {
                    Value::Null
                }
                Some(t) if item.ends_with("function") || item.ends_with("call") => {
                    json!(mfa_text(t, &r.node))
                }
                Some(Term::Atom(a)) if a.name == "true" || a.name == "false" => {
                    json!(a.name == "true")
                }
                Some(t) if term::as_list(t).is_some() => json!(term::as_list(t)
                    .unwrap_or_default()
                    .iter()
                    .map(|x| term_text(x, &r.node))
                    .collect::<Vec<_>>()),
                Some(t) => json!(term_text(t, &r.node)),
                None => Value::Null,
            };
            obj.insert((*item).into(), j);
        }
        println!("{}", serde_json::to_string_pretty(&Value::Object(obj))?);
        return Ok(());
    }
    println!("{:<18} {}", "node", r.node);
    println!("{:<18} {}", "pid", pid_text(&r.pid));
    for item in INFO_ITEMS {
        let text = match kv.get(*item) {
            Some(t) if item.ends_with("function") || item.ends_with("call") => mfa_text(t, &r.node),
            Some(t) => term_text(t, &r.node),
            None => "-".into(),
        };
        println!("{item:<18} {text}");
    }
    Ok(())
}

pub async fn kill(s: &Session, what: &str, on: Option<&str>, reason: &str) -> anyhow::Result<()> {
    let reason_term =
        term::parse::parse(reason).map_err(|e| anyhow!("--reason {reason:?}: {e}"))?;
    let r = resolve_alive(s, what, on).await?;
    s.call(
        &r.node,
        "erlang",
        "exit",
        vec![Term::Pid(r.pid.clone()), reason_term.clone()],
    )
    .await?;
    // The exit signal is asynchronous: wait a little for its effect, so
    // the answer says what happened rather than what was asked.
    let mut gone = false;
    for _ in 0..50 {
        if !s.is_alive(&r).await? {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reason_text = term_text(&reason_term, &r.node);
    if s.json {
        println!(
            "{}",
            json!({"node": r.node, "pid": pid_text(&r.pid), "name": r.name, "reason": reason_text, "exited": gone})
        );
    } else if gone {
        println!("{} exited (exit signal {reason_text})", r.describe());
    } else {
        println!(
            "{} got the exit signal {reason_text} and is still alive (it traps exits, or the reason was normal)",
            r.describe()
        );
    }
    Ok(())
}

pub async fn send(s: &Session, what: &str, on: Option<&str>, message: &str) -> anyhow::Result<()> {
    let msg = term::parse::parse(message).map_err(|e| anyhow!("the message {message:?}: {e}"))?;
    let r = resolve(s, what, on).await?;
    let me = s.node.process();
    me.send(beam_peer::Dest::Pid(r.pid.clone()), msg.clone());
    // A call after the send, on the same connection: when it returns, the
    // node has read the message too (one connection carries both in order).
    let alive = s.is_alive(&r).await?;
    let text = term_text(&msg, &r.node);
    if s.json {
        println!(
            "{}",
            json!({"node": r.node, "pid": pid_text(&r.pid), "name": r.name, "message": text, "alive": alive})
        );
    } else {
        println!("sent {text} to {}", r.describe());
    }
    Ok(())
}
