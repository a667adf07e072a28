#!/usr/bin/env bash
# Side-by-side benchmarks: the same work done BEAM->BEAM, BEAM->Rust,
# Rust->BEAM and Rust->Rust on this machine, in one run, with ratios.
#   BENCH_MESSAGES (default 1000000), BENCH_CALLS (20000), BENCH_BIG_ROUNDS (7, after one uncounted round),
#   BENCH_CALLERS (100 concurrent callers, each to its own echo server), BENCH_CALLS_EACH (1000 calls each),
#   BENCH_DIST_REPEATS (5 interleaved runs per pair; the best and the median run are shown),
#   BENCH_TERMS_REPEATS (5, likewise for the terms bench)
#   CRDT sync (benches/crdt.rs): BENCH_CRDT_KEYS (1000,10000,100000),
#   BENCH_CRDT_SYNC_MS (300), BENCH_CRDT_IDLE_ROUNDS (5), BENCH_CRDT_DIFF_DEPTH
#   (Rust side; default the library's, 8 = what DeltaCrdt sends); its BEAM column needs
#   BEAM_PEER_HORDE_EBIN (colon-separated ebin dirs of delta_crdt, merkle_map,
#   telemetry) and is skipped with one line without it.
#   Horde.DynamicSupervisor (benches/horde_supervisor.rs): BENCH_SUP_STARTS (1000,10000),
#   BENCH_SUP_FAILOVERS (200,2000), BENCH_SUP_IDLE (10000), BENCH_SUP_IDLE_INTERVALS (5),
#   BENCH_SUP_SYNC_MS (300); its Horde column needs BEAM_PEER_HORDE_EBIN.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v erl >/dev/null 2>&1; then
    echo "erl not found: install erlang-nox (scripts/test.sh does it) to compare with the BEAM" >&2
    exit 1
fi
cargo bench --bench terms -- --bench
cargo bench --bench dist -- --bench "$@"
cargo bench --bench crdt -- --bench "$@"
cargo bench --bench horde_registry
cargo bench --bench pubsub
cargo bench --bench horde_supervisor
