#!/usr/bin/env bash
# Runs every fuzz target on the committed seed corpus (docs/fuzzing.md), then prints a table of
# what each run did: executions, seconds, and libFuzzer's final `cov:` and `ft:`.
#   FUZZ_SECONDS=15 fuzz/run.sh        the short run CI makes: 15 s a target (default 20)
#   FUZZ_RUNS=10000000 fuzz/run.sh     the benchmark: 10 M executions a target, no time limit
#                                      (with FUZZ_SECONDS as well, whichever comes first)
#   FUZZ_TARGETS="bzimage devices"     only these targets (default: every one)
# Exits non-zero on the first crash, leaving the input under fuzz/artifacts/<target>/.
# Installs nightly and cargo-fuzz first if they are missing. New inputs found go to a scratch
# directory, not into fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")"

rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

limits=()
if [ -n "${FUZZ_RUNS:-}" ]; then
  limits+=("-runs=$FUZZ_RUNS")
  if [ -n "${FUZZ_SECONDS:-}" ]; then limits+=("-max_total_time=$FUZZ_SECONDS"); fi
else
  limits+=("-max_total_time=${FUZZ_SECONDS:-20}")
fi
# Beside the workspace's own build when CARGO_TARGET_DIR is set, else fuzz/target/.
target_dir="${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}"
target_dir="${target_dir:-target}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
# Built once up front, so that a target's time is its run, not its build.
for target in $targets; do
  cargo +nightly fuzz build --target-dir "$target_dir" "$target"
done

summary="$scratch/summary"
printf '| target | executions | seconds | exec/s | final `cov` | final `ft` |\n' >"$summary"
printf '|---|---|---|---|---|---|\n' >>"$summary"
for target in $targets; do
  echo "fuzz: $target (${limits[*]})"
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  # The layout parser's seeds are the layouts themselves, read where they live, so a new or
  # changed layout is a seed at once (a committed copy went stale).
  seeds=("corpus/$target")
  if [ "$target" = layout_parse ]; then seeds=(../layouts ../layouts/bad); fi
  cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$scratch/$target" \
    "${seeds[@]}" -- "${limits[@]}" -print_final_stats=1 2>&1 | tee "$log"
  # libFuzzer's last words: "Done N runs in S second(s)", and before them the final status
  # line "#N DONE cov: C ft: F corp: ...".
  read -r runs seconds < <(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log") ||
    { runs=0 seconds=0; }
  status="$(grep -E '^#[0-9]+' "$log" | tail -n 1)"
  cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")"
  ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")"
  printf '| `%s` | %s | %s | %s | %s | %s |\n' "$target" "$runs" "$seconds" \
    "$((runs / (seconds > 0 ? seconds : 1)))" "${cov:-?}" "${ft:-?}" >>"$summary"
done
echo "fuzz: every target ran (${limits[*]}) without a crash"
cat "$summary"
