"""`vlm serve`: /metrics is valid Prometheus text (checked with prometheus_client's parser) and its counters
move with requests; /ready is 200 once serving and 503 while draining."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import VLM, main, shared  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # python3-prometheus-client (scripts/install-deps.sh)
    text_string_to_metric_families = None


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type", "")


def samples(text):
    """{(name, frozenset(labels)): value} over all families."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@unittest.skipIf(text_string_to_metric_families is None, "python3-prometheus-client is not installed")
class Metrics(unittest.TestCase):
    def test_metrics_and_readiness(self):
        model = shared("demo", "qwen2-vl-shapes-4bit")
        if not os.path.isdir(model):
            self.skipTest("demo model not found")
        env = dict(os.environ, VLM_THREADS="2", HF_HUB_OFFLINE="1")
        p = subprocess.Popen([VLM, "serve", "--model", model, "--port", "0", "--shutdown-timeout", "1"], env=env,
                             stderr=subprocess.PIPE, text=True)
        terminated = False  # a second SIGTERM would exit at once
        try:
            port = None
            for line in p.stderr:
                m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
                if m:
                    port = int(m.group(1))
                    break
            self.assertIsNotNone(port, "the server did not start")
            base = f"http://127.0.0.1:{port}"
            self.assertEqual(get(base + "/ready")[0], 200)

            status, text, content_type = get(base + "/metrics")
            self.assertEqual(status, 200)
            self.assertIn("version=0.0.4", content_type)
            before = samples(text)
            self.assertGreater(before[("vlm_model_load_seconds", frozenset())], 0)

            body = json.dumps({"model": model, "max_tokens": 5, "temperature": 0,
                               "messages": [{"role": "user", "content": "Describe the image."}]}).encode()
            for _ in range(2):
                req = urllib.request.Request(base + "/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    self.assertEqual(r.status, 200)
            bad = urllib.request.Request(base + "/v1/chat/completions", b"{", {"Content-Type": "application/json"})
            with self.assertRaises(urllib.error.HTTPError):
                urllib.request.urlopen(bad, timeout=30)

            after = samples(get(base + "/metrics")[1])
            ok = ("vlm_requests_total", frozenset({("status", "200")}))
            self.assertEqual(after[ok] - before.get(ok, 0), 2)
            self.assertEqual(after[("vlm_requests_total", frozenset({("status", "400")}))], 1)
            self.assertGreater(after[("vlm_prompt_tokens_total", frozenset())], 0)
            self.assertGreater(after[("vlm_generation_tokens_total", frozenset())], 0)
            self.assertEqual(after[("vlm_time_to_first_token_seconds_count", frozenset())], 2)
            self.assertEqual(after[("vlm_time_to_first_token_seconds_bucket", frozenset({("le", "+Inf")}))], 2)
            self.assertEqual(after[("vlm_queue_depth", frozenset())], 0)
            self.assertEqual(after[("vlm_active_slots", frozenset())], 0)

            # Draining: a long generation holds the server after SIGTERM; readiness turns 503 meanwhile.
            endless = json.dumps({"model": model, "max_tokens": 20000, "ignore_eos": True,
                                  "messages": [{"role": "user", "content": "Count."}]}).encode()
            answer = {}

            def generate():
                req = urllib.request.Request(base + "/v1/chat/completions", endless,
                                             {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        answer["status"] = r.status
                except urllib.error.HTTPError as e:
                    answer["status"] = e.code

            client = threading.Thread(target=generate)
            client.start()
            deadline = time.time() + 30
            while samples(get(base + "/metrics")[1])[("vlm_active_slots", frozenset())] < 1:
                self.assertLess(time.time(), deadline, "the long generation never started")
                time.sleep(0.02)
            p.send_signal(signal.SIGTERM)
            terminated = True
            deadline = time.time() + 10
            while get(base + "/ready")[0] != 503:
                self.assertLess(time.time(), deadline, "/ready stayed 200 while draining")
                time.sleep(0.02)
            client.join()
            self.assertEqual(answer.get("status"), 503)  # cancelled when --shutdown-timeout ran out
        finally:
            p.stderr.close()
            if not terminated:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.assertEqual(p.returncode, 0)


if __name__ == "__main__":
    main()
