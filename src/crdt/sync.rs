//! DeltaCrdt 0.6.4's process protocol (`DeltaCrdt.CausalCrdt`) as a sans-I/O
//! state machine: one [`Replica`] is what one DeltaCrdt process is on a BEAM
//! node, minus the process.
//!
//! What it owns: the replica's [`AwLwwMap`] state, the [`MerkleMap`] of
//! `key => raw AWLWWMap entries` that DeltaCrdt keeps next to it, the
//! neighbour set, which neighbours are monitored, and which have a sync
//! round outstanding. Every input is a method call (a decoded message, a
//! local operation, the current time) and every effect is an [`Action`] the
//! caller carries out: sending a term, monitoring or demonitoring a
//! neighbour, handing read diffs to the owner, writing storage.
//!
//! What it never does: I/O, reading a clock (time and write timestamps are
//! passed in), creating pids or references (the runtime does, and may tell
//! the replica a monitor's reference with [`Replica::bind_monitor`]),
//! panicking on a peer's term, or changing its state when a message is
//! rejected.
//!
//! ## The round, as the BEAM runs it
//! On every sync (timer tick, `:sync`, `set_neighbours`) the replica monitors
//! each neighbour it does not monitor yet and sends each monitored
//! neighbour `{:diff, %DeltaCrdt.CausalCrdt.Diff{}}` addressed exactly as the
//! neighbour was given, carrying the top 8 levels of its merkle tree and its
//! causal context. Each side then swaps `from`/`to` and answers with its own
//! subtrees at the cut locations until one side has the final key list:
//! - no keys: the side acks the originator (`{:ack_diff, neighbour}`);
//! - the neighbour finished: it asks the originator for values
//!   (`{:get_diff, diff, keys}`) and acks; the originator ships its values
//!   `{:diff, %AWLWWMap{dots: diff.dots, value: taken}, keys}` to the
//!   neighbour and acks itself;
//! - the originator finished: it ships its values and acks itself.
//!
//! Values therefore only ever flow originator → neighbour within a round;
//! the opposite direction is the neighbour's own round.
//!
//! ## Causal contexts we can vouch for ([`Config::exact_context`], on by default)
//! Upstream keeps one compressed context per replica (`node_id => max
//! counter`) and folds into it every dot it meets: the dots of a local write
//! and the whole context of every state a peer ships, whatever keys that
//! state carried. The context then claims dots the replica never received.
//! Such a dot counts as removed: its entry is refused when it arrives, and
//! the next state this replica ships for its key (absent here, present at
//! the peer) deletes it there. Seen in `:active` redistribution: a member
//! that overwrote the relinquished entry `{x, 49}`, received ahead of
//! `{x, 48}`, lost `{x, 48}`'s child on every member (delta_crdt_ex #65 is
//! the same loss through cut key lists). A replica with exact contexts:
//! - keeps [`Seen`], the dots it really saw (a contiguous prefix per node
//!   plus the dots above it), and judges every incoming entry by it; a
//!   peer's compressed context is used only as upstream's join uses it,
//!   to drop our entries of the keys that peer shipped, never absorbed;
//! - records per key the dots that key lost ([`Tombstones`]);
//! - to a peer that keeps exact contexts too (it marks what it sends in our
//!   rounds with `beam_peer_exact`), ships each key with the context it can
//!   stand behind for that key: its vouched prefix, raised by what it knows
//!   of that key (a node's write to a key removes that node's earlier dots
//!   under it). Keys with the same context share one `{:diff, state, keys}`;
//!   a gap-free replica ships one message per round, as upstream;
//! - to an upstream peer, which folds any context into its own for every
//!   key, ships upstream's way: the round-start context, whose keys were
//!   all compared in the round. Ours holds only what we saw, never a
//!   peer's claims, so it claims less than upstream's would;
//! - puts its vouched prefix in its round-start diffs (`vouched_dots`, a
//!   field upstream carries along untouched), and takes a peer's as seen
//!   when that peer's round finds no key differing: the peer saw those
//!   dots and holds exactly our entries, so the ones we lack were removed.
//!   That fills the gaps left by entries written and removed between two
//!   syncs, and frees what was kept above them ([`Replica::exact_backlog`]).
//!   Upstream peers send no such field; their contexts are never trusted,
//!   so next to BEAM members dots of theirs that were never seen here stay
//!   held one by one (a few bytes each).
//!
//! Every message stays upstream's; BEAM peers still inflate their own
//! contexts and can still lose entries they never received, which no peer
//! can prevent for them.
//!
//! ## Pushed writes ([`Config::push_writes`], Rust peers only)
//! A round finds what differs by walking both trees, and its steps ship
//! subtrees whose leaves carry values. While both sides take writes all
//! along (a member starting thousands of children, half of them proxied
//! to the other), every round finds about as many keys differing as were
//! written since the last one, on both sides, and walks to each of them
//! with values on the wire at every step: several times the bytes and the
//! work of shipping each write once. So, to a neighbour known to keep
//! exact contexts (one that marked its steps in our rounds
//! `beam_peer_exact`; forgotten at its DOWN), each sync first ships the
//! keys written here since the last sync as the end of a round ships them
//! (`{:diff, state, keys}`, each key with the context we vouch for about
//! it: the receiver judges entries by what it saw and absorbs nothing, so
//! an unasked state is as safe as an asked one). After a push of
//! [`PUSH_INSTEAD_OF_ROUND`] keys or more no round starts with that
//! neighbour this tick, unless none began for
//! [`MAX_INTERVALS_WITHOUT_ROUND`] intervals: rounds stay the repair for
//! anything a push did not bring, and run as before once writes calm
//! down. BEAM peers never mark their steps, so they get no pushes and
//! every round, exactly as upstream.
//!
//! ## Deliberate differences from upstream (all documented on the items)
//! - [`Config::diff_depth`] sets how deep the subtrees we send are cut;
//!   [`Config::horde`] keeps upstream's 8, replica processes default to
//!   [`COMPACT_DIFF_DEPTH`]. Upstream peers compare any subtree they get,
//!   so the two interoperate; only the number and size of steps change.
//! - [`Config::list_own_keys`]: where the peer's side of a step is empty,
//!   replica processes answer with their keys there instead of their cut
//!   subtree (which upstream would send, only to get the same keys back
//!   after more steps that carry the values). Off in [`Config::horde`].
//! - Upstream 0.6.4 drops every successfully sent entry from
//!   `outstanding_syncs` at the end of each sync (it keeps only failed
//!   sends), so in practice it re-sends a `{:diff, ..}` on every tick even
//!   while a round is still running. By default this replica keeps one
//!   outstanding round per neighbour, cleared by an ack or a DOWN, as the
//!   data structure intends, or given up after [`STALE_ROUND_INTERVALS`]
//!   intervals without either; [`Config::resend_while_outstanding`] restores
//!   the upstream behaviour.
//! - Upstream's originator acks itself with a message, also after a
//!   `{:get_diff, ..}` whose sender acks it as well: two acks for one round,
//!   the second late. This replica ends its own rounds in place and takes
//!   the asker's ack alone after a `get_diff`, so each round of ours ends
//!   once and a left-over ack never ends the next one (see `end_round`).
//!   Peers receive exactly what upstream sends them; only messages to
//!   ourselves are gone.
//! - Messages upstream would crash on (a DOWN for an unknown monitor, a diff
//!   whose `originator` is neither end, a malformed term) are rejected with
//!   a [`SyncError`] and leave the replica as it was, with nothing sent.
//! - The replica never syncs with itself (by pid or by its own name tuple);
//!   upstream only skips its own pid and would run a pointless round
//!   against its own name.
//! - Neighbours are iterated in Erlang term order, which is the order
//!   upstream's maps iterate in up to 32 neighbours; beyond that BEAM maps
//!   iterate in hash order, so the order of the `{:diff, ..}` sends of one
//!   sync may differ (the set sent is the same).
//! - DOWNs are matched by the reference the runtime reported with
//!   [`Replica::bind_monitor`], or else by the DOWN's object (the neighbour
//!   as monitored), since the replica cannot create references itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::crdt::awlww_map::{self, AwLwwMap, OrdTerm, RawChange, Tombstones};
use crate::crdt::dots::{Context, Dot, Dots, Seen};
use crate::crdt::merkle::{DiffStep, MerkleError, MerkleMap, PartialDiff};
use crate::crdt::{CrdtTermError, NodeId};
use crate::term::elixir::{self, MapSetForm, StructBuilder};
use crate::term::{as_list, as_tuple, atom, is_atom, list, tuple, Term};

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;

