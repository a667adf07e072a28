#!/usr/bin/env bash
# Runs the whole test suite: unit tests, properties, interop against real
# BEAM nodes, and the OTP 27 / Elixir 1.18 column of the compatibility matrix
# (scripts/matrix.sh trixie). Installs Debian's erlang-nox and elixir when
# they are missing.
#
# Tests that need Horde's compiled modules live in test binaries named
# *_live. They run when BEAM_PEER_HORDE_EBIN is set (or erlang/ was built
# with mix, which needs Hex); otherwise they are not run and are reported as
# skipped, by name, in the closing lines. The last line counts everything:
# "summary: N passed, N failed, N skipped".
#
# Arguments are passed to cargo nextest (e.g. a test filter); with any, the
# matrix column is left out. BEAM_PEER_MATRIX=0 leaves it out too.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=target/test-logs
mkdir -p "$logs"

if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1 || ! command -v elixir >/dev/null 2>&1; then
    echo "== installing erlang-nox and elixir (apt-get)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q erlang-nox elixir || exit 1
fi
echo "== $(erl -noshell -eval 'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().'), Elixir $(elixir -e 'IO.write(System.version())')"

# Interop tests must not silently skip here: the BEAM is installed above.
export BEAM_PEER_REQUIRE_ERL=1

horde_present() {
    [ -n "${BEAM_PEER_HORDE_EBIN:-}" ] && return 0
    compgen -G "erlang/_build/*/lib/horde/ebin/horde.app" >/dev/null
}

# The test() term makes nextest list the live binaries and count their
# tests as skipped in its own summary (a bare binary() filter drops them
# from the count altogether).
LIVE='binary(/_live$/) & test(/.*/)'
skip_lines=()
passed=0 failed=0 skipped=0
status=0

# count(): see scripts/counts.sh.
source scripts/counts.sh # both scripts run from the repository root

if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest || exit 1
fi

# The chaos tests that put nodes in Linux network namespaces need root and
# `ip netns`; elsewhere they are left out and counted as skipped, like the
# live tests.
NETNS='binary(/_netns$/) & test(/.*/)'
netns_present() {
    [ "$(id -u)" = 0 ] || return 1
    local probe="bpchaos$$x_probe"
    ip netns add "$probe" >/dev/null 2>&1 || return 1
    ip netns del "$probe" >/dev/null 2>&1
    return 0
}

excluded=()
if ! netns_present; then
    excluded+=("$NETNS")
    n_netns=$(cargo nextest list -E "$NETNS" --message-format oneline 2>/dev/null | grep -c . || true)
    skip_lines+=("SKIPPED $n_netns chaos namespace tests (chaos_netns): needs root and network namespaces")
fi

filter=()
if ! horde_present; then
    excluded+=("$LIVE")
    live=$(cargo nextest list -E "$LIVE" --message-format oneline 2>/dev/null)
    n_live=$(grep -c . <<<"$live" || true)
    per_binary=$(awk '{print $1}' <<<"$live" | sort | uniq -c | awk '{printf "%s%s (%d)", sep, $2, $1; sep=", "}')
    skip_lines+=("SKIPPED $n_live live Horde/DeltaCrdt/Phoenix.PubSub/libcluster tests: $per_binary: their modules were not found. Set BEAM_PEER_HORDE_EBIN to the ebin directories of horde, delta_crdt, merkle_map, libring, telemetry, phoenix_pubsub, libcluster (colon-separated), or build erlang/ with mix (needs Hex); see README, 'Live Horde tests'.")
fi

if [ ${#excluded[@]} -gt 0 ]; then
    expr=$(printf ' | (%s)' "${excluded[@]}")
    filter=(-E "not (${expr:3})")
fi

cargo nextest run --no-fail-fast "${filter[@]}" "$@" 2>&1 | tee "$logs/nextest.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
summary=$(grep -E '^ *Summary ' "$logs/nextest.log" | tail -1)
passed=$((passed + $(count passed "$summary")))
failed=$((failed + $(count failed "$summary")))
# nextest counts what the filter left out (the live tests) as skipped already.
skipped=$((skipped + $(count skipped "$summary")))
[ -n "$summary" ] || { echo "no nextest summary: the build or the run failed"; status=1; failed=$((failed + 1)); }

cargo test --doc 2>&1 | tee "$logs/doctest.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
doc=$(grep -E '^test result:' "$logs/doctest.log" | tail -1)
passed=$((passed + $(count passed "$doc")))
failed=$((failed + $(count failed "$doc")))
skipped=$((skipped + $(count ignored "$doc")))

if [ $# = 0 ] && [ "${BEAM_PEER_MATRIX:-1}" != 0 ]; then
    scripts/matrix.sh trixie 2>&1 | tee "$logs/matrix.log"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    line=$(grep -E '^matrix trixie: ' "$logs/matrix.log" | tail -1)
    if [ -n "$line" ]; then
        passed=$((passed + $(count passed "$line")))
        failed=$((failed + $(count failed "$line")))
        skipped=$((skipped + $(count skipped "$line")))
    fi
    while IFS= read -r l; do skip_lines+=("$l"); done < <(grep -E '^SKIPPED matrix' "$logs/matrix.log")
else
    skip_lines+=("SKIPPED matrix trixie (OTP 27 / Elixir 1.18): not run (arguments given, or BEAM_PEER_MATRIX=0)")
fi

echo
echo "== what this run did not check"
if [ ${#skip_lines[@]} = 0 ]; then
    echo "nothing skipped"
else
    printf '%s\n' "${skip_lines[@]}"
fi
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] || status=1
exit $status
