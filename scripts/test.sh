#!/usr/bin/env bash
# The project's test command: formatting, lints, the whole test suite, and the end-to-end
# check against ONNX Runtime. Installs what it needs (Python packages) itself.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c "import onnxruntime, numpy" 2>/dev/null || python3 -m pip install --quiet onnxruntime numpy

cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release

# smof convert + smof run against ONNX Runtime, on the bundled model and on the shared
# torchvision exports when they are present (they are in CI; elsewhere this says so).
models=(models/mobilenet_v2_imagenet_backbone.onnx)
shared=${SMOF_SHARED_MODELS:-../shared/models}
if [ -d "$shared" ]; then
  models+=("$shared/mobilenet_v2.onnx" "$shared/resnet18.onnx" "$shared/squeezenet1_1.onnx")
elif [ -n "${CI:-}" ]; then
  echo "error: $shared is missing in CI" >&2; exit 1
else
  echo "NOT RUN: ONNX Runtime check of the shared models ($shared missing)"
fi
python3 tests/ort_check.py target/release/smof "${models[@]}"
