#!/usr/bin/env bash
# Soak run: MobileNetV2 converted once, then RUNS runs of one session (default 100000) with
# the RSS sampled every 100 runs and latency percentiles p50/p99/p99.9 reported. Fails when
# the RSS after the 1000 warm-up runs grows by more than 1% or an output changes.
#
#   scripts/soak.sh [RUNS] [MAX_SECONDS]
#
# MODEL=path.onnx picks the model (default /work/shared/models/mobilenet_v2.onnx when it
# exists, else the bundled models/mobilenet_v2_imagenet_backbone.onnx). MAX_SECONDS stops
# early and the report says how many runs were done. Takes about 100000 x the single-run
# latency (some 20-40 minutes on a desktop CPU); it is not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100000}
max_seconds=${2:-}
model=${MODEL:-}
if [ -z "$model" ]; then
    if [ -f /work/shared/models/mobilenet_v2.onnx ]; then
        model=/work/shared/models/mobilenet_v2.onnx
    else
        model=models/mobilenet_v2_imagenet_backbone.onnx
    fi
fi
cargo build --release -p smof-converter --bin smof
cargo build --release -p smof --example soak
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/smof convert "$model" -o "$out/model.smof"
extra=()
if [ -n "$max_seconds" ]; then
    extra=(--max-seconds "$max_seconds")
fi
nice -n "${NICE:-10}" target/release/examples/soak "$out/model.smof" --runs "$runs" "${extra[@]}"
