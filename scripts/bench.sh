#!/usr/bin/env bash
# Every benchmark figure of the README from one command: builds release, runs each benchmark
# with its baseline in the same run, --runs times (default 3), and prints the README's table
# with the range over the runs and the load average. Not part of the test command (which only
# smoke-runs it: --smoke). See scripts/bench.py for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n "${BENCH_NICE:-0}" python3 scripts/bench.py "$@"
