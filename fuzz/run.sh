#!/usr/bin/env bash
# Builds the `check` fuzz target with libFuzzer's coverage instrumentation
# (what cargo-fuzz does, without needing it installed) and runs it on the
# kept corpus (and check's test corpus of real objects) for SECONDS (default
# 600). New inputs go to a scratch corpus; `-merge` folds only those that add
# coverage back into fuzz/corpus/check.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo +nightly build --release --target "$target" --bin check
binary="$CARGO_TARGET_DIR/$target/release/check"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The real objects of check's test corpus seed it too.
seeds=../verifier/tests/corpus
"$binary" "$scratch" corpus/check "$seeds" -dict=check.dict -max_len=65536 -max_total_time="$seconds" -print_final_stats=1
"$binary" -merge=1 corpus/check "$scratch" "$seeds"
