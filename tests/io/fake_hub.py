#!/usr/bin/python3
"""A fake Hugging Face hub on 127.0.0.1 for the hub client tests.

Serves {repo}/resolve/{revision}/{file} like huggingface.co: X-Repo-Commit, ETag (git blob sha1) for small
files; LFS files answer 302 to a second "CDN" server on another port with X-Linked-Etag (sha256) and
X-Linked-Size. Supports HEAD, GET and Range. Every request is logged as one JSON line.

Options:
  --repo ID=DIR        serve the files of DIR as model ID (a file holding a relative path is followed,
                       as git stores symlinks that way)
  --gated ID=TOKEN     401 unless "Authorization: Bearer TOKEN"
  --corrupt ID         the CDN flips one byte of this repo's LFS files (sha256 mismatch)
  --flaky ID=N         the first CDN GET of each of this repo's LFS files drops the connection after N bytes
  --no-range ID        ignore Range headers for this repo (answers 200 with the whole file)
  --wrong-size ID      advertise an X-Linked-Size one byte short for this repo's LFS files
  --ready FILE         written with "<hub port> <cdn port>" once both servers listen
  --log FILE           request log (JSON lines)
"""
import argparse
import hashlib
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

LFS_MIN_SIZE = 100_000

args = None
repos = {}  # id -> {filename: (bytes, sha256, git sha1)}
log_lock = threading.Lock()
dropped = set()
cdn_port = 0


def load_repo(repo_dir):
    files = {}
    for name in sorted(os.listdir(repo_dir)):
        path = os.path.join(repo_dir, name)
        if not os.path.isfile(path):
            continue
        data = open(path, "rb").read()
        if len(data) < 1024 and not data.lstrip().startswith(b"{"):
            target = os.path.normpath(os.path.join(repo_dir, data.decode("utf-8", "replace").strip()))
            if os.path.isfile(target):
                data = open(target, "rb").read()
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        files[name] = (data, hashlib.sha256(data).hexdigest(), git_sha1)
    return files


def commit_of(repo_id):
    return hashlib.sha1(("commit:" + repo_id).encode()).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "FakeHub/1.0"

    def log_message(self, *a):
        pass

    def log(self):
        entry = {"server": self.server.role, "method": self.command, "path": self.path,
                 "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")}
        with log_lock, open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def error(self, status, code, message, commit=None):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_data(self, data, extra_headers, drop_after=None, honour_range=True):
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range") if honour_range else None
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        for k, v in extra_headers.items():
            self.send_header(k, v)
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "HEAD":
            return
        if drop_after is not None:
            self.wfile.write(data[start:start + drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:end])

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self.log()
        if self.server.role == "cdn":
            return self.serve_cdn()
        parts = self.path.split("?")[0].split("/")
        # ["", org, name, "resolve", revision, file...]
        if len(parts) < 6 or parts[3] != "resolve":
            return self.error(404, "NotFound", "no such route")
        repo_id = parts[1] + "/" + parts[2]
        revision, filename = unquote(parts[4]), unquote("/".join(parts[5:]))
        if repo_id not in repos:
            return self.error(404, "RepoNotFound", "Repository not found")
        token = gated.get(repo_id)
        if token and self.headers.get("Authorization") != "Bearer " + token:
            return self.error(401, "GatedRepo", "Access to model %s is restricted" % repo_id)
        commit = commit_of(repo_id)
        if revision not in ("main", commit):
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + revision)
        entry = repos[repo_id].get(filename)
        if entry is None:
            return self.error(404, "EntryNotFound", "Entry not found", commit)
        data, sha256, git_sha1 = entry
        if len(data) >= LFS_MIN_SIZE or filename.endswith(".safetensors"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/cdn/%s/%s" % (cdn_port, repo_id, sha256))
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", '"%s"' % sha256)
            self.send_header("X-Linked-Size", str(len(data) - (repo_id in args.wrong_size)))
            self.send_header("ETag", '"%s"' % git_sha1)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_data(data, {"X-Repo-Commit": commit, "ETag": 'W/"%s"' % git_sha1})

    def serve_cdn(self):
        parts = self.path.split("?")[0].split("/")  # ["", "cdn", org, name, sha]
        repo_id = "/".join(parts[2:4]) if len(parts) == 5 else ""
        files = repos.get(repo_id, {})
        match = [d for d, s, _ in files.values() if s == parts[-1]]
        if not match:
            return self.error(404, "NotFound", "no such blob")
        data = match[0]
        if repo_id in args.corrupt:
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        drop = None
        if repo_id in flaky and self.command == "GET":
            with log_lock:
                if self.path not in dropped:
                    dropped.add(self.path)
                    drop = flaky[repo_id]
        self.send_data(data, {"ETag": '"%s"' % parts[-1]}, drop, repo_id not in args.no_range)


def serve(role):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.role = role
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def main():
    global args, gated, flaky, cdn_port
    p = argparse.ArgumentParser()
    p.add_argument("--repo", action="append", default=[])
    p.add_argument("--gated", action="append", default=[])
    p.add_argument("--corrupt", action="append", default=[])
    p.add_argument("--flaky", action="append", default=[])
    p.add_argument("--no-range", action="append", default=[])
    p.add_argument("--wrong-size", action="append", default=[])
    p.add_argument("--ready", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    loaded = {}
    for spec in args.repo:
        repo_id, d = spec.split("=", 1)
        if d not in loaded:
            loaded[d] = load_repo(d)
        repos[repo_id] = loaded[d]
    gated = dict(s.split("=", 1) for s in args.gated)
    flaky = {k: int(v) for k, v in (s.split("=", 1) for s in args.flaky)}
    cdn_port = serve("cdn")
    hub_port = serve("hub")
    with open(args.ready + ".tmp", "w") as f:
        f.write("%d %d\n" % (hub_port, cdn_port))
    os.rename(args.ready + ".tmp", args.ready)
    # Exit with the test process even if it dies without killing us.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