/// The subtree depth DeltaCrdt uses for every diff step.
pub const DIFF_DEPTH: u32 = 8;

/// A continuation comparing more subtrees than this is a wide difference,
/// answered at [`DIFF_DEPTH`] even with a smaller [`Config::diff_depth`].
pub const WIDE_DIFF_LOCATIONS: usize = 4;

/// The subtree depth Rust replica processes use by default (see
/// [`Config::diff_depth`]): 4 levels (at most 31 nodes) per location per
/// step keeps an idle round to a few hundred bytes and a one-key round to a
/// few kilobytes whatever the number of keys, for about twice the steps.
pub const COMPACT_DIFF_DEPTH: u32 = 4;

/// Module name of the sync message struct.
pub const CAUSAL_DIFF_STRUCT: &str = "DeltaCrdt.CausalCrdt.Diff";

/// `max_sync_size`: how many keys (and, for a continuation, keys plus
/// subtrees) one message may carry. Horde passes `:infinite`; DeltaCrdt's
/// own default is 200. A finite limit loses data (delta_crdt_ex#65): the
/// receiver joins the whole context of a truncated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSyncSize {
    Infinite,
    /// Upstream refuses 0 at start-up; here 0 is treated as 1.
    Limit(usize),
}

impl MaxSyncSize {
    fn limit(self) -> Option<usize> {
        match self {
            MaxSyncSize::Infinite => None,
            MaxSyncSize::Limit(n) => Some(n.max(1)),
        }
    }
}

/// Construction parameters of a [`Replica`].
#[derive(Debug, Clone)]
pub struct Config {
    /// This replica's DeltaCrdt node id (random in 1..=1_000_000_000 upstream).
    pub node_id: NodeId,
    /// The pid peers answer to (`originator`/`from` of our rounds).
    pub self_pid: Term,
    /// Our own name as peers address us (`{Name, node}`); never synced with.
    pub self_name: Option<Term>,
    /// Milliseconds between periodic syncs (Horde: 300).
    pub sync_interval: u64,
    pub max_sync_size: MaxSyncSize,
    /// Upstream 0.6.4 behaviour: send a new round on every sync even while
    /// one is outstanding. Off by default (one round per neighbour).
    pub resend_while_outstanding: bool,
    /// How many levels of our merkle tree each diff message carries below
    /// each location (1..=32). Upstream always sends 8, which makes every
    /// idle round carry the top 255 nodes and a one-key round carry up to
    /// 256 leaves (values included) per step once the map is large. Any
    /// depth is understood by upstream peers, which compare whatever
    /// subtrees they get and answer with their own 8 levels; a smaller depth
    /// only means more, smaller steps.
    pub diff_depth: u32,
    /// Answer a step with our keys wherever the peer's side is empty,
    /// instead of our cut subtree
    /// ([`MerkleMap::continue_partial_diff_listing_own`]): a new or empty
    /// replica gets a large map in a few small steps instead of steps that
    /// ship the whole tree with its values first. Off in [`Config::horde`]
    /// (exactly upstream's steps); on in replica processes.
    pub list_own_keys: bool,
    /// Which `MapSet` layout our states, deltas and merkle hashes use
    /// (Elixir 1.14 and 1.15+ lay MapSets out differently; see
    /// [`MapSetPolicy`]).
    pub mapset: MapSetPolicy,
    /// Keep an exact record of the dots seen ([`Seen`]) and claim on the
    /// wire only what it vouches for (see "Causal contexts we can vouch
    /// for" in the module docs). On in [`Config::horde`]; off only to
    /// replay upstream's exact messages, losses included.
    pub exact_context: bool,
    /// Answer a step from above the level where our nodes hold about two
    /// keys by cutting there rather than [`Config::diff_depth`] further
    /// down ([`Config::step_depth`]). With 8 levels under each of the 256
    /// locations the first step compares, a step from a map of 10,000 keys
    /// ships nearly every leaf, values included, as soon as a few hundred
    /// keys changed since the last round: each round then costs the whole
    /// map, and a member taking writes all along syncs in time growing with
    /// its size. Cut where the nodes are still inner ones (hashes only),
    /// the next step ships only the leaves under nodes that differ. Upstream
    /// peers compare any subtree they get (as with `diff_depth`); only the
    /// number and size of steps change. Off in [`Config::horde`].
    pub size_aware_steps: bool,
    /// Push local writes to neighbours that keep exact contexts: every
    /// sync, the keys written here since the last one go to each such
    /// neighbour as `{:diff, state, keys}` (what a round ends with), and
    /// after a push of [`PUSH_INSTEAD_OF_ROUND`] keys or more no round
    /// starts with them that tick (see "Pushed writes" in the module
    /// docs). Only peers that mark what they send in our rounds
    /// `beam_peer_exact` get pushes; everyone else syncs upstream's way.
    /// Off in [`Config::horde`].
    pub push_writes: bool,
}

/// How a replica picks the `MapSet` form it writes and hashes.
///
/// A BEAM DeltaCrdt replica rebuilds every entry it joins with its own
/// Elixir's `MapSet` and hashes that into its merkle tree, so our tree only
/// matches a peer's (and an idle sync only moves nothing) when we build
/// MapSets exactly as its Elixir does. Elixir 1.14 and 1.15+ differ (see
/// [`MapSetForm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapSetPolicy {
    /// Follow the Elixir nodes among the neighbours: the runtime asks each
    /// neighbour's node once for its `MapSet.new([])` ([`Action::AskMapSetForm`],
    /// answered with [`Replica::peer_mapset_form`]); the replica uses the
    /// form most of them use, the newer form on a tie, and `initial` while
    /// no Elixir node has answered (nodes that are not Elixir nodes, such
    /// as Rust members, have no say). A cluster that mixes Elixir 1.14 and
    /// 1.15+ members never settles, in Horde itself as with us; the
    /// majority at least keeps most of the members' hashes equal to ours.
    Follow { initial: MapSetForm },
    /// Always this form, whatever the peers run.
    Fixed(MapSetForm),
}

impl Default for MapSetPolicy {
    /// Follow the peers, starting with the Elixir 1.15+ form most users run.
    fn default() -> Self {
        MapSetPolicy::Follow {
            initial: MapSetForm::Sets2,
        }
    }
}

/// The tag of the message a runtime sends its replica with the answer to
/// an [`Action::AskMapSetForm`]: `{TAG, node, answer}`, `answer` being what
/// the node's `MapSet.new([])` returned, or `:undefined` when it is not an
/// Elixir node (or did not answer).
pub const MAPSET_FORM_ANSWER: &str = "$beam_peer_mapset_form";

