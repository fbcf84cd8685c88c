#!/usr/bin/env bash
# kedai's single test command: every test of every crate.
#
# Runs with cargo-nextest when it is installed (faster, one process per
# test), else with cargo test; doc tests run with cargo test either way.
# Tests that need outside servers (the PostgreSQL backend's) start and stop
# their own throwaway instances; nothing has to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
cargo test --workspace --doc
