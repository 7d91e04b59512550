#!/usr/bin/env bash
# Builds and runs one fuzz target with libFuzzer + AddressSanitizer, on stable Rust.
# Usage: fuzz/run.sh TARGET SECONDS [extra libFuzzer flags]
# Equivalent to `cargo fuzz run TARGET -- -max_total_time=SECONDS` (same flags cargo-fuzz
# passes), without needing cargo-fuzz or a nightly toolchain: RUSTC_BOOTSTRAP=1 unlocks -Z.
# Seeds: fuzz/corpus/TARGET (make them with `python fuzz/make_seeds.py`) plus the saved
# regressions in tests/fuzz_regressions/TARGET. New crashes land in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")"
target="$1"; secs="$2"; shift 2
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Zsanitizer=address \
 -Cdebug-assertions -Coverflow-checks"
cargo build -q --release --target x86_64-unknown-linux-gnu --bin "$target"
mkdir -p "corpus/$target" "artifacts/$target" "../tests/fuzz_regressions/$target"
ASAN_OPTIONS=detect_leaks=0 "target/x86_64-unknown-linux-gnu/release/$target" \
  -artifact_prefix="artifacts/$target/" -max_total_time="$secs" -rss_limit_mb=2048 \
  -timeout=10 -max_len=65536 -print_final_stats=1 "$@" \
  "corpus/$target" "../tests/fuzz_regressions/$target"
