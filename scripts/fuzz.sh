#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser an attacker reaches (the targets in fuzz/). libFuzzer,
# through the libfuzzer-sys crate (which builds it from source), on the stable toolchain: the
# SanitizerCoverage instrumentation libFuzzer needs is plain LLVM passes that stable rustc runs
# with -C flags, so neither a nightly toolchain nor cargo-fuzz is needed. No AddressSanitizer
# (it needs -Z flags): the targets are safe Rust, so what is looked for is panics (debug
# assertions and overflow checks on), timeouts, unbounded memory and broken invariants.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 30 s, every target)
#
# VLX_FUZZ_RUNS=N also stops a target after N executions (the long runs: -runs=10000000,
# capped in time), so a fast target frees its core for a slow one.
#
# Each target starts from its seed corpus (fuzz/seeds.py, made from tests/vectors) plus what
# earlier runs found (target/fuzz/corpus/TARGET). A crash, timeout or out-of-memory fails the
# run; the input is saved in target/fuzz/artifacts/TARGET/, to be minimized with
#   target/x86_64-unknown-linux-gnu/fuzz/TARGET -minimize_crash=1 -runs=200000 FILE
# and kept: in fuzz/regressions/TARGET/ (replayed by every run) and, for a bug in core, as a
# test in core's own suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-30}"
shift || true
triple=x86_64-unknown-linux-gnu
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^vlexivo-fuzz$')
fi
target_dir="${CARGO_TARGET_DIR:-$root/target}"
work="$target_dir/fuzz"

# --target keeps these flags off build scripts and proc macros (they run on the host).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build -q --locked --profile fuzz -p vlexivo-fuzz --target "$triple" --bins
bins="$target_dir/$triple/fuzz"

seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
python3 fuzz/seeds.py "$seeds"

# One target: new inputs go to the first corpus directory (kept between runs); the seeds and
# the regression inputs (fuzz/regressions/TARGET: what once failed, minimized) are read only.
run() {
  local t="$1" corpus="$work/corpus/$1" artifacts="$work/artifacts/$1" log="$work/$1.log"
  mkdir -p "$corpus" "$artifacts" "$seeds/$t" "fuzz/regressions/$t"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: memory that grows without bound.
  if "$bins/$t" "$corpus" "$seeds/$t" "fuzz/regressions/$t" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 ${VLX_FUZZ_RUNS:+-runs="$VLX_FUZZ_RUNS"} \
    >"$log" 2>&1; then
    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz $t: ok, $execs executions in $(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)s" \
      "(at most ${secs}s), $cov edges, $(ls "$corpus" | wc -l) corpus inputs"
  else
    echo "fuzz $t: FAILED; the last lines of $log:"
    tail -n 40 "$log"
    return 1
  fi
}

# As many targets at once as there are cores (VLX_FUZZ_JOBS to change it).
jobs="${VLX_FUZZ_JOBS:-$(nproc)}"
failed=()
declare -A names=()
# `wait -n -p` (bash 5.1): a slot frees when any target ends, not only the oldest, so a long
# target does not hold back the ones queued behind it.
reap() {
  local pid
  if wait -n -p pid; then :; else failed+=("${names[$pid]}"); fi
  unset "names[$pid]"
}
for t in "${targets[@]}"; do
  run "$t" &
  names[$!]="$t"
  if [ ${#names[@]} -ge "$jobs" ]; then reap; fi
done
while [ ${#names[@]} -gt 0 ]; do reap; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]} (inputs in $work/artifacts/)" >&2
  exit 1
fi
