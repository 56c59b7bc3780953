#!/usr/bin/env bash
# Every test in the repository, from a clean checkout on a fresh Debian 12 machine with Rust,
# Node 20, Python 3.11 and OpenJDK 17: installs what it needs, then runs the Rust suites, the
# vector regeneration check, and the Node, Python and Kotlin/Swift suites against real servers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
# A one-shot run gains nothing from incremental caches, which add gigabytes to the target
# directory (a CI disk once filled mid-run).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target="${CARGO_TARGET_DIR:-$root/target}"
export VLEXIVO_BIN="$target/debug/vlexivo"
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "static gates: rustfmt (rustfmt.toml)"
cargo fmt --all --check

step "static gates: clippy, warnings as errors, every crate and feature (bindings included)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "Redis and PostgreSQL for the suites that start throwaway servers (Debian packages)"
./scripts/test-services.sh install

step "live-mode devnet (npm): anvil, Circle's FiatTokenV2_2 artifacts, viem; viem checks the live vectors"
npm ci --prefix live/devnet --no-audit --no-fund --loglevel=error
npm test --prefix live/devnet

step "shared vectors regenerate byte for byte"
cargo run -q -p vlexivo-core --example gen_vectors
git diff --exit-code -- tests/vectors

step "Rust: core and facilitator (cargo test)"
cargo test

step "Rust: networked nonce stores against real Redis (single and cluster) and PostgreSQL"
cargo test -p vlexivo-core --features redis,postgres --lib store::

step "crates ready to publish: a true MSRV, cargo package"
python3 scripts/msrv.py
publishable=(core client tower live facilitator)
# The publishable crates packaged together (their path dependencies on each other resolved through a
# temporary local registry, as crates.io will once they are published): metadata, file lists,
# versions on path dependencies. --no-verify: the verify build would compile from each tarball
# exactly the sources `cargo test` just compiled (nothing reaches outside a crate's directory:
# checked below), but under each crate's own feature set, i.e. tokio, hyper, reqwest, axum
# again, about 5 minutes on 2 cores; and it compiles the sibling crates from sources cargo
# unpacked into CARGO_HOME on an earlier run and never refreshes, so a second run on one
# machine verifies stale code.
# (Files included from within src/, such as the dashboard's assets, are packaged with the crate.)
if grep -rlE 'include_(str|bytes)!\("[^"]*\.\./|#\[path' "${publishable[@]/%//src}" || ls "${publishable[@]/%//build.rs}" 2>/dev/null; then
  echo "a publishable crate reads files outside src/ or has a build script: drop --no-verify below" >&2
  exit 1
fi
cargo package -q --locked --allow-dirty --no-verify "${publishable[@]/#/-pvlexivo-}"

step "fuzzing: every target 20 s, coverage-guided (libFuzzer on stable; scripts/fuzz.sh)"
scripts/fuzz.sh 20

step "facilitator binary for the language suites"
# The binary `cargo test` built for the facilitator's integration tests, with the features the
# workspace's default members unify to (a no-op here). `cargo build -p vlexivo-facilitator`
# resolves features for that crate alone and compiled alloy and its dependents again (2-4 min).
cargo test --no-run -q
test -x "$VLEXIVO_BIN"

for part in bindings-node bindings-python bindings-uniffi; do
  if [ -x "$part/ci.sh" ]; then
    step "$part"
    "$part/ci.sh"
  fi
done

step "browser: the dashboard and the paywall page in headless Chromium (tests/browser)"
tests/browser/run.sh

step "benchmarks smoke-run (tiny counts, debug builds): scripts/bench.sh --smoke"
# The benchmarks that need nothing the suites above did not build (about a minute); criterion's
# and the Python ones (a .venv with maturin develop) run only in scripts/bench.sh itself.
./scripts/bench.sh --smoke --only stores,payments,node-verify,node-http

step "all suites passed"
du -sh "$target" 2>/dev/null | sed 's/^/target directory: /' || true
