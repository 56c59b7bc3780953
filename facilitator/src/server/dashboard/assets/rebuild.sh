#!/usr/bin/env bash
# The dashboard's chart library, embedded in the facilitator binary (include_bytes!): uPlot's
# own minified build and stylesheet, byte for byte from the npm package (npm checks the
# tarball's integrity against the registry). `rebuild.sh` rewrites them; `rebuild.sh --check`
# fails when the checked-in files differ from the package's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=1.6.32
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "uplot@$version" --silent >/dev/null && tar xzf "uplot-$version.tgz")
for f in uPlot.iife.min.js uPlot.min.css; do
  if [ "${1:-}" = "--check" ]; then
    cmp "$tmp/package/dist/$f" "$here/$f"
  else
    cp "$tmp/package/dist/$f" "$here/$f"
  fi
done
if [ "${1:-}" = "--check" ]; then cmp "$tmp/package/LICENSE" "$here/uPlot.LICENSE"; else cp "$tmp/package/LICENSE" "$here/uPlot.LICENSE"; fi
echo "uPlot $version: ok"
