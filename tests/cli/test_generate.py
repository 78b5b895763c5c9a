"""`vlm generate` against the Qwen2-VL oracle fixtures and the trained demo model."""
import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import main, run, run_json, shared  # noqa: E402

QWEN = shared("fixtures", "qwen2_vl")
DEMO = shared("demo")


def load_case(name):
    with open(os.path.join(QWEN, "cases", name + ".json")) as f:
        return json.load(f)


class FixtureGreedy(unittest.TestCase):
    """Greedy ids of the tiny random-weight model (16 tokens) equal the PyTorch reference."""

    def check_case(self, name, *extra, model="tiny-bf16"):
        case = load_case(name)
        # The case paths are relative to the fixture folder: write the chat beside a link to it so that
        # relative-path resolution against the JSON file's folder is exercised too.
        with tempfile.TemporaryDirectory() as tmp:
            os.symlink(os.path.join(QWEN, "images"), os.path.join(tmp, "images"))
            messages = json.loads(json.dumps(case["messages"]).replace("../../images/", shared("images") + "/"))
            path = os.path.join(tmp, "chat.json")
            with open(path, "w") as f:
                json.dump(messages, f)
            out = run_json("generate", "--model", os.path.join(QWEN, model), "--messages", path,
                           "--temperature", "0", "--max-tokens", "16", "--json", *extra)
        expected = case["models"][model]["generated_ids"]
        self.assertEqual(out["token_ids"], expected)
        self.assertEqual(out["finish_reason"], "length" if len(expected) == 16 else "stop")
        self.assertEqual(out["stats"]["prompt_tokens"], case["num_tokens"])
        self.assertEqual(out["stats"]["generated_tokens"], len(expected))

    def test_text_only(self):
        self.check_case("01_text_only")

    def test_one_image(self):
        self.check_case("02_one_image")

    def test_rotating_kv_cache_large_enough_changes_nothing(self):
        # 01_text_only has 27 prompt tokens; 16 generated tokens fit in a 64-token window.
        self.check_case("01_text_only", "--max-kv-size", "64")

    def test_two_images(self):
        self.check_case("03_two_images")

    def test_video_frames(self):
        self.check_case("06_video_4frames")

    def test_multi_turn(self):
        self.check_case("07_multi_turn")

    def test_system_text_image_text(self):
        self.check_case("08_system_text_image_text")

    def test_mlx_4bit(self):
        self.check_case("02_one_image", model="tiny-mlx-4bit")

    def test_prompt_and_image_flags(self):
        case = load_case("02_one_image")
        out = run_json("generate", "--model", os.path.join(QWEN, "tiny-bf16"),
                       "--image", shared("images", "astronaut.png"),
                       "--prompt", "Describe this image.", "--temperature", "0", "--max-tokens", "16", "--json",
                       "--logprobs", "3")
        self.assertEqual(out["token_ids"], case["models"]["tiny-bf16"]["generated_ids"])
        self.assertEqual(len(out["logprobs"]), 16)
        for lp, tid in zip(out["logprobs"], out["token_ids"]):
            self.assertEqual(lp["id"], tid)
            self.assertEqual(len(lp["top_logprobs"]), 3)
            # Greedy: the chosen token is the most likely one, and probabilities are <= 1.
            self.assertEqual(lp["top_logprobs"][0]["id"], tid)
            self.assertLessEqual(lp["logprob"], 0.0)
            values = [t["logprob"] for t in lp["top_logprobs"]]
            self.assertEqual(values, sorted(values, reverse=True))


class VideoFile(unittest.TestCase):
    """--video decodes and samples a real video file (made here with the ffmpeg tool when present)."""

    def test_video_file_smoke(self):
        import shutil
        import subprocess
        if not shutil.which("ffmpeg"):
            self.skipTest("ffmpeg not installed")
        with tempfile.TemporaryDirectory() as tmp:
            video = os.path.join(tmp, "clip.mp4")
            subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=112x84:rate=10",
                            "-t", "2", "-pix_fmt", "yuv420p", video], check=True)
            base = ["generate", "--model", os.path.join(QWEN, "tiny-bf16"), "--prompt", "What happens?",
                    "--max-tokens", "2", "--json"]
            text_only = run_json(*base)
            with_video = run_json(*base, "--video", video, "--fps", "2")
        # 2 s at 2 fps = 4 frames -> grid t = 2; 84x112 -> 6x8 patches -> 2*6*8/4 = 24 video tokens
        # plus <|vision_start|>/<|vision_end|>.
        self.assertEqual(with_video["stats"]["prompt_tokens"] - text_only["stats"]["prompt_tokens"], 26)


