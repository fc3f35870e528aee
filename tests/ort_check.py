"""End-to-end check against ONNX Runtime: `smof convert` + `smof run` on an ONNX model give
the same output as onnxruntime on the same input, within 1e-4 x max|ref| (f32).

    python3 tests/ort_check.py target/release/smof MODEL.onnx [MODEL.onnx ...]

Exits non-zero on any mismatch or failure. Needs `pip install onnxruntime numpy`.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

REL_TOL = 1e-4  # f32: summation order differs between runtimes; see tests/src/lib.rs


def check(smof: str, model: str, work: str) -> bool:
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    if len(shape) == 4 and shape[2:] == [1, 1]:
        shape[2:] = [224, 224]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    ref = sess.run(None, {inp.name: x})[0]

    stem = os.path.splitext(os.path.basename(model))[0]
    xp, sp, yp = (os.path.join(work, f"{stem}{s}") for s in (".in.npy", ".smof", ".out.npy"))
    np.save(xp, x)
    subprocess.run([smof, "convert", model, "-o", sp, "--input-shape", ",".join(map(str, shape))], check=True)
    subprocess.run([smof, "run", sp, "--input", xp, "--output", yp], check=True)
    got = np.load(yp)
    if got.shape != ref.shape:
        print(f"FAIL {stem}: shape {got.shape} != onnxruntime {ref.shape}")
        return False
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    ok = err <= REL_TOL * scale
    print(f"{'ok  ' if ok else 'FAIL'} {stem}: max abs err {err:.3e}, max|ref| {scale:.3e}, "
          f"bound {REL_TOL * scale:.3e} (onnxruntime {ort.__version__})")
    return ok


def main() -> int:
    smof, models = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as work:
        results = [check(smof, m, work) for m in models]
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
