#!/usr/bin/env bash
# Cross-build checks without an NDK (nothing is linked for Android here):
#  1. smof-android and smof-capi compile as static libraries for aarch64-linux-android,
#     armv7-linux-androideabi and x86_64-linux-android (`cargo rustc --crate-type staticlib`).
#  2. smof-bench builds as a static aarch64-unknown-linux-musl binary, runs under
#     qemu-aarch64-static on the converted bundled model, and its `--json` report has the same
#     keys as the x86-64 run.
#  3. The output of that aarch64 run matches the x86-64 run within the f32 conformance bound.
# Set SMOF_ANDROID_TARGETS to a subset (space-separated) to shorten the run.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

targets=${SMOF_ANDROID_TARGETS:-"aarch64-linux-android armv7-linux-androideabi x86_64-linux-android"}
installed=$(rustup target list --installed 2>/dev/null || true)
for t in $targets aarch64-unknown-linux-musl; do
  if ! grep -qx "$t" <<<"$installed"; then
    echo "error: Rust target $t is not installed (rustup target add $t)" >&2
    exit 1
  fi
done

for t in $targets; do
  for p in smof-android smof-capi; do
    echo "== $p staticlib for $t"
    cargo rustc -p "$p" --release --target "$t" --crate-type staticlib
  done
  for lib in libsmof_android.a libsmof.a; do
    f="target/$t/release/$lib"
    [ -s "$f" ] || { echo "error: $f was not produced" >&2; exit 1; }
  done
  # The JNI entry points and the C API are exported from the archives.
  if command -v nm >/dev/null; then
    # (Not piped into `grep -q`: with pipefail, nm's SIGPIPE would fail the check.)
    syms=$(nm -g --defined-only "target/$t/release/libsmof_android.a" 2>/dev/null || true)
    grep -q "Java_dev_smof_SmofSession_nativeRunArray" <<<"$syms" \
      || { echo "error: JNI symbols missing from $t libsmof_android.a" >&2; exit 1; }
    syms=$(nm -g --defined-only "target/$t/release/libsmof.a" 2>/dev/null || true)
    grep -q "smof_session_run1" <<<"$syms" \
      || { echo "error: C API symbols missing from $t libsmof.a" >&2; exit 1; }
    echo "ok   $t: JNI and C API symbols exported"
  fi
done

echo "== smof-bench for aarch64-unknown-linux-musl (static)"
cargo build --release --target aarch64-unknown-linux-musl -p smof --bin smof-bench
scripts/build-host.sh
bench_arm=target/aarch64-unknown-linux-musl/release/smof-bench
kind=$(file "$bench_arm" 2>/dev/null || true)
grep -q "statically linked" <<<"$kind" \
  || { echo "error: $bench_arm is not a static binary: $kind" >&2; exit 1; }

qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -z "$qemu" ]; then
  echo "error: qemu-aarch64-static is not installed (apt-get install qemu-user-static)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/smof-arm.XXXXXX")
trap 'rm -rf "$work"' EXIT
target/release/smof convert models/mobilenet_v2_imagenet_backbone.onnx -o "$work/mnv2.smof"
target/release/smof-bench "$work/mnv2.smof" --warmup 1 --loops 2 --json > "$work/x86.json"
"$qemu" "$bench_arm" "$work/mnv2.smof" --warmup 1 --loops 2 --json > "$work/arm.json"
cat "$work/x86.json" "$work/arm.json"
python3 - "$work/x86.json" "$work/arm.json" <<'PY'
import json, sys
x86, arm = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:])
assert set(x86) == set(arm), f"report keys differ: {sorted(set(x86) ^ set(arm))}"
for k, v in x86.items():
    assert type(v) is type(arm[k]) or {type(v), type(arm[k])} <= {int, float}, k
assert arm["median_ms"] > 0 and arm["loops"] == x86["loops"], arm
print(f"ok   same report keys; aarch64 kernels: {arm['kernels']}, x86 kernels: {x86['kernels']}")
PY

# Numerics: the same .smof run by the static aarch64 smof-bench under qemu gives the same
# output as on x86-64 (smof-bench feeds the same synthetic input on every device).
# MobileNetV2 packed on x86-64 for its table (so repacked at load for the NEON table), and
# ResNet-8 packed for aarch64 (its 3x3 convs as Winograd weights, read in place by the NEON
# Winograd kernels, repacked at load on x86-64).
target/release/smof convert models/mnist/resnet8.onnx -o "$work/resnet8_arm.smof" --target aarch64
compare_outputs() {
  local name=$1 model=$2
  echo "== smof-bench output on aarch64 (qemu) against x86-64: $name"
  "$qemu" "$bench_arm" "$model" --warmup 0 --loops 1 --dump-output "$work/arm_out.f32" >/dev/null
  target/release/smof-bench "$model" --warmup 0 --loops 1 --dump-output "$work/x86_out.f32" >/dev/null
  python3 - "$work/x86_out.f32" "$work/arm_out.f32" "$name" <<'PY'
import sys
import numpy as np
x86, arm = (np.fromfile(p, dtype="<f4") for p in sys.argv[1:3])
assert x86.size == arm.size and x86.size > 0, (x86.size, arm.size)
err, scale = float(np.abs(x86 - arm).max()), float(np.abs(x86).max())
# f32 with a different summation order (NEON vs AVX2 tiles): the conformance bound.
assert err <= 1e-4 * scale, f"aarch64 output differs: max abs err {err:.3e}, max|x86| {scale:.3e}"
print(f"ok   {sys.argv[3]}: aarch64 output matches x86-64: max abs err {err:.3e} (bound {1e-4 * scale:.3e})")
PY
}
compare_outputs "MobileNetV2 (x86-packed)" "$work/mnv2.smof"
compare_outputs "ResNet-8 (aarch64-packed, Winograd)" "$work/resnet8_arm.smof"
"$qemu" "$bench_arm" "$work/resnet8_arm.smof" --warmup 0 --loops 1 --profile > "$work/r8.txt"
grep -q wino43_8x8_neon "$work/r8.txt" \
  || { echo "error: ResNet-8 on aarch64 did not run wino43_8x8_neon: $(cat "$work/r8.txt")" >&2; exit 1; }
echo "ok   ResNet-8 on aarch64 runs wino43_8x8_neon"
