"""Exports torchvision classifiers with random weights to out/NAME.onnx (opset 17,
input 'input' 1x3x224x224) with onnxruntime reference outputs beside them.

    python3 models/zoo/export_torchvision.py [--dynamo] [NAME ...]

--dynamo exports with torch's default exporter instead (torch.export, its own opset, the
weights in an external data file) to out/NAME_dynamo.onnx and out/NAME_dynamo.onnx.data.

Weights: torch.manual_seed(0) before each model is built (torchvision's own init), then
BatchNorm statistics are randomised (common.randomise_batchnorm). Eval mode.
"""
import sys

import torch
import torchvision

from common import export, randomise_batchnorm

MODELS = {
    "shufflenet_v2_x1_0": lambda: torchvision.models.shufflenet_v2_x1_0(weights=None),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
    "mobilenet_v3_large": lambda: torchvision.models.mobilenet_v3_large(weights=None),
    "mnasnet1_0": lambda: torchvision.models.mnasnet1_0(weights=None),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(weights=None),
    "googlenet": lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "resnext50_32x4d": lambda: torchvision.models.resnext50_32x4d(weights=None),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(weights=None),
}


def main():
    torch.set_num_threads(1)
    args = sys.argv[1:]
    dynamo = "--dynamo" in args
    names = [a for a in args if a != "--dynamo"] or list(MODELS)
    for name in names:
        torch.manual_seed(0)
        model = MODELS[name]().eval()
        randomise_batchnorm(model)
        out = name + "_dynamo" if dynamo else name
        export(model, out, (1, 3, 224, 224), output_names=["logits"], dynamo=dynamo)


if __name__ == "__main__":
    main()
