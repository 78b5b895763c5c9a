"""`vlm batch` with the demo model: shards add up to a single run, a killed run resumes without duplicates,
a torn last line is repaired, and bad lines become per-line errors."""
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import VLM, main, run, shared  # noqa: E402

IMAGES = shared("demo", "images")
PROMPTS = ["Describe the image.", "What shapes are there?", "What color is the largest shape?"]


def model_dir():
    for path in (shared("demo", "qwen2-vl-shapes-4bit"),
                 os.path.join(os.path.dirname(__file__), "..", "..", "models", "qwen2-vl-shapes-4bit")):
        if os.path.isdir(path):
            return path
    raise unittest.SkipTest("demo model not found")


def request(custom_id, image=None, prompt="Describe the image.", max_tokens=6):
    content = [{"type": "text", "text": prompt}]
    if image:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "demo", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                     "temperature": 0}}


def write_lines(path, items):
    with open(path, "w") as f:
        for item in items:
            f.write((item if isinstance(item, str) else json.dumps(item)) + "\n")


def read_results(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def count_lines(path):
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def contents(results):
    """custom_id -> the answer's text, for 200s."""
    return {r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in results}


# Under sanitizers (5-20x slower) the request lists are shorter; the Release pass runs them whole.
SANITIZED = os.environ.get("VLM_TEST_SANITIZED") == "1"


class Batch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = model_dir()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.requests = [request(f"req-{i:02d}", f"shapes_{i % 6 + 1:02d}.png", PROMPTS[i % 3])
                        for i in range(12 if SANITIZED else 30)]
        cls.input = cls.path("requests.jsonl")
        write_lines(cls.input, cls.requests)
        cls.single = read_results(cls.batch("single.jsonl", "--parallel", "2"))

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp.name, name)

    @classmethod
    def batch(cls, output, *extra, input=None, env=None, check=True):
        out = cls.path(output)
        rc, _, err = run("batch", "--model", cls.model, "--input", input or cls.input, "--output", out,
                         "--media-root", IMAGES, *extra, env=env, check=check)
        return out if check else (rc, err)

    def test_single_run_answers_everything(self):
        self.assertEqual(sorted(r["custom_id"] for r in self.single), [r["custom_id"] for r in self.requests])
        for r in self.single:
            self.assertEqual(r["response"]["status_code"], 200)
            self.assertIsNone(r["error"])
            body = r["response"]["body"]
            self.assertEqual(body["object"], "chat.completion")
            self.assertTrue(body["choices"][0]["message"]["content"])
            self.assertGreater(body["usage"]["prompt_tokens"], 0)
        self.assertGreater(len(set(contents(self.single).values())), 1, "every request got the same answer")

    def test_shards_add_up_to_a_single_run(self):
        results = []
        results += read_results(self.batch("shard0.jsonl", "--shard", "0/3"))
        # Short prompt turns interleaved with the other requests' steps change no answer.
        results += read_results(self.batch("shard1.jsonl", "--shard", "1/3", "--parallel", "2", "--prefill-chunk", "4"))
        # The third shard takes its index from the environment, as a Kubernetes Indexed Job gives it.
        results += read_results(self.batch("shard2.jsonl", env={"JOB_COMPLETION_INDEX": "2", "JOB_COMPLETIONS": "3"}))
        ids = [r["custom_id"] for r in results]
        self.assertEqual(len(ids), len(set(ids)), "a request ran in two shards")
        self.assertEqual(contents(results), contents(self.single))

    def test_shard_count_must_be_known(self):
        rc, err = self.batch("nope.jsonl", env={"JOB_COMPLETION_INDEX": "1"}, check=False)
        self.assertEqual(rc, 2)
        self.assertIn("--shards", err)

    def test_killed_run_resumes_without_duplicates(self):
        # Enough requests that the run is still going when a few results are written.
        many = [request(f"k{i:03d}", f"shapes_{i % 6 + 1:02d}.png", max_tokens=12)
                for i in range(40 if SANITIZED else 150)]
        src = self.path("many.jsonl")
        write_lines(src, many)
        out = self.path("killed.jsonl")
        env = dict(os.environ, VLM_THREADS="2", HF_HUB_OFFLINE="1")
        p = subprocess.Popen([VLM, "batch", "--model", self.model, "--input", src, "--output", out, "--media-root",
                              IMAGES], env=env, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if os.path.exists(out) and count_lines(out) >= 3:
                break
            time.sleep(0.002)
        killed = p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.assertTrue(killed, "the run finished before it could be killed")
        written = count_lines(out)
        self.assertLess(written, len(many))
        self.batch("killed.jsonl", input=src)
        ids = [r["custom_id"] for r in read_results(out)]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(sorted(ids), [r["custom_id"] for r in many])

    def test_torn_last_line_is_redone(self):
        out = self.path("torn.jsonl")
        with open(self.path("single.jsonl")) as f:
            lines = f.readlines()
        with open(out, "w") as f:
            f.writelines(lines[:5])
            f.write(lines[5][: len(lines[5]) // 2])  # what a kill in the middle of a write leaves
        self.batch("torn.jsonl", "--parallel", "3")
        results = read_results(out)
        self.assertEqual(len(results), len(self.requests))
        self.assertEqual(contents(results), contents(self.single))

    def test_bad_lines_become_errors(self):
        with open(os.path.join(IMAGES, "shapes_01.png"), "rb") as f:
            data_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        src = self.path("bad.jsonl")
        wrong_url = request("wrong-url")
        wrong_url["url"] = "/v1/embeddings"
        numeric_method = request("numeric-method")
        numeric_method["method"] = 1
        write_lines(src, [
            "{not json",
            request("missing-image", "no_such.png"),
            request("outside-root", "../cases.json"),
            request("not-an-image", "data:image/png;base64,aGVsbG8gd29ybGQ="),
            request("remote", "http://example.com/a.png"),
            {"custom_id": "no-messages", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}},
            wrong_url,
            numeric_method,
            request("inline-ok", data_url),
            request("text-ok"),
        ])
        by_id = {r["custom_id"]: r for r in read_results(self.batch("bad_out.jsonl", input=src))}
        self.assertEqual(len(by_id), 10)
        self.assertEqual(by_id["line-1"]["error"]["code"], "invalid_json")
        self.assertIn("bad.jsonl:1", by_id["line-1"]["error"]["message"])
        self.assertEqual(by_id["wrong-url"]["error"]["code"], "invalid_url")
        self.assertEqual(by_id["numeric-method"]["error"]["code"], "invalid_method")
        # Missing and outside the root read the same (403), as on the server: answers do not map the disk.
        expected = {"missing-image": 403, "outside-root": 403, "not-an-image": 400, "remote": 400, "no-messages": 400}
        for cid, status in expected.items():
            response = by_id[cid]["response"]
            self.assertEqual(response["status_code"], status, cid)
            self.assertIn("message", response["body"]["error"], cid)
        self.assertIn("messages[0].content[0].image_url", by_id["outside-root"]["response"]["body"]["error"]["param"])
        for cid in ("inline-ok", "text-ok"):
            self.assertEqual(by_id[cid]["response"]["status_code"], 200, cid)
        # A rerun has nothing left to do, the unparseable line included.
        self.batch("bad_out.jsonl", input=src)
        self.assertEqual(len(read_results(self.path("bad_out.jsonl"))), 10)

    def test_duplicate_custom_ids_are_refused(self):
        src = self.path("dup.jsonl")
        write_lines(src, [request("a"), request("b"), request("a")])
        rc, err = self.batch("dup_out.jsonl", input=src, check=False)
        self.assertEqual(rc, 1)
        self.assertIn("dup.jsonl:3", err)
        self.assertFalse(os.path.exists(self.path("dup_out.jsonl")) and os.path.getsize(self.path("dup_out.jsonl")))

    def test_local_paths_need_a_media_root(self):
        src = self.path("local.jsonl")
        write_lines(src, [request("local", os.path.join(IMAGES, "shapes_01.png"))])
        out = self.path("local_out.jsonl")
        run("batch", "--model", self.model, "--input", src, "--output", out)
        [result] = read_results(out)
        self.assertEqual(result["response"]["status_code"], 400)
        self.assertIn("--media-root", result["response"]["body"]["error"]["message"])

    def test_max_requests(self):
        out = self.batch("smoke.jsonl", "--max-requests", "4")
        self.assertEqual(len(read_results(out)), 4)


if __name__ == "__main__":
    main()
