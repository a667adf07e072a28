//! Elixir conventions on the wire: module atoms, structs, `MapSet`, keyword
//! lists, strings and charlists, each built and matched here, side by side, so
//! the two directions cannot drift apart.
//!
//! Owns only the *shape* Elixir gives these values in the external term
//! format (checked against real Elixir 1.14 by `tests/elixir_terms.rs`):
//! - a module `MyApp.Registry` is the atom `Elixir.MyApp.Registry`; an Erlang
//!   module such as `:erlang` is the bare atom `erlang`;
//! - a struct `%Mod{a: 1}` is a map with the key `__struct__ => :"Elixir.Mod"`
//!   and atom keys for its fields;
//! - a `MapSet` is `%{__struct__: MapSet, map: %{elem => []}}`, with a
//!   `version: 2` field up to Elixir 1.14 and without it from 1.15 on (one
//!   [`MapSetForm`] each; both read, either written);
//! - a keyword list is a proper list of `{atom, value}` pairs, order and
//!   duplicates kept;
//! - a string is a UTF-8 binary; a charlist is a list of code points, which
//!   the BEAM sends as `STRING_EXT` (decoded as a [`ByteList`] of Latin-1
//!   bytes) when every code point is below 256.
//!
//! Never does: I/O, panics on terms from the network (every matcher returns
//! `None`/`false` on anything malformed), knowledge of a struct's fields or
//! defaults (a struct sent to Elixir must carry every field its module
//! defines, since Elixir fills no defaults for maps off the wire), or Erlang
//! term ordering (elements read back from a map come in no particular order).

use super::{atom, int, Atom, Binary, ByteList, List, Map, Term, Tuple};

/// The prefix every Elixir module atom carries.
pub const ELIXIR_PREFIX: &str = "Elixir.";

/// The key that marks a map as a struct.
pub const STRUCT_KEY: &str = "__struct__";

/// The `version` field of a `MapSet` as Elixir 1.14 and earlier write it.
pub const MAPSET_VERSION: i32 = 2;

// ---------------------------------------------------------------------------
// Modules

/// The module atom for `name`, spelt as in Elixir source:
/// - `"MyApp.Registry"` (starts with an uppercase letter) gives `Elixir.MyApp.Registry`;
/// - `"Elixir.MyApp.Registry"` and `"Elixir"` are kept as they are;
/// - `":erlang"` or `"erlang"` (an Erlang module) gives `erlang`; a leading
///   `:` always means "this exact atom", so `":Foo"` gives `Foo`.
pub fn module(name: &str) -> Term {
    Term::Atom(Atom::from(module_atom_name(name).as_ref()))
}

/// The atom text [`module`] uses for `name`, without building a term.
fn module_atom_name(name: &str) -> std::borrow::Cow<'_, str> {
    if let Some(erlang) = name.strip_prefix(':') {
        return erlang.into();
    }
    if name == "Elixir" || name.starts_with(ELIXIR_PREFIX) {
        return name.into();
    }
    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return format!("{ELIXIR_PREFIX}{name}").into();
    }
    name.into()
}

/// The module name of a module atom as Elixir source would spell it without
/// the colon: `Elixir.MyApp.Registry` gives `"MyApp.Registry"`, `erlang`
/// gives `"erlang"`. `None` when `term` is not an atom, or is the bare
/// `Elixir.` prefix.
///
/// [`module`] inverts this for every Elixir module and for Erlang modules
/// whose name does not start with an uppercase letter.
pub fn module_name(term: &Term) -> Option<&str> {
    let Term::Atom(a) = term else { return None };
    match a.name.strip_prefix(ELIXIR_PREFIX) {
        Some("") => None,
        Some(rest) => Some(rest),
        None => Some(a.name.as_str()),
    }
}

/// True when `term` is the module atom that [`module`] makes of `name`.
pub fn is_module(term: &Term, name: &str) -> bool {
    matches!(term, Term::Atom(a) if *a.name == *module_atom_name(name))
}

// ---------------------------------------------------------------------------
// Structs

/// Builds `%Mod{field: value, ...}`: a map with `__struct__ => module(Mod)`
/// and one atom key per field.
///
/// ```
/// use beam_peer::term::{elixir, int};
/// let range = elixir::StructBuilder::new("Range")
///     .field("first", int(1))
///     .field("last", int(3))
///     .field("step", int(1))
///     .build();
/// assert!(elixir::is_struct(&range, "Range"));
/// ```
#[derive(Debug, Clone)]
pub struct StructBuilder {
    map: crate::term::TermMap,
}

impl StructBuilder {
    /// A struct of module `module_name` (see [`module`] for the spelling) with no fields yet.
    pub fn new(module_name: &str) -> Self {
        let mut map = crate::term::TermMap::default();
        map.insert(atom(STRUCT_KEY), module(module_name));
        StructBuilder { map }
    }

    /// Sets field `name` to `value`; a later value for the same field wins.
    /// Setting `__struct__` itself replaces the module atom as given.
    pub fn field(mut self, name: &str, value: Term) -> Self {
        self.map.insert(atom(name), value);
        self
    }

