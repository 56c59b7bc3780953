#!/usr/bin/env bash
# bindings-uniffi CI: installs its tools (Debian's JNA, the Kotlin compiler from npm, a Python
# venv with tree-sitter-swift), builds the cdylib and uniffi-bindgen, runs the Rust tests,
# generates Kotlin and Swift, syntax-checks the Swift, then compiles the Kotlin bindings with
# their tests and runs them against a real facilitator and a real paid API on loopback.
# Idempotent; the last line is the Kotlin runner's "N passed, M failed".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
target="${CARGO_TARGET_DIR:-$root/target}"
vlexivo="${VLEXIVO_BIN:-$target/debug/vlexivo}"
build="$here/build"
say() { printf '\n--- bindings-uniffi: %s\n' "$*"; }

say "tools"
if [ ! -f /usr/share/java/jna.jar ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjna-java >/dev/null
fi
jna=/usr/share/java/jna.jar
kotlin_lib="$here/node_modules/kotlin-compiler/lib"
if [ ! -x "$here/node_modules/kotlin-compiler/bin/kotlinc-jvm" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
kotlinc="$here/node_modules/kotlin-compiler/bin/kotlinc-jvm"
venv="$here/.venv"
if ! "$venv/bin/python" -c "import tree_sitter, tree_sitter_swift" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check tree-sitter==0.26.1 tree-sitter-swift==0.7.4
fi

say "cargo build (cdylib, uniffi-bindgen, the paid API example) and Rust tests"
# One feature set for every step, so nothing is built twice.
cargo build -q -p vlexivo-uniffi --features cli --lib --bins --examples
if [ ! -x "$vlexivo" ]; then
  cargo build -q -p vlexivo-facilitator --bin vlexivo
fi
# The throwaway CA of the HTTPS tests. The test command (which names the facilitator it built)
# built it too, in `cargo test`: built here with this crate's features alone, it would compile
# alloy and its dependents again.
if [ -z "${VLEXIVO_BIN:-}" ] || [ ! -x "$target/debug/examples/test_pki" ]; then
  cargo build -q -p vlexivo-facilitator --example test_pki
fi
mkdir -p "$build"
if ! cargo test -q -p vlexivo-uniffi --features cli >"$build/cargo-test.log" 2>&1; then
  cat "$build/cargo-test.log"
  echo "bindings-uniffi: Rust tests failed"
  exit 1
fi
grep -E "^test result" "$build/cargo-test.log"

say "generate Kotlin and Swift"
lib="$target/debug/libvlexivo_uniffi.so"
rm -rf "$build/gen"
for lang in kotlin swift; do
  "$target/debug/uniffi-bindgen" generate --library "$lib" --language "$lang" --no-format \
    --out-dir "$build/gen/$lang" >/dev/null
done

say "Swift syntax check (tree-sitter-swift; no Swift compiler here)"
"$venv/bin/python" "$here/scripts/swift_syntax_check.py" \
  "$build/gen/swift/Vlexivo.swift" "$here"/swift/*.swift "$here"/examples/*.swift

say "compile the Kotlin bindings and tests"
sources=("$build/gen/kotlin/online/vlexivo/vlexivo_uniffi.kt" "$here"/kotlin/online/vlexivo/*.kt "$here"/tests/kotlin/*.kt)
classpath="$jna:$kotlin_lib/kotlinx-coroutines-core-jvm.jar"
stamp="$(cat "${sources[@]}" | sha256sum | cut -c1-16)"
if [ "$(cat "$build/classes/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$build/classes"
  "$kotlinc" -nowarn -jvm-target 17 -cp "$classpath" -d "$build/classes" "${sources[@]}"
  echo "$stamp" > "$build/classes/.stamp"
fi

say "Kotlin tests against a real facilitator and paid API"
java -Djna.library.path="$target/debug" \
  -cp "$build/classes:$classpath:$kotlin_lib/kotlin-stdlib.jar" \
  online.vlexivo.tests.VlexivoTestsKt \
  --vlexivo "$vlexivo" --paid-api "$target/debug/examples/paid_api" \
  --test-pki "$target/debug/examples/test_pki" --vectors "$root/tests/vectors"
