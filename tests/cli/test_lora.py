"""LoRA adapters end to end (shared/fixtures/lora): `vlm generate --adapter` reproduces the oracle's
greedy tokens, `vlm lora fuse` writes the oracle's fused weights and a checkpoint that generates the
same tokens, `vlm info --adapter` lists the modules, bad adapters fail with the file named, and
`vlm serve --adapter NAME=DIR` selects adapters per request (by "model" or llama.cpp's "lora")."""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import VLM, main, run, run_json, shared  # noqa: E402

PROMPT = "Write a haiku about the sea."  # case 01_text_only of the qwen2_vl fixtures


def lora(*parts):
    return shared("fixtures", "lora", *parts)


def base(name):
    return shared("fixtures", "qwen2_vl", name)


def expected(adapter):
    with open(lora("expected", adapter + ".json")) as f:
        return json.load(f)


def text_case(exp, model):
    return next(c for c in exp["cases"] if c["case"] == "01_text_only")["results"][model]


def read_tensor(path, name):
    """(dtype, shape, raw bytes) of one tensor of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        e = header[name]
        f.seek(8 + n + e["data_offsets"][0])
        return e["dtype"], e["shape"], f.read(e["data_offsets"][1] - e["data_offsets"][0])


def as_floats(dtype, raw):
    if dtype == "F32":
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    if dtype == "BF16":
        return [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
    raise AssertionError(dtype)


def generate_ids(model, *extra):
    return run_json("generate", "--model", model, "--prompt", PROMPT, "--max-tokens", 16, "--temperature", 0, "--json",
                    *extra)["token_ids"]


ADAPTERS = ["mlx-qproj-vproj", "mlx-all-last1", "mlx-vlm-fullkeys", "peft-qv", "peft-rslora-regex"]


class Lora(unittest.TestCase):
    def setUp(self):
        if not os.path.isdir(lora("expected")):
            self.skipTest("no lora fixtures")

    def test_generate_with_adapter_matches_oracle(self):
        for model in ("tiny-bf16", "tiny-mlx-4bit"):
            for a in ADAPTERS:
                want = text_case(expected(a), model)["generated_ids"]
                if 151645 in want:
                    want = want[:want.index(151645) + 1]
                self.assertEqual(generate_ids(base(model), "--adapter", lora(a)), want, f"{a} on {model}")

    def test_scale_zero_is_the_base_model(self):
        self.assertEqual(generate_ids(base("tiny-bf16"), "--adapter", lora("peft-qv") + ":0"),
                         generate_ids(base("tiny-bf16")))

    def test_fuse_bf16_and_dequantized_4bit(self):
        for a in ADAPTERS:
            exp = expected(a)
            fused = exp["fused"]
            for model, extra, want_name in (("tiny-bf16", [], "weight_bf16"),
                                            ("tiny-mlx-4bit", ["--dequantize"], "weight_bf16")):
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "fused")
                    run("lora", "fuse", "--model", base(model), "--adapter", lora(a), "--out", out, *extra)
                    path = fused["mlx_path"] if model != "tiny-bf16" else None
                    with open(os.path.join(out, "model.safetensors"), "rb") as f:
                        n = struct.unpack("<Q", f.read(8))[0]
                        names = json.loads(f.read(n)).keys()
                    if path is None:  # the bf16 base uses HF names
                        path = next(p for p in (fused["hf_path_old"], fused["hf_path_new"], fused["mlx_path"])
                                    if p + ".weight" in names)
                    dtype, shape, raw = read_tensor(os.path.join(out, "model.safetensors"), path + ".weight")
                    self.assertEqual(dtype, "BF16", f"{a} {model}")
                    self.assertNotIn(path + ".scales", names)
                    got = as_floats(dtype, raw)
                    edt, eshape, eraw = read_tensor(lora("expected", a + ".safetensors"), f"fused.{model}.{want_name}")
                    self.assertEqual(shape, eshape)
                    want = as_floats(edt, eraw)
                    ulp_off = sum(1 for g, w in zip(got, want) if g != w and abs(g - w) <= abs(w) * 2 ** -7)
                    far = [(g, w) for g, w in zip(got, want) if abs(g - w) > abs(w) * 2 ** -7]
                    self.assertEqual(far, [], f"{a} {model}")
                    self.assertLessEqual(ulp_off, 4, f"{a} {model}: elements one bf16 ulp off (rounding ties)")
                    # The fused checkpoint generates what the unmerged adapter generates: all 16 tokens from
                    # the bf16 base; from the dequantized 4-bit base (every weight rounded to bf16) the tokens up to
                    # the first step whose oracle margin is under 0.5.
                    fused_ids = generate_ids(out)
                    unmerged = generate_ids(base(model), "--adapter", lora(a))
                    margins = text_case(exp, model)["greedy_margins"]
                    n = 16 if model == "tiny-bf16" else next((i for i, m in enumerate(margins) if m < 0.5), 16)
                    self.assertEqual(fused_ids[:max(n, 1)], unmerged[:max(n, 1)], f"{a} {model}")

    def test_fuse_requantized_4bit_loads_and_is_close(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "fused")
            run("lora", "fuse", "--model", base("tiny-mlx-4bit"), "--adapter", lora("peft-qv"), "--out", out)
            path = "language_model.model.layers.0.self_attn.v_proj"
            dtype, shape, _ = read_tensor(os.path.join(out, "model.safetensors"), path + ".weight")
            self.assertEqual((dtype, shape), ("U32", [32, 8]))
            ids = generate_ids(out)
            self.assertEqual(len(ids), 16)
            info = run_json("info", out, "--json")
            self.assertEqual(info["quantization"], {"bits": 4, "group_size": 64})

    def test_two_adapters_fuse_and_scales(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "fused")
            args = ["--adapter", lora("peft-qv") + ":0.5", "--adapter", lora("mlx-vlm-fullkeys")]
            run("lora", "fuse", "--model", base("tiny-bf16"), *args, "--out", out)
            self.assertEqual(generate_ids(out), generate_ids(base("tiny-bf16"), *args))

    def test_info_lists_modules(self):
        j = run_json("info", base("tiny-bf16"), "--adapter", lora("peft-rslora-regex"), "--json")
        mods = j["adapters"][0]["modules"]
        self.assertEqual(len(mods), 5)
        k = next(m for m in mods if m["module"] == "self_attn.k_proj")
        self.assertEqual((k["layer"], k["rank"]), (1, 2))
        self.assertAlmostEqual(k["scale"], 16 / 2 ** 0.5, places=4)
        _, out, _ = run("info", base("tiny-bf16"), "--adapter", lora("mlx-qproj-vproj"))
        self.assertIn("self_attn.q_proj", out)

    def test_bad_adapter_is_a_clear_error(self):
        rc, _, err = run("generate", "--model", base("tiny-bf16"), "--prompt", "hi", "--adapter", base("tiny-bf16"),
                         check=False)
        self.assertEqual(rc, 1)
        self.assertIn("adapter_config.json", err)
        rc, _, err = run("generate", "--model", base("tiny-bf16"), "--prompt", "hi", "--adapter", "/no/such/adapter",
                         check=False)
        self.assertEqual(rc, 1)
        self.assertIn("/no/such/adapter", err)


class Serve(unittest.TestCase):
    def setUp(self):
        if not os.path.isdir(lora("expected")):
            self.skipTest("no lora fixtures")

    def test_adapters_per_request(self):
        model = base("tiny-bf16")
        env = dict(os.environ, VLM_THREADS="2", HF_HUB_OFFLINE="1")
        p = subprocess.Popen([VLM, "serve", "--model", model, "--alias", "base", "--port", "0", "--parallel", "2",
                              "--adapter", "qv=" + lora("peft-qv"), "--adapter", "rs=" + lora("peft-rslora-regex")],
                             env=env, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            for line in p.stderr:
                m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
                if m:
                    port = int(m.group(1))
                    break
            self.assertIsNotNone(port, "the server did not start")
            url = f"http://127.0.0.1:{port}/v1"

            def chat(body):
                body = dict({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}, **body)
                req = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        return r.status, json.loads(r.read())
                except urllib.error.HTTPError as e:
                    return e.code, json.loads(e.read())

            with urllib.request.urlopen(url + "/models", timeout=30) as r:
                models = {m["id"]: m for m in json.loads(r.read())["data"]}
            self.assertEqual(models["qv"]["parent"], "base")
            self.assertEqual(models["rs"]["parent"], "base")

            def text_of(resp):
                return resp[1]["choices"][0]["message"]["content"]

            want_qv = run_json("generate", "--model", model, "--prompt", PROMPT, "--max-tokens", 16, "--temperature",
                               0, "--json", "--adapter", lora("peft-qv"))["text"]
            st, r = chat({"model": "qv"})
            self.assertEqual(st, 200, r)
            self.assertEqual(r["model"], "qv")
            self.assertEqual(text_of((st, r)), want_qv)
            self.assertEqual(text_of(chat({"model": "base", "lora": [{"id": 0, "scale": 1.0}]})), text_of((st, r)))
            base_text = text_of(chat({"model": "base"}))
            self.assertNotEqual(base_text, text_of((st, r)))
            self.assertEqual(text_of(chat({"model": "base", "lora": [{"id": 0, "scale": 0}]})), base_text)
            st, err = chat({"model": "base", "lora": [{"id": 5}]})
            self.assertEqual((st, err["error"]["param"]), (400, "lora[0].id"))

            # Concurrent requests with different adapters: each gets its own answer.
            results = {}

            def worker(name):
                results[name] = text_of(chat({"model": name}))

            solo = {n: text_of(chat({"model": n})) for n in ("qv", "rs", "base")}
            threads = [threading.Thread(target=worker, args=(n,)) for n in ("qv", "rs", "base", "qv", "rs", "base")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(results, solo)
        finally:
            p.terminate()
            p.wait(timeout=60)


if __name__ == "__main__":
    main()
