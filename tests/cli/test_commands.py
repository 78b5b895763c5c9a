"""`vlm chat`, `tokenize`, `chat-template`, `list`, `info`, `bench` and the error paths."""
import json
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import main, run, run_json, shared  # noqa: E402

TINY = shared("fixtures", "qwen2_vl", "tiny-bf16")
DEMO4 = shared("demo", "qwen2-vl-shapes-4bit")
SHAPES = shared("demo", "images")


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class Chat(unittest.TestCase):
    def test_piped_session_with_images_and_reset(self):
        script = (f"/image {SHAPES}/shapes_02.png\nDescribe the image.\n/reset\n"
                  f"/image {SHAPES}/shapes_01.png\nDescribe the image.\n/quit\nnever read\n")
        _, out, err = run("chat", "--model", DEMO4, "--temperature", "0", stdin=script)
        self.assertEqual(out, "A purple circle above a red square.\nAn orange triangle.\n")
        self.assertIn("history cleared", err)

    def test_history_is_kept(self):
        # The second answer must equal `generate` on the same conversation with the first answer as the
        # assistant turn (the tiny model's answers are gibberish, but deterministic).
        # The session keeps its prompt cache: the second turn prefills only its new tokens.
        _, out, err = run("chat", "--model", TINY, "--temperature", "0", "--max-tokens", "6", "--verbose",
                          stdin="Hello there.\nAnd then?\n")
        first, second = out.split("\n")[:2]
        cached = [int(m) for m in re.findall(r"prompt: \d+ tokens \((\d+) cached\)", err)]
        self.assertEqual(len(cached), 2, err)
        self.assertEqual(cached[0], 0)
        self.assertGreater(cached[1], 10)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([{"role": "user", "content": "Hello there."}, {"role": "assistant", "content": first},
                       {"role": "user", "content": "And then?"}], f)
        try:
            j = run_json("generate", "--model", TINY, "--messages", f.name, "--temperature", "0", "--max-tokens",
                         "6", "--json")
        finally:
            os.unlink(f.name)
        self.assertEqual(second, j["text"])

    def test_missing_image_is_reported_and_the_session_goes_on(self):
        rc, out, err = run("chat", "--model", DEMO4, "--max-tokens", "2", stdin="/image /nonexistent.png\n/quit\n")
        self.assertEqual(rc, 0)
        self.assertIn("image not found", err)


