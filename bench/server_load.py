#!/usr/bin/env python3
"""Load benchmark for `vlm serve`: C concurrent clients each send R chat completions; reports
requests/s, tokens/s and p50/p95 latency (and, when --stream, time to first token and each stream's
decode tokens/s after its first token: with continuous batching, concurrent streams share each
decode step, so this stays near the single-stream rate).

    python3 bench/server_load.py --vlm build/tools/vlm --model /work/shared/fixtures/qwen2_vl/tiny-bf16 \\
        --clients 8 --requests 5 --parallel 2 --max-tokens 16 [--image PATH] [--stream] \\
        [--serve-args "--precision fast --threads 2"]

Starts the server on a free 127.0.0.1 port (or uses --url of a running one). Standard library only.
"""
import argparse
import base64
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def start_server(args):
    cmd = [args.vlm, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
           "--parallel", str(args.parallel), "--alias", "bench"] + args.serve_args.split()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    log = ""
    while True:
        line = proc.stderr.readline()
        if not line:
            sys.exit("server exited:\n" + log)
        log += line
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, "http://127.0.0.1:%s" % m.group(1)


def one_request(url, body, stream):
    req = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    with urllib.request.urlopen(req, timeout=600) as resp:
        if not stream:
            j = json.loads(resp.read())
            tokens = j["usage"]["completion_tokens"]
        else:
            for raw in resp:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                j = json.loads(line[6:])
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
                if ttft is None and j["choices"] and j["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - t0
    return time.perf_counter() - t0, ttft, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vlm", default="build/tools/vlm")
    ap.add_argument("--model", default="/work/shared/fixtures/qwen2_vl/tiny-bf16")
    ap.add_argument("--url", help="use a running server instead of starting one")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=5, help="per client")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--prompt", default="Describe the image.")
    ap.add_argument("--image")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--serve-args", default="", help="more `vlm serve` arguments, e.g. \"--precision fast\"")
    args = ap.parse_args()

    proc = None
    url = args.url
    if not url:
        proc, url = start_server(args)
    content = [{"type": "text", "text": args.prompt}]
    if args.image:
        data = base64.b64encode(open(args.image, "rb").read()).decode()
        content.insert(0, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}})
    payload = {"model": "bench" if proc else json.load(urllib.request.urlopen(url + "/v1/models"))["data"][0]["id"],
               "messages": [{"role": "user", "content": content}],
               "max_tokens": args.max_tokens, "ignore_eos": True, "stream": args.stream}
    if args.stream:
        payload["stream_options"] = {"include_usage": True}
    body = json.dumps(payload).encode()
    one_request(url, body, args.stream)  # warm-up

    lat, ttfts, toks, decode_rates, errors = [], [], [], [], []
    lock = threading.Lock()

    def client():
        for _ in range(args.requests):
            try:
                dt, ttft, n = one_request(url, body, args.stream)
                with lock:
                    lat.append(dt)
                    toks.append(n)
                    if ttft is not None:
                        ttfts.append(ttft)
                        if n > 1 and dt > ttft:
                            decode_rates.append((n - 1) / (dt - ttft))
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if proc:
        proc.terminate()
        proc.wait(timeout=60)

    n = len(lat)
    print("requests: %d ok, %d failed in %.2f s (%d clients x %d, --parallel %d, max_tokens %d%s%s)"
          % (n, len(errors), wall, args.clients, args.requests, args.parallel, args.max_tokens,
             ", image" if args.image else "", ", stream" if args.stream else ""))
    print("throughput: %.2f requests/s, %.1f generated tokens/s" % (n / wall, sum(toks) / wall))
    print("latency: p50 %.0f ms, p95 %.0f ms, mean %.0f ms"
          % (percentile(lat, 50) * 1e3, percentile(lat, 95) * 1e3, statistics.mean(lat) * 1e3 if lat else 0))
    if ttfts:
        print("time to first token: p50 %.0f ms, p95 %.0f ms" % (percentile(ttfts, 50) * 1e3, percentile(ttfts, 95) * 1e3))
    if decode_rates:
        print("per-stream decode: p50 %.1f tok/s, min %.1f tok/s"
              % (percentile(decode_rates, 50), min(decode_rates)))
    for e in errors[:5]:
        print("error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
