#!/usr/bin/env bash
# Stop the kube-apiserver and etcd started by start.sh STATEDIR (only those two pids).
set -uo pipefail
D=${1:?usage: stop.sh STATEDIR}
[ -f "$D/apiserver.env" ] && "$(dirname "$0")/apiserver.sh" "$D" stop
if [ -f "$D/etcd.pid" ]; then
  PID=$(cat "$D/etcd.pid")
  kill "$PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  rm -f "$D/etcd.pid"
fi
exit 0
