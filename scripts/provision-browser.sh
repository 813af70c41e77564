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

export DEBIAN_FRONTEND=noninteractive

# A font package too: without one, headless Chromium draws every glyph as a box and
# the screenshots in docs/ would be unreadable.
# shellcheck source=scripts/lib/tools.sh
. "$(dirname "$0")/lib/tools.sh"
provision_tools provision-browser "chromium:chromium fc-list:fontconfig" "fonts-dejavu-core"
# The check that matters: the browser starts headless and renders a page.
out="$(chromium --headless --no-sandbox --disable-gpu --dump-dom 'data:text/html,<p>ok</p>' 2>/dev/null || true)"
if ! grep -q '<p>ok</p>' <<<"$out"; then
  echo "provision-browser: chromium is installed but does not render headless (try: chromium --headless --no-sandbox --dump-dom about:blank)" >&2
  exit 2
fi
chromium --version
