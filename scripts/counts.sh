# Sourced by scripts/test.sh and scripts/matrix.sh: reading test runners'
# summary lines.

# The N of "N passed" (or failed, skipped, ignored) in a summary line; 0 when absent.
count() {
    local n
    n=$(grep -oE "[0-9]+ $1" <<<"$2" | head -1 | grep -oE '^[0-9]+' || true)
    echo "${n:-0}"
}
