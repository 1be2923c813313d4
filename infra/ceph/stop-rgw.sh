#!/usr/bin/env bash
# Stops what infra/ceph/start-rgw.sh DIR started (RGW, the OSD, the monitor) and waits for them to exit.
set -euo pipefail
DIR="${1:?usage: $0 DIR}"
[ -f "$DIR/pids" ] || exit 0
mapfile -t PIDS < <(tac "$DIR/pids")
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for _ in $(seq 1 100); do
    alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && exit 0
    sleep 0.1
done
for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
