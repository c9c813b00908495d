"""A Hugging Face Hub on 127.0.0.1 for tests: the endpoints huggingface_hub 0.36 uses to list a
model repository and download a file from it, over real HTTP.

* ``GET /api/models/ORG/NAME[/revision/REV]``: the model info (``sha`` = the commit, ``siblings``).
* ``HEAD /ORG/NAME/resolve/REV/FILE``: ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the file's
  sha256, as the Hub gives for LFS files) and ``Content-Length`` / ``X-Linked-Size``.
* ``GET`` of the same path: the bytes, honouring ``Range: bytes=N-`` with a 206.

Files are served from existing paths (a byte range of them), so the catalog's GGUF files are
used in place. Every request is recorded; ``drop_once[FILE] = N`` makes the first plain GET of
FILE send N bytes of the promised length and close the connection.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Blob:
    """Bytes [offset, offset + length) of a file on disk."""

    source: Path
    offset: int
    length: int
    sha256: str

    @classmethod
    def of(cls, source: Path, offset: int = 0, length: int | None = None) -> Blob:
        size = source.stat().st_size - offset if length is None else length
        h = hashlib.sha256()
        with source.open("rb") as f:
            f.seek(offset)
            left = size
            while left:
                chunk = f.read(min(left, 1 << 22))
                h.update(chunk)
                left -= len(chunk)
        return cls(source, offset, size, h.hexdigest())


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None


class FakeHub:
    """Repositories (name -> {file: Blob}) served at :attr:`url` until :meth:`stop`."""

    def __init__(self, repos: dict[str, dict[str, Blob]]) -> None:
        self.repos = repos
        self.commits = {r: hashlib.sha1(json.dumps(sorted((f, b.sha256) for f, b in files.items())).encode())
                        .hexdigest() for r, files in repos.items()}
        self.requests: list[Seen] = []
        self.drop_once: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def downloads(self, file: str) -> list[Seen]:
        """The GET requests for one file's bytes."""
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{file}")]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _record(self) -> None:
                with hub._lock:
                    hub.requests.append(Seen(self.command, self.path.split("?")[0], self.headers.get("Range")))

            def _json(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _not_found(self) -> None:
                self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

            def do_GET(self) -> None:
                self._record()
                path = self.path.split("?")[0]
                if path.startswith("/api/models/"):
                    repo = "/".join(path[len("/api/models/"):].split("/")[:2])
                    if repo not in hub.repos:
                        return self._not_found()
                    return self._json(200, {"id": repo, "modelId": repo, "sha": hub.commits[repo],
                                            "private": False, "tags": ["gguf"],
                                            "siblings": [{"rfilename": f} for f in hub.repos[repo]]})
                self._file(body=True)

            def do_HEAD(self) -> None:
                self._record()
                self._file(body=False)

            def _file(self, body: bool) -> None:
                pieces = self.path.split("?")[0].lstrip("/").split("/")
                repo, file = "/".join(pieces[:2]), "/".join(pieces[4:])
                if len(pieces) < 5 or pieces[2] != "resolve" or repo not in hub.repos:
                    return self._not_found()
                blob = hub.repos[repo].get(file)
                if blob is None:
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(blob.length - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{blob.length - 1}/{blob.length}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{blob.sha256}"')
                self.send_header("X-Linked-Etag", f'"{blob.sha256}"')
                self.send_header("X-Linked-Size", str(blob.length))
                self.send_header("X-Repo-Commit", hub.commits[repo])
                self.end_headers()
                if not body:
                    return
                stop_at = blob.length
                with hub._lock:
                    if not start and file in hub.drop_once:
                        stop_at = hub.drop_once.pop(file)
                with blob.source.open("rb") as f:
                    f.seek(blob.offset + start)
                    pos = start
                    while pos < stop_at:
                        chunk = f.read(min(1 << 20, stop_at - pos))
                        self.wfile.write(chunk)
                        pos += len(chunk)
                if stop_at < blob.length:  # the connection drops mid-file
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        return Handler
