#!/usr/bin/env bash
# kedai's single test command: every test of every crate.
#
# Runs with cargo-nextest when it is installed (faster, one process per
# test), else with cargo test; doc tests run with cargo test either way.
# One throwaway PostgreSQL server is started for the whole run (by
# scripts/with-postgres.sh, from the machine's PostgreSQL server binaries)
# and removed afterwards; nothing has to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${KEDAI_TEST_DATABASE_URL:-}" ] || exec scripts/with-postgres.sh scripts/test.sh "$@"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
cargo test --workspace --doc
