//! The `eetf` feature: `eetf::Term` and our `Term` converted both ways, on
//! the terms of `tests/fixtures/phash2/corpus.txt` (recorded from a real
//! `erl`, with their `phash2` values). For each term written as ETF:
//! - ours -> eetf -> ours gives the same term, exactly;
//! - eetf's own decoding of the BEAM's bytes, converted to ours, is the same
//!   Erlang value our decoder reads from those bytes, and hashes to the value
//!   the BEAM recorded;
//!
//! eetf's encoder is not checked: eetf 0.12 writes some lists wrongly (the
//! list `[-68780425|[2,76]]` from the corpus comes out as the string
//! `[119,2,76]`), which is eetf's business, not the conversion's.
//!
//! "The same Erlang value": the two decoders keep some values in different
//! shapes (`5` as a bignum, `<<1,2,3>>` as a bitstring of 8 tail bits,
//! `[1,2|"ab"]` as an improper list ending in a string), so those compare
//! after [`canon`] puts each in one shape.
//!
//! Runs under the default `cargo test`: the crate's dev-dependency on itself
//! turns the `eetf` feature on for tests.
#![cfg(feature = "eetf")]

use std::path::Path;

use beam_peer::term::phash2::phash2;
use beam_peer::term::{etf, Binary, FixInteger, InternalFun, List, Map, Term, Tuple};

/// One shape per Erlang value (see the module doc).
fn canon(t: Term) -> Term {
    match t {
        Term::BigInteger(b) => match i32::try_from(&b.value) {
            Ok(v) => Term::FixInteger(FixInteger::from(v)),
            Err(_) => Term::BigInteger(b),
        },
        Term::BitBinary(b) if b.tail_bits_size == 8 => Term::Binary(Binary::from(b.bytes)),
        Term::ByteList(b) => canon(Term::List(List::from(
            b.bytes
                .iter()
                .map(|&x| Term::FixInteger(FixInteger::from(i32::from(x))))
                .collect::<Vec<_>>(),
        ))),
        Term::List(l) => Term::List(List::from(
            l.elements.into_iter().map(canon).collect::<Vec<_>>(),
        )),
        Term::ImproperList(l) => {
            let mut elements: Vec<Term> = l.elements.into_iter().map(canon).collect();
            match canon(*l.last) {
                Term::List(tail) => {
                    elements.extend(tail.elements);
                    Term::List(List::from(elements))
                }
                Term::ImproperList(tail) => {
                    elements.extend(tail.elements);
                    Term::ImproperList((elements, *tail.last).into())
                }
                last if elements.is_empty() => last,
                last => Term::ImproperList((elements, last).into()),
            }
        }
        Term::Tuple(t) => Term::Tuple(Tuple::from(
            t.elements.into_iter().map(canon).collect::<Vec<_>>(),
        )),
        Term::Map(m) => Term::Map(
            m.map
                .into_iter()
                .map(|(k, v)| (canon(k), canon(v)))
                .collect::<Map>(),
        ),
        Term::InternalFun(f) => Term::InternalFun(Box::new(match *f {
            InternalFun::New {
                module,
                arity,
                pid,
                free_vars,
                index,
                uniq,
                old_index,
                old_uniq,
            } => InternalFun::New {
                module,
                arity,
                pid,
                free_vars: free_vars.into_iter().map(canon).collect(),
                index,
                uniq,
                old_index,
                old_uniq,
            },
            old => old,
        })),
        other => other,
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn corpus_terms_cross_to_eetf_and_back_unchanged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/phash2/corpus.txt");
    let text = std::fs::read_to_string(path).expect("read corpus");
    let (mut checked, mut eetf_decoded) = (0, 0);
    let mut failures = Vec::new();
    for line in text.lines().map(str::trim) {
        // <etf:HEX | deep:NAME:DEPTH> <phash2(T, 2^32)> <phash2(T)> # description
        let Some(rest) = line.strip_prefix("etf:") else {
            continue;
        };
        let fields: Vec<&str> = rest
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let [hex, _full, p1] = fields[..] else {
            panic!("bad corpus line: {line}");
        };
        let p1: u32 = p1.parse().expect("phash2/1 value");
        let bytes = unhex(hex);
        let ours = etf::from_binary(&bytes).unwrap_or_else(|e| panic!("{line}: {e}"));

        let there: eetf::Term = ours.clone().into();
        match Term::try_from(there.clone()) {
            Ok(back) if back == ours => {}
            other => failures.push(format!("{line}: round trip gave {other:?}")),
        }
        match eetf::Term::decode(&bytes[..]) {
            Ok(theirs) => {
                eetf_decoded += 1;
                match Term::try_from(theirs) {
                    Ok(t) if phash2(&t) == p1 && canon(t.clone()) == canon(ours.clone()) => {}
                    Ok(t) => failures.push(format!(
                        "{line}: eetf's decoding gave\n  {}\nours\n  {}",
                        canon(t),
                        canon(ours.clone())
                    )),
                    Err(e) => {
                        failures.push(format!("{line}: eetf's decoding does not convert: {e}"))
                    }
                }
            }
            Err(e) => println!("eetf does not decode {line}: {e}"),
        }
        checked += 1;
    }
    println!("eetf: {checked} corpus terms converted, {eetf_decoded} also decoded by eetf");
    assert!(checked >= 100, "corpus too small: {checked}");
    assert!(
        eetf_decoded * 10 >= checked * 9,
        "eetf decoded only {eetf_decoded} of {checked}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
