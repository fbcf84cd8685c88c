#!/usr/bin/env bash
# Counts the instructions the fold thread runs (valgrind's callgrind,
# collecting only inside the fold's loop), for builds of the `fold_pages`
# bench: a count that does not drift with this machine's speed, where
# timed runs of two builds differ by less than their spread.
#
# usage: benches/scripts/fold_instructions.sh DATA_DIR POSITION LABEL=FOLD_PAGES_BINARY ...
#
# Each binary folds DATA_DIR's log up to POSITION once, on one thread,
# under callgrind (about 50 times slower than natively: a few hundred
# thousand events take a minute). Prints each label's instructions in
# all and per event.
set -euo pipefail
dir=$1 position=$2
shift 2
out=$(mktemp -d)
for spec in "$@"; do
  label=${spec%%=*} bin=${spec#*=}
  valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='kedai_projections::fold::ParallelFold::spawn::*' \
    --callgrind-out-file="$out/$label.out" \
    "$bin" --data "$dir" --position "$position" --runs 1 >/dev/null 2>"$out/$label.log"
  total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/$label.log")
  echo "$label: $total instructions, $((total / position)) per event"
done
rm -rf "$out"
