#!/usr/bin/env bash
# C API end to end: builds smof-capi for the host, checks the header against the crate's
# exported functions, compiles tests/c/smof_test.c with the system C compiler against
# runtime/include/smof.h and the static library (and again against the shared one), and runs
# it on the bundled MobileNetV2: results must match `smof run` within 1e-5 relative; then the
# misuse checks (NULL pointers, wrong sizes, freed/double-freed handles, last-error strings).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# The C API's Rust unit tests run with the workspace's (`cargo test --workspace`).
scripts/build-host.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/smof-capi.XXXXXX")
trap 'rm -rf "$work"' EXIT

target/release/smof convert models/mobilenet_v2_imagenet_backbone.onnx -o "$work/mnv2.smof"
target/release/smof run "$work/mnv2.smof" --input models/samples/imagenet_00_243.npy \
  --output "$work/ref.npy"
python3 - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
np.load("models/samples/imagenet_00_243.npy").astype("<f4").tofile(f"{w}/input.f32")
np.load(f"{w}/ref.npy").astype("<f4").tofile(f"{w}/ref.f32")
PY

CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -Iruntime/include)
# Static library.
cc "${CFLAGS[@]}" tests/c/smof_test.c target/release/libsmof.a -lpthread -ldl -lm \
  -o "$work/smof_test_static"
"$work/smof_test_static" "$work/mnv2.smof" "$work/input.f32" "$work/ref.f32" "$work"
# Shared library.
cc "${CFLAGS[@]}" tests/c/smof_test.c -Ltarget/release -lsmof -lpthread -lm \
  -o "$work/smof_test_shared"
LD_LIBRARY_PATH=target/release \
  "$work/smof_test_shared" "$work/mnv2.smof" "$work/input.f32" "$work/ref.f32" "$work" \
  > "$work/shared.log"
tail -1 "$work/shared.log"
# The header also compiles as C++.
if command -v c++ >/dev/null; then
  echo '#include "smof.h"
int main() { smof_model m{}; return smof_model_free(m) == SMOF_ERR_INVALID_HANDLE ? 0 : 1; }' \
    > "$work/hdr.cpp"
  c++ -Wall -Werror -Iruntime/include "$work/hdr.cpp" target/release/libsmof.a -lpthread -ldl \
    -o "$work/hdr_cpp" && "$work/hdr_cpp"
  echo "ok   smof.h compiles and links as C++"
fi
echo "test-capi: PASS ($((SECONDS - start)) s)"