    /// The struct as a map term.
    pub fn build(self) -> Term {
        Term::Map(Map::from(self.map))
    }
}

/// `%Mod{fields...}` in one call; see [`StructBuilder`].
pub fn struct_term<'a>(
    module_name: &str,
    fields: impl IntoIterator<Item = (&'a str, Term)>,
) -> Term {
    fields
        .into_iter()
        .fold(StructBuilder::new(module_name), |b, (k, v)| b.field(k, v))
        .build()
}

/// The map behind a struct: `term` is a map whose `__struct__` is an atom.
fn struct_map(term: &Term) -> Option<&crate::term::TermMap> {
    let Term::Map(m) = term else { return None };
    match m.map.get(&atom(STRUCT_KEY)) {
        Some(Term::Atom(_)) => Some(&m.map),
        _ => None,
    }
}

/// The struct's module name (as [`module_name`] gives it) when `term` is a
/// struct: a map whose `__struct__` key holds an atom.
pub fn struct_name(term: &Term) -> Option<&str> {
    module_name(struct_map(term)?.get(&atom(STRUCT_KEY))?)
}

/// Field `field` of a struct; `None` when `term` is not a struct (see
/// [`struct_name`]) or lacks the field.
pub fn struct_field<'a>(term: &'a Term, field: &str) -> Option<&'a Term> {
    struct_map(term)?.get(&atom(field))
}

/// True when `term` is a struct of module `module_name` (spelt as for [`module`]).
pub fn is_struct(term: &Term, module_name: &str) -> bool {
    struct_map(term)
        .and_then(|m| m.get(&atom(STRUCT_KEY)))
        .is_some_and(|m| is_module(m, module_name))
}

// ---------------------------------------------------------------------------
// MapSet

/// How an Elixir release lays a `MapSet` out. The two are different terms
/// (`==` is false between them and their `phash2` differs), so a value that
/// a BEAM node hashes or compares must be built in that node's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MapSetForm {
    /// Elixir 1.1 to 1.14: `%{__struct__: MapSet, map: %{elem => []}, version: 2}`.
    Versioned,
    /// Elixir 1.15 and later (MapSet on top of `:sets` version 2):
    /// `%{__struct__: MapSet, map: %{elem => []}}`, no `version` field.
    #[default]
    Sets2,
}

impl MapSetForm {
    /// The Elixir releases that write this form, for logs and docs.
    pub fn elixir_releases(self) -> &'static str {
        match self {
            MapSetForm::Versioned => "Elixir 1.14 and earlier",
            MapSetForm::Sets2 => "Elixir 1.15 and later",
        }
    }

    /// The form of `term` when it is a well-formed `MapSet` of either form
    /// (see [`mapset_elements`]); `None` otherwise.
    pub fn of(term: &Term) -> Option<MapSetForm> {
        mapset_parts(term).map(|(form, _)| form)
    }
}

impl std::fmt::Display for MapSetForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapSetForm::Versioned => "versioned (Elixir <= 1.14)",
            MapSetForm::Sets2 => "sets v2 (Elixir >= 1.15)",
        })
    }
}

/// A `MapSet` of `elements` in the [`MapSetForm::Versioned`] form Elixir
/// 1.14 puts on the wire: `%{__struct__: MapSet, map: %{elem => []},
/// version: 2}`. Duplicates collapse, as in `MapSet.new/1`. See
/// [`mapset_in`] for the other form.
pub fn mapset(elements: impl IntoIterator<Item = Term>) -> Term {
    mapset_in(MapSetForm::Versioned, elements)
}

/// `MapSet.new(elements)` as an Elixir release of `form` builds it, so the
/// result is `==` to that node's own `MapSet.new/1` of the same elements.
pub fn mapset_in(form: MapSetForm, elements: impl IntoIterator<Item = Term>) -> Term {
    let map: crate::term::TermMap = elements
        .into_iter()
        .map(|e| (e, Term::List(List::nil())))
        .collect();
    // Spelt out in full: a short name is prefixed through `format!`, and
    // every CRDT entry holds MapSets, built at each write and each ship.
    let set = StructBuilder::new("Elixir.MapSet").field("map", Term::Map(Map::from(map)));
    match form {
        MapSetForm::Versioned => set.field("version", int(i64::from(MAPSET_VERSION))),
        MapSetForm::Sets2 => set,
    }
    .build()
}

/// The elements of a `MapSet` of either form, in no particular order.
/// `None` unless `term` is exactly one of the shapes [`mapset_in`] builds:
/// a `MapSet` struct with only the keys `__struct__` and `map` (Elixir
/// 1.15+), or those and `version: 2` (Elixir 1.14), and `map` a map whose
/// every value is `[]`.
pub fn mapset_elements(term: &Term) -> Option<Vec<Term>> {
    let (_, inner) = mapset_parts(term)?;
    inner
        .iter()
        .map(|(k, v)| match v {
            Term::List(l) if l.is_nil() => Some(k.clone()),
            _ => None,
        })
        .collect()
}