class Tokenize(unittest.TestCase):
    def test_ids_and_tokens_match_fixture(self):
        lines = [l for l in jsonl(shared("fixtures", "tokenizer", "qwen2-vl-2b-instruct.jsonl")) if l["text"]]
        picked = lines[::max(1, len(lines) // 8)][:8]
        for line in picked:
            args = ["tokenize", "--model", TINY, "--text", line["text"]]
            if not line["add_special_tokens"]:
                args.append("--no-special-tokens")
            j = run_json(*args)
            self.assertEqual(j["ids"], line["ids"], line["text"])
            self.assertEqual(j["tokens"], line["tokens"], line["text"])

    def test_decode(self):
        _, out, _ = run("tokenize", "--model", TINY, "--decode", "--text", "[151644, 872, 198, 9707, 0]")
        self.assertEqual(out, "<|im_start|>user\nHello!\n")
        _, out, _ = run("tokenize", "--model", TINY, "--decode", "--no-special-tokens", "--text", "151644 9707 0")
        self.assertEqual(out, "Hello!\n")

    def test_out_of_vocabulary_id_is_an_error(self):
        rc, _, err = run("tokenize", "--model", TINY, "--decode", "--text", "[99999999]", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("vlm: error:", err)


class ChatTemplate(unittest.TestCase):
    def test_rendered_prompts_match_fixture(self):
        for case in jsonl(shared("fixtures", "chat_template", "qwen2-vl-2b-instruct.jsonl")):
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
                json.dump(case["messages"], f)
            try:
                args = ["chat-template", "--model", TINY, "--messages", f.name]
                if not case["add_generation_prompt"]:
                    args.append("--no-generation-prompt")
                if case["add_vision_id"]:
                    args.append("--add-vision-id")
                _, out, _ = run(*args)
            finally:
                os.unlink(f.name)
            self.assertEqual(out, case["rendered"], case["name"])


class ModelCommands(unittest.TestCase):
    def test_list(self):
        _, out, _ = run("list")
        for word in ("qwen2_vl", "paligemma", "gemma3", "mlx-community/paligemma-3b-mix-448-8bit",
                     "mlx-community/Qwen2-VL-2B-Instruct-4bit", "mlx-community/gemma-3-4b-it-qat-4bit",
                     "google/gemma-3-4b-it"):
            self.assertIn(word, out)

    def test_info_counts_parameters_and_quantization(self):
        # demo/README.md: 10,703,680 parameters; the 4-bit copy quantizes with group 64.
        bf16 = run_json("info", shared("demo", "qwen2-vl-shapes"), "--json")
        self.assertEqual(bf16["num_parameters"], 10703680)
        self.assertFalse(bf16["quantized"])
        self.assertEqual(bf16["model_type"], "qwen2_vl")
        q = run_json("info", DEMO4, "--json")
        self.assertEqual(q["num_parameters"], 10703680)
        self.assertEqual(q["quantization"], {"bits": 4, "group_size": 64})
        names = {f["name"]: f["bytes"] for f in q["files"]}
        self.assertEqual(names["model.safetensors"], os.path.getsize(os.path.join(DEMO4, "model.safetensors")))
        _, text, _ = run("info", DEMO4)
        self.assertIn("4-bit, group size 64", text)

    def test_bench_json(self):
        j = run_json("bench", "--model", DEMO4, "--image", os.path.join(SHAPES, "shapes_02.png"), "--prompt-tokens",
                     "32", "--gen-tokens", "5", "--follow-up", "8", "--roof", "--json")
        self.assertEqual(j["generated_tokens"], 5)  # EOS ignored
        self.assertGreater(j["prompt_tokens"], 32 + 16)
        for key in ("load_ms", "prompt_tps", "decode_tps", "image_encode_ms", "peak_rss_bytes",
                    "time_to_first_token_ms", "image_encode_gflop", "image_encode_gflops", "prompt_gflop",
                    "prompt_gflops", "decode_weight_gb_per_step", "decode_weight_gbs"):
            self.assertGreater(j[key], 0, key)
        self.assertGreater(j["prompt_gflop"], j["image_encode_gflop"])  # the prompt includes the image
        self.assertEqual(j["cached_tokens"], 0)
        # The follow-up turn reuses the first turn's prompt and does not encode the image again.
        follow = j["follow_up"]
        self.assertGreater(follow["prompt_tokens"], j["prompt_tokens"] + 8)
        self.assertGreaterEqual(follow["cached_tokens"], j["prompt_tokens"])
        self.assertEqual(follow["image_encode_ms"], 0)
        self.assertGreater(follow["time_to_first_token_ms"], 0)
        # --roof: measured after the run, on the model's threads; 0 marks an instruction the CPU lacks.
        roof = j["roof"]
        self.assertGreaterEqual(roof["threads"], 1)
        self.assertGreater(roof["read_gbs"], 0)
        for key in ("f32_fma_gflops", "bf16_dot_gflops", "int8_dot_gops"):
            self.assertGreaterEqual(roof[key], 0, key)
        self.assertLess(j["peak_rss_bytes"], 512 << 20)  # the roof's 512 MiB buffer is not counted


class Errors(unittest.TestCase):
    def test_missing_model_directory(self):
        rc, _, err = run("generate", "--model", "/nonexistent/model", "--prompt", "hi", check=False)
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("vlm: error:"), err)
        self.assertIn("vlm download", err)

    def test_hub_id_offline_not_cached(self):
        with tempfile.TemporaryDirectory() as cache:
            rc, _, err = run("generate", "--model", "someorg/somemodel", "--prompt", "hi", check=False,
                             env={"HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1"})
        self.assertEqual(rc, 1)
        self.assertIn("offline", err)
        self.assertIn("vlm download someorg/somemodel", err)

    def test_bad_arguments_exit_2_with_usage(self):
        for args in (["generate", "--model", TINY, "--temperature", "abc"], ["generate", "--bogus"],
                     ["generate", "--prompt", "x"], ["frobnicate"], [], ["tokenize", "--model", TINY],
                     ["generate", "--model", TINY, "--resize", "12"], ["info"],
                     ["serve", "--model", TINY, "--precision", "half"],
                     ["serve", "--model", TINY, "--prefill-chunk", "0"], ["bench", "--model", TINY, "--prefill-chunk", "x"],
                     ["batch", "--model", TINY, "--input", "in.jsonl", "--output", "out.jsonl", "--prefill-chunk", "0"]):
            rc, out, err = run(*args, check=False)
            self.assertEqual(rc, 2, args)
            self.assertIn("usage:", err, args)

    def test_missing_image(self):
        rc, _, err = run("generate", "--model", DEMO4, "--image", "/nonexistent.png", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("/nonexistent.png", err)

    def test_help(self):
        rc, out, _ = run("generate", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("--max-tokens", out)


if __name__ == "__main__":
    main()
