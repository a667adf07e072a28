//! A DeltaCrdt replica running as a process on a node.
//!
//! The process is registered under the given name (Horde uses `<Name>.Crdt`),
//! so BEAM DeltaCrdt processes address it exactly as one of theirs. It owns a
//! [`Replica`] and carries out its actions: sends,
//! monitors, diffs for subscribers, and snapshots for an optional
//! [`Storage`]. Rust code drives it through a
//! [`CrdtHandle`]: put, delete, read, set_neighbours, subscribe.
//!
//! What it must never do: block its node (storage writes go through
//! `spawn_blocking`), or stop on a malformed message (it is logged and dropped;
//! the replica is unchanged).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::awlww_map::{Diff, OrdTerm};
use super::storage::Storage;
use super::sync::{Action, Config, MapSetPolicy, Replica, COMPACT_DIFF_DEPTH};
use crate::node::{Dest, Node};
use crate::process::{Process, ProcessExit};
use crate::term::{self, Pid, Term};

/// How to start a replica process.
pub struct CrdtOptions {
    /// Registered name, e.g. `Elixir.MyApp.Registry.Crdt`.
    pub name: String,
    /// Milliseconds between syncs (Horde: 300).
    pub sync_interval: u64,
    /// Where snapshots go; a replica with the same name restarts from it.
    pub storage: Option<Arc<dyn Storage>>,
    /// Merkle levels per diff step ([`Config::diff_depth`]); default
    /// [`COMPACT_DIFF_DEPTH`], 8 to send exactly what a BEAM replica sends.
    pub diff_depth: u32,
    /// The `MapSet` form of the values: by default the form of the Elixir
    /// neighbours (see [`MapSetPolicy`]).
    pub mapset: MapSetPolicy,
}

impl CrdtOptions {
    pub fn new(name: impl Into<String>) -> Self {
        CrdtOptions {
            name: name.into(),
            sync_interval: 300,
            storage: None,
            diff_depth: COMPACT_DIFF_DEPTH,
            mapset: MapSetPolicy::default(),
        }
    }
}

enum Command {
    Put(Term, Term),
    Delete(Term),
    Read(oneshot::Sender<BTreeMap<OrdTerm, Term>>),
    Get(Term, oneshot::Sender<Option<Term>>),
    SetNeighbours(Vec<Term>),
}

/// A cheap handle to a running replica process.
#[derive(Clone)]
pub struct CrdtHandle {
    pid: Pid,
    tx: mpsc::UnboundedSender<Command>,
    diffs: broadcast::Sender<Vec<Diff>>,
}

/// The replica process is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the CRDT process has stopped")]
pub struct Stopped;

impl CrdtHandle {
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Adds or replaces `key` (DeltaCrdt `:add`).
    pub fn put(&self, key: Term, value: Term) -> Result<(), Stopped> {
        self.tx.send(Command::Put(key, value)).map_err(|_| Stopped)
    }

    /// Removes `key` (DeltaCrdt `:remove`).
    pub fn delete(&self, key: Term) -> Result<(), Stopped> {
        self.tx.send(Command::Delete(key)).map_err(|_| Stopped)
    }

    /// Neighbours as DeltaCrdt takes them: pids or `{Name, Node}` tuples.
    pub fn set_neighbours(&self, neighbours: Vec<Term>) -> Result<(), Stopped> {
        self.tx
            .send(Command::SetNeighbours(neighbours))
            .map_err(|_| Stopped)
    }

