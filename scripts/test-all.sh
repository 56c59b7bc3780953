#!/usr/bin/env bash
# Every test in the repository, from a clean checkout on a fresh Debian 12 machine with Rust,
# Node 20, Python 3.11 and OpenJDK 17: installs what it needs, then runs the Rust suites, the
# vector regeneration check, and the Node, Python and Kotlin/Swift suites against real servers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
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

step "shared vectors regenerate byte for byte"
cargo run -q -p vlexivo-core --example gen_vectors
git diff --exit-code -- tests/vectors

step "Rust: core and facilitator (cargo test)"
cargo test

step "Rust: networked nonce stores against real Redis (single and cluster) and PostgreSQL"
cargo test -p vlexivo-core --features redis,postgres --lib store::

step "crates ready to publish: a true MSRV, cargo package (builds each crate from its tarball)"
python3 scripts/msrv.py
# The publishable crates, verified together: cargo resolves their path dependencies on each
# other through a temporary local registry, as crates.io will once they are published.
cargo package -q --locked --allow-dirty -p vlexivo-core -p vlexivo-client -p vlexivo-tower -p vlexivo-facilitator

step "facilitator binary for the language suites"
cargo build -p vlexivo-facilitator --bin vlexivo

for part in bindings-node bindings-python bindings-uniffi; do
  if [ -x "$part/ci.sh" ]; then
    step "$part"
    "$part/ci.sh"
  fi
done

step "all suites passed"
