#!/usr/bin/env bash
# CI step: build every cargo-fuzz target in fuzz/ and run each one briefly, so a target that no
# longer builds, or an input that crashes within seconds, fails CI. The long campaigns (a million
# executions and more per target) are described in fuzz/README.md.
#
# The machine has the stable toolchain only: cargo-fuzz passes -Z flags (the sanitizer and the
# coverage instrumentation) to rustc, which stable accepts under RUSTC_BOOTSTRAP=1. The smoke
# build is a dev build without a sanitizer — it compiles in a fraction of the time of the
# optimised AddressSanitizer build the campaigns use, and a panic is caught either way (the
# workspace forbids unsafe code).
#
# FUZZ_SMOKE_SECONDS sets the run time per target (default 10).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SMOKE_SECONDS:-10}
export RUSTC_BOOTSTRAP=1
started=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

flags=(--dev --sanitizer none)
cargo fuzz build "${flags[@]}"
echo "fuzz targets built in $(( $(date +%s) - started ))s"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for target in $(cargo fuzz list); do
  # New inputs go to the ignored fuzz/corpus; the committed seeds (if any) are read too.
  mkdir -p corpus/"$target"
  inputs=(corpus/"$target")
  [ -d seeds/"$target" ] && inputs+=(seeds/"$target")
  options=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -f dictionaries/"$target".dict ] && options+=(-dict=dictionaries/"$target".dict)
  status=0
  cargo fuzz run "${flags[@]}" "$target" "${inputs[@]}" -- "${options[@]}" >"$log" 2>&1 || status=$?
  echo "$target: $(grep -E '^Done' "$log" || echo 'no summary')"
  if [ "$status" != 0 ]; then
    tail -n 60 "$log"
    echo "fuzz target $target failed (the input is in fuzz/artifacts/$target)"
    exit "$status"
  fi
done
echo "fuzz smoke done in $(( $(date +%s) - started ))s"
