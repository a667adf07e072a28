#!/usr/bin/env bash
# Instructions per Horde.DynamicSupervisor start through one member of a
# two-member Rust cluster, its sync to the other member included, counted
# by callgrind (deterministic where wall-clock benches on a shared machine
# are not): examples/supervisor_starts.rs run twice, with N1 and N2 starts;
# (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up and the cluster forming
# cancel. SYNC_MS (default 6000) is the sync interval, scaled to
# callgrind's speed (~50x slower) from the bench's 300 ms.
# BIN runs another build of the example (a baseline, say).
# Usage: scripts/supervisor_cpu.sh [N1] [N2] [OUTDIR]
set -euo pipefail
n1=${1:-1000}
n2=${2:-5000}
out=${3:-$(mktemp -d)}
sync_ms=${SYNC_MS:-6000}
mkdir -p "$out"
bin=${BIN:-target/release/examples/supervisor_starts}
[ -n "${BIN:-}" ] || cargo build --release --example supervisor_starts -q
total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
for n in "$n1" "$n2"; do
  valgrind --tool=callgrind --quiet --callgrind-out-file="$out/starts.$n" "$bin" "$n" "$sync_ms" >&2
done
a=$(total "$out/starts.$n1")
b=$(total "$out/starts.$n2")
echo "$(( (b - a) / (n2 - n1) )) instructions per start ($out/starts.$n2)"
