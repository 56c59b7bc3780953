#!/usr/bin/env bash
# CI for the `vlexivo` npm package: install npm deps (lockfile), build the napi-rs addon and the
# TypeScript (tsc --strict, ESLint), type-check the article's snippets, run the Rust unit tests of the binding and the
# node:test suites (real Express 4/5, Fastify, Hapi and a real facilitator), then check that
# the packed tarball installs and runs outside the repository. Idempotent; exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"

echo "== node $(node --version), npm $(npm --version)"
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "Node >= 20 required" >&2
  exit 1
fi

echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error

# Always (a no-op when fresh): a facilitator older than core answers "challenge is malformed" to
# every paid test. A caller that names its own binary (the test command) has built it.
if [ -z "${VLEXIVO_BIN:-}" ]; then
  echo "== cargo build -p vlexivo-facilitator (the tests start a real facilitator)"
  (cd "$ROOT" && cargo build -q -p vlexivo-facilitator --bin vlexivo)
  export VLEXIVO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/vlexivo"
fi

echo "== napi build (debug is enough for the tests and the tarball; the benchmarks need --release)"
npx napi build --platform --output-dir native --js index.js --dts index.d.ts

echo "== TypeScript"
npm run build:ts
npx tsc -p examples/tsconfig.json

echo "== ESLint (typescript-eslint with type information; eslint.config.mjs)"
npx eslint --max-warnings 0 ts

echo "== cargo test -p vlexivo-node (error mapping round trip)"
(cd "$ROOT" && cargo test -p vlexivo-node --lib 2>&1 | tail -n 4)

echo "== node --test"
node --test --test-concurrency=1 test/*.test.mjs

echo "== a panic in the addon is an internal error (test-only build, feature test-panic)"
panic_dir="$(mktemp -d)"
npx napi build --platform --features test-panic --output-dir "$panic_dir" --no-js >/dev/null
NAPI_RS_NATIVE_LIBRARY_PATH="$(ls "$panic_dir"/*.node)" node --test test/panic.mjs
rm -rf "$panic_dir"

echo "== pack and install outside the repository"
node scripts/pack-check.mjs
