#!/usr/bin/env bash
# JNI end to end on the host JVM: builds smof-android as a host cdylib, compiles the Java API
# (android/smof/src/main/java, against host stubs of the two Android classes it names) and the
# test android/test/dev/smof/SmofJniTest.java, runs it on the bundled MobileNetV2 and checks
# every output against `smof run` (1e-5 relative) and every misuse against the right Java
# exception (IllegalArgumentException, IOException, IllegalStateException; double close is a
# no-op). A VM crash fails the script through the exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

scripts/build-host.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/smof-jni.XXXXXX")
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

mkdir -p "$work/classes" "$work/stubs"
# The stubs are compiled separately and only put on the class path: they are never part of
# the library.
javac -d "$work/stubs" android/test/stubs/android/content/res/*.java
javac -Xlint:all -Werror -cp "$work/stubs" -d "$work/classes" \
  android/smof/src/main/java/dev/smof/*.java android/test/dev/smof/SmofJniTest.java
java -Xcheck:jni -Djava.library.path=target/release -cp "$work/classes:$work/stubs" \
  dev.smof.SmofJniTest "$work/mnv2.smof" "$work/input.f32" "$work/ref.f32" "$work" \
  | tee "$work/out.log"
grep -q " 0 failures" "$work/out.log"
echo "test-jni: PASS ($((SECONDS - start)) s)"
