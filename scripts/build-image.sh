#!/usr/bin/env bash
# Build the quotalang image from the Containerfile, with no daemon and no registry;
# print its name (the only line on stdout).
#
#   scripts/build-image.sh                  # e.g. localhost/quotalang:0.1.0-3f9c2a1b7d4e
#   QUOTALANG_IMAGE="$(scripts/build-image.sh)"
#
# Idempotent: the two Debian base images are made once, and the image is tagged
# with a hash of everything that goes into it (the staged sources, the
# Containerfile, the base images), so an unchanged tree prints the existing
# name in a second or two.
#
# How (Debian's packages only; scripts/provision-image.sh installs and checks them):
#   1. mmdebstrap --variant=minbase makes two bookworm root tarballs from the mirror
#      this machine's apt already uses: python3 (run time) and python3 + python3-venv
#      (build stage). `buildah from scratch` + mount + tar -x + commit turns each into
#      a local image.
#   2. The build context is staged from git's view of the tree (tracked files and new,
#      not ignored ones) under pyproject.toml, README.md and the package folders.
#   3. buildah bud --isolation chroot --pull=never builds the Containerfile on those
#      bases (storage driver vfs: no overlay or fuse needed). pip inside the build
#      uses the index this machine's pip is configured with (file:// indexes are on
#      this disk, not in the build, and are left out).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${QUOTALANG_IMAGE_CACHE:-$HOME/.cache/quotalang/image}"
REPO="${QUOTALANG_IMAGE_REPO:-localhost/quotalang}"
SUITE=bookworm
# Bump when the base recipe changes, so old bases are not reused.
BASE_RECIPE=1
RUN_BASE="localhost/quotalang-base:$SUITE-run-$BASE_RECIPE"
BUILD_BASE="localhost/quotalang-base:$SUITE-build-$BASE_RECIPE"

log() { echo "build-image: $*" >&2; }
bh() { buildah --storage-driver vfs "$@"; }

"$ROOT/scripts/provision-image.sh"
mkdir -p "$CACHE"

# The machine's own archive entry for a suite as a one-line source for mmdebstrap
# (the address and keyring apt uses here; no host name is written in this script).
source_line() {
  local paragraph uri signed
  paragraph="$(python3 "$ROOT/scripts/debsrc_entry.py" --suite "$1" --component main 2>/dev/null)" || return 1
  uri="$(sed -n 's/^URIs: //p' <<<"$paragraph")"
  signed="$(sed -n 's/^Signed-By: //p' <<<"$paragraph")"
  [ -n "$uri" ] || return 1
  echo "deb ${signed:+[signed-by=$signed] }$uri $1 main"
}

make_base() {  # make_base IMAGE PACKAGES
  local image="$1" packages="$2" tarball container mount started
  if bh inspect --type image "$image" >/dev/null 2>&1; then
    return 0
  fi
  tarball="$CACHE/${image##*:}.tar"
  if [ ! -s "$tarball" ]; then
    local sources=() line
    line="$(source_line "$SUITE")" || {
      echo "build-image: no apt source serves $SUITE main on this machine (see scripts/debsrc_entry.py)" >&2
      exit 2
    }
    sources+=("$line")
    # Security updates and point-release updates, when the machine has them.
    for extra in "$SUITE-updates" "$SUITE-security"; do
      if line="$(source_line "$extra")"; then sources+=("$line"); fi
    done
    log "mmdebstrap $SUITE ($packages) from: ${sources[*]}"
    started=$(date +%s)
    mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" \
      --aptopt='Acquire::Languages "none"' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      "$SUITE" "$tarball.tmp" "${sources[@]}" >&2
    mv "$tarball.tmp" "$tarball"
    log "base tarball in $(( $(date +%s) - started )) s"
  fi
  container="$(bh from scratch)"
  mount="$(bh mount "$container")"
  tar -C "$mount" -xf "$tarball"
  bh umount "$container" >/dev/null
  bh config --env PATH=/usr/local/bin:/usr/bin:/bin --cmd /bin/sh "$container"
  bh commit --quiet --rm "$container" "$image" >/dev/null
  log "made $image"
}

make_base "$RUN_BASE" python3
make_base "$BUILD_BASE" python3,python3-venv

# The build context: what git sees under these paths (tracked, and new but not ignored).
CONTEXT="$(mktemp -d /tmp/quotalang-image.XXXXXX)"
trap 'rm -rf "$CONTEXT"' EXIT
(
  cd "$ROOT"
  git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md quotalang controller server policies \
    | while IFS= read -r -d '' path; do [ -e "$path" ] || [ -L "$path" ] && printf '%s\0' "$path"; done \
    | tar --null -T - --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - \
    | tar -C "$CONTEXT" -xf -
)
cp "$ROOT/Containerfile" "$CONTEXT/Containerfile"

# pip's index as configured here; file:// indexes are local paths the build cannot see.
pip_setting() {  # pip_setting ENV_NAME CONFIG_KEY
  local value="${!1:-}"
  if [ -z "$value" ]; then
    value="$(python3 -m pip config get "global.$2" 2>/dev/null || true)"
  fi
  local kept=() url
  for url in $value; do
    case "$url" in file:*) ;; *) kept+=("$url") ;; esac
  done
  echo "${kept[*]:-}"
}
BUILD_ARGS=(--build-arg "BASE=$RUN_BASE" --build-arg "BUILD_BASE=$BUILD_BASE")
for pair in PIP_INDEX_URL:index-url PIP_EXTRA_INDEX_URL:extra-index-url PIP_TRUSTED_HOST:trusted-host; do
  value="$(pip_setting "${pair%%:*}" "${pair#*:}")"
  [ -z "$value" ] || BUILD_ARGS+=(--build-arg "${pair%%:*}=$value")
done

# The CA bundle pip trusts here (a proxy may re-sign PyPI's certificates), mounted for
# the build only.
cert="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
MOUNTS=()
if [ -n "$cert" ] && [ -f "$cert" ]; then
  MOUNTS+=(--volume "$(readlink -f "$cert"):/etc/quotalang-build/pip-ca.crt:ro")
  BUILD_ARGS+=(--build-arg "PIP_CERT=/etc/quotalang-build/pip-ca.crt")
fi

digest="$(
  {
    (cd "$CONTEXT" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .)
    bh inspect --type image --format '{{.FromImageID}}' "$RUN_BASE"
    bh inspect --type image --format '{{.FromImageID}}' "$BUILD_BASE"
    printf '%s\n' "${BUILD_ARGS[@]}"
  } | sha256sum | cut -c1-12
)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
IMAGE="$REPO:$VERSION-$digest"

if bh inspect --type image "$IMAGE" >/dev/null 2>&1; then
  log "up to date: $IMAGE"
else
  log "buildah bud -> $IMAGE"
  started=$(date +%s)
  bh bud --quiet --isolation chroot --pull=never --layers --network host \
    "${BUILD_ARGS[@]}" "${MOUNTS[@]}" -f "$CONTEXT/Containerfile" -t "$IMAGE" "$CONTEXT" >&2
  log "built in $(( $(date +%s) - started )) s"
fi
echo "$IMAGE"
