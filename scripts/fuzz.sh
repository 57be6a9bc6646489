#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_<target>.cpp: one per parser) with
# clang, AddressSanitizer and UndefinedBehaviorSanitizer, and runs them.
#
#   scripts/fuzz.sh TARGET [SECONDS]   # one target, default 60 s
#   scripts/fuzz.sh all [SECONDS]      # every target, FUZZ_PARALLEL (default 2) at a time
#   scripts/fuzz.sh list               # the target names
#
# Only the fuzz targets are built (each from the few sources it needs), in
# build-fuzz/ (FUZZ_BUILD_DIR to change it). The seeds are fuzz/corpus/TARGET/ (read only),
# with the dictionary fuzz/TARGET.dict when there is one; new inputs go
# to build-fuzz/corpus/TARGET/, crashes to build-fuzz/crash-* (and the
# run's log to build-fuzz/TARGET.log). Exits non-zero when any target finds
# a crash, a leak, a timeout or a broken property. Extra libFuzzer flags:
# FUZZ_FLAGS="-max_len=8192". A crash replays with
#   build-fuzz/amanuensis_fuzz_TARGET build-fuzz/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
build="${FUZZ_BUILD_DIR:-build-fuzz}"
targets=()
for f in fuzz/fuzz_*.cpp; do
  t="${f#fuzz/fuzz_}"
  targets+=("${t%.cpp}")
done

usage() {
  echo "usage: scripts/fuzz.sh TARGET|all|list [SECONDS]   (targets: ${targets[*]})" >&2
  exit 2
}
[ $# -ge 1 ] || usage
what="$1"
seconds="${2:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || usage
if [ "$what" = list ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
if [ "$what" = all ]; then
  run=("${targets[@]}")
else
  [[ " ${targets[*]} " == *" $what "* ]] || { echo "scripts/fuzz.sh: unknown target '$what'" >&2; usage; }
  run=("$what")
fi

CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAMA_FUZZ=ON \
  -DAMA_BUILD_TESTS=OFF -DAMA_BUILD_BENCH=OFF >/dev/null
build_targets=()
for t in "${run[@]}"; do build_targets+=("amanuensis_fuzz_$t"); done
cmake --build "$build" -j"${FUZZ_BUILD_JOBS:-1}" --target "${build_targets[@]}"

# One target: libFuzzer's own output goes to the terminal (one target) or to
# build-fuzz/TARGET.log (all); the exit status is libFuzzer's (0: nothing found).
fuzz_one() {
  local t="$1"
  mkdir -p "$build/corpus/$t"
  local dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  # -max_len 4096: larger than every seed; -rss_limit_mb 2048: an input that
  # makes a parser allocate gigabytes is a bug (the readers bound every
  # allocation by the input's size), not a reason to wait for the OOM killer.
  "$build/amanuensis_fuzz_$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/" -print_final_stats=1 "${dict[@]}" ${FUZZ_FLAGS:-} "$build/corpus/$t" "fuzz/corpus/$t"
}

if [ ${#run[@]} -eq 1 ]; then
  fuzz_one "${run[0]}"
  exit
fi

# all: FUZZ_PARALLEL targets at a time, each on one core; a summary line each.
parallel="${FUZZ_PARALLEL:-2}"
failed=()
pids=()
names=()
wait_first() {
  local i=0
  wait "${pids[0]}" && rc=0 || rc=$?
  local t="${names[0]}"
  pids=("${pids[@]:1}")
  names=("${names[@]:1}")
  local stats
  stats=$(grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$build/$t.log" |
          tr -s ' ' | tr '\n' ' ')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ok: $stats"
  else
    echo "fuzz $t: FAILED (exit $rc), see $build/$t.log:"
    grep -E 'ERROR|SUMMARY|fuzz property|Test unit written' "$build/$t.log" | head -5 | sed 's/^/  /'
    failed+=("$t")
  fi
}
for t in "${run[@]}"; do
  [ ${#pids[@]} -lt "$parallel" ] || wait_first
  fuzz_one "$t" >"$build/$t.log" 2>&1 &
  pids+=($!)
  names+=("$t")
done
while [ ${#pids[@]} -gt 0 ]; do wait_first; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "scripts/fuzz.sh: crashes or broken properties in: ${failed[*]}" >&2
  exit 1
fi
echo "scripts/fuzz.sh: ${#run[@]} targets, ${seconds} s each, no crash"
