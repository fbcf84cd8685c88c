#!/usr/bin/env bash
# Builds `kedai-replay` with profile-guided optimisation (PGO), to compare
# it with the plain release build: an instrumented build verifies,
# rebuilds and exports a fixture log written by `kedai seed`, and the
# profile it writes tells the final build which code is hot. On the
# fixture mix a one-thread rebuild folded 3% faster (14 of 16 alternated
# rounds) and ran 17% fewer instructions (benches/README.md, "Thirteenth
# session"). Not the release build README.md gives: the gain is small for
# two more builds and a tool to install.
#
# usage: benches/scripts/pgo_replay.sh [TARGET_DIR]
#
# TARGET_DIR (default target/pgo) holds the builds, the training log and
# the profile; the optimised binary is TARGET_DIR/use/release/kedai-replay.
# The plain release build in target/ is not touched. Takes two release
# builds of kedai-replay and one of kedai (about 10 minutes on 2 cores).
# The working tree must not change meanwhile: both builds compile it.
#
# Needs the `llvm-profdata` of rustc's own LLVM: `rustup component add
# llvm-tools`.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(realpath -m "${1:-target/pgo}")

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x $profdata ]]; then
  echo "error: $profdata is missing; install it with: rustup component add llvm-tools" >&2
  exit 1
fi

rm -rf "$root/profiles" "$root/training" "$root/merged.profdata"
mkdir -p "$root/profiles"

echo "1/4 building kedai (plain release) to write the training log"
cargo build --release --quiet -p kedai-api --bin kedai
echo "2/4 building an instrumented kedai-replay"
RUSTFLAGS="-Cprofile-generate=$root/profiles" \
  cargo build --release --quiet -p kedai-replay --target-dir "$root/generate"

echo "3/4 training: a fixture log of 3 shops and 8,000 orders, verified, rebuilt and exported"
target/release/kedai seed --data "$root/training" --shops 3 --orders 8000 --seed 7 >/dev/null
replay="$root/generate/release/kedai-replay"
end=$("$replay" --json verify --data "$root/training" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["last_position"])')
for threads in 1 2; do
  "$replay" rebuild --data "$root/training" --position "$end" --threads "$threads" --output /dev/null
done
"$replay" export --data "$root/training" --format jsonl --output /dev/null
"$profdata" merge -o "$root/merged.profdata" "$root/profiles"

echo "4/4 building kedai-replay with the profile"
RUSTFLAGS="-Cprofile-use=$root/merged.profdata" \
  cargo build --release --quiet -p kedai-replay --target-dir "$root/use"
echo "done: $root/use/release/kedai-replay"
