#!/usr/bin/env bash
# Build a real kube-apiserver (Kubernetes v1.20.2) from Debian bookworm's `kubernetes` source
# package with Debian's Go, as root. No package registry ships a kube-apiserver binary, so this is
# the only way to get one here; the result is cached so only the first run on a machine pays the
# ~8 minute build.
#
# Usage: build.sh [OUTDIR]   (default ${RDS_CSI_CACHE:-/var/cache/rds-csi}/kube-apiserver)
# Prints the path of the binary on the last line of stdout.
set -euo pipefail
OUT=${1:-${RDS_CSI_CACHE:-/var/cache/rds-csi}/kube-apiserver}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
BIN="$OUT/kube-apiserver"

need_runtime_pkgs() {
  # etcd, openssl and curl are needed to *run* the server even when the binary is cached.
  command -v etcd >/dev/null && command -v openssl >/dev/null && command -v curl >/dev/null
}

if [ -x "$BIN" ] && need_runtime_pkgs; then
  "$BIN" --version >&2
  echo "$BIN"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Other tools may be installing packages on the same machine: wait for the dpkg lock, do not fail.
LOCKWAIT=(-o DPkg::Lock::Timeout=900)
apt-get "${LOCKWAIT[@]}" update -qq
apt-get "${LOCKWAIT[@]}" install -y -qq --no-install-recommends etcd-server openssl curl >/dev/null
if [ -x "$BIN" ]; then
  "$BIN" --version >&2
  echo "$BIN"
  exit 0
fi

apt-get "${LOCKWAIT[@]}" install -y -qq --no-install-recommends golang-go rsync dpkg-dev make \
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null

# A deb-src entry for the Debian mirror this machine already uses, kept in a private list so
# nothing under /etc/apt changes.
# (grep exits 2 when /etc/apt/sources.list is absent, as on deb822-only systems: not an error.)
MIRROR=$( { grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
         | grep -v security | head -n1 | tr -d ' ')
[ -n "$MIRROR" ] || { echo "no Debian mirror configured in /etc/apt" >&2; exit 1; }
WORK="$OUT/build"
rm -rf "$WORK"
mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
cd "$WORK"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main" > apt/sources.list
APTO=(-o "Dir::Etc::sourcelist=$PWD/apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
      -o "Dir::State::Lists=$PWD/apt/lists" -o "Dir::Cache=$PWD/apt/cache")
apt-get "${APTO[@]}" update -qq
apt-get "${APTO[@]}" source --download-only kubernetes 2>&1 | grep -v 'unsandboxed' || true
mkdir src
tar xzf kubernetes_*.orig.tar.gz -C src --strip-components=1
cd src
# The vendored reflect2 1.0.1 crashes under Go >= 1.18 (fault in map iteration through
# json-iterator, first seen on a VolumeAttachment status patch). Use Debian's newer copies.
for p in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -rf "vendor/$p"; mkdir -p "vendor/$p"; cp -a "/usr/share/gocode/src/$p/." "vendor/$p/"
  find "vendor/$p" -name '*_test.go' -delete
done
# GOFLAGS must stay unset: the Kubernetes build scripts paste GOFLAGS into the build tags.
unset GOFLAGS
GOPROXY=off make WHAT=cmd/kube-apiserver >&2
# Copy under a temporary name then rename, so a half-written binary is never taken as cached.
cp _output/bin/kube-apiserver "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
cd "$OUT" && rm -rf "$WORK"
"$BIN" --version >&2
echo "$BIN"
