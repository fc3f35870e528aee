"""Turns a bundled photo into the model input the demo feeds: 1x3x224x224 float32, NCHW.

Resize the short side to 256, centre-crop 224, scale to [0, 1], normalise with the
ImageNet mean and std (torchvision's preprocessing for its ImageNet models).

    pip install pillow numpy
    python3 models/make_sample_input.py models/samples/imagenet_00_243.jpg models/samples/imagenet_00_243.npy
"""
import sys

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path: str) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


if __name__ == "__main__":
    np.save(sys.argv[2], preprocess(sys.argv[1]))
