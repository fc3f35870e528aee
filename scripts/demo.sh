#!/usr/bin/env bash
# The main job on a bundled model: convert MobileNetV2 (real ImageNet weights) to .smof,
# show its layers, run it on a bundled photo, and time it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p smof -p smof-converter
mkdir -p target/demo
onnx=models/mobilenet_v2_imagenet_backbone.onnx
model=target/demo/mobilenet_v2_imagenet_backbone.smof
./target/release/smof convert "$onnx" -o "$model"
./target/release/smof inspect "$model" | tail -n 4
./target/release/smof run "$model" --input models/samples/imagenet_00_243.npy --output target/demo/embedding.npy
./target/release/smof-bench "$model" --warmup 3 --loops 20
