#!/usr/bin/env bash
# The main job on bundled models:
# 1. convert MobileNetV2 (real ImageNet weights) to .smof, show its layers, run it on a
#    bundled photo, and time it;
# 2. dense against pruned: the two MNIST models converted as they are and pruned to half
#    their FLOPs (kernel rings and channels, calibrated and distilled on bundled digits),
#    side by side:
#    top-1 on the 5,000 test digits, file size, FLOPs and single-thread latency.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p smof -p smof-converter
B=./target/release
mkdir -p target/demo
onnx=models/mobilenet_v2_imagenet_backbone.onnx
model=target/demo/mobilenet_v2_imagenet_backbone.smof
$B/smof convert "$onnx" -o "$model"
$B/smof inspect "$model" | tail -n 4
$B/smof run "$model" --input models/samples/imagenet_00_243.npy --output target/demo/embedding.npy
$B/smof-bench "$model" --warmup 3 --loops 20

echo
echo "Dense against pruned (--prune flops=0.5, channel counts in multiples of 8, calibrated and distilled on models/mnist/mnist_calib.npy):"
rows=()
for m in lenet5x5 resnet8; do
  dense=target/demo/$m.smof
  pruned=target/demo/${m}_pruned.smof
  $B/smof convert models/mnist/$m.onnx -o "$dense" >/dev/null
  $B/smof convert models/mnist/$m.onnx -o "$pruned" --prune flops=0.5 \
    --calib models/mnist/mnist_calib.npy --channel-multiple 8 \
    --distill 30 --distill-mirror off >/dev/null 2>&1
  for f in "$dense" "$pruned"; do
    rows+=("$f" "$($B/smof eval "$f" --data models/mnist/mnist_test.npz --json)"
      "$($B/smof inspect "$f" --json)" "$($B/smof-bench "$f" --warmup 20 --loops 200 --json)")
  done
done
python3 - "${rows[@]}" <<'PY'
import json, os, sys
a = sys.argv[1:]
print(f"{'model':<22}{'top-1 %':>9}{'size KB':>10}{'MFLOPs':>9}{'median ms':>11}")
for i in range(0, len(a), 4):
    f, ev, ins, bench = a[i], json.loads(a[i + 1]), json.loads(a[i + 2]), json.loads(a[i + 3])
    name = os.path.basename(f).removesuffix(".smof")
    print(f"{name:<22}{100 * ev['top1']:>9.2f}{os.path.getsize(f) / 1024:>10.1f}"
          f"{ins['flops'] / 1e6:>9.2f}{bench['median_ms']:>11.4f}")
PY
