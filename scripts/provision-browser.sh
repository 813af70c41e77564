#!/usr/bin/env bash
# Install the browser the pages suite (tests/pages) drives: Debian's `chromium`,
# run headless by Playwright for Python with that executable. Playwright's own
# browser download is never used (no host but the package archives is reachable,
# and a browser build of its own would be a second, unpinned browser).
# Idempotent; checks every tool first, as provision-kube.sh does.
#
#   scripts/provision-browser.sh      # prints the chromium version on success
#
# Root on Debian installs what is missing with apt-get; anywhere else a missing tool
# is named and the script exits 2 in seconds, before the tests start.
set -euo pipefail

log() { echo "provision-browser: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# command:Debian-package. A font package too: without one, headless Chromium draws
# every glyph as a box and the screenshots in docs/ would be unreadable.
TOOLS="chromium:chromium fc-list:fontconfig"
PACKAGES="chromium fontconfig fonts-dejavu-core"

absent_packages() {
  local package
  for package in $PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' || echo "$package"
  done
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
      echo "provision-browser: needs these Debian packages: $absent- install them as root" >&2
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
  echo "provision-browser: missing tools (tests/pages needs them):" >&2
  echo "$missing" | sed 's/^/  /' >&2
  exit 2
fi
# The check that matters: the browser starts headless and renders a page.
out="$(chromium --headless --no-sandbox --disable-gpu --dump-dom 'data:text/html,<p>ok</p>' 2>/dev/null || true)"
if ! grep -q '<p>ok</p>' <<<"$out"; then
  echo "provision-browser: chromium is installed but does not render headless (try: chromium --headless --no-sandbox --dump-dom about:blank)" >&2
  exit 2
fi
chromium --version
