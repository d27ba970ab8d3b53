#!/usr/bin/env bash
# Runs every fuzz target in turn (one at a time: each uses a core) for SECONDS, or
# until RUNS executions if RUNS is given, and prints the executions per target.
# The committed seeds are in fuzz/corpus/<target>; what libFuzzer adds goes to
# fuzz/generated/<target>, crashes to fuzz/artifacts/<target>/ (both gitignored).
# Exits non-zero if any target crashed or did not run.
#   scripts/fuzz.sh SECONDS [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [RUNS] [TARGET...]}
runs=${2:-}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^wechat-gate-fuzz$'))
# fuzz/ is a member of the root workspace: cargo-fuzz builds into the root's target/.
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
limit=(-max_total_time="$seconds")
[ -z "$runs" ] || limit+=(-runs="$runs")
failed=()
printf '%-16s %14s %10s %8s  %s\n' target executions exec/s seconds result | tee fuzz/last-run.txt.tmp
for t in "${targets[@]}"; do
  mkdir -p "fuzz/generated/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
  log="fuzz/artifacts/$t/last.log"
  start=$(date +%s)
  set +e
  "$bin/$t" "fuzz/generated/$t" "fuzz/corpus/$t" "${limit[@]}" -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  result=ok
  if [ "$rc" -ne 0 ] || [ -z "$execs" ]; then
    result="FAILED (exit $rc; see $log)"
    failed+=("$t")
    grep -m1 -A3 -E 'panicked|ERROR: libFuzzer|Test unit written' "$log" >&2 || tail -5 "$log" >&2
  fi
  printf '%-16s %14s %10s %8s  %s\n' "$t" "${execs:-0}" "${rate:-0}" "$took" "$result" | tee -a fuzz/last-run.txt.tmp
done
mv fuzz/last-run.txt.tmp fuzz/last-run.txt
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  exit 1
fi
