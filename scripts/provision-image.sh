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

# mmdebstrap runs apt and dpkg for the new root; tar unpacks it into buildah's mount;
# python3 reads the machine's apt sources (scripts/debsrc_entry.py).
# shellcheck source=scripts/lib/tools.sh
. "$(dirname "$0")/lib/tools.sh"
provision_tools provision-image "mmdebstrap:mmdebstrap buildah:buildah apt-get:apt dpkg:dpkg tar:tar
  python3:python3 newuidmap:uidmap"
log "$(mmdebstrap --version), $(buildah --version)"
