#!/usr/bin/env bash
# The paywall page's sandbox payer script, embedded inline in the page by core (include_str!,
# allowed by its hash in the page's CSP): paywall_pay.src.js bundled with @noble/curves
# (secp256k1) and @noble/hashes (keccak) from npm at pinned versions by esbuild. `rebuild.sh`
# rewrites paywall_pay.js; `rebuild.sh --check` fails when the checked-in bundle differs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$here/paywall_pay.src.js" "$tmp/"
cd "$tmp"
echo '{"private":true}' > package.json
npm install --no-audit --no-fund --loglevel=error --ignore-scripts=false \
  esbuild@0.25.5 @noble/curves@1.9.1 @noble/hashes@1.8.0 >/dev/null
./node_modules/.bin/esbuild paywall_pay.src.js --bundle --minify --format=iife --target=es2020 \
  --legal-comments=none --log-level=warning --outfile=paywall_pay.js
if [ "${1:-}" = "--check" ]; then
  cmp paywall_pay.js "$here/paywall_pay.js"
else
  cp paywall_pay.js "$here/paywall_pay.js"
fi
echo "paywall_pay.js (noble curves 1.9.1, hashes 1.8.0, esbuild 0.25.5): ok"
