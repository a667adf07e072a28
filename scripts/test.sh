#!/usr/bin/env bash
# Runs the whole test suite: unit tests, properties, and interop against real
# BEAM nodes. Installs Debian's erlang-nox and elixir when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v erl >/dev/null 2>&1 || ! command -v erlc >/dev/null 2>&1 || ! command -v elixir >/dev/null 2>&1; then
    echo "== installing erlang-nox and elixir (apt-get)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q erlang-nox elixir
fi
echo "== $(erl -noshell -eval 'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().')"

# Interop tests must not silently skip here: the BEAM is installed above.
export BEAM_PEER_REQUIRE_ERL=1

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
    cargo test --doc
else
    cargo test --no-fail-fast "$@"
fi