impl Config {
    /// Horde's defaults: `sync_interval: 300`, `max_sync_size: :infinite`.
    pub fn horde(node_id: NodeId, self_pid: Term, self_name: Option<Term>) -> Config {
        Config {
            node_id,
            self_pid,
            self_name,
            sync_interval: 300,
            max_sync_size: MaxSyncSize::Infinite,
            resend_while_outstanding: false,
            diff_depth: DIFF_DEPTH,
            list_own_keys: false,
            mapset: MapSetPolicy::default(),
            exact_context: true,
            size_aware_steps: false,
            push_writes: false,
        }
    }

    /// The depth diff messages are cut at, within what upstream accepts.
    fn depth(&self) -> u32 {
        self.diff_depth.clamp(1, crate::crdt::merkle::KEY_BITS)
    }

    /// The depth for answering a continuation that compares `locations`
    /// subtrees: [`Config::diff_depth`] while the difference is narrow (a
    /// few changed keys), at least upstream's 8 once it is wide, where more
    /// steps would resend the growing key list more often.
    fn step_depth(&self, locations: usize) -> u32 {
        if locations > WIDE_DIFF_LOCATIONS {
            self.depth().max(DIFF_DEPTH)
        } else {
            self.depth()
        }
    }

    /// With [`Config::size_aware_steps`], the level our subtrees of a map
    /// of `len` keys are cut at when they start above it:
    /// `floor(log2(len)) - 1`, where a node holds two to four keys and only
    /// about one key in ten sits in a leaf yet. 0 (no such cut) otherwise.
    fn settle_level(&self, len: usize) -> u32 {
        match self.size_aware_steps && len >= 2 {
            true => len.ilog2().saturating_sub(1),
            false => 0,
        }
    }
}

/// An effect for the caller to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `send(to, msg)`: `to` is a pid or a `{name, node}` tuple, exactly as
    /// DeltaCrdt addresses it.
    Send { to: Term, msg: Term },
    /// `Process.monitor(target)`; report the reference with
    /// [`Replica::bind_monitor`] if DOWNs should be matched by reference.
    Monitor { target: Term },
    /// `Process.demonitor(ref, [:flush])` for the monitor of `target`.
    Demonitor {
        target: Term,
        monitor_ref: Option<Term>,
    },
    /// Read-value changes for the owner (`on_diffs`; Horde turns them into
    /// `{:crdt_update, diffs}`). Emitted whenever raw entries changed, so it
    /// can be empty, as upstream.
    Diffs(Vec<awlww_map::Diff>),
    /// The state changed (or may have: upstream writes after every join);
    /// write [`Replica::storage_term`] if storage is configured.
    Persist,
    /// Ask `node` (once) what its `MapSet.new([])` is, and send the answer
    /// as `{MAPSET_FORM_ANSWER, node, answer}` to `reply_to`, this replica's
    /// own pid, so it reaches the replica by the path all its messages take
    /// (see [`MapSetPolicy::Follow`]).
    AskMapSetForm { node: String, reply_to: Term },
}

/// Why a message was rejected. The replica is unchanged and nothing was sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    #[error("unknown message")]
    Unknown,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("bad CRDT term: {0}")]
    Term(#[from] CrdtTermError),
    #[error("merkle diff failed: {0}")]
    Merkle(#[from] MerkleError),
    #[error("diff has an originator that is neither end of it")]
    NoOriginator,
    #[error("DOWN for a monitor we do not hold")]
    UnknownMonitor,
}

/// A decoded `%DeltaCrdt.CausalCrdt.Diff{}`. Everything but the
/// continuation is kept as the exact term received, because it travels back
/// unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncDiff {
    pub continuation: PartialDiff,
    /// The originator's causal context when the round started.
    pub dots: Term,
    pub originator: Term,
    pub from: Term,
    pub to: Term,
    /// `vouched_dots`, a field of ours that upstream carries along untouched
    /// (it updates the struct with `%Diff{diff | ...}`): the originator's
    /// vouched prefix ([`Seen::prefix`]) at the round start, sent only by a
    /// replica that keeps exact contexts and never cuts its lists.
    pub vouched: Option<Term>,
    /// `beam_peer_exact: true`, set by a replica with exact contexts on
    /// what it sends in a round it did not start: the originator then
    /// knows the peer it ships to judges by what it saw and absorbs no
    /// context, so it can ship each key with the context it vouches for
    /// about that key. Upstream carries it along untouched.
    pub exact_peer: bool,
}

/// Our marker field for [`SyncDiff::exact_peer`].
const EXACT_PEER_FIELD: &str = "beam_peer_exact";

/// The name of our own field in `%DeltaCrdt.CausalCrdt.Diff{}`.
const VOUCHED_FIELD: &str = "vouched_dots";

impl SyncDiff {
    pub fn to_term(&self) -> Term {
        let b = StructBuilder::new(CAUSAL_DIFF_STRUCT)
            .field("continuation", self.continuation.to_term())
            .field("dots", self.dots.clone())
            .field("originator", self.originator.clone())
            .field("from", self.from.clone())
            .field("to", self.to.clone());
        let b = match &self.vouched {
            Some(v) => b.field(VOUCHED_FIELD, v.clone()),
            None => b,
        };
        if self.exact_peer {
            b.field(EXACT_PEER_FIELD, atom("true")).build()
        } else {
            b.build()
        }
    }

    pub fn from_term(term: &Term) -> Result<SyncDiff, SyncError> {
        if !elixir::is_struct(term, CAUSAL_DIFF_STRUCT) {
            return Err(SyncError::Malformed("%DeltaCrdt.CausalCrdt.Diff{}"));
        }
        let field = |name| {
            elixir::struct_field(term, name).ok_or(SyncError::Malformed("diff field missing"))
        };
        Ok(SyncDiff {
            // Parsed where it lies: it can be large, and only its parsed
            // form is kept.
            continuation: PartialDiff::from_term(field("continuation")?)?,
            dots: field("dots")?.clone(),
            originator: field("originator")?.clone(),
            from: field("from")?.clone(),
            to: field("to")?.clone(),
            vouched: elixir::struct_field(term, VOUCHED_FIELD).cloned(),
            exact_peer: elixir::struct_field(term, EXACT_PEER_FIELD)
                .is_some_and(|t| is_atom(t, "true")),
        })
    }

    /// What the receiver of a diff does first: it is now `from`.
    fn reversed(mut self) -> SyncDiff {
        std::mem::swap(&mut self.from, &mut self.to);
        self
    }

    /// The ack that ends a round: to the originator, naming the neighbour.
    /// `None` when neither end is the originator (upstream crashes there).
    fn ack(&self) -> Option<Action> {
        let neighbour = if self.originator == self.from {
            &self.to
        } else if self.originator == self.to {
            &self.from
        } else {
            return None;
        };
        Some(Action::Send {
            to: self.originator.clone(),
            msg: tuple(vec![atom("ack_diff"), neighbour.clone()]),
        })
    }
}

/// One DeltaCrdt replica; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    cfg: Config,
    state: AwLwwMap,
    /// Changes only mark their paths stale; hashes are brought up to date
    /// right before a diff reads them (as upstream), so a burst of n writes
    /// hashes each shared upper node once instead of n times.
    merkle: MerkleMap,
    /// Term order, as Elixir's MapSet iterates small sets.
    neighbours: BTreeSet<OrdTerm>,
    /// Monitored neighbours, with the reference once the runtime bound it.
    monitors: BTreeMap<OrdTerm, Option<Term>>,
    /// Neighbours with a round of ours running, and when (ms) it last moved
    /// (started, or a message of it came back).
    outstanding: BTreeMap<OrdTerm, u64>,
    next_sync_at: Option<u64>,
    /// The time of the last tick (ms).
    now: u64,
    /// The MapSet form our terms and merkle hashes use now.
    form: MapSetForm,
    /// Per neighbour node: asked and not answered yet (`None`), or
    /// answered (`Some(None)`: not an Elixir node).
    peer_forms: BTreeMap<String, Option<Option<MapSetForm>>>,
    /// With [`Config::exact_context`]: what we really saw, and per key what
    /// it lost (see the module docs).
    exact: Option<Exact>,
    /// With [`Config::push_writes`]: keys written here since the last
    /// sync, duplicates included.
    unpushed: Vec<Term>,
    /// Neighbours that marked what they sent in a round of ours
    /// `beam_peer_exact` (they keep exact contexts), until their DOWN.
    exact_peers: BTreeSet<OrdTerm>,
    /// When (ms) a round of ours with each neighbour last began.
    round_began: BTreeMap<OrdTerm, u64>,
}

