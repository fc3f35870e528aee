"""Prints, for each ONNX file given (default: out/*.onnx), its node count and the set of
ONNX operator types it uses, then the union over all files. Needs the onnx package.

    python3 models/zoo/op_census.py [--markdown] [FILE.onnx ...]
"""
import collections
import glob
import os
import sys

import onnx


def census(path):
    g = onnx.load(path, load_external_data=False).graph
    return collections.Counter(n.op_type for n in g.node)


def main():
    args = sys.argv[1:]
    md = "--markdown" in args
    files = [a for a in args if a != "--markdown"] or sorted(
        glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "*.onnx")))
    union = collections.Counter()
    if md:
        print("| model | nodes | op types |\n|---|---|---|")
    for f in files:
        c = census(f)
        union.update({k: 1 for k in c})
        name = os.path.splitext(os.path.basename(f))[0]
        ops = ", ".join(f"{k} ({v})" for k, v in sorted(c.items()))
        print(f"| {name} | {sum(c.values())} | {ops} |" if md else f"{name}: {sum(c.values())} nodes: {ops}")
    print()
    print("all op types (number of models using each): "
          + ", ".join(f"{k} ({v})" for k, v in sorted(union.items())))


if __name__ == "__main__":
    main()
