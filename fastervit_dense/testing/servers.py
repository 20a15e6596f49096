"""Loopback servers and caches for tests that must not reach the network: a file server on
127.0.0.1 with well-behaved and misbehaving routes, and a Hugging Face cache filled by hand."""
import hashlib
import http.server
import os
import threading
import time
import urllib.parse
from collections import Counter

__all__ = ['FileServer', 'fill_hf_cache']


class FileServer:
    """Serves registered byte strings on 127.0.0.1 and counts the requests per path.

    Route kinds: ``ok``; ``short`` (announces the full Content-Length, sends half, closes);
    ``nolength`` (no Content-Length; the body ends when the connection closes); ``slow`` (chunks
    with pauses, and after the first half it waits for :meth:`release`, at most 30 s);
    ``redirect`` (302 to the path given as body); ``stall`` (never answers until shut down);
    ``hub-error`` (a Hugging Face Hub error: 404 with the body as ``X-Error-Code``). HEAD gets
    the headers of GET. Anything unregistered is a 404."""

    def __init__(self):
        self.routes = {}
        self.counts = Counter()
        self.user_agents = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.closing = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 30  # a stuck client cannot hold a handler thread forever

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner._handle(self)

            def do_HEAD(self):
                owner._handle(self, head=True)

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients that hung up: expected
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05},
                                       daemon=True)
        self.thread.start()
        self.running = True

    def add(self, path: str, body: bytes, kind: str = 'ok', headers: dict = None) -> str:
        self.routes[path] = (kind, body, headers or {})
        return self.url(path)

    def url(self, path: str) -> str:
        return f'http://127.0.0.1:{self.httpd.server_address[1]}{path}'

    @property
    def total_requests(self) -> int:
        return sum(self.counts.values())

    def release(self):
        self.gate.set()

    def shutdown(self):
        if self.running:
            self.running = False
            self.closing.set()
            self.gate.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)

    def _handle(self, request, head=False):
        path = urllib.parse.urlsplit(request.path).path
        with self.lock:
            self.counts[path] += 0 if head else 1  # counts downloads: GET requests
            self.user_agents.append(request.headers.get('User-Agent'))
        if path not in self.routes:
            request.send_error(404, 'Not Found')
            return
        kind, body, headers = self.routes[path]
        if kind == 'hub-error':
            request.send_response(404)
            request.send_header('X-Error-Code', body.decode())
            request.send_header('Content-Length', '0')
            request.end_headers()
            return
        if kind == 'stall':
            self.closing.wait(timeout=30)
            return
        if kind == 'redirect':
            request.send_response(302)
            request.send_header('Location', self.url(body.decode()))
            request.send_header('Content-Length', '0')
            request.end_headers()
            return
        request.send_response(200)
        request.send_header('Content-Type', 'application/octet-stream')
        if kind != 'nolength':
            request.send_header('Content-Length', str(len(body)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        if head:
            pass
        elif kind == 'short':
            request.wfile.write(body[:len(body) // 2])
        elif kind == 'slow':
            chunks = [body[i:i + len(body) // 8 + 1] for i in range(0, len(body), len(body) // 8 + 1)]
            for i, chunk in enumerate(chunks):
                if i == len(chunks) // 2:
                    self.gate.wait(timeout=30)
                request.wfile.write(chunk)
                time.sleep(0.05)
        else:
            request.wfile.write(body)
        request.close_connection = True  # HTTP/1.0: the connection ends with the response


def fill_hf_cache(hf_home, repo_id: str, files: dict, ref: str = 'main', commit: str = 'a' * 40
                  ) -> dict:
    """Puts ``files`` (name -> bytes) into a Hugging Face cache under ``hf_home`` in
    huggingface_hub's layout (``hub/models--OWNER--REPO/{blobs,refs,snapshots}``, snapshot files
    being relative symlinks to blobs named by their hash), as revision ``ref`` at ``commit``.
    Returns the snapshot paths by name; with ``HF_HOME=hf_home`` and ``HF_HUB_OFFLINE=1``
    huggingface_hub resolves them without any network."""
    repo_dir = os.path.join(os.fspath(hf_home), 'hub', 'models--' + repo_id.replace('/', '--'))
    os.makedirs(os.path.join(repo_dir, 'refs'), exist_ok=True)
    os.makedirs(os.path.join(repo_dir, 'blobs'), exist_ok=True)
    with open(os.path.join(repo_dir, 'refs', ref), 'w') as f:
        f.write(commit)
    paths = {}
    for name, data in files.items():
        blob = os.path.join(repo_dir, 'blobs', hashlib.sha256(data).hexdigest())
        with open(blob, 'wb') as f:
            f.write(data)
        link = os.path.join(repo_dir, 'snapshots', commit, name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
        paths[name] = link
    return paths
