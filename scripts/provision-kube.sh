#!/usr/bin/env bash
# Fill the cache with the binaries the end-to-end tests need: etcd, kube-apiserver, kubectl.
#
#   scripts/provision-kube.sh            # idempotent; prints the folder it filled
#
# Where: $QUOTALANG_KUBE_ASSETS, default ~/.cache/quotalang/kube-1.20.2. Nothing
# to do when that folder is complete, or when $KUBEBUILDER_ASSETS already holds
# kube-apiserver and etcd (the controller-runtime envtest convention).
#
# How (Debian bookworm, root, only Debian's archive reachable; first every tool the
# build and the tests use is installed and checked, so a missing one fails in seconds):
#   etcd          Debian's etcd-server (3.4)
#   kubectl       Debian's kubernetes-client (1.20.2)
#   kube-apiserver  built from Debian's `kubernetes` source package (v1.20.2 with
#                 its vendor/ tree) by Debian's golang-go (1.19): 4-6 minutes on 2
#                 cores. The vendored modern-go/reflect2 1.0.1 breaks on Go >= 1.18,
#                 so it is replaced by Debian's golang-github-modern-go-reflect2-dev
#                 (1.0.2) and go.mod / vendor/modules.txt are updated to match.
set -euo pipefail

ASSETS="${QUOTALANG_KUBE_ASSETS:-$HOME/.cache/quotalang/kube-1.20.2}"

complete() { [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ]; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && complete "$KUBEBUILDER_ASSETS"; then
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS already holds kube-apiserver and etcd"
  exit 0
fi
if complete "$ASSETS" && [ -x "$ASSETS/kubectl" ]; then
  echo "$ASSETS"
  exit 0
fi

log() { echo "provision-kube: $*" >&2; }
HERE="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

# Every tool the build and the end-to-end tests use, as command:Debian-package.
# Kubernetes' build copies each binary it makes with `rsync -pc` (hack/lib/golang.sh)
# and leaves empty, non-executable files behind without it; dpkg-source needs
# patch and xz; the tests call git and curl. Debian's reflect2 1.0.2 sources
# replace the vendored 1.0.1, which breaks on Go >= 1.18.
# shellcheck source=scripts/lib/tools.sh
. "$HERE/lib/tools.sh"
provision_tools provision-kube "apt-get:apt dpkg-deb:dpkg dpkg-source:dpkg-dev go:golang-go make:make
  rsync:rsync etcd:etcd-server patch:patch xz:xz-utils tar:tar find:findutils sed:sed git:git curl:curl
  python3:python3 /usr/share/gocode/src/github.com/modern-go/reflect2:golang-github-modern-go-reflect2-dev"
mkdir -p "$ASSETS"

# A deb-src entry for bookworm main, in a file of our own, with the address and
# keyring of the machine's own deb entry for that archive (any mirror works;
# apt refuses two Signed-By values for one source).
SRC_LIST=/etc/apt/sources.list.d/quotalang-bookworm-src.sources
if [ ! -x "$ASSETS/kube-apiserver" ]; then
  entry="$(python3 "$HERE/debsrc_entry.py" --suite bookworm --component main)"
  if [ ! -f "$SRC_LIST" ] || [ "$(cat "$SRC_LIST")" != "$entry" ]; then
    [ "$(id -u)" = 0 ] || { echo "provision-kube: writing $SRC_LIST needs root" >&2; exit 2; }
    printf '%s\n' "$entry" > "$SRC_LIST"
    PROVISION_APT_UPDATED=
  fi
fi
install -m 0755 "$(command -v etcd)" "$ASSETS/etcd"

# kubectl 1.20 from Debian's kubernetes-client, unpacked rather than installed:
# it would clash with any other package that owns /usr/bin/kubectl.
if ! "$ASSETS/kubectl" version --client 2>/dev/null | grep -q 'v1\.20'; then
  apt_update_once provision-kube
  DEB_DIR="$(mktemp -d /tmp/quotalang-kubectl.XXXXXX)"
  (cd "$DEB_DIR" && apt-get download -qq kubernetes-client >/dev/null && dpkg-deb -x ./kubernetes-client_*.deb root)
  install -m 0755 "$DEB_DIR/root/usr/bin/kubectl" "$ASSETS/kubectl"
  rm -rf "$DEB_DIR"
fi

if [ ! -x "$ASSETS/kube-apiserver" ]; then
  WORK="$(mktemp -d /tmp/quotalang-kube-build.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  apt_update_once provision-kube
  log "apt-get source kubernetes/bookworm (into $WORK)"
  apt-get source -qq --download-only kubernetes/bookworm >/dev/null
  dpkg-source --no-check -x ./kubernetes_*.dsc src >/dev/null
  cd src

  log "replacing vendored github.com/modern-go/reflect2 with Debian's 1.0.2"
  rm -rf vendor/github.com/modern-go/reflect2
  mkdir -p vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. vendor/github.com/modern-go/reflect2/
  find vendor/github.com/modern-go/reflect2 -name '*_test.go' -delete
  # Only the replacement changes: the modules that require reflect2 still ask for 1.0.1.
  sed -i 's#=> github.com/modern-go/reflect2 v1.0.1#=> github.com/modern-go/reflect2 v1.0.2#' \
    go.mod vendor/modules.txt staging/src/k8s.io/*/go.mod

  log "building kube-apiserver (make, CGO_ENABLED=0, $(go version | cut -d' ' -f3)); 4-6 minutes on 2 cores"
  started=$(date +%s)
  env -u GOFLAGS HOME="$WORK/home" GOCACHE="$WORK/gocache" CGO_ENABLED=0 \
    KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean \
    make WHAT=cmd/kube-apiserver >"$WORK/make.log" 2>&1 || { tail -40 "$WORK/make.log" >&2; exit 1; }
  log "built in $(( $(date +%s) - started )) s"
  cp "$(find _output -type f -name kube-apiserver -perm -u+x | head -1)" "$WORK/kube-apiserver"
  install -m 0755 "$WORK/kube-apiserver" "$ASSETS/kube-apiserver"
fi

"$ASSETS/kube-apiserver" --version >&2
version="$("$ASSETS/etcd" --version)"  # whole, then its first line: `| head -1` under pipefail can end in SIGPIPE
echo "${version%%$'\n'*}" >&2
"$ASSETS/kubectl" version --client --short 2>/dev/null >&2 || true
echo "$ASSETS"
