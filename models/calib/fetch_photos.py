#!/usr/bin/env python3
"""Fetch ~250 further natural photos from two Debian packages, for calibrating and evaluating
pruned ImageNet models (run once by hand; nothing in CI uses it).

    python3 models/calib/fetch_photos.py OUT_DIR

writes OUT_DIR/calib/*.jpg and OUT_DIR/eval/*.jpg: every fifth photo (in sorted name order)
goes to `eval`, the rest to `calib`, so the two sets never share a photo. Each photo is
resized once so that its shorter side is 256 pixels (bilinear) and saved as JPEG quality 95,
as `models/calib/images` is.

Sources (downloaded with `apt-get download` from the Debian archive, not committed here):
- `gcompris-qt-data` (GCompris educational suite, GPL-3+ with image credits in the package):
  the photo folders of its `categorization`, `erase`, `explore_farm_animals`,
  `explore_monuments` and `explore_world_animals` activities (fish, monuments, tools,
  household objects, windmills, animals). They are stored in Qt resource (`.rcc`) files,
  read by `read_rcc` below. The `details` activity (round crops of paintings) and the
  alphabet/number pictures are left out.
- `palapeli-data` (KDE jigsaw puzzle, GPL-2+): the five photos of its puzzle collection.

Needs `apt-get`, `dpkg-deb` and `pip install pillow`.
"""

import glob
import os
import struct
import subprocess
import sys
import tempfile
import zlib

from PIL import Image

RCC_ACTIVITIES = [
    "categorization",
    "erase",
    "explore_farm_animals",
    "explore_monuments",
    "explore_world_animals",
]
SKIP_PARTS = ("/alphabets/", "/numbers/")
PHOTO_EXT = (".jpg", ".jpeg", ".png", ".webp")


def read_rcc(path):
    """Yields (name, bytes) of every file in a Qt binary resource file (format versions 1-3;
    entries stored raw, zlib- or zstd-compressed)."""
    b = open(path, "rb").read()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    entry_size = 14 if version == 1 else 22

    def name_at(off):
        (n,) = struct.unpack(">H", b[names + off : names + off + 2])
        return b[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i, prefix):
        e = tree + i * entry_size
        name_off, flags = struct.unpack(">IH", b[e : e + 6])
        name = name_at(name_off) if i else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", b[e + 6 : e + 14])
            for c in range(count):
                yield from walk(first + c, prefix + "/" + name)
            return
        (off,) = struct.unpack(">I", b[e + 10 : e + 14])
        (n,) = struct.unpack(">I", b[data + off : data + off + 4])
        raw = b[data + off + 4 : data + off + 4 + n]
        if flags & 1:
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            import zstandard

            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 28)
        yield prefix + "/" + name, raw

    yield from walk(0, "")


def save_256(src, dst):
    im = Image.open(src).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    size = (max(256, round(w * s)), max(256, round(h * s)))
    im.resize(size, Image.BILINEAR).save(dst, quality=95)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["apt-get", "download", "gcompris-qt-data", "palapeli-data"], cwd=tmp, check=True
        )
        for deb in glob.glob(os.path.join(tmp, "*.deb")):
            subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        photos = {}  # output name -> a file-like source
        rcc_dir = os.path.join(tmp, "x/usr/share/gcompris-qt/rcc")
        for act in RCC_ACTIVITIES:
            for name, raw in read_rcc(os.path.join(rcc_dir, act + ".rcc")):
                low = name.lower()
                if not low.endswith(PHOTO_EXT) or any(p in low for p in SKIP_PARTS):
                    continue
                parts = name.strip("/").split("/")
                key = "gcompris_" + "_".join([act] + parts[-2:])
                src = os.path.join(tmp, "raw_" + str(len(photos)))
                open(src, "wb").write(raw)
                photos[os.path.splitext(key)[0] + ".jpg"] = src
        for p in glob.glob(os.path.join(tmp, "x/usr/share/palapeli/collection/*.jpg")):
            photos["palapeli_" + os.path.basename(p)] = p
        for sub in ("calib", "eval"):
            os.makedirs(os.path.join(out, sub), exist_ok=True)
        for i, name in enumerate(sorted(photos)):
            sub = "eval" if i % 5 == 0 else "calib"
            save_256(photos[name], os.path.join(out, sub, name))
    for sub in ("calib", "eval"):
        print(f"{out}/{sub}: {len(os.listdir(os.path.join(out, sub)))} photos")


if __name__ == "__main__":
    main()
