#!/usr/bin/env bash
# Start etcd + a real kube-apiserver on 127.0.0.1 only, RBAC on, static bearer tokens for three
# identities, and write one kubeconfig per identity:
#   STATE/kubeconfig             admin (system:masters): test setup, applying RBAC
#   STATE/kubeconfig-controller  system:serviceaccount:kube-system:rds-csi-controller
#   STATE/kubeconfig-node        system:serviceaccount:kube-system:rds-csi-node
# The two ServiceAccount identities have no rights until the RBAC in deploy/kubernetes/rbac is
# applied, which is what lets tests prove those manifests are sufficient.
#
# Usage: start.sh KUBE_APISERVER STATEDIR      (KUBE_APISERVER: the path build.sh prints)
# Stop:  stop.sh STATEDIR.  Restart only the API server (etcd keeps the data): apiserver.sh STATEDIR stop|start
# Ports: ETCD_PORT (12379), PEER_PORT (12380), API_PORT (16443).
set -euo pipefail
BIN=${1:?usage: start.sh KUBE_APISERVER STATEDIR}; D=${2:?usage: start.sh KUBE_APISERVER STATEDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ETCD_PORT=${ETCD_PORT:-12379}; PEER_PORT=${PEER_PORT:-12380}; API_PORT=${API_PORT:-16443}
command -v etcd >/dev/null || { echo "etcd not installed (build.sh installs etcd-server)" >&2; exit 1; }
rm -rf "$D"; mkdir -p "$D/certs" "$D/etcd"
D=$(cd "$D" && pwd)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
openssl genrsa -out "$D/sa.key" 2048 2>/dev/null
openssl rsa -in "$D/sa.key" -pubout -out "$D/sa.pub" 2>/dev/null

token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ADMIN_TOKEN=$(token); CONTROLLER_TOKEN=$(token); NODE_TOKEN=$(token)
SA_GROUPS='"system:serviceaccounts,system:serviceaccounts:kube-system"'
umask 077
cat > "$D/tokens.csv" <<TOKENS
$ADMIN_TOKEN,admin,admin-uid,system:masters
$CONTROLLER_TOKEN,system:serviceaccount:kube-system:rds-csi-controller,rds-csi-controller-uid,$SA_GROUPS
$NODE_TOKEN,system:serviceaccount:kube-system:rds-csi-node,rds-csi-node-uid,$SA_GROUPS
TOKENS

kubeconfig() { # FILE USER TOKEN
  cat > "$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: it
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: $2
  user: {token: "$3"}
contexts:
- name: it
  context: {cluster: it, user: $2}
current-context: it
KC
}
kubeconfig "$D/kubeconfig" admin "$ADMIN_TOKEN"
kubeconfig "$D/kubeconfig-controller" rds-csi-controller "$CONTROLLER_TOKEN"
kubeconfig "$D/kubeconfig-node" rds-csi-node "$NODE_TOKEN"
umask 022

etcd --name it --data-dir "$D/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "it=http://127.0.0.1:$PEER_PORT" --log-level warn >"$D/etcd.log" 2>&1 &
echo $! > "$D/etcd.pid"

# Everything apiserver.sh needs to start the same server again later.
cat > "$D/apiserver.env" <<ENV
BIN=$BIN
API_PORT=$API_PORT
ETCD_PORT=$ETCD_PORT
ADMIN_TOKEN=$ADMIN_TOKEN
ENV
"$HERE/apiserver.sh" "$D" start
echo "KUBECONFIG=$D/kubeconfig"
