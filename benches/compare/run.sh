#!/bin/sh
# Peer comparison: smof, ONNX Runtime, ncnn, MNN and tract on the same ONNX models, single
# thread, batch 1, f32, 1x3x224x224; writes the table into docs/benchmarks.md.
#
#   benches/compare/run.sh [--loops N] [--warmup N] [--rounds N] [--runtimes LIST] [MODEL.onnx ...]
#
# Needs python3 with numpy, onnxruntime, ncnn, pnnx and MNN (pip install), and cargo.
# See benches/compare/README.md.
set -eu
cd "$(dirname "$0")/../.."
exec python3 benches/compare/compare.py "$@"
