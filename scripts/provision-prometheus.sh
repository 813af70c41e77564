#!/usr/bin/env bash
# Install promtool, which the alerting suite (tests/alerts) runs: `promtool check rules` and
# `promtool test rules` on server/manifests/alerts.yaml. Debian ships it in the `prometheus`
# package (the server comes along; nothing starts it). Idempotent; checks the tool first,
# as provision-kube.sh does.
#
#   scripts/provision-prometheus.sh   # prints promtool's version on success
#
# Root on Debian installs what is missing with apt-get; anywhere else a missing tool
# is named and the script exits 2 in seconds, before the tests start.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
# shellcheck source=scripts/lib/tools.sh
. "$(dirname "$0")/lib/tools.sh"
provision_tools provision-prometheus "promtool:prometheus"
version="$(promtool --version 2>&1)"  # whole, then its first line (`| head -1` under pipefail: SIGPIPE)
echo "${version%%$'\n'*}"
