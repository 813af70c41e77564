# Sourced by scripts/provision-*.sh: install the Debian packages that are absent, then check
# that every tool is there, failing in seconds with the names of the missing ones, before any
# long step starts. A new machine has only what these scripts install.
#
#   provision_tools NAME "command:package ... /path:package ..." ["extra-package ..."]
#
# An entry whose first part starts with / is a path that must exist (a source tree a
# package ships). Installing needs root and apt-get; anywhere else an absent package is
# named and the script exits 2. `apt_update_once NAME` runs apt-get update at most once.

apt_update_once() {
  [ -n "${PROVISION_APT_UPDATED:-}" ] && return 0
  echo "$1: apt-get update" >&2
  apt-get update -qq
  PROVISION_APT_UPDATED=1
}

_provision_absent() {
  local package
  for package in "$@"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' || echo "$package"
  done | sort -u | tr '\n' ' '
}

provision_tools() {
  local name=$1 tools=$2 extra=${3:-} entry absent missing="" packages=""
  for entry in $tools; do packages+="${entry#*:} "; done
  if command -v dpkg-query >/dev/null 2>&1; then
    # dpkg's word, not PATH's, so a tool hidden from PATH is not "fixed" by reinstalling it.
    # shellcheck disable=SC2086
    absent="$(_provision_absent $packages $extra)"
    if [ -n "${absent// /}" ]; then
      if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$name: needs these Debian packages: $absent- install them as root" >&2
        exit 2
      fi
      apt_update_once "$name"
      echo "$name: installing $absent" >&2
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $absent >/dev/null
    fi
  fi
  for entry in $tools; do
    case "$entry" in
      /*) [ -e "${entry%%:*}" ] || missing+="  ${entry%%:*} (Debian package ${entry#*:})"$'\n' ;;
      *) command -v "${entry%%:*}" >/dev/null 2>&1 || missing+="  ${entry%%:*} (Debian package ${entry#*:})"$'\n' ;;
    esac
  done
  if [ -n "$missing" ]; then
    printf '%s: missing tools:\n%s' "$name" "$missing" >&2
    exit 2
  fi
}