class DemoCaptions(unittest.TestCase):
    """The trained demo model captions its sample pictures exactly."""

    def setUp(self):
        with open(os.path.join(DEMO, "cases.json")) as f:
            self.cases = json.load(f)

    def caption(self, model, image, *extra):
        _, out, err = run("generate", "--model", os.path.join(DEMO, model),
                          "--image", os.path.join(DEMO, "images", image),
                          "--prompt", "Describe the image.", "--temperature", "0", "--max-tokens", "16", *extra)
        return out, err

    def test_streamed_caption_and_stats(self):
        out, err = self.caption("qwen2-vl-shapes-4bit", "shapes_02.png")
        self.assertEqual(out, "A purple circle above a red square.\n")
        for word in ("prompt:", "tokens/s", "image encode:", "peak memory:"):
            self.assertIn(word, err)

    def test_json_ids_match_reference(self):
        for model in ("qwen2-vl-shapes", "qwen2-vl-shapes-4bit"):
            for case in self.cases["cases"]:
                image = os.path.basename(case["image"])
                _, out, _ = run("generate", "--model", os.path.join(DEMO, model), "--image",
                                os.path.join(DEMO, "images", image), "--prompt", "Describe the image.",
                                "--temperature", "0", "--max-tokens", "16", "--json")
                j = json.loads(out)
                self.assertEqual(j["token_ids"], case["models"][model]["generated_ids"], (model, image))
                self.assertEqual(j["text"], case["expected_caption"])
                self.assertEqual(j["finish_reason"], "stop")

    def test_stop_string_is_not_emitted(self):
        _, out, _ = run("generate", "--model", os.path.join(DEMO, "qwen2-vl-shapes-4bit"), "--image",
                        os.path.join(DEMO, "images", "shapes_02.png"), "--prompt", "Describe the image.",
                        "--temperature", "0", "--stop", "ve a r", "--json")
        j = json.loads(out)
        self.assertEqual(j["text"], "A purple circle abo")
        self.assertEqual(j["finish_reason"], "stop")

    def test_max_tokens_gives_length(self):
        _, out, _ = run("generate", "--model", os.path.join(DEMO, "qwen2-vl-shapes-4bit"), "--image",
                        os.path.join(DEMO, "images", "shapes_02.png"), "--prompt", "Describe the image.",
                        "--max-tokens", "3", "--json")
        j = json.loads(out)
        self.assertEqual(j["finish_reason"], "length")
        self.assertEqual(len(j["token_ids"]), 3)
        self.assertEqual(j["text"], "A purple circle")

    def test_seeded_sampling_is_reproducible(self):
        args = ("generate", "--model", os.path.join(DEMO, "qwen2-vl-shapes-4bit"), "--image",
                os.path.join(DEMO, "images", "shapes_02.png"), "--prompt", "Describe the image.",
                "--temperature", "5", "--top-k", "50", "--seed", "11", "--max-tokens", "8", "--json")
        a = run_json(*args)
        b = run_json(*args)
        self.assertEqual(a["token_ids"], b["token_ids"])

    def test_data_url_and_openai_parts(self):
        import base64
        with open(os.path.join(DEMO, "images", "shapes_02.png"), "rb") as f:
            data = base64.b64encode(f.read()).decode()
        messages = [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}},
            {"type": "text", "text": "Describe the image."}]}]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(messages, f)
        try:
            j = run_json("generate", "--model", os.path.join(DEMO, "qwen2-vl-shapes-4bit"), "--messages", f.name,
                         "--temperature", "0", "--json")
        finally:
            os.unlink(f.name)
        self.assertEqual(j["text"], "A purple circle above a red square.")


