#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/seeds/TARGET/.

- onnx_import: small ONNX graphs made with onnx.helper (conv 1x1/3x3/5x5/7x7, strides, pads,
  groups and depthwise, BatchNormalization, Relu/Clip/Sigmoid, Add and Concat branches, max
  and average pooling, global pooling, Flatten + Gemm, Reshape with a constant shape; the
  operators of formats 1.1 and 1.2: Resize, Split, channel shuffle, Pad, DepthToSpace,
  SpaceToDepth, ReduceMean, ConvTranspose, broadcasting Mul, unary functions, Tile,
  LogSoftmax, and a YOLO-style decoding head on rank-3 tensors ending in ArgMax and Cast), plus the
  first blocks of the bundled MobileNetV2 backbone (real exported weights) at 32x32.
- smof_open: every onnx_import seed converted with the `smof` CLI (f32 for the host's kernel
  table, --fp16, and f32 packed for the portable table so that loading repacks it).
- npy_parse: arrays saved by numpy (f4, f8, i8, i4, u1; 0-d to 4-d; format versions 1 and 2)
  and the bundled sample image.

Usage: python3 fuzz/make_seeds.py [path/to/smof]   (default target/release/smof)
"""
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
rng = np.random.default_rng(7)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


class G:
    def __init__(self, shape):
        self.nodes, self.inits, self.n = [], [], 0
        self.shape = list(shape)
        self.inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def conv(self, x, ic, oc, k, stride=1, pad=None, group=1, bias=True):
        w = self.name("w")
        self.inits.append(init(w, rng.standard_normal((oc, ic // group, k, k)) * 0.2))
        ins = [x, w]
        if bias:
            b = self.name("b")
            self.inits.append(init(b, rng.standard_normal(oc) * 0.1))
            ins.append(b)
        y = self.name("conv")
        p = k // 2 if pad is None else pad
        self.nodes.append(helper.make_node("Conv", ins, [y], kernel_shape=[k, k], strides=[stride, stride],
                                           pads=[p, p, p, p], group=group))
        return y

    def op(self, op, ins, **attrs):
        y = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [y], **attrs))
        return y

    def bn(self, x, c):
        names = [self.name(s) for s in ("s", "b", "m", "v")]
        vals = [rng.uniform(0.5, 1.5, c), rng.standard_normal(c) * 0.1, rng.standard_normal(c) * 0.1,
                rng.uniform(0.5, 1.5, c)]
        for n, v in zip(names, vals):
            self.inits.append(init(n, v))
        return self.op("BatchNormalization", [x] + names, epsilon=1e-5)

    def model(self, y, opset=17):
        out = helper.make_tensor_value_info(y, TensorProto.FLOAT, None)
        g = helper.make_graph(self.nodes, "seed", [self.inp], [out], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def graphs():
    out = {}
    for k in (1, 3, 5, 7):
        g = G([1, 3, 12, 12])
        y = g.op("Relu", [g.conv("x", 3, 8, k)])
        out[f"conv{k}x{k}_relu"] = g.model(y)
    g = G([1, 4, 9, 9])
    y = g.conv("x", 4, 8, 3, stride=2, pad=1, group=2, bias=False)
    out["grouped_s2"] = g.model(g.op("Sigmoid", [y]))
    g = G([1, 8, 10, 10])
    g.inits += [init("lo", np.array(0.0)), init("hi", np.array(6.0))]
    a = g.op("Clip", [g.bn(g.conv("x", 8, 8, 3, group=8), 8), "lo", "hi"])
    out["depthwise_bn_relu6"] = g.model(g.conv(a, 8, 16, 1))
    g = G([1, 8, 8, 8])
    a = g.conv("x", 8, 8, 3)
    b = g.conv("x", 8, 8, 1)
    s = g.op("Add", [a, b])
    c = g.op("Concat", [s, g.conv("x", 8, 4, 5)], axis=1)
    out["add_concat"] = g.model(g.op("Relu", [c]))
    g = G([1, 3, 16, 16])
    m = g.op("MaxPool", [g.conv("x", 3, 8, 3)], kernel_shape=[2, 2], strides=[2, 2])
    a = g.op("AveragePool", [m], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    p = g.op("GlobalAveragePool", [a])
    f = g.op("Flatten", [p], axis=1)
    w = g.name("fc")
    g.inits.append(init(w, rng.standard_normal((10, 8)) * 0.3))
    bb = g.name("fcb")
    g.inits.append(init(bb, rng.standard_normal(10) * 0.1))
    y = g.op("Gemm", [f, w, bb], transB=1)
    out["pool_gemm_softmax"] = g.model(g.op("Softmax", [y], axis=1))
    g = G([1, 4, 6, 6])
    c = g.conv("x", 4, 4, 3)
    shape = g.name("shape")
    g.inits.append(numpy_helper.from_array(np.array([1, 144], dtype=np.int64), shape))
    r = g.op("Reshape", [c, shape])
    w = g.name("fc")
    g.inits.append(init(w, rng.standard_normal((144, 5)) * 0.1))
    out["reshape_matmul"] = g.model(g.op("MatMul", [r, w]), opset=13)

    # Format 1.1 and 1.2 operators: a detector neck (Resize, Split, MaxPool chain, Concat), a
    # channel shuffle with padding, depth/space moves and reductions, a transposed conv with
    # broadcasting and unary functions, and a YOLO-style decoding head on rank-3 tensors.
    g = G([1, 4, 8, 8])
    c = g.conv("x", 4, 8, 3)
    scales = g.name("scales")
    g.inits.append(init(scales, [1.0, 1.0, 2.0, 2.0]))
    u = g.op("Resize", [c, "", scales], mode="nearest")
    sizes = g.name("split")
    g.inits.append(numpy_helper.from_array(np.array([3, 5], dtype=np.int64), sizes))
    a, b = g.name("part"), g.name("part")
    g.nodes.append(helper.make_node("Split", [u, sizes], [a, b], axis=1))
    m1 = g.op("MaxPool", [b], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    m2 = g.op("MaxPool", [m1], kernel_shape=[5, 5], pads=[2, 2, 2, 2])
    out["neck_resize_split_sppf"] = g.model(g.op("Concat", [a, m1, m2], axis=1))
    g = G([1, 4, 6, 6])
    c = g.conv("x", 4, 8, 1)
    s5 = g.name("s5")
    g.inits.append(numpy_helper.from_array(np.array([1, 2, 4, 6, 6], dtype=np.int64), s5))
    s4 = g.name("s4")
    g.inits.append(numpy_helper.from_array(np.array([1, 8, 6, 6], dtype=np.int64), s4))
    t = g.op("Transpose", [g.op("Reshape", [c, s5])], perm=[0, 2, 1, 3, 4])
    r = g.op("Reshape", [t, s4])
    pads = g.name("pads")
    g.inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), pads))
    p = g.op("Pad", [r, pads], mode="reflect")
    d = g.op("DepthToSpace", [p], blocksize=2, mode="CRD")
    e = g.op("SpaceToDepth", [d], blocksize=2)
    out["shuffle_pad_depth_space"] = g.model(g.op("ReduceMean", [e], axes=[2, 3], keepdims=1))
    g = G([1, 4, 5, 5])
    w = g.name("dw")
    g.inits.append(init(w, rng.standard_normal((4, 3, 3, 3)) * 0.2))
    dc = g.op("ConvTranspose", ["x", w], strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    mask = g.name("mask")
    g.inits.append(init(mask, rng.standard_normal((1, 1, 10, 10))))
    mm = g.op("Mul", [dc, mask])
    un = g.op("Sqrt", [g.op("Abs", [g.op("Erf", [mm])])])
    reps = g.name("reps")
    g.inits.append(numpy_helper.from_array(np.array([1, 2, 1, 1], dtype=np.int64), reps))
    out["deconv_broadcast_unary"] = g.model(g.op("LogSoftmax", [g.op("Tile", [un, reps])], axis=1))
    g = G([1, 3, 8, 8])
    p3 = g.conv("x", 3, 36, 3, stride=2)
    p4 = g.conv(p3, 36, 36, 1, stride=2)
    shapes = {}
    for k, v in {"f3": [1, 36, 16], "f4": [1, 36, 4], "dfl": [1, 4, 8, 20], "box": [1, 4, 20]}.items():
        shapes[k] = g.name(k)
        g.inits.append(numpy_helper.from_array(np.array(v, dtype=np.int64), shapes[k]))
    cat = g.op("Concat", [g.op("Reshape", [p3, shapes["f3"]]), g.op("Reshape", [p4, shapes["f4"]])], axis=2)
    sizes = g.name("split")
    g.inits.append(numpy_helper.from_array(np.array([32, 4], dtype=np.int64), sizes))
    dist, cls = g.name("dist"), g.name("cls")
    g.nodes.append(helper.make_node("Split", [cat, sizes], [dist, cls], axis=1))
    d = g.op("Transpose", [g.op("Reshape", [dist, shapes["dfl"]])], perm=[0, 2, 1, 3])
    d = g.op("Softmax", [d], axis=1)
    w = g.name("dflw")
    g.inits.append(init(w, np.arange(8, dtype=np.float32).reshape(1, 8, 1, 1)))
    d = g.op("Reshape", [g.op("Conv", [d, w]), shapes["box"]])
    anchors = g.name("anchors")
    g.inits.append(init(anchors, rng.uniform(0, 8, (1, 4, 20))))
    boxes = g.op("Sub", [anchors, d])
    probs = g.op("Sigmoid", [cls])
    y = g.op("Concat", [boxes, probs], axis=1)
    am = g.op("ArgMax", [y], axis=1, keepdims=1)
    out["yolo_decode_rank3"] = g.model(g.op("Cast", [am], to=TensorProto.FLOAT))

    # The first blocks of the bundled MobileNetV2 (real weights), with a 32x32 input: up to
    # the output of the second inverted-residual block. The seed stays small (about 25 KB),
    # as the fuzzer's speed falls with input size; add_concat covers residual Adds.
    src = os.path.join(ROOT, "models", "mobilenet_v2_imagenet_backbone.onnx")
    full = onnx.load(src)
    first_add = next(i for i, n in enumerate(full.graph.node) if n.op_type == "Add")
    # The Add joins the third block's output with the second's: keep what feeds its first input.
    second_out = full.graph.node[first_add].input[0]
    end = next(i for i, n in enumerate(full.graph.node) if second_out in n.output)
    keep = full.graph.node[: end + 1]
    last = keep[-1].output[0]
    used = {i for n in keep for i in n.input}
    inits = [t for t in full.graph.initializer if t.name in used]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])
    outv = helper.make_tensor_value_info(last, TensorProto.FLOAT, None)
    g = helper.make_graph(list(keep), "mobilenet_v2_head", [inp], [outv], inits)
    m = helper.make_model(g, opset_imports=full.opset_import)
    m.ir_version = full.ir_version
    out["mobilenet_v2_head"] = m
    return out


def main():
    smof = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "smof")
    for t in ("onnx_import", "smof_open", "npy_parse"):
        os.makedirs(os.path.join(SEEDS, t), exist_ok=True)
    for name, m in graphs().items():
        path = os.path.join(SEEDS, "onnx_import", name + ".onnx")
        onnx.save(m, path)
        for suffix, extra in (("", []), ("_fp16", ["--fp16"]), ("_portable", ["--target", "portable"])):
            dst = os.path.join(SEEDS, "smof_open", name + suffix + ".smof")
            cmd = [smof, "convert", path, "-o", dst] + extra
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    npy = os.path.join(SEEDS, "npy_parse")
    arrays = {
        "f4_4d": rng.standard_normal((1, 3, 4, 4)).astype("<f4"),
        "f8_2d": rng.standard_normal((2, 5)),
        "i8_1d": np.arange(7, dtype="<i8"),
        "i4_3d": np.arange(24, dtype="<i4").reshape(2, 3, 4),
        "u1_2d": np.arange(12, dtype="u1").reshape(3, 4),
        "f4_0d": np.array(1.5, dtype="<f4"),
        "f4_empty": np.zeros((0, 3), dtype="<f4"),
        "f4_fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
        "f4_big_endian": np.arange(4, dtype=">f4"),
    }
    for name, a in arrays.items():
        np.save(os.path.join(npy, name + ".npy"), a)
    with open(os.path.join(npy, "f4_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, arrays["f4_4d"], version=(2, 0))
    sample = np.load(os.path.join(ROOT, "models", "samples", "imagenet_00_243.npy"))
    np.save(os.path.join(npy, "sample_crop.npy"), np.ascontiguousarray(sample[:, :, :8, :8]))


if __name__ == "__main__":
    main()
