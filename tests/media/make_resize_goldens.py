#!/usr/bin/python3
"""Goldens for test_media, computed with Debian's Pillow (python3-pil).

Writes tests/media/resize_goldens.json (sha256 of Pillow's resize output for deterministic inputs
that test_media regenerates with the same formula) and tests/media/decode_goldens.json (size and
sha256 of the RGB pixels after Image.open + ImageOps.exif_transpose + convert("RGB"), the pipeline
of transformers' load_image), and the small sample files in tests/media/data/.
Run: /usr/bin/python3 tests/media/make_resize_goldens.py
"""
import hashlib
import io
import json
import os
import struct
import zlib

import PIL
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SHARED_IMAGES = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "images"))

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def pattern_pixel(x, y, c, seed):
    """Must match pattern_image() in resize_test.cpp: a 32-bit integer hash for even seeds (noise,
    stresses clipping), a smooth gradient for odd seeds."""
    if seed % 2:
        return (x * 255 // 97 + y * 3 + c * 40) % 256 if (x // 9 + y // 7) % 2 else (x + y * 2 + c * 85) % 256
    h = (x * 2654435761 + y * 40503 + c * 977 + seed * 7919) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0x5BD1E995) & 0xFFFFFFFF
    h ^= h >> 15
    return h & 255


def pattern_image(w, h, seed):
    data = bytearray(w * h * 3)
    i = 0
    for y in range(h):
        for x in range(w):
            for c in range(3):
                data[i] = pattern_pixel(x, y, c, seed)
                i += 1
    return Image.frombytes("RGB", (w, h), bytes(data))


RESIZE_CASES = [
    # (in_w, in_h, out_w, out_h, seed)
    (1, 1, 5, 3, 0), (1, 7, 3, 1, 2), (7, 1, 1, 1, 4), (100, 1, 7, 1, 6), (1, 100, 1, 9, 1),
    (13, 17, 13, 5, 8), (13, 17, 4, 17, 10), (13, 17, 31, 17, 3), (13, 17, 13, 40, 12),
    (200, 3, 17, 40, 14), (3, 200, 40, 17, 16), (64, 48, 640, 480, 5), (64, 48, 65, 49, 18),
    (512, 512, 56, 56, 20), (451, 300, 56, 56, 7), (640, 427, 392, 588, 22), (640, 427, 588, 392, 9),
    (100, 76, 112, 84, 24), (60, 200, 56, 196, 26), (252, 50, 252, 56, 28), (40, 30, 84, 56, 11),
    (997, 13, 3, 2, 30), (2, 2, 999, 3, 32), (300, 300, 299, 301, 34), (128, 96, 32, 24, 36),
    (128, 96, 43, 31, 13), (17, 1000, 5, 999, 38), (333, 222, 111, 74, 40), (31, 29, 1, 1, 42),
    (50, 50, 200, 10, 44), (10, 200, 300, 2, 46), (257, 129, 255, 127, 15),
]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def resize_goldens():
    out = []
    for (iw, ih, ow, oh, seed) in RESIZE_CASES:
        im = pattern_image(iw, ih, seed)
        for name, f in FILTERS.items():
            r = im.resize((ow, oh), f)
            out.append({"in": [iw, ih], "out": [ow, oh], "seed": seed, "filter": name, "sha256": sha(r.tobytes())})
    return out


# ---- sample files -------------------------------------------------------------------------------

def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path, w, h, color_type, depth, rows, extra=b""):
    """Raw PNG writer (Pillow cannot write 16-bit colour PNGs): rows are raw scanline bytes."""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw))
                + png_chunk(b"IEND", b""))


def make_samples():
    os.makedirs(DATA, exist_ok=True)
    base = pattern_image(24, 16, 1)
    noise = pattern_image(24, 16, 2)
    files = []

    def save(name, im, **kw):
        p = os.path.join(DATA, name)
        im.save(p, **kw)
        files.append(name)

    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        save(f"orient_{o}.jpg", base, quality=90, exif=exif.tobytes())
    exif = Image.Exif()
    exif[0x0112] = 6
    save("orient_6.png", base, exif=exif.tobytes())
    save("gray.jpg", base.convert("L"), quality=85)
    save("cmyk.jpg", base.convert("CMYK"), quality=90)
    save("subsampled_420.jpg", noise, quality=75, subsampling=2)
    save("progressive.jpg", noise, quality=80, progressive=True)
    save("lossy.webp", base, quality=80)
    rgba = base.copy()
    rgba.putalpha(Image.frombytes("L", (24, 16), bytes((i * 7) % 256 for i in range(24 * 16))))
    save("lossless_alpha.webp", rgba, lossless=True)
    save("rgba.png", rgba)
    save("la.png", rgba.convert("LA"))
    save("palette.png", base.convert("P", palette=Image.Palette.ADAPTIVE, colors=37))
    pal_t = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save("palette_trns.png", pal_t, transparency=3)
    save("bits1.png", base.convert("1"))
    save("palette.gif", base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    save("transparent.gif", pal_t, transparency=5)
    save("rgb.bmp", base)
    save("palette.bmp", base.convert("P", palette=Image.Palette.ADAPTIVE, colors=20))
    save("gray.bmp", base.convert("L"))
    save("bits1.bmp", base.convert("1"))
    # 16-bit PNGs, written by hand.
    w, h = 24, 16
    def v16(x, y, c):
        return (pattern_pixel(x, y, c, 2) * 257 + x * 31 + y * 7) & 0xFFFF
    write_png(os.path.join(DATA, "rgb16.png"), w, h, 2, 16,
              [b"".join(struct.pack(">HHH", *(v16(x, y, c) for c in range(3))) for x in range(w)) for y in range(h)])
    write_png(os.path.join(DATA, "rgba16.png"), w, h, 6, 16,
              [b"".join(struct.pack(">HHHH", *(v16(x, y, c) for c in range(4))) for x in range(w)) for y in range(h)])
    write_png(os.path.join(DATA, "gray16.png"), w, h, 0, 16,
              [b"".join(struct.pack(">H", (x * 23 + y * 3) % 400) for x in range(w)) for y in range(h)])
    write_png(os.path.join(DATA, "la16.png"), w, h, 4, 16,
              [b"".join(struct.pack(">HH", v16(x, y, 0), v16(x, y, 1)) for x in range(w)) for y in range(h)])
    write_png(os.path.join(DATA, "gray2.png"), w, h, 0, 2,
              [bytes(((4 * i + 0) % 4) << 6 | ((4 * i + y) % 4) << 4 | ((i + y + 2) % 4) << 2 | (i % 4)
                     for i in range(w // 4)) for y in range(h)])
    write_png(os.path.join(DATA, "gray4.png"), w, h, 0, 4,
              [bytes(((i + y) % 16) << 4 | ((3 * i + y) % 16) for i in range(w // 2)) for y in range(h)])
    files += ["rgb16.png", "rgba16.png", "gray16.png", "la16.png", "gray2.png", "gray4.png"]
    return files


def decoded(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        rgb = im.convert("RGB")
        return {"size": [rgb.width, rgb.height], "sha256": sha(rgb.tobytes())}


def main():
    files = make_samples()
    decode = {}
    for name in files:
        decode["data/" + name] = decoded(os.path.join(DATA, name))
    for name in sorted(os.listdir(SHARED_IMAGES)):
        if name.endswith((".png", ".jpg")):
            decode["shared/" + name] = decoded(os.path.join(SHARED_IMAGES, name))
    with open(os.path.join(HERE, "decode_goldens.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "images": decode}, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(HERE, "resize_goldens.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": resize_goldens()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
