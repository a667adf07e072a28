#!/usr/bin/env bash
# The compatibility matrix: the test files that talk to real BEAM nodes, run
# against each supported OTP / Elixir pair, the Rust side always running here.
#
#   scripts/matrix.sh            both columns: this machine's BEAM, then trixie's
#   scripts/matrix.sh host       only this machine's BEAM (Debian bookworm: OTP 25 / Elixir 1.14)
#   scripts/matrix.sh trixie     only OTP 27 / Elixir 1.18, from a Debian trixie root
#
# The trixie root is made once with debootstrap (from the Debian mirror apt is
# already configured with) and reused: BEAM_PEER_TRIXIE_ROOT, default
# /var/cache/beam_peer/trixie. Its erl, erlc, elixir and epmd run through small
# wrappers (a private mount namespace that shows this checkout and /tmp inside
# the root, then chroot), which the tests find through BEAM_PEER_BEAM_BIN. Nodes
# inside and outside share the loopback and one EPMD.
#
# Horde's modules for a column come from BEAM_PEER_HORDE_EBIN (host) and
# BEAM_PEER_TRIXIE_HORDE_EBIN (trixie; paths as seen inside the root); without
# them the live Horde and DeltaCrdt files are skipped, and said so.
#
# Each column ends with one line "matrix COLUMN: N passed, N failed, N skipped";
# a column that cannot run (not root, no debootstrap, no network for it) prints
# one SKIPPED line instead. The README's compatibility table is rewritten from
# what ran (target/matrix/*.result).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=$repo/target/matrix
mkdir -p "$out"

# The test binaries that start real BEAM nodes; those named *_live also need
# Horde's modules (as in scripts/test.sh).
BEAM_FILES=(interop handshake epmd elixir_terms phash2_oracle crdt_cluster horde_registry pg cli supervisor_placement tls)
LIVE='binary(/_live$/)'

# Runs the matrix files in one column. $1 column name, $2 Horde ebins ("" = none).
run_column() {
    local column=$1 horde=$2 log=$out/$column.log filter="" b n_live=0
    for b in "${BEAM_FILES[@]}"; do filter+="${filter:+ | }binary($b)"; done
    if [ -n "$horde" ]; then
        filter+=" | $LIVE"
    else
        n_live=$(cargo nextest list -E "$LIVE" --message-format oneline 2>/dev/null | grep -c . || true)
        local var=BEAM_PEER_HORDE_EBIN
        [ "$column" = host ] || var=BEAM_PEER_${column^^}_HORDE_EBIN
        echo "SKIPPED matrix $column: $n_live live Horde/DeltaCrdt/Phoenix.PubSub tests (their modules for this column not found: set $var)"
    fi
    echo "== matrix $column: $(beam_versions)"
    local rc=0
    BEAM_PEER_REQUIRE_ERL=1 BEAM_PEER_HORDE_EBIN="$horde" \
        cargo nextest run --no-fail-fast -E "$filter" 2>&1 | tee "$log" || rc=$?
    local summary passed failed skipped
    summary=$(grep -E '^ *Summary ' "$log" | tail -1 || true)
    passed=$(count passed "$summary")
    failed=$(count failed "$summary")
    skipped=$(($(count skipped "$summary") + n_live))
    [ -n "$summary" ] || { failed=$((failed + 1)); echo "no nextest summary in $log"; }
    {
        echo "column=$column"
        echo "versions=$(beam_versions)"
        echo "horde=$(horde_versions "$horde")"
        echo "passed=$passed failed=$failed skipped=$skipped"
        echo "date=$(date -u +%Y-%m-%d)"
    } >"$out/$column.result"
    echo "matrix $column: $passed passed, $failed failed, $skipped skipped"
    [ "$rc" = 0 ] && [ "$failed" = 0 ]
}

# count(): see scripts/counts.sh.
source scripts/counts.sh # both scripts run from the repository root

# "OTP 25, Elixir 1.14.0" for the tools the tests will run.
beam_versions() {
    local bin=${BEAM_PEER_BEAM_BIN:+$BEAM_PEER_BEAM_BIN/}
    local otp ex
    otp=$("${bin}erl" -noshell -eval 'R = erlang:system_info(otp_release), V = case file:read_file(filename:join([code:root_dir(), "releases", R, "OTP_VERSION"])) of {ok, B} -> string:trim(B); _ -> R end, io:format("~s", [V]), halt().' 2>/dev/null || echo "?")
    ex=$("${bin}elixir" -e 'IO.write(System.version())' 2>/dev/null || echo "absent")
    echo "OTP $otp, Elixir $ex"
}

