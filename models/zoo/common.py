"""Shared export helpers for the zoo scripts (torch, onnx, onnxruntime, numpy)."""
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
OPSET = 17


def randomise_batchnorm(model, seed=0):
    """Gives every BatchNorm non-trivial statistics and affine parameters (freshly built
    models have mean 0, var 1, weight 1, bias 0, an identity in eval mode), so that BatchNorm
    matters wherever it ends up: folded into the Conv before it by the exporter, or left as
    a BatchNormalization node where it does not follow a Conv. Values stay near the defaults
    so that activations stay finite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def fixed_input(shape, seed=0):
    """The fixed reference input: standard normal, float32, seeded."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def export(model, name, shape, output_names=None, opset=OPSET, dynamo=False):
    """Exports model (eval mode) to out/NAME.onnx, runs it with onnxruntime on the fixed
    input, writes out/NAME.input.npy, out/NAME.output{i}.npy (in the ONNX output order) and
    out/NAME.outputs.txt (the output names, one a line), and checks onnxruntime against torch.

    With dynamo=True the model goes through torch's default exporter instead (torch.export,
    the opset it chooses, the weights in out/NAME.onnx.data beside the model, as
    `torch.onnx.export(model, args, path)` writes them by default); needs onnxscript."""
    import onnx
    import onnxruntime as ort

    os.makedirs(OUT, exist_ok=True)
    model.eval()
    path = os.path.join(OUT, name + ".onnx")
    x = fixed_input(shape)
    xt = torch.from_numpy(x)
    if dynamo:
        kwargs = dict(input_names=["input"])
        if output_names:
            kwargs["output_names"] = output_names
        torch.onnx.export(model, (xt,), path, dynamo=True, **kwargs)
        onnx.checker.check_model(path)
    else:
        kwargs = dict(opset_version=opset, input_names=["input"], do_constant_folding=True)
        if output_names:
            kwargs["output_names"] = output_names
        try:
            torch.onnx.export(model, (xt,), path, dynamo=False, **kwargs)
        except TypeError:  # older torch without the dynamo argument
            torch.onnx.export(model, (xt,), path, **kwargs)
        onnx.checker.check_model(onnx.load(path))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"input": x})
    np.save(os.path.join(OUT, name + ".input.npy"), x)
    with torch.no_grad():
        ref = model(xt)
    if isinstance(ref, torch.Tensor):
        ref = [ref]
    ref = [r.numpy() for r in ref]
    with open(os.path.join(OUT, name + ".outputs.txt"), "w") as f:
        f.write("".join(o.name + "\n" for o in sess.get_outputs()))
    worst = 0.0
    for i, o in enumerate(outs):
        np.save(os.path.join(OUT, f"{name}.output{i}.npy"), o)
        assert np.isfinite(o).all(), f"{name}: output {i} not finite"
        worst = max(worst, float(np.abs(o - ref[i]).max() / max(np.abs(ref[i]).max(), 1e-12)))
    size = os.path.getsize(path)
    print(f"{name}: {size / 1e6:.1f} MB, outputs "
          + ", ".join(f"{o.name}{list(v.shape)}" for o, v in zip(sess.get_outputs(), outs))
          + f", ort vs torch max rel diff {worst:.2e}", flush=True)
    return path
