#!/usr/bin/env bash
# The fault suite N times in a row on $BROKER (embedded, kafka or both), one line per run.
#
#   tests/faults/loop.sh 10            # or: make fault-loop RUNS=10 BROKER=kafka
#
# Each run keeps its worker and broker logs under $LOOP_DIR/run-N (default: a new
# temporary folder). A line says whether the run passed, how long it took, and how
# many worker logs hold a stall warning ("records waiting and nothing read",
# "not fetched for", "still paused"), which is how a restarted or newly assigned
# worker that fails to read its input shows up. Exit code: the number of failed runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10}
shift || true
dir=${LOOP_DIR:-$(mktemp -d -t churn-fault-loop-XXXX)}
mkdir -p "$dir"
py=${PY:-.venv/bin/python}
echo "fault suite x$runs on BROKER=${BROKER:-embedded}; logs in $dir"
failed=0
for i in $(seq 1 "$runs"); do
  run="$dir/run-$i"
  started=$(date +%s)
  "$py" -m pytest -q -p no:cacheprovider -m faults --basetemp="$run" "$@" > "$run.out" 2>&1
  rc=$?
  stalls=$(grep -l -E "records waiting and nothing read|not fetched for .* after the rebalance|were still paused|none received for .* since the recovery started" \
           -r "$run" --include='worker-*.log' 2>/dev/null | wc -l)
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
  echo "run $i: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $(( $(date +%s) - started )) s," \
       "worker logs with a stall warning: $stalls; $(tail -1 "$run.out")"
done
echo "$((runs - failed)) of $runs runs passed"
exit "$failed"