/// The exact causal knowledge of a replica with [`Config::exact_context`].
#[derive(Debug, Clone, PartialEq)]
struct Exact {
    seen: Seen,
    tombstones: Tombstones,
}

/// A round of ours that has seen no message of it for this many sync
/// intervals is given up and a new one starts: a message of it may have been
/// lost without a DOWN (a peer that dropped a message it could not read), and
/// one lost message must not stop the syncs to that neighbour for good. The
/// clock restarts with every message of the round, so a long round that is
/// still moving (a first sync of 100,000 keys on a loaded machine) is never
/// abandoned and restarted: that would repeat its work over and over.
pub const STALE_ROUND_INTERVALS: u64 = 10;

/// With [`Config::push_writes`], a sync that pushed this many keys or more
/// to a neighbour starts no round with it: a round now would find about
/// as many keys differing on the neighbour's side (its own writes of the
/// same burst, not pushed yet) and ship subtrees with their values, step
/// after step, while the pushes alone carry every write once. Below it a
/// round is cheap and runs as usual.
pub const PUSH_INSTEAD_OF_ROUND: usize = 32;

/// ...but a round still begins with each neighbour at least this many
/// sync intervals after the last one, however many writes keep coming:
/// rounds are what repairs anything a push did not bring (a message lost
/// with a connection, a write that arrived from elsewhere).
pub const MAX_INTERVALS_WITHOUT_ROUND: u64 = 10;

impl PartialEq for Config {
    fn eq(&self, o: &Config) -> bool {
        self.node_id == o.node_id
            && self.self_pid == o.self_pid
            && self.self_name == o.self_name
            && self.sync_interval == o.sync_interval
            && self.max_sync_size == o.max_sync_size
            && self.resend_while_outstanding == o.resend_while_outstanding
            && self.diff_depth == o.diff_depth
            && self.list_own_keys == o.list_own_keys
            && self.mapset == o.mapset
            && self.exact_context == o.exact_context
            && self.size_aware_steps == o.size_aware_steps
            && self.push_writes == o.push_writes
    }
}

impl Replica {
    /// A fresh replica (empty state), as DeltaCrdt starts without storage.
    pub fn new(cfg: Config) -> Replica {
        Replica::with_state(cfg, AwLwwMap::new())
    }

    /// A replica restored from `state` (e.g. read from storage); the merkle
    /// map is rebuilt from it, which gives the same tree as upstream's stored
    /// one because the tree shape depends only on the contents.
    pub fn with_state(cfg: Config, state: AwLwwMap) -> Replica {
        let form = match cfg.mapset {
            MapSetPolicy::Follow { initial } => initial,
            MapSetPolicy::Fixed(form) => form,
        };
        let merkle = merkle_of(&state, form);
        let mut state = state;
        let exact = cfg.exact_context.then(|| {
            // A restored context vouches only for our own dots (we made each
            // of them) and the entries we hold; the rest of it may be claims.
            let mut seen = Seen::new();
            seen.fill_to(cfg.node_id, state.dots.compress().max(cfg.node_id));
            for entries in state.value.values() {
                for d in entries.values().flat_map(|set| set.iter()) {
                    seen.insert(*d);
                }
            }
            state.dots = Dots::Context(seen.max());
            Exact {
                seen,
                tombstones: Tombstones::new(),
            }
        });
        Replica {
            exact,
            cfg,
            state,
            merkle,
            neighbours: BTreeSet::new(),
            monitors: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            now: 0,
            next_sync_at: None,
            form,
            peer_forms: BTreeMap::new(),
            unpushed: Vec::new(),
            exact_peers: BTreeSet::new(),
            round_began: BTreeMap::new(),
        }
    }

    /// The MapSet form our states and merkle hashes use now.
    pub fn mapset_form(&self) -> MapSetForm {
        self.form
    }

    /// What each neighbour node answered about its MapSet form so far:
    /// `Some(form)` for an Elixir node, `None` for any other node.
    pub fn peer_mapset_forms(&self) -> impl Iterator<Item = (&str, Option<MapSetForm>)> {
        self.peer_forms
            .iter()
            .filter_map(|(n, a)| a.map(|f| (n.as_str(), f)))
    }

    /// Records what `node`'s `MapSet.new([])` returned (`answer`; anything
    /// that is not a MapSet means "not an Elixir node") and re-decides our
    /// form. Ignored for nodes we did not ask. When the form changes the
    /// merkle map is rebuilt, so the next round compares like with like.
    pub fn peer_mapset_form(&mut self, node: &str, answer: &Term) {
        let Some(slot) = self.peer_forms.get_mut(node) else {
            return;
        };
        *slot = Some(MapSetForm::of(answer));
        self.decide_form();
    }

    /// The form [`MapSetPolicy`] picks from the answers we hold, applied.
    fn decide_form(&mut self) {
        let form = match self.cfg.mapset {
            MapSetPolicy::Fixed(form) => form,
            MapSetPolicy::Follow { initial } => {
                let mut votes: BTreeMap<MapSetForm, usize> = BTreeMap::new();
                for form in self.peer_forms.values().flatten().flatten() {
                    *votes.entry(*form).or_default() += 1;
                }
                // Most votes; on a tie the larger form, which is the newer
                // Elixir's (`MapSetForm` orders old to new).
                votes
                    .into_iter()
                    .max_by_key(|&(form, n)| (n, form))
                    .map_or(initial, |(form, _)| form)
            }
        };
        if form != self.form {
            tracing::info!(from = %self.form, to = %form, "CRDT MapSet form follows the Elixir neighbours");
            self.form = form;
            self.merkle = merkle_of(&self.state, form);
        }
    }

    /// Neighbour nodes not asked about their MapSet form yet (marked asked
    /// now), and forgets the answers of nodes no longer neighbours.
    fn ask_new_nodes(&mut self) -> Vec<Action> {
        if !matches!(self.cfg.mapset, MapSetPolicy::Follow { .. }) {
            return Vec::new();
        }
        let own = self
            .cfg
            .self_name
            .as_ref()
            .and_then(node_of)
            .or_else(|| node_of(&self.cfg.self_pid));
        let nodes: BTreeSet<String> = self
            .neighbours
            .iter()
            .filter_map(|n| node_of(&n.0))
            .filter(|n| Some(n) != own.as_ref())
            .collect();
        let before = self.peer_forms.len();
        self.peer_forms.retain(|n, _| nodes.contains(n));
        let forgot = self.peer_forms.len() != before;
        let mut out = Vec::new();
        for node in nodes {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.peer_forms.entry(node) {
                out.push(Action::AskMapSetForm {
                    node: slot.key().clone(),
                    reply_to: self.cfg.self_pid.clone(),
                });
                slot.insert(None);
            }
        }
        if forgot {
            self.decide_form();
        }
        out
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn state(&self) -> &AwLwwMap {
        &self.state
    }

    /// The merkle map; its hashes may be stale (`[]`) since the last
    /// change, as upstream's between syncs.
    pub fn merkle(&self) -> &MerkleMap {
        &self.merkle
    }

    /// `DeltaCrdt.to_map/1`.
    pub fn read(&self) -> BTreeMap<OrdTerm, Term> {
        self.state.read()
    }

    /// `DeltaCrdt.read/2` for some keys.
    pub fn read_keys(&self, keys: &[Term]) -> BTreeMap<OrdTerm, Term> {
        self.state.read_keys(keys)
    }

    /// `DeltaCrdt.get/2`.
    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.state.get(key)
    }

