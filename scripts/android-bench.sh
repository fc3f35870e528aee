#!/usr/bin/env bash
# Benchmarks .smof models on an attached Android device (or any aarch64 device reachable with
# adb): builds the static aarch64 smof-bench, pushes it and the models, runs it with --json and
# collects the reports in bench-results/android-<device>-<time>.jsonl.
#
# usage: scripts/android-bench.sh MODEL_DIR_OR_FILE... [-- smof-bench options]
#   e.g. scripts/android-bench.sh /tmp/models -- --threads 1 --loops 50
# Exits non-zero with a clear message when adb is missing or no device is attached.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v adb >/dev/null; then
  echo "android-bench: NOT RUN: adb is not installed (Android platform-tools); nothing benchmarked" >&2
  exit 2
fi
devices=$(adb devices | awk 'NR > 1 && $2 == "device" {print $1}')
if [ -z "$devices" ]; then
  echo "android-bench: NOT RUN: no Android device attached (adb devices lists none); nothing benchmarked" >&2
  exit 3
fi

models=()
bench_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; bench_args=("$@"); break; fi
  models+=("$1"); shift
done
if [ ${#models[@]} -eq 0 ]; then
  echo "usage: $0 MODEL_DIR_OR_FILE... [-- smof-bench options]" >&2
  exit 1
fi

cargo build --release --target aarch64-unknown-linux-musl -p smof --bin smof-bench
bin=target/aarch64-unknown-linux-musl/release/smof-bench
remote=/data/local/tmp/smof-bench
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench-results
for dev in $devices; do
  model_name=$(adb -s "$dev" shell getprop ro.product.model | tr -d '\r' | tr ' ' '_')
  out="bench-results/android-${model_name:-$dev}-$stamp.jsonl"
  echo "== $dev ($model_name) -> $out"
  adb -s "$dev" shell "rm -rf $remote && mkdir -p $remote/models"
  adb -s "$dev" push "$bin" "$remote/smof-bench" >/dev/null
  adb -s "$dev" shell chmod 755 "$remote/smof-bench"
  for m in "${models[@]}"; do
    if [ -d "$m" ]; then
      for f in "$m"/*.smof; do adb -s "$dev" push "$f" "$remote/models/" >/dev/null; done
    else
      adb -s "$dev" push "$m" "$remote/models/" >/dev/null
    fi
  done
  adb -s "$dev" shell "$remote/smof-bench $remote/models --json ${bench_args[*]:-}" \
    | tr -d '\r' | grep '^{' | tee "$out"
  [ -s "$out" ] || { echo "error: no results from $dev" >&2; exit 1; }
done
