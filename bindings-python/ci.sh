#!/usr/bin/env bash
# The Python package's CI, as users get it: build the abi3 wheel (maturin, manylinux compliance
# checked by maturin's auditwheel) and the sdist, `twine check` them and check their contents
# and metadata (scripts/check_dist.py), then install the wheel into a fresh virtualenv with no
# Rust toolchain on PATH and run, against that installation, mypy's stubtest on the native
# module's stubs, mypy --strict on the package and on the benchmarks (bench/*.py), and pytest
# against real servers (the `vlexivo` facilitator process, uvicorn, waitress, werkzeug, Django's
# handlers); ruff lints the sources first. The base install (no extras) imports without httpx and
# says what to install for the clients.
#
# VLEXIVO_WHEEL_PROFILE=dev|release picks the cargo profile. The test command builds dev: the
# same code and the same packaging, compliance check and install path as a release wheel, in
# seconds on top of the debug build `cargo test` already made (a cold optimised build costs
# 5-15 minutes on 2 cores); the release workflow and the figures build --release.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
given_bin="${VLEXIVO_BIN:-}"
export VLEXIVO_BIN="${VLEXIVO_BIN:-$CARGO_TARGET_DIR/debug/vlexivo}"
venv="${VLEXIVO_PY_VENV:-$here/.venv}"
py="${PYTHON:-python3}"
profile="${VLEXIVO_WHEEL_PROFILE:-dev}"
pip_q=(-q --disable-pip-version-check)

# Always (a no-op when fresh), unless the caller named its own binary (the test command built it):
# a facilitator older than core refuses every challenge.
if [ -z "$given_bin" ]; then
  (cd "$root" && cargo build -q -p vlexivo-facilitator --bin vlexivo)
fi

echo "=== build tools (maturin, twine, ruff) in $venv"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install "${pip_q[@]}" -r requirements-build.txt

echo "=== ruff (lint, format check; config in pyproject.toml; the repository's scripts/ linted too)"
"$venv/bin/python" -m ruff check . ../scripts
"$venv/bin/python" -m ruff format --check .

echo "=== wheel ($profile profile) and sdist"
# A `maturin develop` leaves the module in python/vlexivo/: never let a stale one into the wheel.
rm -f python/vlexivo/_native*.so
dist="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$dist" "$work"' EXIT
case "$profile" in
  release) profile_args=(--release) ;;
  *) profile_args=(--profile "$profile") ;;
esac
"$venv/bin/maturin" build "${profile_args[@]}" --out "$dist" --auditwheel check 2>&1 | grep -E "Built wheel|warning|error" || true
"$venv/bin/maturin" sdist --out "$dist" 2>&1 | grep -E "Built source|warning|error" || true
"$venv/bin/python" -m twine --no-color check --strict "$dist"/*
"$venv/bin/python" scripts/check_dist.py "$dist"

echo "=== cargo test -p vlexivo-python (binding unit tests)"
(cd "$root" && cargo test -q -p vlexivo-python 2>&1 | grep -E "test result|error|panicked")

echo "=== install the wheel into fresh virtualenvs, no Rust on PATH"
no_rust_path="$(
  IFS=:
  for d in $PATH; do [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && printf '%s:' "$d"; done
)"
no_rust_path="${no_rust_path%:}"
wheel="$(ls "$dist"/vlexivo-*.whl)"
(
  export PATH="$no_rust_path"
  if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    echo "a Rust toolchain is still on PATH" >&2
    exit 1
  fi
  # The base package: a provider's server, without httpx.
  "$py" -m venv "$work/base"
  "$work/base/bin/python" -m pip install "${pip_q[@]}" --no-deps "$wheel"
  (cd "$work" && "$work/base/bin/python" - <<'EOF'
import vlexivo
assert vlexivo.VlexivoServer and vlexivo.Wallet.generate().address.startswith("0x")
try:
    vlexivo.VlexivoClient
except ImportError as e:
    assert "pip install 'vlexivo[client]'" in str(e), e
else:
    raise SystemExit("VlexivoClient imported without httpx")
try:
    vlexivo.VlexivoSession
except ImportError as e:
    assert "pip install 'vlexivo[requests]'" in str(e), e
else:
    raise SystemExit("VlexivoSession imported without requests")
print("base install: the server side imports without httpx or requests; the clients say which extra to install")
EOF
  )
  # The full test environment: the wheel with its extras and the pinned test dependencies.
  "$py" -m venv "$work/test"
  "$work/test/bin/python" -m pip install "${pip_q[@]}" "$wheel[client,requests,mcp,fastapi,flask,django]" -r "$here/requirements-test.txt"
)
tpy="$work/test/bin/python"

echo "=== stubtest vlexivo._native"
# Run from outside the source tree so the installed wheel (not python/) is what gets checked.
(cd "$work" && PATH="$no_rust_path" "$tpy" -m mypy.stubtest vlexivo._native)
echo "=== mypy --strict vlexivo"
(cd "$work" && PATH="$no_rust_path" "$tpy" -m mypy --strict --cache-dir "$work/.mypy_cache" -p vlexivo)
echo "=== mypy --strict bench/*.py (against the installed package; tests/ for their token minting)"
PATH="$no_rust_path" "$tpy" -m mypy --strict --cache-dir "$work/.mypy_cache" bench/*.py
echo "=== mypy --strict scripts/bench.py (the benchmark command that writes the README's table)"
PATH="$no_rust_path" "$tpy" -m mypy --strict --cache-dir "$work/.mypy_cache" ../scripts/bench.py
echo "=== pytest"
# The tests import the installed package (python/ is not on sys.path).
PATH="$no_rust_path" "$tpy" -m pytest -q -p no:cacheprovider tests

echo "=== a panic in the native module is an internal error (test-only build, feature test-panic)"
# The installed package's Python files with a native module built with the feature, first on
# PYTHONPATH; the `vlexivo` facilitator binary plays no part.
(cd "$root" && cargo build -q -p vlexivo-python --features test-panic)
panic_pkg="$work/panic"
mkdir -p "$panic_pkg"
cp -r python/vlexivo "$panic_pkg/"
cp "$CARGO_TARGET_DIR/debug/lib_native.so" "$panic_pkg/vlexivo/_native.abi3.so"
VLX_TEST_PANIC_BUILD=1 PYTHONPATH="$panic_pkg" "$tpy" -m pytest -q -p no:cacheprovider tests/panic_check.py