# The versions of Horde and the libraries around it in an ebin list.
horde_versions() {
    [ -n "$1" ] || { echo "not present"; return; }
    local dir app vsn list="" root=${BEAM_PEER_BEAM_ROOT:-}
    IFS=: read -ra dirs <<<"$1"
    for dir in "${dirs[@]}"; do
        for app in "$root$dir"/*.app; do
            [ -f "$app" ] || continue
            case $(basename "$app" .app) in
                horde|delta_crdt|merkle_map|libring|libcluster|phoenix_pubsub) ;;
                *) continue ;;
            esac
            vsn=$(grep -oE '\{vsn, *"[^"]+"' "$app" | sed -E 's/.*"([^"]+)"/\1/' || true)
            list+="${list:+, }$(basename "$app" .app) $vsn"
        done
    done
    echo "${list:-not present}"
}

# The apt mirror this machine already uses for Debian.
debian_mirror() {
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | awk '{print $2}' | head -1 || true)
    [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -1 || true)
    echo "$uri"
}

# Makes (once) the trixie root with erlang-nox and elixir; non-zero with a
# reason on stdout when it cannot.
trixie_root() {
    local root=$1
    if [ -x "$root/usr/bin/erl" ] && [ -x "$root/usr/bin/elixir" ]; then return 0; fi
    [ "$(id -u)" = 0 ] || { echo "not root (debootstrap and chroot need root)"; return 1; }
    command -v unshare >/dev/null && command -v chroot >/dev/null || { echo "no unshare/chroot"; return 1; }
    if ! command -v debootstrap >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1; } ||
            { echo "debootstrap cannot be installed"; return 1; }
    fi
    local mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { echo "no Debian mirror configured for apt"; return 1; }
    echo "== making the trixie root in $root (once)" >&2
    rm -rf "$root.new"
    mkdir -p "$(dirname "$root")"
    debootstrap --variant=minbase trixie "$root.new" "$mirror" >"$out/debootstrap.log" 2>&1 ||
        { echo "debootstrap failed (see $out/debootstrap.log)"; return 1; }
    chroot "$root.new" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends erlang-nox elixir' \
        >>"$out/debootstrap.log" 2>&1 || { echo "apt-get in the trixie root failed (see $out/debootstrap.log)"; return 1; }
    rm -rf "$root"
    mv "$root.new" "$root"
}

# Writes the wrappers that run a root's BEAM tools; prints their directory.
wrappers() {
    local root=$1 bin=$out/trixie-bin tool
    mkdir -p "$bin"
    local binds="/tmp $repo"
    [ -n "${CARGO_TARGET_DIR:-}" ] && binds+=" $CARGO_TARGET_DIR"
    for tool in erl erlc elixir epmd escript; do
        cat >"$bin/$tool" <<EOF
#!/bin/sh
# Runs $tool of $root here: a private mount namespace shows the checkout and
# /tmp at the same paths inside the root. Every step execs, so the pid the
# caller holds is the tool's own (kill -9 reaches the BEAM).
exec unshare --mount --propagation private -- sh -c '
  r=\$1; shift
  mount -t proc proc "\$r/proc" && mount --rbind /dev "\$r/dev" || exit 111
  for d in $binds; do mkdir -p "\$r\$d" && mount --bind "\$d" "\$r\$d" || exit 111; done
  exec chroot "\$r" /bin/sh -c "cd \"\\\$0\" 2>/dev/null || cd /; exec \"\\\$@\"" "\$PWD" "\$@"
' sh "$root" $tool "\$@"
EOF
        chmod +x "$bin/$tool"
    done
    echo "$bin"
}

# Rewrites the compatibility table in README.md from the last results.
write_table() {
    local readme=$repo/README.md table r
    table="| column | BEAM | Horde and libraries | tests | run on |"$'\n'"|---|---|---|---|---|"
    for r in "$out"/host.result "$out"/trixie.result; do
        [ -f "$r" ] || continue
        local column versions horde date counts
        column=$(sed -n 's/^column=//p' "$r"); versions=$(sed -n 's/^versions=//p' "$r")
        horde=$(sed -n 's/^horde=//p' "$r"); date=$(sed -n 's/^date=//p' "$r")
        counts=$(sed -n 's/^passed=\([0-9]*\) failed=\([0-9]*\) skipped=\([0-9]*\)/\1 passed, \2 failed, \3 skipped/p' "$r")
        table+=$'\n'"| $column | $versions | $horde | $counts | $date |"
    done
    grep -q '<!-- matrix:begin -->' "$readme" || return 0
    TABLE="$table" perl -0pi -e 's/(<!-- matrix:begin -->\n).*?(<!-- matrix:end -->)/$1$ENV{TABLE}\n$2/s' "$readme"
}

status=0
columns=("$@")
[ ${#columns[@]} -gt 0 ] || columns=(host trixie)
for column in "${columns[@]}"; do
    case $column in
    host)
        run_column host "${BEAM_PEER_HORDE_EBIN:-}" || status=1
        ;;
    trixie)
        root=${BEAM_PEER_TRIXIE_ROOT:-/var/cache/beam_peer/trixie}
        if why=$(trixie_root "$root"); then
            bin=$(wrappers "$root")
            if ! "$bin/erl" -noshell -eval 'halt().' >/dev/null 2>&1; then
                echo "SKIPPED matrix trixie: the root's erl does not run here (mount namespaces refused?)"
                continue
            fi
            BEAM_PEER_BEAM_BIN=$bin BEAM_PEER_BEAM_ROOT=$root \
                run_column trixie "${BEAM_PEER_TRIXIE_HORDE_EBIN:-}" || status=1
        else
            echo "SKIPPED matrix trixie (OTP 27 / Elixir 1.18): $why"
        fi
        ;;
    *)
        echo "unknown column $column (host, trixie)" >&2
        exit 2
        ;;
    esac
done
write_table
exit $status
