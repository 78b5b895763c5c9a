#!/usr/bin/python3
"""Times Pillow on the work bench_image does: decode a JPEG, convert("RGB"), resize with BICUBIC to
the Qwen2-VL smart_resize target (default max_pixels 28*28*1280). Usage: pillow_resize.py FILE.jpg"""
import math
import statistics
import sys
import time

from PIL import Image


def smart_resize(h, w, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280):
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    path = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5

    def decode():
        with Image.open(path) as im:
            return im.convert("RGB")

    img = decode()
    h, w = smart_resize(img.height, img.width)
    t_dec = median_ms(decode, reps)
    t_rs = median_ms(lambda: img.resize((w, h), Image.Resampling.BICUBIC), reps)
    t_all = median_ms(lambda: decode().resize((w, h), Image.Resampling.BICUBIC), reps)
    print(f"Pillow {Image.__version__}: {img.width}x{img.height} -> {w}x{h} bicubic, median of {reps}: "
          f"decode {t_dec:.1f} ms, resize {t_rs:.1f} ms, decode+resize {t_all:.1f} ms")


if __name__ == "__main__":
    main()
