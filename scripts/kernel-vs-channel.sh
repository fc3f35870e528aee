#!/usr/bin/env bash
# Kernel-only against channel-only pruning at equal FLOPs (the table of docs/pruning.md):
#
#   scripts/kernel-vs-channel.sh MODEL.onnx R [ROUNDS] [LOOPS]
#
# converts MODEL.onnx dense and, data-free, to `--prune flops=R` four ways: rings and
# channels (the default), kernel rings only, channels only (rounded to the kernel table's
# multiple), channels only with `--channel-multiple 1` (no SIMD rounding). It then times
# the five single-threaded in turn, ROUNDS rounds (default 7) of `smof-bench --loops
# LOOPS` (default 30), so that a slow spell of a shared machine falls on all of them, and
# prints for each its FLOPs, its fastest median over the rounds, and latency reduction /
# FLOP reduction (1: time falls exactly as FLOPs do; above 1, faster than the FLOPs say).
# TARGET=x86_64-avx2 (or another kernel table) converts for that table and times on it;
# the default is the host's fastest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: $0 MODEL.onnx R [ROUNDS] [LOOPS]" >&2
  exit 2
fi
model=$1 ratio=$2 rounds=${3:-7} loops=${4:-30}
cargo build --release --quiet -p smof -p smof-converter
B=./target/release
dir=target/kernel-vs-channel
mkdir -p "$dir"
name=$(basename "$model" .onnx)
table=()
if [ -n "${TARGET:-}" ]; then
  table=(--kernels "$TARGET")
  name=$name-$TARGET
fi
variants=(dense both kernels channels channels-m1)
declare -A flags=(
  [dense]=""
  [both]="--prune flops=$ratio"
  [kernels]="--prune flops=$ratio --prune-channels off"
  [channels]="--prune flops=$ratio --prune-kernels off"
  [channels-m1]="--prune flops=$ratio --prune-kernels off --channel-multiple 1"
)
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086 # the flags are words
  $B/smof convert "$model" -o "$dir/$name-$v.smof" ${flags[$v]} ${TARGET:+--target "$TARGET"} >/dev/null
done
runs=()
for r in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    runs+=("$v" "$($B/smof-bench "$dir/$name-$v.smof" --warmup 3 --loops "$loops" --json "${table[@]}")")
  done
  echo "round $r of $rounds done" >&2
done
python3 - "$name" "$ratio" "${runs[@]}" <<'PY'
import json, sys
name, ratio, a = sys.argv[1], sys.argv[2], sys.argv[3:]
best, gflop = {}, {}
for v, j in zip(a[0::2], a[1::2]):
    d = json.loads(j)
    best[v] = min(best.get(v, float("inf")), d["median_ms"])
    gflop[v] = d["gflop"]
print(f"{name}, flops={ratio}, fastest median of each over the rounds:")
print(f"{'variant':<14}{'FLOPs kept':>11}{'ms':>9}{'latency red.':>14}{'FLOP red.':>11}{'ratio':>8}")
for v in best:
    f = gflop[v] / gflop["dense"]
    t = best[v] / best["dense"]
    if v == "dense":
        print(f"{v:<14}{f:>11.3f}{best[v]:>9.3f}")
    else:
        print(f"{v:<14}{f:>11.3f}{best[v]:>9.3f}{1 - t:>14.3f}{1 - f:>11.3f}{(1 - t) / (1 - f):>8.2f}")
PY
