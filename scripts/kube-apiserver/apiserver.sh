#!/usr/bin/env bash
# Stop or start only the kube-apiserver of a STATEDIR made by start.sh; etcd keeps running, so
# objects survive. Tests use this to prove the driver fails closed while the API is down and
# recovers when it returns.  Usage: apiserver.sh STATEDIR stop|start
set -euo pipefail
D=${1:?usage: apiserver.sh STATEDIR stop|start}; ACTION=${2:?usage: apiserver.sh STATEDIR stop|start}
# shellcheck disable=SC1091
. "$D/apiserver.env"
case "$ACTION" in
stop)
  if [ -f "$D/apiserver.pid" ]; then
    PID=$(cat "$D/apiserver.pid")
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    rm -f "$D/apiserver.pid"
  fi
  ;;
start)
  "$BIN" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 --allow-privileged=true \
    --cert-dir="$D/certs" --token-auth-file="$D/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 --endpoint-reconciler-type=none \
    --disable-admission-plugins=ServiceAccount >>"$D/apiserver.log" 2>&1 &
  echo $! > "$D/apiserver.pid"
  for i in $(seq 1 240); do
    if curl -sk --max-time 2 -H "Authorization: Bearer $ADMIN_TOKEN" "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null | grep -q '^ok$'; then
      echo "kube-apiserver ready after ~$((i/2)) s" >&2; exit 0; fi
    kill -0 "$(cat "$D/apiserver.pid")" 2>/dev/null || break
    sleep 0.5
  done
  echo "kube-apiserver not ready (log: $D/apiserver.log)" >&2; tail -30 "$D/apiserver.log" >&2; exit 1
  ;;
*) echo "usage: apiserver.sh STATEDIR stop|start" >&2; exit 2 ;;
esac