    /// The `%DeltaCrdt.AWLWWMap{}` state term; [`Replica::with_state`]
    /// takes it back (after `AwLwwMap::from_term`).
    pub fn storage_term(&self) -> Term {
        self.state.to_term_in(self.form)
    }

    /// What DeltaCrdt's `storage_module.write/2` receives:
    /// `{node_id, sequence_number, crdt_state, merkle_map}`. The sequence
    /// number is never advanced by 0.6.4, so it is always 0 here.
    pub fn storage_tuple(&self) -> Term {
        tuple(vec![
            crate::term::int(self.cfg.node_id),
            crate::term::int(0),
            self.state.to_term_in(self.form),
            self.merkle.to_term(),
        ])
    }

    pub fn neighbours(&self) -> impl Iterator<Item = &Term> {
        self.neighbours.iter().map(|n| &n.0)
    }

    /// Neighbours with a round in flight.
    pub fn outstanding(&self) -> impl Iterator<Item = &Term> {
        self.outstanding.keys().map(|n| &n.0)
    }

    /// Records the reference the runtime got for a [`Action::Monitor`], so
    /// DOWNs are matched by reference (as upstream) rather than by object.
    pub fn bind_monitor(&mut self, target: &Term, monitor_ref: Term) {
        if let Some(slot) = self.monitors.get_mut(&OrdTerm(target.clone())) {
            *slot = Some(monitor_ref);
        }
    }

    // ---- local operations --------------------------------------------------

    /// `DeltaCrdt.put/3` (`{:add, [key, value]}`); `ts` is the writer's
    /// `System.monotonic_time(:nanosecond)` equivalent, passed in.
    pub fn put(&mut self, key: Term, value: Term, ts: i64) -> Vec<Action> {
        let delta = self.state.add(key.clone(), value, self.cfg.node_id, ts);
        let out = self.join_delta(delta, std::slice::from_ref(&key));
        self.written(key);
        out
    }

    /// `DeltaCrdt.delete/2` (`{:remove, [key]}`).
    pub fn delete(&mut self, key: Term) -> Vec<Action> {
        let delta = self.state.remove(&key, self.cfg.node_id);
        let out = self.join_delta(delta, std::slice::from_ref(&key));
        self.written(key);
        out
    }

    /// A local write to `key`, pushed with the next sync (only to peers
    /// that keep exact contexts, so only kept while some do).
    fn written(&mut self, key: Term) {
        if self.cfg.push_writes && self.exact.is_some() && !self.exact_peers.is_empty() {
            self.unpushed.push(key);
        }
    }

    /// An `{:operation, {f, args}}` payload as `DeltaCrdt.put/delete` send
    /// it: `{:add, [key, value]}` or `{:remove, [key]}`.
    pub fn operation(&mut self, op: &Term, ts: i64) -> Result<Vec<Action>, SyncError> {
        let Some([f, args]) = as_tuple(op) else {
            return Err(SyncError::Malformed("operation"));
        };
        let args = as_list(args).ok_or(SyncError::Malformed("operation arguments"))?;
        match (f, args.as_slice()) {
            (f, [k, v]) if is_atom(f, "add") => {
                check_depth(k)?;
                check_depth(v)?;
                Ok(self.put(k.clone(), v.clone(), ts))
            }
            (f, [k]) if is_atom(f, "remove") => {
                check_depth(k)?;
                Ok(self.delete(k.clone()))
            }
            _ => Err(SyncError::Unknown),
        }
    }

    // ---- the sync protocol --------------------------------------------------

