#!/usr/bin/env bash
# Compares builds of `kedai-replay rebuild` on the same logs, runs
# alternated (this machine's speed drifts by 10 to 30% between series, so
# only alternated runs compare): benches/README.md quotes its medians.
#
# usage: benches/scripts/fold_ab.sh THREADS RUNS POSITION LABEL=BINARY:DATA_DIR ...
#
# Each run folds DATA_DIR's log up to POSITION on THREADS threads, the
# report written nowhere. Prints, per label, the fold's seconds (as the
# tool reports them, in run order) and the whole process's wall seconds,
# then each label's median fold time.
set -euo pipefail
threads=$1 runs=$2 position=$3
shift 3
out=$(mktemp)
for _ in $(seq "$runs"); do
  for spec in "$@"; do
    label=${spec%%=*} rest=${spec#*=}
    bin=${rest%%:*} dir=${rest#*:}
    start=$(date +%s.%N)
    fold=$("$bin" rebuild --data "$dir" --position "$position" --threads "$threads" \
      --output /dev/null --json | python3 -c 'import sys, json; print("%.3f" % json.load(sys.stdin)["seconds"])')
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$label $fold $wall" >>"$out"
  done
done
python3 - "$out" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, fold, wall = line.split()
    runs.setdefault(label, []).append((float(fold), float(wall)))
for label, rs in sorted(runs.items()):
    print(f"{label} fold: {' '.join(f'{f:.3f}' for f, _ in rs)}")
    print(f"{label} wall: {' '.join(f'{w:.2f}' for _, w in rs)}")
    print(f"{label} median fold: {statistics.median(f for f, _ in rs):.3f} s")
PY
rm -f "$out"
