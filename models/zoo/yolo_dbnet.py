"""A YOLOv8n-style detector and a DBNet-style text detector, built in plain PyTorch from
their published structure, with random weights, exported to out/ with onnxruntime
reference outputs (opset 17, input 'input').

    python3 models/zoo/yolo_dbnet.py [yolov8n] [yolov8n_decoded] [dbnet_resnet18]

- yolov8n (1x3x320x320): the layer list of Ultralytics' yolov8n.yaml (depth 0.33,
  width 0.25): Conv = Conv2d(no bias) + BN + SiLU; C2f = 1x1 Conv, Split in two, n
  Bottlenecks chained on the second half, Concat of all parts, 1x1 Conv; SPPF = 1x1 Conv,
  three chained MaxPool k5 s1 p2, Concat, 1x1 Conv; PAN neck with nearest Upsample x2 and
  Concat; decoupled Detect head (box branch: Conv3x3, Conv3x3, Conv1x1 -> 4*16 channels;
  class branch: Conv3x3, Conv3x3, Conv1x1 -> 80 channels) at strides 8, 16, 32. Raw head
  outputs, six of them: box8 (1x64x40x40), cls8 (1x80x40x40), box16, cls16, box32, cls32.
- yolov8n_decoded (1x3x320x320): the same network (same weights) with the inference
  decoding that Ultralytics exports: Reshape + Concat of the three levels, Split into box
  and class channels, DFL (Reshape, Transpose, Softmax, 1x1 Conv with weights 0..15),
  dist2bbox against constant anchors (chunk, which the exporter writes as Shape, Gather and
  two Slices with computed bounds; Sub, Add, Div, Concat), stride Mul, Sigmoid on the
  classes: one output 1x84x2100 (cx, cy, w, h in pixels, 80 class probabilities).
- dbnet_resnet18 (1x3x640x640): DBNet (Liao et al., AAAI 2020) with a ResNet-18 backbone
  (torchvision resnet18, random weights, no deformable convs): FPN of 1x1 lateral convs to
  256 channels, top-down nearest Upsample x2 + Add, a 3x3 conv to 64 channels per level,
  nearest Upsample x8/x4/x2 to 1/4 scale, Concat (256 channels); probability and threshold
  heads, each Conv3x3 + BN + ReLU, ConvTranspose 2x2 s2 + BN + ReLU, ConvTranspose 2x2 s2,
  Sigmoid. Outputs prob (1x1x640x640) and thresh (1x1x640x640).

Weights: torch.manual_seed(0) before each model is built (PyTorch's default init), then
BatchNorm statistics are randomised (common.randomise_batchnorm). Eval mode.
"""
import sys

import torch
import torch.nn as nn
import torchvision

from common import export, randomise_batchnorm


