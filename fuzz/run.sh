#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 20) seconds on the committed seed corpus,
# or, with FUZZ_RUNS=N (the benchmark: FUZZ_RUNS=10000000), for N executions each
# (docs/fuzzing.md); exits non-zero on the first crash, leaving the input under
# fuzz/artifacts/<target>/. Installs nightly and cargo-fuzz first if they are missing.
# New inputs found go to a scratch directory, not into fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")"

rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

seconds="${FUZZ_SECONDS:-20}"
if [ -n "${FUZZ_RUNS:-}" ]; then
  limit="-runs=$FUZZ_RUNS"
else
  limit="-max_total_time=$seconds"
fi
# Beside the workspace's own build when CARGO_TARGET_DIR is set, else fuzz/target/.
target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
target_dir="${target_dir:-target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target ($limit)"
  mkdir -p "$scratch/$target"
  cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$scratch/$target" "corpus/$target" \
    -- "$limit" -print_final_stats=1
done
echo "fuzz: every target ran ($limit) without a crash"
