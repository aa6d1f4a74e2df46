#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for the given seconds each, one after the
# other in a single libFuzzer process (no -jobs/-fork: the machines have 2 cores, shared), and
# prints one summary line per target:
#
#   fuzz target=preparse seconds=601 wall=640 execs=12345678 exec_per_sec=20576 cov=812 ft=2345 corpus=310 crashes=0
#
# seconds is libFuzzer's fuzzing time, wall adds the build check, harness start and exit leak
# check; cov/ft are libFuzzer's edge coverage and features at the end; crashes counts the crash, leak,
# timeout and OOM inputs the run left in fuzz/artifacts/<target>/ (libFuzzer stops at the first).
# Exit status 1 when any target crashed or did not run. Installs cargo-fuzz (the Rust package registry,
# --locked) when missing. cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address, ...);
# the toolchain is stable 1.95 (rust-toolchain.toml), so RUSTC_BOOTSTRAP=1 lets it accept them.
#
#   bash scripts/fuzz.sh          # 600 s per target
#   bash scripts/fuzz.sh 30       # a short smoke run (e.g. from another report generator)
#   FUZZ_TARGETS="validator" bash scripts/fuzz.sh 60
#
# The corpus grows in fuzz/corpus/<target>/ (git-ignored), seeded from fuzz/seeds/<target>/ and
# fuzz/regressions/<target>/; libFuzzer's full output is in fuzz/artifacts/<target>/run.log.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [seconds per target, default 600]" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1
# actix-router's deliberate once-per-route leak is not a finding (see fuzz/lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz from the Rust package registry" >&2
  cargo install cargo-fuzz --locked >&2
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
# One build for all targets, its output kept off the summary.
cargo fuzz build >&2

status=0
for target in $targets; do
  artifacts=fuzz/artifacts/$target
  mkdir -p "fuzz/corpus/$target" "$artifacts"
  log=$artifacts/run.log
  before=$(find "$artifacts" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  dirs=("fuzz/corpus/$target")
  for extra in "fuzz/seeds/$target" "fuzz/regressions/$target"; do
    [[ -d $extra ]] && dirs+=("$extra")
  done
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10)
  [[ -f fuzz/dict/$target.dict ]] && args+=(-dict="fuzz/dict/$target.dict")
  started=$(date +%s)
  if cargo fuzz run "$target" "${dirs[@]}" -- "${args[@]}" >"$log" 2>&1; then ran=ok; else ran=failed; fi
  wall=$(($(date +%s) - started))
  after=$(find "$artifacts" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  crashes=$((after - before))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  per_sec=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov: ' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  fuzzed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  if [[ -z $execs ]]; then # no final stats (a crash): the last status line's count
    execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
    per_sec=$(( ${execs:-0} / (wall > 0 ? wall : 1) ))
  fi
  echo "fuzz target=$target seconds=${fuzzed:-$wall} wall=$wall execs=${execs:-?} exec_per_sec=${per_sec:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corpus:-?} crashes=$crashes"
  if [[ $ran != ok || $crashes -gt 0 ]]; then
    status=1
    echo "fuzz target=$target: see $log" >&2
  fi
done
exit $status
