"""Stacks photos into one N x 3 x 224 x 224 float32 .npy, preprocessed as torchvision's
ImageNet models expect (short side to 256, centre crop 224, [0, 1], ImageNet mean and std):
the input of `smof compare --inputs` and `smof convert --calib`.

    pip install pillow numpy
    python3 models/calib/make_inputs.py OUT.npy IMAGE...
"""
import sys

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from make_sample_input import preprocess  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    x = np.concatenate([preprocess(p) for p in sys.argv[2:]])
    np.save(sys.argv[1], x)
    print(sys.argv[1], x.shape)
