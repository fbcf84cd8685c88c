#!/usr/bin/env bash
# Memory and time of `kedai serve` starting and stopping on a data directory
# (benches/README.md, "kedai serve on the 10 M-event 4-shop log").
#
# usage: benches/scripts/serve_memory.sh KEDAI_BINARY DATA_DIR [PORT]
#
# Starts the server (from DATA_DIR/projections.snapshot if there is one),
# prints the seconds until GET /healthz answers, the peak RSS then (VmHWM)
# and the RSS 3 s later; then sends SIGTERM (the server writes its
# snapshot and exits) while sampling the RSS every 20 ms, and prints the
# peak of those samples and the time to exit. Loopback only; every wait is
# bounded.
set -euo pipefail
bin=$1 data=$2 port=${3:-8095}
log=$(mktemp)
start=$(date +%s.%N)
"$bin" serve --data "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1200); do
  curl -s "127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.05
done
ready=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
sleep 3
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
from=$(grep -q "from their snapshot" "$log" && echo "its snapshot" || echo "the log")
echo "start (from $from): ready in $(echo "$ready - $start" | bc) s, peak ${hwm} kB, RSS 3 s later ${rss} kB"
stop=$(date +%s.%N)
kill -TERM "$pid"
max=0
for _ in $(seq 6000); do
  r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -z "$r" ] && break
  [ "$r" -gt "$max" ] && max=$r
  sleep 0.02
done
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
echo "stop: $(echo "$(date +%s.%N) - $stop" | bc) s, peak RSS ${max} kB while writing the snapshot"
rm -f "$log"