# ---------------------------------------------------------------- YOLOv8n
class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, e=1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 3, 1)
        self.cv2 = Conv(c_, c2, 3, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, e=1.0) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution focal loss decoding: softmax over 16 bins, expectation by a fixed 1x1 conv."""

    def __init__(self, c1=16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x, a):
        # batch 1 and the anchor count a are fixed at export, so the shapes are constants
        return self.conv(x.view(1, 4, self.c1, a).transpose(2, 1).softmax(1)).view(1, 4, a)


class Detect(nn.Module):
    def __init__(self, nc=80, ch=(), strides=(8, 16, 32), decode=False, imgsz=320):
        super().__init__()
        self.nc, self.nl, self.reg_max = nc, len(ch), 16
        self.no = nc + self.reg_max * 4
        self.decode = decode
        c2, c3 = max(16, ch[0] // 4, self.reg_max * 4), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch)
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(self.reg_max)
        # anchor centres (grid cell + 0.5) and strides for a fixed input size, as the
        # static-shape export has them: constants of shape 1 x 2 x A and 1 x A
        anchors, stride_t = [], []
        for s in strides:
            h = w = imgsz // s
            sy, sx = torch.meshgrid(torch.arange(h, dtype=torch.float) + 0.5,
                                    torch.arange(w, dtype=torch.float) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), -1).view(-1, 2))
            stride_t.append(torch.full((h * w, 1), float(s)))
        self.register_buffer("anchors", torch.cat(anchors).transpose(0, 1).unsqueeze(0).contiguous())
        self.register_buffer("strides", torch.cat(stride_t).transpose(0, 1).contiguous())
        self.na = self.anchors.shape[2]

    def forward(self, xs):
        if not self.decode:
            outs = []
            for i in range(self.nl):
                outs += [self.cv2[i](xs[i]), self.cv3[i](xs[i])]
            return tuple(outs)
        maps = [torch.cat((self.cv2[i](xs[i]), self.cv3[i](xs[i])), 1) for i in range(self.nl)]
        x = torch.cat([m.view(1, self.no, m.shape[2] * m.shape[3]) for m in maps], 2)
        box, cls = x.split((self.reg_max * 4, self.nc), 1)
        lt, rb = self.dfl(box, self.na).chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((dbox, cls.sigmoid()), 1)


class YOLOv8(nn.Module):
    """yolov8.yaml at scale n: depth 0.33, width 0.25, 80 classes."""

    def __init__(self, nc=80, decode=False):
        super().__init__()
        w = lambda c: int(c * 0.25)  # noqa: E731
        d = lambda n: max(round(n * 0.33), 1)  # noqa: E731
        self.b0 = Conv(3, w(64), 3, 2)  # P1/2
        self.b1 = Conv(w(64), w(128), 3, 2)  # P2/4
        self.b2 = C2f(w(128), w(128), d(3), True)
        self.b3 = Conv(w(128), w(256), 3, 2)  # P3/8
        self.b4 = C2f(w(256), w(256), d(6), True)
        self.b5 = Conv(w(256), w(512), 3, 2)  # P4/16
        self.b6 = C2f(w(512), w(512), d(6), True)
        self.b7 = Conv(w(512), w(1024), 3, 2)  # P5/32
        self.b8 = C2f(w(1024), w(1024), d(3), True)
        self.b9 = SPPF(w(1024), w(1024), 5)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12 = C2f(w(1024) + w(512), w(512), d(3))
        self.h15 = C2f(w(512) + w(256), w(256), d(3))  # P3/8 out
        self.h16 = Conv(w(256), w(256), 3, 2)
        self.h18 = C2f(w(256) + w(512), w(512), d(3))  # P4/16 out
        self.h19 = Conv(w(512), w(512), 3, 2)
        self.h21 = C2f(w(512) + w(1024), w(1024), d(3))  # P5/32 out
        self.detect = Detect(nc, (w(256), w(512), w(1024)), decode=decode)

    def forward(self, x):
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h12 = self.h12(torch.cat((self.up(p5), p4), 1))
        h15 = self.h15(torch.cat((self.up(h12), p3), 1))
        h18 = self.h18(torch.cat((self.h16(h15), h12), 1))
        h21 = self.h21(torch.cat((self.h19(h18), p5), 1))
        return self.detect([h15, h18, h21])


# ---------------------------------------------------------------- DBNet
class DBNet(nn.Module):
    def __init__(self, inner=256):
        super().__init__()
        r = torchvision.models.resnet18(weights=None)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        cins = (64, 128, 256, 512)
        self.lat = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in cins)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        q = inner // 4
        self.out = nn.ModuleList([
            nn.Conv2d(inner, q, 3, padding=1, bias=False),
            nn.Sequential(nn.Conv2d(inner, q, 3, padding=1, bias=False), nn.Upsample(scale_factor=2, mode="nearest")),
            nn.Sequential(nn.Conv2d(inner, q, 3, padding=1, bias=False), nn.Upsample(scale_factor=4, mode="nearest")),
            nn.Sequential(nn.Conv2d(inner, q, 3, padding=1, bias=False), nn.Upsample(scale_factor=8, mode="nearest")),
        ])
        self.binarize = self._head(inner)
        self.thresh = self._head(inner)

    @staticmethod
    def _head(inner):
        q = inner // 4
        return nn.Sequential(
            nn.Conv2d(inner, q, 3, padding=1, bias=False), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(q, q, 2, 2), nn.BatchNorm2d(q), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(q, 1, 2, 2), nn.Sigmoid())

    def forward(self, x):
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        in2, in3, in4, in5 = (l(c) for l, c in zip(self.lat, (c2, c3, c4, c5)))
        o4 = self.up2(in5) + in4
        o3 = self.up2(o4) + in3
        o2 = self.up2(o3) + in2
        fuse = torch.cat((self.out[3](in5), self.out[2](o4), self.out[1](o3), self.out[0](o2)), 1)
        return self.binarize(fuse), self.thresh(fuse)


def build(name):
    torch.manual_seed(0)
    if name in ("yolov8n", "yolov8n_decoded"):
        m = YOLOv8(decode=name == "yolov8n_decoded")
    else:
        m = DBNet()
    randomise_batchnorm(m)
    return m.eval()


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or ["yolov8n", "yolov8n_decoded", "dbnet_resnet18"]
    for name in names:
        model = build(name)
        if name == "yolov8n":
            export(model, name, (1, 3, 320, 320),
                   output_names=["box8", "cls8", "box16", "cls16", "box32", "cls32"])
        elif name == "yolov8n_decoded":
            export(model, name, (1, 3, 320, 320), output_names=["output"])
        elif name == "dbnet_resnet18":
            export(model, name, (1, 3, 640, 640), output_names=["prob", "thresh"])
        else:
            raise SystemExit(f"unknown model {name}")


if __name__ == "__main__":
    main()
