#!/usr/bin/env bash
# Install the tools that build and run the image without a daemon or a registry:
# Debian's mmdebstrap (makes the bookworm base) and buildah (storage driver vfs,
# --isolation chroot). Idempotent; checks every tool first, as provision-kube.sh does.
#
#   scripts/provision-image.sh        # prints nothing on success but the tool versions
#
# Root on Debian installs what is missing with apt-get; anywhere else a missing tool
# is named and the script exits 2 in seconds, before scripts/build-image.sh starts.
set -euo pipefail

log() { echo "provision-image: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# command:Debian-package. mmdebstrap runs apt and dpkg for the new root; tar unpacks it
# into buildah's mount; python3 reads the machine's apt sources (scripts/debsrc_entry.py).
TOOLS="mmdebstrap:mmdebstrap buildah:buildah apt-get:apt dpkg:dpkg tar:tar python3:python3
       newuidmap:uidmap"

absent_packages() {
  local pair
  for pair in $TOOLS; do
    dpkg-query -W -f='${Status}\n' "${pair#*:}" 2>/dev/null | grep -q '^install ok installed$' \
      || echo "${pair#*:}"
  done | sort -u
}
missing_tools() {
  local pair
  for pair in $TOOLS; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || echo "${pair%%:*} (Debian package ${pair#*:})"
  done
}

if command -v dpkg-query >/dev/null 2>&1; then
  absent="$(absent_packages | tr '\n' ' ')"
  if [ -n "${absent// /}" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      echo "provision-image: needs these Debian packages: $absent- install them as root" >&2
      exit 2
    fi
    log "apt-get update"
    apt-get update -qq
    log "installing $absent"
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $absent >/dev/null
  fi
fi
missing="$(missing_tools)"
if [ -n "$missing" ]; then
  echo "provision-image: missing tools (scripts/build-image.sh needs them):" >&2
  echo "$missing" | sed 's/^/  /' >&2
  exit 2
fi
log "$(mmdebstrap --version), $(buildah --version)"
