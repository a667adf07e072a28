//! `term::elixir` against real Elixir: for every helper, Elixir builds the same
//! value and we check both directions:
//! - Elixir's `:erlang.term_to_binary/1` bytes, decoded by our decoder
//!   (`term::etf`), equal what our builder makes (`==` on `Term`), and our
//!   matchers read them;
//! - our builder's bytes, decoded by Elixir, are `===` to Elixir's own value.
//!
//! All cases run in one `elixir` process (started once per test binary, waited
//! for with `Command::output`). Without `elixir` on PATH each test prints one
//! `SKIPPED` line and passes, unless `BEAM_PEER_REQUIRE_ERL=1`.
//!
//! Releases covered: OTP 25 / Elixir 1.14 (Debian bookworm, the main run)
//! and OTP 27 / Elixir 1.18 (Debian trixie, `scripts/matrix.sh trixie`);
//! the binary prints the releases it ran against. Where the releases
//! differ, a test checks what the release it talks to does.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use beam_peer::term::elixir::{self, StructBuilder};
use beam_peer::term::{atom, binary, int, list, nil, tuple, Float, ImproperList, Map, Term};
use proptest::prelude::*;

/// Module definitions the cases may use.
const PRELUDE: &str = r#"
defmodule MyApp.User do
  defstruct name: nil, age: 0, tags: []
end
"#;

struct Case {
    name: &'static str,
    /// An Elixir expression.
    elixir: &'static str,
    /// What our builders make of the same value.
    ours: Term,
}

