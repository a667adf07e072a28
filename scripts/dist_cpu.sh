#!/usr/bin/env bash
# Instructions per small message on each side of a Rust->Rust connection,
# counted by callgrind (deterministic where wall-clock benches on a shared
# machine are not): examples/dist_load.rs run twice, with N1 and N2
# messages; (Ir(N2) - Ir(N1)) / (N2 - N1) per side, so startup, handshake
# and warm-up cancel. Usage: scripts/dist_cpu.sh [N1] [N2] [OUTDIR]
set -euo pipefail
n1=${1:-20000}
n2=${2:-100000}
out=${3:-$(mktemp -d)}
mkdir -p "$out"
bin=target/release/examples/dist_load
cargo build --release --example dist_load -q
run() {
  local n=$1 port=$((20000 + RANDOM % 20000))
  local tport=$((port + 1))
  local vg=(valgrind --tool=callgrind --quiet)
  coproc T { "${vg[@]}" --callgrind-out-file="$out/target.$n" "$bin" target "$tport" 2>&1; }
  local tpid=$T_PID
  read -r line <&"${T[0]}"
  [ "$line" = ready ] || { echo "target: $line" >&2; kill "$tpid"; exit 1; }
  "${vg[@]}" --callgrind-out-file="$out/sender.$n" "$bin" send "$port" "$tport" "$n" >&2
  wait "$tpid"
}
total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
run "$n1"
run "$n2"
for side in sender target; do
  a=$(total "$out/$side.$n1")
  b=$(total "$out/$side.$n2")
  echo "$side: $(( (b - a) / (n2 - n1) )) instructions per message ($out/$side.$n2)"
done