class PaliGemmaGreedy(unittest.TestCase):
    """Greedy ids of the tiny PaliGemma fixtures equal the reference."""

    def test_cases(self):
        # The fixture dirs hold their tokenizer files as small files naming the real file (copied
        # symlinks); the loader follows them.
        root = shared("fixtures", "paligemma")
        for name in ("caption_en_astronaut", "empty_prompt_camera_gray", "detect_cat_chelsea_rgba"):
            with open(os.path.join(root, "cases", name + ".json")) as f:
                case = json.load(f)
            image = shared(case["image"]["file_from_repo_root"].split("/", 1)[1])
            for model in ("tiny-bf16", "tiny-mlx-8bit"):
                expected = case["models"][model]["generated_ids"]
                j = run_json("generate", "--model", os.path.join(root, model), "--image", image, "--prompt",
                             case["prompt"], "--temperature", "0", "--max-tokens", str(len(expected)), "--json")
                self.assertEqual(j["token_ids"], expected, (name, model))
                self.assertEqual(j["stats"]["prompt_tokens"], len(case["input_ids"]), (name, model))

    def test_bounded_kv_cache_keeps_the_bidirectional_prompt(self):
        # The prefix-LM prompt must stay cached: a window that cannot hold it is a clear error,
        # a larger one works (and evicts only generated tokens).
        args = ["generate", "--model", os.path.join(shared("fixtures", "paligemma"), "tiny-bf16"), "--image",
                shared("images", "coffee_20x13.jpg"), "--prompt", "caption en", "--max-tokens", "2",
                "--temperature", "0"]
        rc, _, err = run(*args, "--max-kv-size", "8", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("bidirectional prompt", err)
        rc, out, _ = run(*args, "--max-kv-size", "64", check=False)
        self.assertEqual(rc, 0)
        rc, plain, _ = run(*args, check=False)
        self.assertEqual(out, plain)

    def test_draw_boxes_writes_a_png_of_the_image_size(self):
        root = shared("fixtures", "paligemma")
        image = shared("images", "chelsea_rgba.png")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "boxes.png")
            rc, _, err = run("generate", "--model", os.path.join(root, "tiny-bf16"), "--image", image, "--prompt",
                             "detect cat", "--temperature", "0", "--max-tokens", "4", "--draw-boxes", out)
            self.assertEqual(rc, 0, err)
            self.assertIn("boxes:", err)
            with open(out, "rb") as f:
                head = f.read(24)
            self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
            self.assertEqual(struct.unpack(">II", head[16:24]), (451, 300))
            rc, _, err = run("generate", "--model", os.path.join(root, "tiny-bf16"), "--prompt", "detect cat",
                             "--draw-boxes", out, check=False)
            self.assertEqual(rc, 2)
            self.assertIn("--draw-boxes needs --image", err)

class PromptCacheFile(unittest.TestCase):
    """--prompt-cache FILE: created on first use, reused when its prefix matches, answers unchanged; files of
    another model or precision, and corrupt or truncated ones, get a clear error (exit 1), never a crash."""

    def generate(self, model, prompt, *extra, check=True):
        return run("generate", "--model", os.path.join(QWEN, model) if "/" not in model else model,
                   "--image", shared("images", "camera.png"), "--prompt", prompt, "--temperature", "0",
                   "--max-tokens", "8", "--json", *extra, check=check)

    def test_reuse_and_refusals(self):
        with tempfile.TemporaryDirectory() as tmp:
            cache = os.path.join(tmp, "prompt.safetensors")
            plain = json.loads(self.generate("tiny-bf16", "What is in the picture?")[1])
            first = json.loads(self.generate("tiny-bf16", "What is in the picture?", "--prompt-cache", cache)[1])
            self.assertTrue(os.path.exists(cache))
            self.assertEqual(first["stats"]["cached_tokens"], 0)
            self.assertEqual(first["token_ids"], plain["token_ids"])
            again = json.loads(self.generate("tiny-bf16", "What is in the picture?", "--prompt-cache", cache)[1])
            self.assertEqual(again["token_ids"], plain["token_ids"])
            self.assertEqual(again["stats"]["cached_tokens"], plain["stats"]["prompt_tokens"] - 1)
            self.assertEqual(again["stats"]["image_encode_ms"], 0)
            other = json.loads(self.generate("tiny-bf16", "What colour is it?", "--prompt-cache", cache)[1])
            want = json.loads(self.generate("tiny-bf16", "What colour is it?")[1])
            self.assertEqual(other["token_ids"], want["token_ids"])
            self.assertGreater(other["stats"]["cached_tokens"], 0)
            self.assertLess(other["stats"]["cached_tokens"], other["stats"]["prompt_tokens"])

            with open(cache, "rb") as f:
                data = f.read()
            header = json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])
            self.assertEqual(header["__metadata__"]["model_type"], "qwen2_vl")
            self.assertEqual(len(json.loads(header["__metadata__"]["token_ids"])), header["keys"]["shape"][0])

            def refused(model, path, *extra):
                rc, out, err = self.generate(model, "What is in the picture?", "--prompt-cache", path, *extra,
                                             check=False)
                self.assertEqual(rc, 1, err)
                self.assertIn(path, err)
                return err

            self.assertIn("another model", refused(shared("fixtures", "paligemma", "tiny-bf16"), cache))
            self.assertIn("config_sha256", refused("tiny-mlx-4bit", cache))
            self.assertIn("precision", refused("tiny-bf16", cache, "--precision", "fast"))
            for name, content in (("truncated", data[:len(data) // 2]), ("empty", b""), ("junk", b"\x07" * 64),
                                  ("header only", data[:8 + struct.unpack("<Q", data[:8])[0]])):
                path = os.path.join(tmp, name.replace(" ", "_"))
                with open(path, "wb") as f:
                    f.write(content)
                refused("tiny-bf16", path)
            # Still intact after the refusals: they never overwrite the file.
            with open(cache, "rb") as f:
                self.assertEqual(f.read(), data)


if __name__ == "__main__":
    main()
