#!/usr/bin/env bash
# The Python package's CI: fresh virtualenv, pinned dev dependencies, `pip install .` (maturin
# from PyPI as the PEP 517 backend builds the abi3 wheel, sharing the workspace target dir),
# pytest against real servers (the `vlexivo` facilitator process, uvicorn, waitress, werkzeug),
# then mypy's stubtest on the native module's stubs and mypy --strict on the package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export VLEXIVO_BIN="${VLEXIVO_BIN:-$CARGO_TARGET_DIR/debug/vlexivo}"
venv="${VLEXIVO_PY_VENV:-$here/.venv}"
py="${PYTHON:-python3}"

if [ ! -x "$VLEXIVO_BIN" ]; then
  (cd "$root" && cargo build -q -p vlexivo-facilitator --bin vlexivo)
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# A `maturin develop` leaves the module in python/vlexivo/: never let a stale one into the wheel.
rm -f python/vlexivo/_native*.so
# The same command a user runs; --force-reinstall so a changed crate is always rebuilt in. CI
# builds the dev profile (the debug deps are already built by `cargo test`): a release build with
# LTO would add minutes and only the benchmarks need it (`bench/` says how to build for those).
export MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS:---profile dev}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps .

echo "=== cargo test -p vlexivo-python (binding unit tests)"
(cd "$root" && cargo test -q -p vlexivo-python 2>&1 | grep -E "test result|error|panicked")
echo "=== stubtest vlexivo._native"
# Run from outside the source tree so the installed wheel (not python/) is what gets checked.
(cd /tmp && "$venv/bin/python" -m mypy.stubtest vlexivo._native)
echo "=== mypy --strict vlexivo"
(cd /tmp && "$venv/bin/python" -m mypy --strict -p vlexivo)
echo "=== pytest"
# The tests import the installed package (python/ is not on sys.path).
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests
