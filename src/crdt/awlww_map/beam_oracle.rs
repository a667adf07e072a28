//! Differential test against DeltaCrdt's own `AWLWWMap` running on the BEAM.
//!
//! Random states and deltas (valid or not: unrelated contexts, exact and
//! compressed dots, keys outside the join list, timestamp ties) are joined
//! and read by upstream's module and by ours; the results must be equal
//! terms. Needs `elixir` and a `BEAM_PEER_HORDE_EBIN` entry holding the
//! compiled `Elixir.DeltaCrdt.AWLWWMap.beam`; skipped with one line otherwise.

use super::*;
use crate::crdt::dots::{Context, Dot};
use crate::term::{binary, list};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::Command;

const SCRIPT: &str = r#"
[input, output] = System.argv()
cases = input |> File.read!() |> :erlang.binary_to_term()
results =
  Enum.map(cases, fn {a, b, keys} ->
    j = DeltaCrdt.AWLWWMap.join(a, b, keys)
    {j, DeltaCrdt.AWLWWMap.read(j)}
  end)
File.write!(output, :erlang.term_to_binary(results))
"#;

fn delta_crdt_ebin() -> Option<String> {
    let dirs = std::env::var("BEAM_PEER_HORDE_EBIN").ok()?;
    dirs.split(':')
        .find(|d| {
            PathBuf::from(d)
                .join("Elixir.DeltaCrdt.AWLWWMap.beam")
                .exists()
        })
        .map(str::to_owned)
}

fn random_dots(rng: &mut StdRng) -> Dots {
    let n = rng.random_range(0..5);
    let exact = rng.random_bool(0.5);
    let dots: Vec<Dot> = (0..n)
        .map(|_| Dot::new(rng.random_range(1..4), rng.random_range(1..5)))
        .collect();
    if exact {
        Dots::Set(dots.into_iter().collect())
    } else {
        let ctx: Context = dots.iter().map(|d| (d.node, d.counter)).collect();
        Dots::Context(ctx)
    }
}

fn random_state(rng: &mut StdRng, keys: &[Term]) -> AwLwwMap {
    let mut value = super::KeyMap::new();
    for key in keys {
        if rng.random_bool(0.4) {
            continue;
        }
        let mut entries = Entries::new();
        // Upstream's read crashes on a key with no entries: always give one.
        for _ in 0..rng.random_range(1..4) {
            let stamped = Stamped {
                value: OrdTerm(match rng.random_range(0..3) {
                    0 => int(rng.random_range(0..3)),
                    1 => atom(["a", "b", "c"][rng.random_range(0..3)]),
                    _ => tuple(vec![int(rng.random_range(0..2)), atom("x")]),
                }),
                ts: rng.random_range(-2..2) * 1_000_000_000_000,
            };
            let dots: DotSet = (0..rng.random_range(1..3))
                .map(|_| Dot::new(rng.random_range(1..4), rng.random_range(1..5)))
                .collect();
            entries.insert(stamped, dots);
        }
        value.insert(OrdTerm(key.clone()), entries);
    }
    AwLwwMap {
        dots: random_dots(rng),
        value,
    }
}

#[test]
fn joins_and_reads_match_upstream_on_the_beam() {
    let Some(ebin) = delta_crdt_ebin() else {
        eprintln!("skipped: BEAM_PEER_HORDE_EBIN has no Elixir.DeltaCrdt.AWLWWMap.beam");
        return;
    };
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    let pool = [
        atom("k1"),
        int(2),
        binary("k3"),
        tuple(vec![atom("k"), int(4)]),
    ];
    let mut cases = Vec::new();
    let mut inputs = Vec::new();
    for _ in 0..2000 {
        let a = random_state(&mut rng, &pool);
        let b = random_state(&mut rng, &pool);
        let keys: Vec<Term> = pool
            .iter()
            .filter(|_| rng.random_bool(0.6))
            .cloned()
            .collect();
        inputs.push(tuple(vec![a.to_term(), b.to_term(), list(keys.clone())]));
        cases.push((a, b, keys));
    }
    let dir = std::env::temp_dir().join(format!("beam_peer_awlww_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("in.etf"), dir.join("out.etf"));
    let mut bytes = Vec::new();
    bytes.extend(crate::term::etf::to_binary(&list(inputs)).unwrap());
    std::fs::write(&input, bytes).unwrap();
    // The same BEAM as the integration tests: BEAM_PEER_BEAM_BIN, else PATH.
    let elixir = match std::env::var_os("BEAM_PEER_BEAM_BIN") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir).join("elixir"),
        _ => "elixir".into(),
    };
    let status = Command::new(elixir)
        .args(["-pa", &ebin, "-e", SCRIPT, "--"])
        .arg(&input)
        .arg(&output)
        .status()
        .expect("run elixir");
    assert!(status.success(), "elixir failed");
    let results = crate::term::etf::from_binary(&std::fs::read(&output).unwrap()[..]).unwrap();
    let results = crate::term::as_list(&results).expect("a list of results");
    assert_eq!(results.len(), cases.len());
    for ((a, b, keys), result) in cases.iter().zip(&results) {
        let [joined, read] = crate::term::as_tuple(result).expect("a pair") else {
            panic!("not a pair: {result:?}");
        };
        let ours = a.join(b, keys);
        let theirs = AwLwwMap::from_term(joined).expect("upstream's join parses");
        assert_eq!(ours, theirs, "join of {a:?} and {b:?} over {keys:?}");
        let our_read = Term::Map(Map {
            map: ours.read().into_iter().map(|(k, v)| (k.0, v)).collect(),
        });
        assert_eq!(
            term_cmp(&our_read, read),
            Ordering::Equal,
            "read of {ours:?}: ours {our_read:?}, upstream {read:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