/// The form and the element map of a well-formed `MapSet`.
fn mapset_parts(term: &Term) -> Option<(MapSetForm, &crate::term::TermMap)> {
    if !is_struct(term, "MapSet") {
        return None;
    }
    let fields = struct_map(term)?;
    let form = match (fields.len(), struct_field(term, "version")) {
        (2, None) => MapSetForm::Sets2,
        (3, Some(Term::FixInteger(v))) if v.value == MAPSET_VERSION => MapSetForm::Versioned,
        _ => return None,
    };
    let Term::Map(inner) = struct_field(term, "map")? else {
        return None;
    };
    if !inner
        .map
        .values()
        .all(|v| matches!(v, Term::List(l) if l.is_nil()))
    {
        return None;
    }
    Some((form, &inner.map))
}

// ---------------------------------------------------------------------------
// Keyword lists

/// The keyword list `[key: value, ...]`: a proper list of `{atom, value}`
/// tuples in the given order, duplicates kept (`[]` when empty).
pub fn keyword<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Term)>) -> Term {
    let elements: Vec<Term> = pairs
        .into_iter()
        .map(|(k, v)| Term::Tuple(Tuple::from(vec![atom(k.as_ref()), v])))
        .collect();
    Term::List(List::from(elements))
}

/// The pairs of a keyword list, in order, duplicates kept. `None` unless
/// `term` is a proper list whose every element is a 2-tuple with an atom
/// first. `[]` is the empty keyword list.
pub fn keyword_pairs(term: &Term) -> Option<Vec<(&str, &Term)>> {
    let elements: &[Term] = match term {
        Term::List(l) => &l.elements,
        // STRING_EXT holds small integers only: a keyword list only if empty.
        Term::ByteList(b) if b.bytes.is_empty() => &[],
        _ => return None,
    };
    elements
        .iter()
        .map(|e| match e {
            Term::Tuple(t) => match t.elements.as_slice() {
                [Term::Atom(k), v] => Some((k.name.as_str(), v)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The first value for `key`, as `Keyword.get/2` finds it. `None` when the
/// key is absent or `term` is not a keyword list (see [`keyword_pairs`]).
pub fn keyword_get<'a>(term: &'a Term, key: &str) -> Option<&'a Term> {
    keyword_pairs(term)?
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// Every value for `key` in order, as `Keyword.get_values/2` gives them.
/// `None` when `term` is not a keyword list.
pub fn keyword_get_values<'a>(term: &'a Term, key: &str) -> Option<Vec<&'a Term>> {
    Some(
        keyword_pairs(term)?
            .into_iter()
            .filter_map(|(k, v)| (k == key).then_some(v))
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Strings, charlists, nil and booleans

/// An Elixir string: a UTF-8 binary.
pub fn string(s: &str) -> Term {
    Term::Binary(Binary::from(s.as_bytes()))
}

/// The text of an Elixir string: `term` is a binary holding valid UTF-8.
pub fn as_str(term: &Term) -> Option<&str> {
    match term {
        Term::Binary(b) => std::str::from_utf8(&b.bytes).ok(),
        _ => None,
    }
}

/// A charlist (`~c"..."`, Erlang's `"..."`), encoded as the BEAM encodes it:
/// `[]` when empty, a [`ByteList`] (`STRING_EXT`, one Latin-1 byte per code
/// point) when every code point is below 256 and there are fewer than 65536,
/// a list of integers otherwise.
pub fn charlist(s: &str) -> Term {
    if s.is_empty() {
        return Term::List(List::nil());
    }
    let latin1: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c).ok()).collect();
    match latin1 {
        Some(bytes) if bytes.len() <= usize::from(u16::MAX) => {
            Term::ByteList(ByteList::from(bytes))
        }
        _ => Term::List(List::from(
            s.chars()
                .map(|c| int(i64::from(u32::from(c))))
                .collect::<Vec<_>>(),
        )),
    }
}

/// The text of a charlist in any of the forms [`charlist`] builds (or a
/// list of integers that happens to be all below 256). `None` unless every
/// element is a Unicode scalar value.
pub fn as_charlist(term: &Term) -> Option<String> {
    match term {
        Term::ByteList(b) => Some(b.bytes.iter().map(|&c| char::from(c)).collect()),
        Term::List(l) => l
            .elements
            .iter()
            .map(|e| match e {
                Term::FixInteger(i) => u32::try_from(i.value).ok().and_then(char::from_u32),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Elixir's `nil`: the atom `nil` (not the empty list, which is [`super::nil`]).
pub fn nil_atom() -> Term {
    atom("nil")
}

/// True when `term` is the atom `nil`.
pub fn is_nil(term: &Term) -> bool {
    super::is_atom(term, "nil")
}

/// `true` or `false` as atoms.
pub fn boolean(value: bool) -> Term {
    atom(if value { "true" } else { "false" })
}

/// The value of the atom `true` or `false`; `None` for anything else.
pub fn as_bool(term: &Term) -> Option<bool> {
    match super::as_atom(term)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}