    /// The periodic timer: syncs when `now` (ms, any monotonic origin) has
    /// reached the next due time. The first tick always syncs, as upstream
    /// sends itself `:sync` on start.
    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        self.now = self.now.max(now);
        if self.next_sync_at.is_some_and(|due| now < due) {
            return Vec::new();
        }
        self.next_sync_at = Some(now.saturating_add(self.cfg.sync_interval));
        self.sync()
    }

    /// A push of `pushed` keys to `n` this sync stands for a round with it:
    /// enough keys that a round would walk to as many, `n` takes pushes,
    /// and a round with it began recently enough.
    fn push_stands_for_round(&self, n: &OrdTerm, pushed: usize) -> bool {
        let without_round = self.cfg.sync_interval.max(1) * MAX_INTERVALS_WITHOUT_ROUND;
        pushed >= PUSH_INSTEAD_OF_ROUND
            && self.exact_peers.contains(n)
            && self
                .round_began
                .get(n)
                .is_some_and(|&at| self.now.saturating_sub(at) < without_round)
    }

    /// A round with `n` is running and not yet stale.
    fn round_running(&self, n: &OrdTerm) -> bool {
        let stale_after = self.cfg.sync_interval.max(1) * STALE_ROUND_INTERVALS;
        self.outstanding
            .get(n)
            .is_some_and(|&since| self.now.saturating_sub(since) < stale_after)
    }

    /// When the next tick will sync, if ticked before.
    pub fn next_sync_at(&self) -> Option<u64> {
        self.next_sync_at
    }

    /// `{:set_neighbours, list}`: forget and demonitor neighbours no longer
    /// listed, then sync with everyone.
    pub fn set_neighbours(&mut self, list: Vec<Term>) -> Vec<Action> {
        let new: BTreeSet<OrdTerm> = list.into_iter().map(OrdTerm).collect();
        let mut out = Vec::new();
        for gone in self.neighbours.difference(&new) {
            if let Some(r) = self.monitors.get(gone) {
                out.push(Action::Demonitor {
                    target: gone.0.clone(),
                    monitor_ref: r.clone(),
                });
            }
        }
        self.outstanding.retain(|n, _| new.contains(n));
        self.monitors.retain(|n, _| new.contains(n));
        self.exact_peers.retain(|n| new.contains(n));
        self.round_began.retain(|n, _| new.contains(n));
        self.neighbours = new;
        out.extend(self.ask_new_nodes());
        out.extend(self.sync());
        out
    }

    /// One sync (the `:sync` timer message): monitor new neighbours, then
    /// start a round with every monitored neighbour that has none running.
    pub fn sync(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        for n in &self.neighbours {
            if self.is_self(&n.0) || self.monitors.contains_key(n) {
                continue;
            }
            self.monitors.insert(n.clone(), None);
            out.push(Action::Monitor {
                target: n.0.clone(),
            });
        }
        if let Some(x) = &mut self.exact {
            if !x.tombstones.is_empty() {
                awlww_map::prune_tombstones(&mut x.tombstones, &x.seen.prefix());
            }
        }
        let pushed = self.push(&mut out);
        let targets: Vec<OrdTerm> = self
            .monitors
            .keys()
            .filter(|n| {
                !self.is_self(&n.0)
                    && (self.cfg.resend_while_outstanding || !self.round_running(n))
                    && !self.push_stands_for_round(n, pushed)
            })
            .cloned()
            .collect();
        if targets.is_empty() {
            // Hashes wait for the round that reads them: during a burst of
            // writes the upper nodes are hashed once, not once per tick.
            return out;
        }
        self.merkle.update_hashes();
        let continuation = match self.merkle.prepare_partial_diff(self.cfg.depth()) {
            Ok(c) => c,
            // Hashes were just updated and the depth is at least 1, so this cannot
            // happen; skipping a round is the harmless answer if it does.
            Err(_) => return out,
        };
        let dots = self.state.dots.to_term();
        let vouched = self.vouched_prefix();
        for n in targets {
            self.round_began.insert(n.clone(), self.now);
            let diff = SyncDiff {
                continuation: continuation.clone(),
                dots: dots.clone(),
                originator: self.cfg.self_pid.clone(),
                from: self.cfg.self_pid.clone(),
                to: n.0.clone(),
                vouched: vouched.clone(),
                exact_peer: false,
            };
            out.push(Action::Send {
                to: n.0.clone(),
                msg: tuple(vec![atom("diff"), diff.to_term()]),
            });
            self.outstanding.insert(n, self.now);
        }
        out
    }

    /// Every message a DeltaCrdt process receives from peers or its timer:
    /// `{:diff, Diff}`, `{:diff, state, keys}`, `{:get_diff, Diff, keys}`,
    /// `{:ack_diff, neighbour}`, `{:DOWN, ref, :process, obj, reason}`,
    /// `{:set_neighbours, list}` and `:sync`. On `Err` nothing changed.
    pub fn handle_message(&mut self, msg: &Term) -> Result<Vec<Action>, SyncError> {
        if is_atom(msg, "sync") {
            return Ok(self.sync());
        }
        let Some(parts) = as_tuple(msg) else {
            return Err(SyncError::Unknown);
        };
        let Some((tag, rest)) = parts.split_first() else {
            return Err(SyncError::Unknown);
        };
        let Term::Atom(tag) = tag else {
            return Err(SyncError::Unknown);
        };
        match (tag.name.as_str(), rest) {
            ("diff", [diff]) => self.on_diff(diff),
            ("diff", [state, keys]) => self.on_state(state, keys),
            ("get_diff", [diff, keys]) => self.on_get_diff(diff, keys),
            ("ack_diff", [neighbour]) => {
                self.outstanding.remove(&OrdTerm(neighbour.clone()));
                Ok(Vec::new())
            }
            ("DOWN", [r, kind, obj, _reason]) if is_atom(kind, "process") => self.on_down(r, obj),
            ("set_neighbours", [l]) => {
                let l = as_list(l).ok_or(SyncError::Malformed("neighbour list"))?;
                Ok(self.set_neighbours(l))
            }
            (MAPSET_FORM_ANSWER, [Term::Atom(node), answer]) => {
                self.peer_mapset_form(&node.name, answer);
                Ok(Vec::new())
            }
            // `{:EXIT, pid, :normal}` is ignored upstream (it traps exits).
            ("EXIT", [_, reason]) if is_atom(reason, "normal") => Ok(Vec::new()),
            ("$gen_call", [from, request]) => self.on_read_call(from, request),
            _ => Err(SyncError::Unknown),
        }
    }

    /// `DeltaCrdt.read/1,2` (`to_map`) from any node: `GenServer.call(crdt,
    /// :read)` or `{:read, keys}`, answered with the read map, so tools read
    /// a Rust replica the way they read a BEAM one. The reply `{Tag, Map}`
    /// goes to the caller's pid (an OTP 24+ alias tag still matches there).
    fn on_read_call(&mut self, from: &Term, request: &Term) -> Result<Vec<Action>, SyncError> {
        let Some([Term::Pid(caller), tag]) = as_tuple(from) else {
            return Err(SyncError::Malformed("gen_server From"));
        };
        let map = if is_atom(request, "read") {
            self.read()
        } else {
            match as_tuple(request) {
                Some([r, keys]) if is_atom(r, "read") => {
                    let keys = as_list(keys).ok_or(SyncError::Malformed("read keys"))?;
                    self.read_keys(&keys)
                }
                _ => return Err(SyncError::Unknown),
            }
        };
        let map = Term::Map(crate::term::Map {
            map: map.into_iter().map(|(k, v)| (k.0, v)).collect(),
        });
        Ok(vec![Action::Send {
            to: Term::Pid(caller.clone()),
            msg: crate::tup![tag.clone(), map],
        }])
    }

    /// `{:diff, Diff}`: compare the peer's subtrees with ours.
    fn on_diff(&mut self, diff: &Term) -> Result<Vec<Action>, SyncError> {
        let mut diff = SyncDiff::from_term(diff)?.reversed();
        // Checked before anything is sent: upstream would crash half way.
        let ack = diff.ack().ok_or(SyncError::NoOriginator)?;
        self.learn_exact(&diff);
        if self.exact.is_some() && !self.is_self(&diff.originator) {
            diff.exact_peer = true;
        }
        self.round_moved(&diff);
        // Only fills in stale hashes: the contents are unchanged even if the
        // message is rejected below.
        self.merkle.update_hashes();
        let depth = self.cfg.step_depth(diff.continuation.trees.len());
        let settle = self.cfg.settle_level(self.merkle.len());
        let mut step = if self.cfg.list_own_keys {
            let (step, own_only) = self.merkle.continue_partial_diff_settling(
                &diff.continuation,
                depth,
                true,
                settle,
            )?;
            match step {
                // The peer is the originator and will ship its values for
                // the keys we ask for, with its context from the round start.
                DiffStep::Done(keys) if diff.originator == diff.to => {
                    DiffStep::Done(self.worth_asking(keys, &own_only, &diff.dots))
                }
                other => other,
            }
        } else {
            self.merkle
                .continue_partial_diff_settling(&diff.continuation, depth, false, settle)?
                .0
        };
        if let DiffStep::Done(keys) = &mut step {
            if let Some(n) = self.cfg.max_sync_size.limit() {
                keys.truncate(n);
            }
        }
        let mut out = Vec::new();
        match step {
            DiffStep::Continue(next) => {
                let continuation = match self.cfg.max_sync_size.limit() {
                    None => next,
                    Some(n) => next.truncate(n),
                };
                let to = diff.to.clone();
                let next = SyncDiff {
                    continuation,
                    ..diff
                };
                out.push(Action::Send {
                    to,
                    msg: tuple(vec![atom("diff"), next.to_term()]),
                });
            }
            DiffStep::Done(keys) if keys.is_empty() => {
                if diff.originator == diff.to {
                    self.trust_vouched(&diff);
                }
                out.extend(self.end_round(&diff, ack));
            }
            DiffStep::Done(keys) => {
                if diff.originator == diff.to {
                    // The peer is the originator: ask it for its values.
                    let msg = tuple(vec![atom("get_diff"), diff.to_term(), list(keys)]);
                    out.push(Action::Send {
                        to: diff.to.clone(),
                        msg,
                    });
                } else {
                    out.extend(self.ship_state(&diff, keys));
                }
                out.extend(self.end_round(&diff, ack));
            }
        }
        Ok(out)
    }

    /// A round ends on this side: a peer's round with an ack to it; our own
    /// round right here. Upstream sends itself the `{:ack_diff, n}`, which
    /// arrives later: a tick in between begins the next round with `n`, and
    /// that late ack would then end the new round before any of it ran
    /// (acks name no round), so a member waiting for a fresh round to be
    /// acked would leave with its last writes unsynced.
    fn end_round(&mut self, diff: &SyncDiff, ack: Action) -> Option<Action> {
        if self.is_self(&diff.originator) {
            self.outstanding.remove(&OrdTerm(diff.to.clone()));
            return None;
        }
        Some(ack)
    }

    /// The keys worth a `get_diff` to the originator: all but those listed
    /// from our side where the originator's tree had nothing and whose dots
    /// its round-start context (`dots`, what it will ship with) has not
    /// seen. Its answer for such a key would be no entries under a context
    /// that deletes none of ours: a join that changes nothing, for a state
    /// message carrying every such key (a whole map when an empty replica
    /// starts a round with a full one). Anything it gained since comes with
    /// its next round. With an unreadable context every key is kept.
    fn worth_asking(&self, keys: Vec<Term>, own_only: &[bool], dots: &Term) -> Vec<Term> {
        if !own_only.contains(&true) {
            return keys;
        }
        let Ok(seen) = crate::crdt::Dots::from_term(dots) else {
            return keys;
        };
        keys.into_iter()
            .zip(own_only.iter().copied().chain(std::iter::repeat(false)))
            .filter(|(k, ours)| !ours || self.state.seen_by(k, &seen))
            .map(|(k, _)| k)
            .collect()
    }

    /// `{:get_diff, Diff, keys}`: the neighbour found the keys; ship ours.
    fn on_get_diff(&mut self, diff: &Term, keys: &Term) -> Result<Vec<Action>, SyncError> {
        let diff = SyncDiff::from_term(diff)?.reversed();
        let keys = as_list(keys).ok_or(SyncError::Malformed("key list"))?;
        diff.ack().ok_or(SyncError::NoOriginator)?;
        self.round_moved(&diff);
        self.learn_exact(&diff);
        // Upstream acks itself here too, but the neighbour that asked sent
        // its own ack right behind this message: one ack per round, so none
        // is left over to end a later round (see `end_round`).
        Ok(self.ship_state(&diff, keys))
    }

    /// Whether the peer of `diff` (reversed, as received) told us it keeps
    /// exact contexts, for [`Config::push_writes`]: in a round of ours, by
    /// marking its step `beam_peer_exact`; in a round of its own, by the
    /// `vouched_dots` of its round start (upstream carries both fields
    /// along but never adds them, so neither comes from a BEAM peer's
    /// side of a round). Its own rounds name it by pid: it is the one
    /// monitored neighbour on that pid's node, if there is exactly one.
    fn learn_exact(&mut self, diff: &SyncDiff) {
        if !self.cfg.push_writes || self.exact.is_none() {
            return;
        }
        let n = if self.is_self(&diff.originator) {
            if !diff.exact_peer {
                return;
            }
            OrdTerm(diff.to.clone())
        } else if diff.originator == diff.to && diff.vouched.is_some() {
            let node = node_of(&diff.to);
            let mut on_node = self
                .monitors
                .keys()
                .filter(|n| node.is_some() && node_of(&n.0) == node);
            match (on_node.next(), on_node.next()) {
                (Some(n), None) => n.clone(),
                _ => return,
            }
        } else {
            return;
        };
        if self.monitors.contains_key(&n) && !self.exact_peers.contains(&n) {
            self.exact_peers.insert(n);
        }
    }

    /// A message of our round with `diff.to` came back: the round is alive.
    /// Messages of the neighbour's own rounds do not count, or a round of
    /// ours that lost a message would be kept alive by them for good.
    fn round_moved(&mut self, diff: &SyncDiff) {
        if diff.originator != self.cfg.self_pid {
            return;
        }
        if let Some(since) = self.outstanding.get_mut(&OrdTerm(diff.to.clone())) {
            *since = self.now;
        }
    }

    /// `{:diff, %AWLWWMap{dots: diff.dots, value: our entries for keys}, keys}`
    /// to `diff.to`. Upstream's context is the originator's from the round
    /// start, not ours now (see the fixtures' finding 7). With exact
    /// contexts each key goes with the context we can vouch for about it
    /// ([`Replica::vouched_for_key`]), keys vouched for alike in one message.
    fn ship_state(&self, diff: &SyncDiff, keys: Vec<Term>) -> Vec<Action> {
        let Some(x) = self.exact.as_ref().filter(|_| diff.exact_peer) else {
            // Upstream's receivers fold whatever context they get into
            // theirs, for every key: shipped only with our round-start
            // context, whose keys were all compared this round. Ours is
            // what we saw (no peer's claims), so it claims less than
            // upstream's would.
            return vec![self.state_message(&diff.to, diff.dots.clone(), keys)];
        };
        self.exact_states(x, &diff.to, keys)
    }

    /// `{:diff, %AWLWWMap{dots: dots, value: our entries for keys}, keys}` to `to`.
    fn state_message(&self, to: &Term, dots: Term, keys: Vec<Term>) -> Action {
        let state = self.state.slice_term(&keys, dots, self.form);
        Action::Send {
            to: to.clone(),
            msg: tuple(vec![atom("diff"), state, list(keys)]),
        }
    }

    /// With [`Config::push_writes`]: the keys written since the last sync,
    /// shipped to every monitored neighbour that keeps exact contexts as
    /// the end of a round ships them ([`Replica::exact_states`]), whether
    /// or not a round with it runs. Returns how many keys went out (0 when
    /// none, or no neighbour takes pushes).
    fn push(&mut self, out: &mut Vec<Action>) -> usize {
        let mut keys = std::mem::take(&mut self.unpushed);
        let Some(x) = self.exact.as_ref() else {
            return 0;
        };
        let to: Vec<&OrdTerm> = self
            .exact_peers
            .iter()
            .filter(|n| self.monitors.contains_key(*n) && !self.is_self(&n.0))
            .collect();
        if keys.is_empty() || to.is_empty() {
            return 0;
        }
        // In the order written, each key once.
        awlww_map::dedup_keys(&mut keys);
        for n in to {
            out.extend(self.exact_states(x, &n.0, keys.clone()));
        }
        keys.len()
    }

    /// Our entries for `keys` to `to`, a peer that keeps exact contexts,
    /// each key with the context we vouch for about it
    /// ([`Replica::vouched_for_key`]), keys vouched for alike in one message.
    fn exact_states(&self, x: &Exact, to: &Term, keys: Vec<Term>) -> Vec<Action> {
        let prefix = x.seen.prefix();
        // In first-seen order; found by hash, so a round of many keys with
        // many distinct contexts (a replica with gaps) groups in linear time.
        let mut groups: Vec<(Context, Vec<Term>)> = Vec::new();
        let mut index: std::collections::HashMap<Context, usize> = Default::default();
        // Where the keys vouched for with the prefix alone go: most keys
        // (every one this replica wrote itself and saw no gap under), so
        // found without building and hashing a context per key.
        let mut prefix_at: Option<usize> = None;
        for key in keys {
            if self.vouched_by_prefix(x, &prefix, &key) {
                match prefix_at {
                    Some(i) => groups[i].1.push(key),
                    None => match index.get(&prefix) {
                        Some(&i) => {
                            prefix_at = Some(i);
                            groups[i].1.push(key);
                        }
                        None => {
                            prefix_at = Some(groups.len());
                            index.insert(prefix.clone(), groups.len());
                            groups.push((prefix.clone(), vec![key]));
                        }
                    },
                }
                continue;
            }
            let ctx = self.vouched_for_key(x, &prefix, &key);
            match index.get(&ctx) {
                Some(&i) => groups[i].1.push(key),
                None => {
                    index.insert(ctx.clone(), groups.len());
                    groups.push((ctx, vec![key]));
                }
            }
        }
        groups
            .into_iter()
            .map(|(ctx, keys)| self.state_message(to, ctx.to_term(), keys))
            .collect()
    }

    /// The context we can ship with `key` and stand behind: it makes a peer
    /// drop only entries of that key we saw and no longer hold. Per node,
    /// the larger of
    /// - our vouched prefix: every dot up to it we saw, so one of them the
    ///   peer holds under `key` and we do not is one we removed;
    /// - the largest dot of that node we know under `key`, held or lost
    ///   ([`Tombstones`]): a node's write to a key removes every earlier dot
    ///   it had under that key, its own earlier writes there included, so
    ///   that node's smaller dots under `key` are dead wherever they are.
    ///
    /// A compressed context claims every dot below its maximum, and upstream
    /// ships its whole one: claims about dots it never received, of keys
    /// outside the list, which a peer holding those dots under a listed key
    /// takes as deletes (delta_crdt_ex #65).
    fn vouched_for_key(&self, x: &Exact, prefix: &Context, key: &Term) -> Context {
        let mut ctx = prefix.clone();
        if let Some(entries) = self.state.value.get(awlww_map::by_term(key)) {
            for d in entries.values().flat_map(|set| set.iter()) {
                ctx.insert(*d);
            }
        }
        if let Some(lost) = x.tombstones.get(awlww_map::by_term(key)) {
            ctx.merge(lost);
        }
        ctx
    }

    /// True when [`Replica::vouched_for_key`] of `key` is `prefix` itself:
    /// every dot it would add is already there.
    fn vouched_by_prefix(&self, x: &Exact, prefix: &Context, key: &Term) -> bool {
        let held = self
            .state
            .value
            .get(awlww_map::by_term(key))
            .is_none_or(|entries| {
                entries
                    .values()
                    .flat_map(|set| set.iter())
                    .all(|d| prefix.absorbs(d))
            });
        held && x
            .tombstones
            .get(awlww_map::by_term(key))
            .is_none_or(|lost| lost.iter().all(|(n, c)| prefix.absorbs(&Dot::new(n, c))))
    }

    /// What our round-start diffs carry in `vouched_dots`: our vouched
    /// prefix, when we keep exact contexts and never cut a list (a cut
    /// continuation can end a round with no keys while keys still differ).
    fn vouched_prefix(&self) -> Option<Term> {
        let x = self.exact.as_ref()?;
        (self.cfg.max_sync_size == MaxSyncSize::Infinite).then(|| x.seen.prefix().to_term())
    }

    /// A round of the peer's ended with no key differing: we hold exactly
    /// the entries it held, and it saw every dot up to its vouched prefix,
    /// so each such dot we never received is one it removed. We take its
    /// prefix as seen, which fills our gaps (and frees the dots and
    /// tombstones kept above them). Only a replica that vouches (one of ours
    /// with an uncut round) says so; upstream's context claims too much.
    fn trust_vouched(&mut self, diff: &SyncDiff) {
        let (Some(x), Some(vouched)) = (&mut self.exact, &diff.vouched) else {
            return;
        };
        if self.cfg.max_sync_size != MaxSyncSize::Infinite {
            return;
        }
        let Ok(prefix) = crate::crdt::dots::Context::from_term(vouched) else {
            return;
        };
        let before = x.seen.beyond_gaps();
        for (node, counter) in prefix.iter() {
            x.seen.fill_to(node, counter);
        }
        if x.seen.beyond_gaps() != before || !x.tombstones.is_empty() {
            awlww_map::prune_tombstones(&mut x.tombstones, &x.seen.prefix());
        }
        let mut max = self.state.dots.compress();
        max.merge(&x.seen.max());
        self.state.dots = Dots::Context(max);
    }

    /// Dots held one by one above a gap, and keys with tombstones: both
    /// stay small when the gaps fill (zero without exact contexts).
    pub fn exact_backlog(&self) -> (usize, usize) {
        self.exact
            .as_ref()
            .map_or((0, 0), |x| (x.seen.beyond_gaps(), x.tombstones.len()))
    }

    /// `{:diff, state, keys}`: join the shipped values for those keys.
    fn on_state(&mut self, state: &Term, keys: &Term) -> Result<Vec<Action>, SyncError> {
        let delta = AwLwwMap::from_term(state)?;
        let keys = as_list(keys).ok_or(SyncError::Malformed("key list"))?;
        for k in &keys {
            check_depth(k)?;
        }
        Ok(self.join_delta(delta, &keys))
    }

    /// `{:DOWN, ..}` of a neighbour monitor: the neighbour is no longer
    /// monitored (the next sync re-monitors it) and its round is over.
    fn on_down(&mut self, r: &Term, obj: &Term) -> Result<Vec<Action>, SyncError> {
        let by_ref = self
            .monitors
            .iter()
            .find(|(_, bound)| bound.as_ref() == Some(r))
            .map(|(n, _)| n.clone());
        // Without a bound reference, the DOWN's object is the neighbour as
        // monitored (`{Name, node}` or the pid).
        let found = by_ref.or_else(|| {
            let n = OrdTerm(obj.clone());
            matches!(self.monitors.get(&n), Some(None)).then_some(n)
        });
        let n = found.ok_or(SyncError::UnknownMonitor)?;
        self.monitors.remove(&n);
        self.outstanding.remove(&n);
        // Whoever answers to that name next may not keep exact contexts.
        self.exact_peers.remove(&n);
        Ok(Vec::new())
    }

    /// DeltaCrdt's `update_state_with_delta`: join, mirror raw entry changes
    /// into the merkle map, report read changes, persist.
    fn join_delta(&mut self, delta: AwLwwMap, keys: &[Term]) -> Vec<Action> {
        let outcome = match &mut self.exact {
            Some(x) => {
                self.state
                    .apply_exact_owned(delta, keys, self.form, &mut x.seen, &mut x.tombstones)
            }
            None => self.state.apply_in_owned(delta, keys, self.form),
        };
        let changed = !outcome.raw.is_empty();
        for change in outcome.raw {
            match change {
                RawChange::Put { key, entries } => self.merkle.put(key, entries),
                RawChange::Delete { key } => self.merkle.delete(&key),
            }
        }
        let mut out = Vec::new();
        if changed {
            out.push(Action::Diffs(outcome.diffs));
        }
        out.push(Action::Persist);
        out
    }

    fn is_self(&self, t: &Term) -> bool {
        *t == self.cfg.self_pid || self.cfg.self_name.as_ref() == Some(t)
    }
}

/// A merkle map of `state` with every entry's MapSets built in `form`. The
/// tree shape depends only on the contents, so this is also the tree a BEAM
/// replica of that form holds for the same state.
fn merkle_of(state: &AwLwwMap, form: MapSetForm) -> MerkleMap {
    let mut merkle = MerkleMap::new();
    for key in state.keys() {
        if let Some(entries) = state.entries_term_in(&key, form) {
            merkle.put(key, entries);
        }
    }
    merkle.update_hashes();
    merkle
}

/// The node of a neighbour: a pid's node, or the node of a `{Name, node}` tuple.
fn node_of(neighbour: &Term) -> Option<String> {
    match neighbour {
        Term::Pid(p) => Some(p.node.name.to_string()),
        _ => match as_tuple(neighbour)? {
            [_, Term::Atom(node)] => Some(node.name.to_string()),
            _ => None,
        },
    }
}

/// `[{:add, key, value} | {:remove, key}]` as handed to `on_diffs`.
pub fn diffs_term(diffs: &[awlww_map::Diff]) -> Term {
    list(diffs.iter().map(|d| d.to_term()).collect())
}

/// Bounds the nesting of a key or value that did not come through
/// `AwLwwMap::from_term` (which checks its own): term comparison recurses,
/// so an absurdly deep key from a peer must be refused before it is
/// compared. Iterative, so the check itself cannot overflow the stack.
fn check_depth(term: &Term) -> Result<(), CrdtTermError> {
    let limit = awlww_map::MAX_TERM_DEPTH;
    if crate::term::depth_within(term, limit) {
        Ok(())
    } else {
        Err(CrdtTermError::TooDeep { limit })
    }
}
