#!/usr/bin/env python3
"""Fetch ~250 further natural photos from two Debian packages, for calibrating and evaluating
pruned ImageNet models (run once by hand; nothing in CI uses it).

    python3 models/calib/fetch_photos.py OUT_DIR [--stamps]

writes OUT_DIR/calib/*.jpg and OUT_DIR/eval/*.jpg: every fifth photo (in sorted name order)
goes to `eval`, the rest to `calib`, so the two sets never share a photo. Each photo is
resized once so that its shorter side is 256 pixels (bilinear) and saved as JPEG quality 95,
as `models/calib/images` is.

With `--stamps` it also writes OUT_DIR/stamps/*.jpg, calibration images only: the
photographic stamps of `tuxpaint-stamps-default` (cut-out photos of animals, food,
vehicles, people, ...; those at least 150 pixels on each side with more than 1200 distinct
RGBA values at 64x64, which leaves out the drawn ones), each pasted at 60-90% of the size
onto a blurred random square crop of a desktop wallpaper (`plasma-workspace-wallpapers`,
`ukui-wallpapers`, `lomiri-wallpapers`), 256x256, with a fixed random seed.

Sources (downloaded with `apt-get download` from the Debian archive, not committed here):
- `gcompris-qt-data` (GCompris educational suite, GPL-3+ with image credits in the package):
  the photo folders of its `categorization`, `erase`, `explore_farm_animals`,
  `explore_monuments` and `explore_world_animals` activities (fish, monuments, tools,
  household objects, windmills, animals). They are stored in Qt resource (`.rcc`) files,
  read by `read_rcc` below. The `details` activity (round crops of paintings) and the
  alphabet/number pictures are left out.
- `palapeli-data` (KDE jigsaw puzzle, GPL-2+): the five photos of its puzzle collection.

- With `--stamps`: `tuxpaint-stamps-default` (Tux Paint stamps, GPL-2+ and other free
  licences listed in the package), `plasma-workspace-wallpapers` (KDE, LGPL/CC-BY-SA),
  `ukui-wallpapers` and `lomiri-wallpapers` (desktop backgrounds, free licences listed in
  the packages).

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


STAMP_PACKAGES = [
    "tuxpaint-stamps-default",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
    "lomiri-wallpapers",
]


def is_photo_stamp(path):
    """A stamp large enough and with the colour variety of a photograph."""
    im = Image.open(path)
    if min(im.size) < 150:
        return False
    b = im.convert("RGBA").resize((64, 64)).tobytes()
    return len({b[i : i + 4] for i in range(0, len(b), 4)}) > 1200


def fetch_stamps(tmp, out):
    """Writes the pasted stamps to `out` (see the module docs)."""
    import random
    from PIL import ImageFilter

    subprocess.run(["apt-get", "download", *STAMP_PACKAGES], cwd=tmp, check=True)
    for deb in glob.glob(os.path.join(tmp, "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "s")], check=True)
    stamps = sorted(glob.glob(os.path.join(tmp, "s/usr/share/tuxpaint/stamps/**/*.png"), recursive=True))
    stamps = [p for p in stamps if is_photo_stamp(p)]
    # One picture per wallpaper (its first size in name order), not its screenshot.
    walls = {}
    for p in sorted(glob.glob(os.path.join(tmp, "s/usr/share/**/*"), recursive=True)):
        if "wallpaper" not in p or "screenshot" in p or not p.lower().endswith(PHOTO_EXT):
            continue
        walls.setdefault(p.split("/contents/images/")[0], p)
    backgrounds = [Image.open(p).convert("RGB") for p in walls.values()]
    rng = random.Random(0)
    os.makedirs(out, exist_ok=True)
    for i, path in enumerate(stamps):
        stamp = Image.open(path).convert("RGBA")
        bg = rng.choice(backgrounds)
        w, h = bg.size
        s = rng.randint(min(w, h) // 4, min(w, h) // 2)
        x0, y0 = rng.randint(0, w - s), rng.randint(0, h - s)
        canvas = bg.crop((x0, y0, x0 + s, y0 + s)).resize((256, 256), Image.BILINEAR)
        canvas = canvas.filter(ImageFilter.GaussianBlur(2)).convert("RGBA")
        frac = rng.uniform(0.6, 0.9)
        stamp.thumbnail((int(256 * frac), int(256 * frac)), Image.BILINEAR)
        at = (rng.randint(0, 256 - stamp.size[0]), rng.randint(0, 256 - stamp.size[1]))
        canvas.alpha_composite(stamp, at)
        canvas.convert("RGB").save(os.path.join(out, f"stamp_{i:03d}.jpg"), quality=95)
    print(f"{out}: {len(stamps)} pasted stamps on {len(backgrounds)} wallpapers")


def main():
    args = sys.argv[1:]
    stamps = "--stamps" in args
    args = [a for a in args if a != "--stamps"]
    if len(args) != 1:
        sys.exit(__doc__)
    out = os.path.abspath(args[0])
    if stamps:
        with tempfile.TemporaryDirectory() as tmp:
            fetch_stamps(tmp, os.path.join(out, "stamps"))
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
