#!/usr/bin/env bash
# Build a real kubelet (Kubernetes v1.20.2, from Debian bookworm's `kubernetes` source package,
# with the harness patches in patches/) and rds-csi-fakecri (fakecri/main.go, built in the same
# tree against its vendored CRI fake), for scripts/test-kubelet. As root.
#
# The result is cached in ${RDS_CSI_CACHE:-/var/cache/rds-csi}/kubelet-<key>/, the key being the
# Debian source version and a hash of the patches, fakecri/main.go and this script, so a second
# run costs one apt index refresh and nothing else. When kube-apiserver is not cached either
# (scripts/kube-apiserver/build.sh), it is built from the same extraction and cached where that
# script looks, so a fresh machine unpacks the source once.
#
# Usage: build.sh            Prints the cache directory (holding kubelet and fakecri) last.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${RDS_CSI_CACHE:-/var/cache/rds-csi}
APISERVER_BIN="$CACHE/kube-apiserver/kube-apiserver"
mkdir -p "$CACHE"

# A private deb-src list for the Debian mirror this machine already uses (nothing under /etc/apt
# changes). grep exits 2 when /etc/apt/sources.list is absent (deb822-only systems): not an error.
MIRROR=$( { grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } \
         | grep -v security | head -n1 | tr -d ' ')
[ -n "$MIRROR" ] || { echo "no Debian mirror configured in /etc/apt" >&2; exit 1; }
APT="$CACHE/apt-src"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main" > "$APT/sources.list"
APTO=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o Dir::Etc::sourceparts=/nonexistent
      -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache")
apt-get "${APTO[@]}" update -qq
VERSION=$(apt-cache "${APTO[@]}" showsrc kubernetes | sed -n 's/^Version: //p' | sort -V | tail -n1)
[ -n "$VERSION" ] || { echo "no kubernetes source package in bookworm" >&2; exit 1; }
HASH=$(cat "$HERE"/patches/*.patch "$HERE/fakecri/main.go" "$HERE/build.sh" | sha256sum | cut -c1-12)
OUT="$CACHE/kubelet-${VERSION//[^A-Za-z0-9.]/_}-$HASH"
if [ -x "$OUT/kubelet" ] && [ -x "$OUT/fakecri" ]; then
  echo "$OUT"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
LOCKWAIT=(-o DPkg::Lock::Timeout=900)
apt-get "${LOCKWAIT[@]}" update -qq
apt-get "${LOCKWAIT[@]}" install -y -qq --no-install-recommends golang-go rsync dpkg-dev make patch \
  golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev >/dev/null

WORK="$CACHE/k8s-build"
rm -rf "$WORK"; mkdir -p "$WORK"
cd "$WORK"
apt-get "${APTO[@]}" source --download-only "kubernetes=$VERSION" 2>&1 | grep -v 'unsandboxed' || true
mkdir src
tar xzf kubernetes_*.orig.tar.gz -C src --strip-components=1
cd src
# The vendored reflect2 1.0.1 crashes under Go >= 1.18; Debian's newer copies work (as in
# scripts/kube-apiserver/build.sh).
for p in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  rm -rf "vendor/$p"; mkdir -p "vendor/$p"; cp -a "/usr/share/gocode/src/$p/." "vendor/$p/"
  find "vendor/$p" -name '*_test.go' -delete
done
for p in "$HERE"/patches/*.patch; do patch -p1 --forward < "$p" >&2; done
mkdir -p cmd/rds-csi-fakecri
cp "$HERE/fakecri/main.go" cmd/rds-csi-fakecri/main.go
# GOFLAGS must stay unset: the Kubernetes build scripts paste GOFLAGS into the build tags.
unset GOFLAGS
WHAT=cmd/kubelet
[ -x "$APISERVER_BIN" ] || WHAT="cmd/kubelet cmd/kube-apiserver"
GOPROXY=off make WHAT="$WHAT" >&2
# The same GOPATH-mode build the Kubernetes scripts just set up (module mode would want go.mod
# updated for this Go).
( cd _output/local/go/src/k8s.io/kubernetes \
  && GOPATH="$PWD/../../.." GO111MODULE=off GOPROXY=off go build -o _output/bin/fakecri ./cmd/rds-csi-fakecri ) >&2
# Copy under temporary names, then rename: a half-written binary is never taken as cached.
mkdir -p "$OUT"
for b in kubelet fakecri; do cp "_output/bin/$b" "$OUT/$b.tmp"; mv "$OUT/$b.tmp" "$OUT/$b"; done
if [ ! -x "$APISERVER_BIN" ]; then
  mkdir -p "$(dirname "$APISERVER_BIN")"
  cp _output/bin/kube-apiserver "$APISERVER_BIN.tmp"; mv "$APISERVER_BIN.tmp" "$APISERVER_BIN"
fi
cd "$CACHE" && rm -rf "$WORK"
"$OUT/kubelet" --version >&2
echo "$OUT"
