"""Converts every out/NAME.onnx with the project's CLI and, where that works, runs the
.smof on out/NAME.input.npy and compares each output with out/NAME.output{i}.npy
(max |smof - ref| / max |ref|; the target is 1e-4). Needs numpy only.

    cargo build --release -p smof-converter --bin smof
    python3 models/zoo/check_smof.py [--smof target/release/smof] [--markdown] [NAME ...]
"""
import argparse
import glob
import os
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def check(smof, name, tmp):
    onnx_path = os.path.join(HERE, "out", name + ".onnx")
    out = os.path.join(tmp, name + ".smof")
    p = subprocess.run([smof, "convert", onnx_path, "-o", out], capture_output=True, text=True)
    if p.returncode != 0:
        return "convert fails", (p.stderr or p.stdout).strip()
    y = os.path.join(tmp, name + ".y.npy")
    p = subprocess.run([smof, "run", out, "--input", os.path.join(HERE, "out", name + ".input.npy"),
                        "--output", y], capture_output=True, text=True)
    if p.returncode != 0:
        return "converts, run fails", (p.stderr or p.stdout).strip()
    refs = sorted(glob.glob(os.path.join(HERE, "out", name + ".output*.npy")),
                  key=lambda s: int(s.rsplit(".output", 1)[1][:-4]))
    got = [y]
    if len(refs) != 1:
        # several outputs: `smof run` writes the others as STEM.NAME.npy (NAME with every
        # character that is not an ASCII letter or digit replaced by '_')
        with open(os.path.join(HERE, "out", name + ".outputs.txt")) as f:
            names = f.read().split()
        safe = lambda n: "".join(c if c.isascii() and c.isalnum() else "_" for c in n)  # noqa: E731
        got = [y] + [os.path.join(tmp, f"{name}.y.{safe(n)}.npy") for n in names[1:]]
    errs = []
    for r, g in zip(refs, got):
        if not os.path.exists(g):
            return "converts, runs", f"missing output file {os.path.basename(g)}"
        a, b = np.load(r), np.load(g)
        if a.size != b.size:
            return "converts, runs, wrong shape", f"{os.path.basename(r)}: ref {a.shape}, smof {b.shape}"
        errs.append(float(np.abs(a.reshape(-1) - b.reshape(-1)).max() / max(np.abs(a).max(), 1e-30)))
    worst = max(errs)
    status = "matches" if worst <= 1e-4 else "converts, runs, differs"
    return status, "max rel err " + ", ".join(f"{e:.1e}" for e in errs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smof", default=os.path.join(ROOT, "target", "release", "smof"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    names = args.names or sorted(os.path.basename(f)[:-5] for f in glob.glob(os.path.join(HERE, "out", "*.onnx")))
    if args.markdown:
        print("| model | result | detail |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            status, detail = check(args.smof, n, tmp)
            if args.markdown:
                print(f"| {n} | {status} | {detail.replace(chr(10), '<br>').replace('|', '&#124;')} |", flush=True)
            else:
                print(f"{n}: {status}\n    " + detail.replace("\n", "\n    "), flush=True)


if __name__ == "__main__":
    main()