    /// The current map (DeltaCrdt `to_map`), keys in Erlang term order.
    pub async fn read(&self) -> Result<BTreeMap<OrdTerm, Term>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Read(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// The current value of one key (DeltaCrdt `get`). Commands run in the
    /// order sent, so this also waits until earlier puts and deletes of this
    /// handle's clones have been applied.
    pub async fn get(&self, key: Term) -> Result<Option<Term>, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Get(key, tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every change of read values, as DeltaCrdt hands them to `on_diffs`.
    pub fn subscribe(&self) -> broadcast::Receiver<Vec<Diff>> {
        self.diffs.subscribe()
    }
}

/// Nanoseconds for last-writer-wins timestamps. DeltaCrdt on the BEAM uses
/// `System.monotonic_time(:nanosecond)` of the writer, which is not comparable
/// across nodes either; wall-clock nanoseconds keep Rust writers ordered among
/// themselves.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Starts a replica process on `node`, registered under `opts.name`.
pub fn start(node: &Node, opts: CrdtOptions) -> Result<CrdtHandle, crate::node::RegisterError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (diffs, _) = broadcast::channel(1024);
    let diffs_tx = diffs.clone();
    let name = opts.name.clone();
    let me = node.name().to_string();
    let pid = node.spawn(move |p| async move { run(p, opts, me, rx, diffs_tx).await });
    node.register(&name, &pid)?;
    Ok(CrdtHandle { pid, tx, diffs })
}

async fn run(
    mut p: Process,
    opts: CrdtOptions,
    node_name: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    diffs: broadcast::Sender<Vec<Diff>>,
) -> ProcessExit {
    let self_name = crate::tup![term::atom(&opts.name), term::atom(&node_name)];
    let restored = opts
        .storage
        .as_ref()
        .and_then(|s| match s.read(&opts.name) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                tracing::warn!(name = %opts.name, error = %e, "CRDT snapshot unreadable; starting empty");
                None
            }
        });
    let node_id = restored
        .as_ref()
        .map(|s| s.node_id)
        .unwrap_or_else(|| i64::from(rand::random::<u32>() % 1_000_000_000) + 1);
    let mut cfg = Config::horde(node_id, Term::Pid(p.pid().clone()), Some(self_name));
    cfg.sync_interval = opts.sync_interval;
    cfg.diff_depth = opts.diff_depth;
    cfg.list_own_keys = true;
    cfg.mapset = opts.mapset;
    let mut replica =
        match restored.and_then(|s| super::awlww_map::AwLwwMap::from_term(&s.crdt_state).ok()) {
            Some(state) => Replica::with_state(cfg, state),
            None => Replica::new(cfg),
        };
    // The replica keeps the sync schedule (ms since `started`; the first
    // sync one interval in). It is checked before anything else on every
    // turn: a steady stream of messages or commands must not starve it.
    let started = Instant::now();
    let first = opts.sync_interval.max(1);
    loop {
        let due = started + Duration::from_millis(replica.next_sync_at().unwrap_or(first));
        let now = Instant::now();
        let actions = if now >= due {
            // At `due` or later the elapsed milliseconds have reached it.
            replica.tick(started.elapsed().as_millis() as u64)
        } else {
            tokio::select! {
            m = p.receive_match(|_| true, Some(due - now)) => match m {
                Err(e) => return e.into(),
                // Timed out: the next turn syncs.
                Ok(None) => vec![],
                Ok(Some(msg)) => match replica.handle_message(&msg) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(name = %opts.name, error = %e, "CRDT message dropped");
                        vec![]
                    }
                },
            },
            c = commands.recv() => match c {
                None => return ProcessExit::Normal,
                Some(Command::Put(k, v)) => replica.put(k, v, now_ns()),
                Some(Command::Delete(k)) => replica.delete(k),
                Some(Command::SetNeighbours(n)) => replica.set_neighbours(n),
                Some(Command::Read(reply)) => {
                    let _ = reply.send(replica.read());
                    vec![]
                }
                Some(Command::Get(key, reply)) => {
                    let _ = reply.send(replica.get(&key).cloned());
                    vec![]
                }
            },
            }
        };
        for action in actions {
            let pending = perform(&mut p, action, &mut |t, r| replica.bind_monitor(t, r));
            match pending {
                None => {}
                Some(Action::Diffs(d)) if !d.is_empty() => {
                    let _ = diffs.send(d);
                }
                Some(Action::Diffs(_)) => {}
                Some(Action::Persist) => {
                    if let Some(storage) = &opts.storage {
                        let snapshot = super::storage::Snapshot {
                            node_id,
                            sequence_number: 0,
                            crdt_state: replica.storage_term(),
                            merkle_map: None,
                        };
                        let storage = storage.clone();
                        let name = opts.name.clone();
                        // Keep snapshot order: wait for the write, off the runtime threads.
                        let written =
                            tokio::task::spawn_blocking(move || storage.write(&name, &snapshot))
                                .await;
                        if !matches!(written, Ok(Ok(()))) {
                            tracing::warn!(name = %opts.name, "CRDT snapshot write failed");
                        }
                    }
                }
                Some(other) => tracing::debug!(?other, "CRDT action not carried out"),
            }
        }
    }
}

/// Carries out the process-level replica actions (send, monitor, demonitor)
/// on behalf of `p`, telling `bind` each monitor's reference; hands back the
/// ones only the owner knows how to do (diffs, persist).
pub(crate) fn perform(
    p: &mut Process,
    action: Action,
    bind: &mut dyn FnMut(&Term, Term),
) -> Option<Action> {
    match action {
        Action::Send { to, msg } => {
            match dest_of(&to) {
                Some(dest) => p.send(dest, msg),
                None => tracing::debug!(to = %to, "CRDT send to a non-address dropped"),
            }
            None
        }
        Action::Monitor { target } => {
            if let Some(dest) = dest_of(&target) {
                let r = p.monitor(dest);
                bind(&target, Term::Reference(Box::new(r)));
            }
            None
        }
        Action::Demonitor { monitor_ref, .. } => {
            if let Some(Term::Reference(r)) = monitor_ref {
                p.demonitor(&r, true);
            }
            None
        }
        Action::AskMapSetForm { node, reply_to } => {
            ask_mapset_form(p, node, reply_to);
            None
        }
        other => Some(other),
    }
}

/// How long a node may take to say what its `MapSet.new([])` is.
const MAPSET_FORM_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks `node` for its `MapSet.new([])` in a task of its own and sends the
/// answer to `p` as `{MAPSET_FORM_ANSWER, node, answer}`, `answer` being
/// `:undefined` for a node that is not an Elixir node (`undef`, `notsup`)
/// or did not answer in time. The replica goes on syncing meanwhile.
fn ask_mapset_form(p: &Process, node: String, reply_to: Term) {
    let rust = p.node().clone();
    let me = p.pid().clone();
    let Some(to) = dest_of(&reply_to) else {
        return;
    };
    tokio::spawn(async move {
        let answer = rust
            .rpc(
                &node,
                "Elixir.MapSet",
                "new",
                vec![term::nil()],
                MAPSET_FORM_TIMEOUT,
            )
            .await;
        let answer = match answer {
            Ok(set) => set,
            Err(e) => {
                tracing::debug!(%node, error = %e, "node gave no MapSet: not counted as an Elixir node");
                term::atom("undefined")
            }
        };
        let msg = crate::tup![
            term::atom(super::sync::MAPSET_FORM_ANSWER),
            term::atom(&node),
            answer
        ];
        rust.send(&me, &to, msg);
    });
}

/// A pid or a `{Name, Node}` tuple as a destination.
pub(crate) fn dest_of(t: &Term) -> Option<Dest> {
    match t {
        Term::Pid(p) => Some(Dest::Pid(p.clone())),
        _ => match term::as_tuple(t) {
            Some([name, node]) => Some(Dest::Remote(
                term::as_atom(name)?.to_string(),
                term::as_atom(node)?.to_string(),
            )),
            _ => None,
        },
    }
}
