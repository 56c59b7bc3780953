#!/usr/bin/env bash
# The browser suites: the facilitator's dashboard (and the paywall page) in a real headless
# Chromium. Installs Debian's chromium when absent and playwright-core from npm (lockfile);
# needs the facilitator binary and the npm package built (bindings-node/ci.sh does both).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"
if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM_BIN:-}" ]; then
  echo "== apt-get install chromium"
  export DEBIAN_FRONTEND=noninteractive
  for i in 1 2 3 4 5; do
    if { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; then break; fi
    echo "apt-get busy or failed; retrying in 5 s" >&2
    sleep 5
  done
fi
echo "== the dashboard's embedded chart library is uPlot's npm build, byte for byte"
"$root/facilitator/src/server/dashboard/assets/rebuild.sh" --check
echo "== the paywall page's payer script is its source bundled with @noble/curves and @noble/hashes"
"$root/core/src/assets/rebuild.sh" --check
echo "== npm ci (playwright-core)"
npm ci --no-audit --no-fund --loglevel=error
echo "== node --test (headless $(chromium --version 2>/dev/null || echo "$CHROMIUM_BIN"))"
node --test --test-concurrency=1 ./*.test.mjs