fn cases() -> Vec<Case> {
    let c = |name, elixir, ours| Case { name, elixir, ours };
    let mapset = |elements: Vec<Term>| elixir::mapset_in(peer_mapset_form(), elements);
    vec![
        c(
            "module_elixir",
            "MyApp.Registry",
            elixir::module("MyApp.Registry"),
        ),
        c(
            "module_prefixed",
            "MyApp.Registry",
            elixir::module("Elixir.MyApp.Registry"),
        ),
        c("module_single", "MapSet", elixir::module("MapSet")),
        c("module_root", "Elixir", elixir::module("Elixir")),
        c("module_erlang_colon", ":erlang", elixir::module(":erlang")),
        c(
            "module_erlang_bare",
            ":gen_server",
            elixir::module("gen_server"),
        ),
        c(
            "struct_user",
            r#"%MyApp.User{name: "ana", age: 33, tags: [:admin]}"#,
            StructBuilder::new("MyApp.User")
                .field("name", elixir::string("ana"))
                .field("age", int(33))
                .field("tags", list(vec![atom("admin")]))
                .build(),
        ),
        c(
            "struct_user_defaults",
            "%MyApp.User{}",
            elixir::struct_term(
                "MyApp.User",
                [
                    ("name", elixir::nil_atom()),
                    ("age", int(0)),
                    ("tags", nil()),
                ],
            ),
        ),
        c(
            "struct_uri",
            r#"URI.parse("http://example.com:8080/p?q=1")"#,
            elixir::struct_term(
                "URI",
                [
                    ("scheme", elixir::string("http")),
                    ("userinfo", elixir::nil_atom()),
                    ("host", elixir::string("example.com")),
                    ("port", int(8080)),
                    ("path", elixir::string("/p")),
                    ("query", elixir::string("q=1")),
                    ("fragment", elixir::nil_atom()),
                    ("authority", elixir::string("example.com:8080")),
                ],
            ),
        ),
        c(
            "struct_range",
            "1..10//3",
            StructBuilder::new("Range")
                .field("first", int(1))
                .field("last", int(10))
                .field("step", int(3))
                .build(),
        ),
        c(
            "mapset_ints",
            "MapSet.new([1, 2])",
            mapset(vec![int(1), int(2)]),
        ),
        c("mapset_empty", "MapSet.new()", mapset(vec![])),
        c(
            "mapset_duplicates",
            "MapSet.new([3, 1, 3, 2, 1])",
            mapset([3, 1, 3, 2, 1].map(int).to_vec()),
        ),
        c(
            "mapset_mixed",
            r#"MapSet.new([1, "two", :three, {4, "five"}, -70000, 2.5])"#,
            mapset(vec![
                int(1),
                elixir::string("two"),
                atom("three"),
                tuple(vec![int(4), elixir::string("five")]),
                int(-70000),
                Term::from(Float::try_from(2.5).unwrap()),
            ]),
        ),
        c(
            // More than 32 keys: the BEAM stores (and so encodes) a hash map.
            "mapset_large",
            "MapSet.new(1..100)",
            mapset((1..=100).map(int).collect()),
        ),
        c(
            "keyword_dups",
            r#"[a: 1, b: "x", a: 3]"#,
            elixir::keyword([("a", int(1)), ("b", elixir::string("x")), ("a", int(3))]),
        ),
        c(
            "keyword_opts",
            "[timeout: 5000, name: {:global, :foo}, debug: false]",
            elixir::keyword([
                ("timeout", int(5000)),
                ("name", tuple(vec![atom("global"), atom("foo")])),
                ("debug", elixir::boolean(false)),
            ]),
        ),
        c(
            "keyword_empty",
            "[]",
            elixir::keyword(Vec::<(&str, Term)>::new()),
        ),
        c(
            "string",
            r#""héllo ☃ 日本""#,
            elixir::string("héllo ☃ 日本"),
        ),
        c("string_empty", r#""""#, elixir::string("")),
        c("charlist_ascii", r#"~c"abc""#, elixir::charlist("abc")),
        c("charlist_latin1", r#"~c"héllo""#, elixir::charlist("héllo")),
        c("charlist_unicode", r#"~c"日本""#, elixir::charlist("日本")),
        c("charlist_empty", r#"~c"""#, elixir::charlist("")),
        c("nil", "nil", elixir::nil_atom()),
        c("true", "true", elixir::boolean(true)),
        c(
            "nested",
            r#"%{opts: [only: MapSet.new([:x, :y])], user: %MyApp.User{name: "bo"}, mod: Enum}"#,
            Term::Map(Map::from([
                (
                    atom("opts"),
                    elixir::keyword([("only", mapset(vec![atom("x"), atom("y")]))]),
                ),
                (
                    atom("user"),
                    StructBuilder::new("MyApp.User")
                        .field("name", elixir::string("bo"))
                        .field("age", int(0))
                        .field("tags", nil())
                        .build(),
                ),
                (atom("mod"), elixir::module("Enum")),
            ])),
        ),
    ]
}

/// What Elixir said about one case.
struct Outcome {
    /// Elixir's `term_to_binary` of the expression, decoded by `term::etf`.
    theirs: Term,
    /// Whether Elixir found our encoding `===` to its own value.
    elixir_agrees: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from elixir"))
        .collect()
}

fn encode(term: &Term) -> Vec<u8> {
    beam_peer::term::etf::to_binary(term).expect("encode our term")
}

/// The MapSet form of the Elixir under test (the 1.14 form when there is
/// none: no case is run then).
fn peer_mapset_form() -> elixir::MapSetForm {
    common::beam_versions()
        .and_then(|v| v.mapset)
        .unwrap_or(elixir::MapSetForm::Versioned)
}

/// Runs every case through one `elixir` process; `None` when there is no
/// `elixir` (and it is not required).
fn outcomes() -> Option<&'static HashMap<String, Outcome>> {
    static OUTCOMES: OnceLock<Option<HashMap<String, Outcome>>> = OnceLock::new();
    OUTCOMES.get_or_init(run_elixir).as_ref()
}

fn run_elixir() -> Option<HashMap<String, Outcome>> {
    let found = common::beam_tool("elixir")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("BEAM_PEER_REQUIRE_ERL").as_deref() == Ok("1") {
            panic!("elixir is required (BEAM_PEER_REQUIRE_ERL=1) but not found on PATH");
        }
        return None;
    }
    let mut script = String::from(PRELUDE);
    script.push_str("defmodule BeamPeerCases do\n  def all, do: [\n");
    for case in cases() {
        script.push_str(&format!(
            "  {{\"{}\", fn -> {} end, \"{}\"}},\n",
            case.name,
            case.elixir,
            hex(&encode(&case.ours))
        ));
    }
    script.push_str(
        r##"]
end
for {name, f, ours_hex} <- BeamPeerCases.all() do
  theirs = f.()
  ours = :erlang.binary_to_term(Base.decode16!(ours_hex))
  IO.puts("#{name} #{Base.encode16(:erlang.term_to_binary(theirs))} #{ours === theirs}")
end
"##,
    );
    let path =
        std::env::temp_dir().join(format!("beam_peer_elixir_terms_{}.exs", std::process::id()));
    std::fs::write(&path, &script).expect("write elixir script");
    let out = common::beam_tool("elixir").arg(&path).output();
    let _ = std::fs::remove_file(&path);
    let out = out.expect("run elixir");
    assert!(
        out.status.success(),
        "elixir failed: {}\n{}\nscript:\n{script}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 from elixir");
    let mut results = HashMap::new();
    for line in stdout.lines() {
        let mut parts = line.split(' ');
        let (Some(name), Some(bytes), Some(agrees), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("unexpected line from elixir: {line:?}");
        };
        let theirs = beam_peer::term::etf::from_binary(&unhex(bytes)[..])
            .expect("term::etf decodes elixir's bytes");
        results.insert(
            name.to_string(),
            Outcome {
                theirs,
                elixir_agrees: agrees == "true",
            },
        );
    }
    assert_eq!(results.len(), cases().len(), "elixir answered every case");
    Some(results)
}

/// Checks case `name` both ways and returns Elixir's term, or `None` (after
/// one `SKIPPED` line) without elixir.
fn check(test: &str, name: &str) -> Option<Term> {
    let Some(outcomes) = outcomes() else {
        println!("SKIPPED {test}: elixir not found on PATH (apt-get install elixir)");
        return None;
    };
    let case = cases().into_iter().find(|c| c.name == name).expect("case");
    let outcome = &outcomes[name];
    assert_eq!(
        outcome.theirs, case.ours,
        "{name}: Elixir's `{}` differs from our builder's term",
        case.elixir
    );
    assert!(
        outcome.elixir_agrees,
        "{name}: Elixir decoded our term and found it !== `{}`",
        case.elixir
    );
    Some(outcome.theirs.clone())
}

#[test]
fn modules() {
    let Some(t) = check("modules", "module_elixir") else {
        return;
    };
    assert_eq!(elixir::module_name(&t), Some("MyApp.Registry"));
    assert!(elixir::is_module(&t, "MyApp.Registry"));
    assert!(elixir::is_module(&t, "Elixir.MyApp.Registry"));
    assert!(!elixir::is_module(&t, "MyApp"));
    check("modules", "module_prefixed");

    let t = check("modules", "module_single").unwrap();
    assert_eq!(elixir::module_name(&t), Some("MapSet"));

    let t = check("modules", "module_root").unwrap();
    assert_eq!(elixir::module_name(&t), Some("Elixir"));

    let t = check("modules", "module_erlang_colon").unwrap();
    assert_eq!(elixir::module_name(&t), Some("erlang"));
    assert!(elixir::is_module(&t, ":erlang"));
    assert!(elixir::is_module(&t, "erlang"));
    let t = check("modules", "module_erlang_bare").unwrap();
    assert_eq!(elixir::module_name(&t), Some("gen_server"));
}

#[test]
fn structs() {
    let Some(t) = check("structs", "struct_user") else {
        return;
    };
    assert_eq!(elixir::struct_name(&t), Some("MyApp.User"));
    assert!(elixir::is_struct(&t, "MyApp.User"));
    assert!(!elixir::is_struct(&t, "MyApp"));
    assert_eq!(
        elixir::struct_field(&t, "name").and_then(elixir::as_str),
        Some("ana")
    );
    assert_eq!(elixir::struct_field(&t, "age"), Some(&int(33)));
    assert_eq!(elixir::struct_field(&t, "missing"), None);

    let t = check("structs", "struct_user_defaults").unwrap();
    assert!(elixir::struct_field(&t, "name").is_some_and(elixir::is_nil));

    let t = check("structs", "struct_uri").unwrap();
    assert_eq!(elixir::struct_name(&t), Some("URI"));
    assert_eq!(
        elixir::struct_field(&t, "host").and_then(elixir::as_str),
        Some("example.com")
    );
    assert_eq!(elixir::struct_field(&t, "port"), Some(&int(8080)));

    let t = check("structs", "struct_range").unwrap();
    assert!(elixir::is_struct(&t, "Range"));
    assert!(elixir::is_struct(&t, "Elixir.Range"));

    // A plain map is no struct, whatever its keys.
    let plain = check("structs", "nested").unwrap();
    assert_eq!(elixir::struct_name(&plain), None);
    assert_eq!(elixir::struct_field(&plain, "user"), None);
}

fn sorted(mut v: Vec<Term>) -> Vec<Term> {
    // Any total order will do to compare as sets.
    v.sort_by_key(|t| format!("{t:?}"));
    v
}

#[test]
fn mapsets() {
    let Some(t) = check("mapsets", "mapset_ints") else {
        return;
    };
    assert!(elixir::is_struct(&t, "MapSet"));
    assert_eq!(
        sorted(elixir::mapset_elements(&t).unwrap()),
        sorted(vec![int(1), int(2)])
    );

    let t = check("mapsets", "mapset_empty").unwrap();
    assert_eq!(elixir::mapset_elements(&t), Some(vec![]));

    let t = check("mapsets", "mapset_duplicates").unwrap();
    assert_eq!(
        sorted(elixir::mapset_elements(&t).unwrap()),
        sorted([1, 2, 3].map(int).to_vec())
    );

    let t = check("mapsets", "mapset_mixed").unwrap();
    assert_eq!(elixir::mapset_elements(&t).unwrap().len(), 6);

    let t = check("mapsets", "mapset_large").unwrap();
    assert_eq!(
        sorted(elixir::mapset_elements(&t).unwrap()),
        sorted((1..=100).map(int).collect())
    );

    // Nested in a map and a keyword list.
    let t = check("mapsets", "nested").unwrap();
    let Term::Map(m) = &t else { panic!("map") };
    let opts = &m.map[&atom("opts")];
    let only = elixir::keyword_get(opts, "only").unwrap();
    assert_eq!(
        sorted(elixir::mapset_elements(only).unwrap()),
        sorted(vec![atom("x"), atom("y")])
    );
    assert_eq!(elixir::module_name(&m.map[&atom("mod")]), Some("Enum"));
    assert!(elixir::is_struct(&m.map[&atom("user")], "MyApp.User"));
}

#[test]
fn keywords() {
    let Some(t) = check("keywords", "keyword_dups") else {
        return;
    };
    assert_eq!(elixir::keyword_get(&t, "a"), Some(&int(1)));
    assert_eq!(
        elixir::keyword_get(&t, "b").and_then(elixir::as_str),
        Some("x")
    );
    assert_eq!(elixir::keyword_get(&t, "c"), None);
    assert_eq!(
        elixir::keyword_get_values(&t, "a"),
        Some(vec![&int(1), &int(3)])
    );
    let keys: Vec<&str> = elixir::keyword_pairs(&t)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["a", "b", "a"]);

    let t = check("keywords", "keyword_opts").unwrap();
    assert_eq!(elixir::keyword_get(&t, "timeout"), Some(&int(5000)));
    assert_eq!(
        elixir::keyword_get(&t, "debug").and_then(elixir::as_bool),
        Some(false)
    );

    let t = check("keywords", "keyword_empty").unwrap();
    assert_eq!(elixir::keyword_pairs(&t), Some(vec![]));
    assert_eq!(elixir::keyword_get(&t, "a"), None);
}

#[test]
fn strings_and_charlists() {
    let Some(t) = check("strings_and_charlists", "string") else {
        return;
    };
    assert_eq!(elixir::as_str(&t), Some("héllo ☃ 日本"));
    let t = check("strings_and_charlists", "string_empty").unwrap();
    assert_eq!(elixir::as_str(&t), Some(""));

    for (name, text) in [
        ("charlist_ascii", "abc"),
        ("charlist_latin1", "héllo"),
        ("charlist_unicode", "日本"),
        ("charlist_empty", ""),
    ] {
        let t = check("strings_and_charlists", name).unwrap();
        assert_eq!(elixir::as_charlist(&t).as_deref(), Some(text), "{name}");
        // A charlist is no string and a string no charlist.
        assert_eq!(elixir::as_str(&t), None, "{name}");
    }
    assert!(matches!(
        check("strings_and_charlists", "charlist_latin1").unwrap(),
        Term::ByteList(_)
    ));
}

#[test]
fn nil_and_booleans() {
    let Some(t) = check("nil_and_booleans", "nil") else {
        return;
    };
    assert!(elixir::is_nil(&t));
    assert_eq!(elixir::as_bool(&t), None);
    let t = check("nil_and_booleans", "true").unwrap();
    assert_eq!(elixir::as_bool(&t), Some(true));
    assert!(!elixir::is_nil(&nil()), "`[]` is not Elixir's nil");
}

// ---------------------------------------------------------------------------
// Malformed input: no elixir needed.

#[test]
fn both_mapset_forms_read_and_say_which_they_are() {
    use elixir::MapSetForm::{Sets2, Versioned};
    for form in [Versioned, Sets2] {
        let set = elixir::mapset_in(form, [int(1), int(2), int(1)]);
        assert_eq!(elixir::MapSetForm::of(&set), Some(form));
        assert_eq!(
            sorted(elixir::mapset_elements(&set).unwrap()),
            vec![int(1), int(2)]
        );
    }
    // Different terms, and so different hashes: why the form matters.
    let (old, new) = (
        elixir::mapset_in(Versioned, [int(1)]),
        elixir::mapset_in(Sets2, [int(1)]),
    );
    assert_ne!(old, new);
    assert_ne!(
        beam_peer::term::phash2::phash2(&old),
        beam_peer::term::phash2::phash2(&new)
    );
    assert_eq!(elixir::mapset([int(1)]), old, "mapset/1 is the 1.14 form");
    // `:erlang.phash2(MapSet.new([1, 2]))` as Elixir 1.14.0 and 1.18.3 compute it.
    let ints = [int(1), int(2)];
    assert_eq!(
        beam_peer::term::phash2::phash2(&elixir::mapset_in(Versioned, ints.clone())),
        58_506_104
    );
    assert_eq!(
        beam_peer::term::phash2::phash2(&elixir::mapset_in(Sets2, ints)),
        111_870_001
    );
}

#[test]
fn mapset_elements_rejects_malformed() {
    let good = elixir::mapset([int(1)]);
    assert_eq!(elixir::mapset_elements(&good), Some(vec![int(1)]));

    fn with(f: impl FnOnce(StructBuilder) -> StructBuilder) -> Term {
        f(StructBuilder::new("MapSet")).build()
    }
    fn inner(v: Term) -> Term {
        Term::Map(Map::from([(int(1), v)]))
    }
    let bad = [
        ("not a map", int(1)),
        (
            "plain map",
            Term::Map(Map::from([(atom("map"), inner(nil()))])),
        ),
        (
            "other struct",
            StructBuilder::new("Foo")
                .field("map", inner(nil()))
                .field("version", int(2))
                .build(),
        ),
        ("no fields", with(|b| b)),
        ("version only", with(|b| b.field("version", int(2)))),
        (
            "1.15+ form with a value not []",
            with(|b| b.field("map", inner(atom("true")))),
        ),
        (
            "1.15+ form with an extra field",
            with(|b| b.field("map", inner(nil())).field("extra", int(0))),
        ),
        (
            "version 1",
            with(|b| b.field("map", inner(nil())).field("version", int(1))),
        ),
        (
            "version as atom",
            with(|b| b.field("map", inner(nil())).field("version", atom("2"))),
        ),
        (
            "map is a list",
            with(|b| b.field("map", list(vec![int(1)])).field("version", int(2))),
        ),
        (
            "value not []",
            with(|b| b.field("map", inner(atom("true"))).field("version", int(2))),
        ),
        (
            "value a non-empty list",
            with(|b| {
                b.field("map", inner(list(vec![int(0)])))
                    .field("version", int(2))
            }),
        ),
        (
            "extra field",
            with(|b| {
                b.field("map", inner(nil()))
                    .field("version", int(2))
                    .field("extra", int(0))
            }),
        ),
        (
            "__struct__ a string",
            Term::Map(Map::from([
                (atom("__struct__"), elixir::string("Elixir.MapSet")),
                (atom("map"), inner(nil())),
                (atom("version"), int(2)),
            ])),
        ),
    ];
    for (what, term) in bad {
        assert_eq!(elixir::mapset_elements(&term), None, "{what}: {term:?}");
    }
}

#[test]
fn keyword_rejects_malformed() {
    for (what, term) in [
        ("not a list", int(1)),
        ("map", Term::Map(Map::from([(atom("a"), int(1))]))),
        ("bare atoms", list(vec![atom("a")])),
        (
            "string key",
            list(vec![tuple(vec![elixir::string("a"), int(1)])]),
        ),
        (
            "3-tuple",
            list(vec![tuple(vec![atom("a"), int(1), int(2)])]),
        ),
        (
            "one bad element",
            list(vec![tuple(vec![atom("a"), int(1)]), int(2)]),
        ),
        ("charlist", elixir::charlist("ab")),
        (
            "improper",
            Term::ImproperList(ImproperList::from((
                vec![tuple(vec![atom("a"), int(1)])],
                atom("b"),
            ))),
        ),
    ] {
        assert_eq!(elixir::keyword_pairs(&term), None, "{what}");
        assert_eq!(elixir::keyword_get(&term, "a"), None, "{what}");
        assert_eq!(elixir::keyword_get_values(&term, "a"), None, "{what}");
    }
}

#[test]
fn matchers_reject_other_shapes() {
    assert_eq!(elixir::as_str(&binary(vec![0xff, 0xfe])), None);
    assert_eq!(elixir::as_str(&atom("a")), None);
    assert_eq!(elixir::module_name(&elixir::string("Elixir.Foo")), None);
    assert_eq!(elixir::module_name(&atom("Elixir.")), None);
    assert_eq!(elixir::struct_name(&int(1)), None);
    assert_eq!(
        elixir::as_charlist(&list(vec![int(0x11_0000)])),
        None,
        "beyond Unicode"
    );
    assert_eq!(
        elixir::as_charlist(&list(vec![int(0xD800)])),
        None,
        "surrogate"
    );
    assert_eq!(elixir::as_charlist(&list(vec![int(-1)])), None);
    assert_eq!(elixir::as_charlist(&list(vec![atom("a")])), None);
    assert_eq!(elixir::as_bool(&int(1)), None);
}

// ---------------------------------------------------------------------------
// Round trips through the external term format.

fn wire(term: &Term) -> Term {
    beam_peer::term::etf::from_binary(&encode(term)[..]).expect("decode")
}

proptest! {
    #[test]
    fn keyword_round_trip(pairs in proptest::collection::vec(("[a-z_]{1,8}", any::<i32>()), 0..20)) {
        let t = wire(&elixir::keyword(pairs.iter().map(|(k, v)| (k.as_str(), int(i64::from(*v))))));
        let back: Vec<(String, i32)> = elixir::keyword_pairs(&t)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), beam_peer::term::as_i64(v).unwrap() as i32))
            .collect();
        prop_assert_eq!(&back, &pairs);
        if let Some((k, v)) = pairs.first() {
            prop_assert_eq!(elixir::keyword_get(&t, k), Some(&int(i64::from(*v))));
        }
    }

    #[test]
    fn string_and_charlist_round_trip(s in "\\PC{0,40}") {
        let t = wire(&elixir::string(&s));
        prop_assert_eq!(elixir::as_str(&t), Some(s.as_str()));
        prop_assert_eq!(elixir::as_charlist(&wire(&elixir::charlist(&s))), Some(s.clone()));
    }

    #[test]
    fn mapset_round_trip(elems in proptest::collection::hash_set(any::<i64>(), 0..50)) {
        let t = wire(&elixir::mapset(elems.iter().map(|&e| int(e))));
        let mut back: Vec<i64> = elixir::mapset_elements(&t)
            .unwrap()
            .iter()
            .map(|e| beam_peer::term::as_i64(e).unwrap())
            .collect();
        back.sort_unstable();
        let mut want: Vec<i64> = elems.into_iter().collect();
        want.sort_unstable();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn module_round_trip(name in "[A-Z][a-zA-Z0-9_]{0,8}(\\.[A-Z][a-zA-Z0-9_]{0,8}){0,3}") {
        let t = wire(&elixir::module(&name));
        let full = format!("Elixir.{name}");
        prop_assert_eq!(beam_peer::term::as_atom(&t), Some(full.as_str()));
        prop_assert_eq!(elixir::module_name(&t), Some(name.as_str()));
        prop_assert!(elixir::is_module(&t, &name));
    }

    #[test]
    fn struct_round_trip(fields in proptest::collection::hash_map("[a-z][a-z_]{0,8}", any::<i32>(), 0..10)) {
        let t = wire(&elixir::struct_term("My.Struct", fields.iter().map(|(k, v)| (k.as_str(), int(i64::from(*v))))));
        prop_assert_eq!(elixir::struct_name(&t), Some("My.Struct"));
        for (k, v) in &fields {
            prop_assert_eq!(elixir::struct_field(&t, k), Some(&int(i64::from(*v))));
        }
    }
}
