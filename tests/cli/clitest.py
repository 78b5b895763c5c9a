"""Helpers for the `vlm` end-to-end tests: argv is [script, vlm_binary, shared_dir]."""
import json
import os
import subprocess
import sys
import unittest

VLM = sys.argv[1] if len(sys.argv) > 1 else "vlm"
SHARED = os.environ.get("VLM_SHARED_DIR") or (sys.argv[2] if len(sys.argv) > 2 else "")


def shared(*parts):
    return os.path.join(SHARED, *parts)


def run(*args, stdin=None, env=None, check=True):
    """Runs vlm with `args`; returns (returncode, stdout, stderr) as text."""
    full_env = dict(os.environ)
    full_env.setdefault("VLM_THREADS", "2")
    full_env["HF_HUB_OFFLINE"] = "1"  # the tests never reach the network
    if env:
        full_env.update(env)
    p = subprocess.run([VLM, *[str(a) for a in args]], input=stdin, capture_output=True, text=True, env=full_env,
                       timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"vlm {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p.returncode, p.stdout, p.stderr


def run_json(*args, **kw):
    _, out, _ = run(*args, **kw)
    return json.loads(out)


def main():
    if not SHARED or not os.path.isdir(SHARED):
        print(f"shared fixtures folder not found ({SHARED!r}): skipped")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], "-v"])
