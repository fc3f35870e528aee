#!/usr/bin/env bash
# The project's test command: formatting, lints, the whole test suite, the end-to-end check
# against ONNX Runtime, the C and JNI layers, and the aarch64 and Android builds. Installs
# what it needs itself (Python packages, Rust targets, qemu-user-static).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c "import onnxruntime, numpy" 2>/dev/null || python3 -m pip install --quiet onnxruntime numpy
rustup target add aarch64-unknown-linux-musl aarch64-linux-android armv7-linux-androideabi \
  x86_64-linux-android
if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update && apt-get install -y qemu-user-static
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release

# smof convert + smof run against ONNX Runtime, on the bundled model and on the shared
# torchvision exports when they are present (they are in CI; elsewhere this says so).
models=(models/mobilenet_v2_imagenet_backbone.onnx models/mnist/lenet5x5.onnx
  models/mnist/resnet8.onnx)
shared=${SMOF_SHARED_MODELS:-../shared/models}
if [ -d "$shared" ]; then
  models+=("$shared/mobilenet_v2.onnx" "$shared/resnet18.onnx" "$shared/squeezenet1_1.onnx")
elif [ -n "${CI:-}" ]; then
  echo "error: $shared is missing in CI" >&2; exit 1
else
  echo "NOT RUN: ONNX Runtime check of the shared models ($shared missing)"
fi
python3 tests/ort_check.py target/release/smof "${models[@]}"

# The C API (a C program built with the system cc), the JNI layer on the host JVM, the
# Android static libraries, and the aarch64 build under qemu (NEON kernels, smof-bench).
scripts/test-capi.sh
scripts/test-jni.sh
scripts/test-aarch64.sh
scripts/test-android-build.sh
