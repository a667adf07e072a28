//! Term benchmarks, side by side with the BEAM on the same corpus in one run:
//! encode MB/s (`term_to_binary`), decode MB/s (`binary_to_term`) and phash2
//! terms/s. The corpus is 20,000 mixed terms (integers, floats, atoms,
//! binaries, bignums, `{:key, "name-N"}` tuples, nested tuples, lists and maps
//! up to depth 4), generated here and handed to `erl` as one external-format
//! file, so both sides work on exactly the same terms.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use beam_peer::term::{self, etf, phash2, Term};

mod common;

fn corpus(n: usize) -> Vec<Term> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    fn make(kind: u64, depth: u32, i: usize, next: &mut dyn FnMut() -> u64) -> Term {
        match if depth >= 4 { kind % 6 } else { kind % 9 } {
            0 => term::int((next() % 2_000_000) as i64 - 1_000_000),
            1 => Term::Float(term::Float {
                value: (next() % 1_000_000) as f64 / 7.0,
            }),
            2 => term::atom(
                ["ok", "error", "undefined", "key", "member", "process"][(next() % 6) as usize],
            ),
            3 => term::binary(format!("payload-{i}-{}", next() % 1000).into_bytes()),
            4 => Term::BigInteger(term::BigInteger::from(
                (next() as i128 * 1_000_003) as i64 as i128 as i64,
            )),
            5 => beam_peer::tup![term::atom("key"), term::binary(format!("name-{i}"))],
            6 => {
                let n = (next() % 4 + 1) as usize;
                term::tuple((0..n).map(|_| make(next(), depth + 1, i, next)).collect())
            }
            7 => {
                let n = (next() % 5 + 1) as usize;
                term::list((0..n).map(|_| make(next(), depth + 1, i, next)).collect())
            }
            _ => {
                let n = (next() % 4 + 1) as usize;
                Term::Map(term::Map {
                    map: (0..n)
                        .map(|k| (term::int(k as i64), make(next(), depth + 1, i, next)))
                        .collect(),
                })
            }
        }
    }
    (0..n).map(|i| make(next(), 0, i, &mut next)).collect()
}

struct Figures {
    encode_mb_s: f64,
    decode_mb_s: f64,
    phash2_terms_s: f64,
}

fn rust_side(terms: &[Term], rounds: usize) -> Figures {
    let encoded: Vec<Vec<u8>> = terms
        .iter()
        .map(|t| etf::to_binary(t).expect("encodes"))
        .collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    let mut buf = Vec::with_capacity(1 << 16);
    let t0 = Instant::now();
    for _ in 0..rounds {
        for t in terms {
            buf.clear();
            buf.push(131);
            etf::encode(t, &mut buf).expect("encodes");
            std::hint::black_box(&buf);
        }
    }
    let enc = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for _ in 0..rounds {
        for b in &encoded {
            std::hint::black_box(etf::from_binary(b).expect("decodes"));
        }
    }
    let dec = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for _ in 0..rounds {
        for t in terms {
            std::hint::black_box(phash2::phash2(t));
        }
    }
    let h = t0.elapsed().as_secs_f64();
    let mb = (bytes * rounds) as f64 / 1e6;
    Figures {
        encode_mb_s: mb / enc,
        decode_mb_s: mb / dec,
        phash2_terms_s: (terms.len() * rounds) as f64 / h,
    }
}

/// The BEAM's figures for the corpus written at `corpus`, measured by the
/// compiled `beam_peer_bench` module in `ebin`.
fn beam_side(ebin: &Path, corpus: &Path, rounds: usize) -> Option<Figures> {
    let code = format!(
        "beam_peer_bench:terms(\"{}\", {rounds}), halt().",
        corpus.display()
    );
    let out = Command::new("erl")
        .args(["-noshell", "-pa"])
        .arg(ebin)
        .args(["-eval", &code])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [e, d, h] => Some(Figures {
            encode_mb_s: *e,
            decode_mb_s: *d,
            phash2_terms_s: *h,
        }),
        _ => {
            eprintln!(
                "erl printed no figures: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("terms bench: pass --bench (scripts/bench.sh) to run");
        return;
    }
    if !common::have_erl() {
        println!("SKIPPED terms bench: erl not found (apt-get install erlang-nox)");
        return;
    }
    let terms = corpus(20_000);
    let rounds = 20;
    // The corpus goes to `erl` as one external-format file, compiled helper
    // alongside; both are made once for all the runs.
    let ebin = common::compile_erlang("beam_peer_terms_ebin", &["beam_peer_bench.erl"]);
    let corpus_path = ebin.join("corpus.etf");
    let all = etf::to_binary(&term::list(terms.to_vec())).expect("corpus encodes");
    std::fs::write(&corpus_path, all).expect("corpus file");
    // Each side runs `repeats` times, alternating. On a shared machine a run
    // is only ever slowed down, so the best figure per line estimates what
    // each side can do and the median what a typical run gives; both are
    // printed.
    let repeats: usize = common::env_or("BENCH_TERMS_REPEATS", 5).max(1);
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        rust.push(rust_side(&terms, rounds));
        let Some(b) = beam_side(&ebin, &corpus_path, rounds) else {
            println!("SKIPPED terms bench BEAM side: erl failed");
            let _ = std::fs::remove_dir_all(&ebin);
            return;
        };
        beam.push(b);
    }
    let _ = std::fs::remove_dir_all(&ebin);
    let best = |runs: &[Figures], f: fn(&Figures) -> f64| runs.iter().map(f).fold(0.0, f64::max);
    let median =
        |runs: &[Figures], f: fn(&Figures) -> f64| common::median(runs.iter().map(f).collect());
    println!(
        "\nterms bench: 20,000 mixed terms x {rounds} rounds, same corpus on both sides, \
         {repeats} alternating runs each (BENCH_TERMS_REPEATS)"
    );
    println!(
        "{:<20} {:>14} {:>14} {:>8} {:>14} {:>14} {:>8}",
        "", "BEAM best", "Rust best", "ratio", "BEAM median", "Rust median", "ratio"
    );
    let row = |label: &str, f: fn(&Figures) -> f64| {
        let (b, r) = (best(&beam, f), best(&rust, f));
        let (bm, rm) = (median(&beam, f), median(&rust, f));
        println!(
            "{label:<20} {b:>14.1} {r:>14.1} {:>7.2}x {bm:>14.1} {rm:>14.1} {:>7.2}x",
            r / b,
            rm / bm
        )
    };
    row("encode (MB/s)", |x| x.encode_mb_s);
    row("decode (MB/s)", |x| x.decode_mb_s);
    row("phash2 (terms/s)", |x| x.phash2_terms_s);
    println!("ratio = Rust / BEAM (above 1.00x is faster)");
}
