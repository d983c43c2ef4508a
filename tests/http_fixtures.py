"""A local HTTP server for download tests: serves files from a dict and counts requests."""

from __future__ import annotations

import collections
import contextlib
import http.server
import io
import tarfile
import threading
from pathlib import Path


def isolated_cache(tmp_path: Path, monkeypatch) -> Path:
    """Give a test its own download cache root (`ULMFIT_CACHE`) and no mirror; returns the
    root. Use it in an autouse fixture of a module that downloads."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ULMFIT_CACHE", str(root))
    monkeypatch.delenv("ULMFIT_MIRROR", raising=False)
    return root


def tgz(members: dict[str, bytes]) -> bytes:
    """A .tar.gz archive of `{name: content}`, in memory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class LocalServer:
    """An HTTP server on 127.0.0.1 in a daemon thread, for a `BaseHTTPRequestHandler`;
    `with` starts and stops it, `url` is its address."""

    def __init__(self, handler: type):
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class FileServer(LocalServer):
    """Serves `files[path] = bytes` on 127.0.0.1 in a thread.

    `requests[path]` counts GETs; a path in `truncate` announces its full Content-Length but
    sends only the first half of the body, then closes the connection.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: collections.Counter = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the name http.server calls
                server.requests[self.path] += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


@contextlib.contextmanager
def serving(files: dict[str, bytes] | None = None):
    with FileServer() as server:
        server.files.update(files or {})
        yield server
