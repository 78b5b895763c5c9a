#!/usr/bin/env python3
"""How long a decoding stream stalls while `vlm serve` encodes another request's image: one
streaming text request decodes; after its 8th token a second request sends an image (max_tokens 1).
Reports the image request's time, how many tokens the stream produced meanwhile, and the stream's
longest gap between tokens overlapping it, beside its median gap.

    python3 bench/decode_stall.py --vlm build/tools/vlm --model DIR --image PNG \\
        [--max-tokens 600] [--serve-args "--threads 2"]

The image is sent as is (resize it beforehand for a given patch count). Standard library only.
"""
import argparse
import base64
import json
import statistics
import sys
import threading
import time
import urllib.request

from server_load import start_server


def post(url, payload):
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=900)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlm", default="build/tools/vlm")
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--max-tokens", type=int, default=600, help="of the decoding stream")
    ap.add_argument("--serve-args", default="", help="more `vlm serve` arguments, e.g. \"--threads 2\"")
    args = ap.parse_args()
    args.parallel = 2
    proc, url = start_server(args)
    data = base64.b64encode(open(args.image, "rb").read()).decode()
    text = {"model": "bench", "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": args.max_tokens, "ignore_eos": True, "stream": True}
    image = {"model": "bench", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}},
        {"type": "text", "text": "Describe the image."}]}]}
    window = {}

    def image_request():
        window["start"] = time.perf_counter()
        post(url, image).read()
        window["end"] = time.perf_counter()

    times, sender = [], threading.Thread(target=image_request)
    with post(url, text) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            j = json.loads(line[6:])
            if j["choices"] and j["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
                if len(times) == 8:
                    sender.start()
    sender.join()
    proc.terminate()
    proc.wait(timeout=60)
    start, end = window["start"], window["end"]
    gaps = list(zip(times, times[1:]))
    during = [b - a for a, b in gaps if a < end and b > start]
    outside = [b - a for a, b in gaps if not (a < end and b > start)]
    print("image request: %.2f s; the stream produced %d tokens meanwhile%s"
          % (end - start, sum(1 for t in times if start < t <= end),
             "" if times[-1] > end else " (and ended before it: raise --max-tokens)"))
    print("stream gaps: longest overlapping the image request %.0f ms, median otherwise %.0f ms"
          % (max(during) * 1e3 if during else float("nan"), statistics.median(outside) * 1e3 if outside else float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
