#!/usr/bin/env bash
# The soak benchmark (not part of the test command): a facilitator, the Express and FastAPI
# paywalls and two load generators for --minutes (default 10) on 127.0.0.1; RSS, file
# descriptors, live nonces and latency percentiles every 10 s, the ledger checked at the end.
# See scripts/soak.py for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n "${BENCH_NICE:-0}" python3 scripts/soak.py "$@"
