//! The CRDT data structures that Horde replicates, as plain values.
//!
//! - [`dots`]: dots, exact dot sets and compressed causal contexts.
//! - [`awlww_map`]: DeltaCrdt's add-wins last-writer-wins map (0.6.4 semantics),
//!   its operations, join, read, the diffs handed to `on_diffs`, and its wire terms.
//!
//! Everything here is sans-I/O: no clocks (timestamps are passed in), no
//! randomness (node ids are passed in), no processes. The sync protocol that
//! moves these values between nodes lives elsewhere and only calls in here.

pub mod awlww_map;
pub mod dots;
pub mod merkle;
pub mod process;
pub mod storage;
pub mod sync;

pub use awlww_map::{term_cmp, AwLwwMap, Diff, JoinOutcome, OrdTerm, RawChange, Stamped};
pub use dots::{Context, Counter, Covers, Dot, DotSet, Dots, NodeId, Seen};

/// Why a term from a peer is not a valid CRDT value. Returned, never panicked:
/// a peer may send anything, and a bad term ends at most that one message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrdtTermError {
    /// The term does not have the shape the wire format requires here.
    #[error("{at}: expected {expected}")]
    Shape {
        at: &'static str,
        expected: &'static str,
    },
    /// An integer that must fit in an `i64` (ids, counters, timestamps) does not.
    #[error("{at}: integer does not fit in i64")]
    IntRange { at: &'static str },
    /// Two map keys that Erlang would consider the same key (`=:=`), which
    /// only a non-BEAM encoder can produce.
    #[error("{at}: duplicate key")]
    DuplicateKey { at: &'static str },
    /// A key or value nests deeper than [`awlww_map::MAX_TERM_DEPTH`]; the
    /// ordering code recurses, so depth is bounded before anything is compared.
    #[error("term nests deeper than {limit} levels")]
    TooDeep { limit: usize },
}

/// Building and matching the Elixir structs this module puts on the wire
/// (`MapSet`, `DeltaCrdt.AWLWWMap`). Kept in one place so it can be swapped
/// for the shared `term::elixir` helpers once those land.
mod elixir {
    pub(super) use crate::term::elixir::MapSetForm;
    use crate::term::{atom, Map, Term};

    pub(super) const MAPSET: &str = "Elixir.MapSet";

    /// `%Name{field: value, ...}`: a map with `__struct__ => :Name`.
    pub(super) fn build_struct(name: &str, fields: Vec<(&str, Term)>) -> Term {
        let mut map = crate::term::TermMap::with_capacity(fields.len() + 1);
        map.insert(atom("__struct__"), atom(name));
        for (k, v) in fields {
            map.insert(atom(k), v);
        }
        Term::Map(Map { map })
    }

    /// The struct's fields when `term` is `%Name{}`. Extra fields are allowed:
    /// DeltaCrdt itself adds a `:keys` field to states read back from storage.
    pub(super) fn match_struct<'a>(term: &'a Term, name: &str) -> Option<&'a crate::term::TermMap> {
        match term {
            Term::Map(m) if m.map.get(&atom("__struct__")) == Some(&atom(name)) => Some(&m.map),
            _ => None,
        }
    }

    /// One field of a matched struct.
    pub(super) fn field<'a>(fields: &'a crate::term::TermMap, name: &str) -> Option<&'a Term> {
        fields.get(&atom(name))
    }

    /// `MapSet.new(elements)` as an Elixir release of `form` lays it out
    /// (see [`crate::term::elixir::MapSetForm`]).
    pub(super) fn build_mapset(form: MapSetForm, elements: impl IntoIterator<Item = Term>) -> Term {
        crate::term::elixir::mapset_in(form, elements)
    }

    /// The elements of a MapSet of either form. The per-element values and
    /// the version are not checked: Elixir's own MapSet functions only look
    /// at the keys.
    pub(super) fn match_mapset(term: &Term) -> Option<impl Iterator<Item = &Term>> {
        let fields = match_struct(term, MAPSET)?;
        match field(fields, "map")? {
            Term::Map(m) => Some(m.map.keys()),
            _ => None,
        }
    }
}
