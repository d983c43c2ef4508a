"""A stand-in for the Hugging Face Hub's HTTP endpoints on 127.0.0.1, for `huggingface_hub`.

Enough of the API for `HfApi.create_repo`, `HfApi.upload_folder` (small files, inline
"regular" uploads), `snapshot_download` and `hf_hub_download`: repositories are dicts of
`{revision: {path: bytes}}` with a commit hash per revision. Point `huggingface_hub` at it with
`HF_ENDPOINT` (set before it is imported, or patch `huggingface_hub.constants.ENDPOINT`).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import http.server
import json
import urllib.parse

from http_fixtures import LocalServer


class HubStandIn(LocalServer):
    def __init__(self):
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.commits: dict[str, dict[str, str]] = {}
        self.requests: collections.Counter = collections.Counter()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code, body=b"", headers=None, head=False):
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, code, value):
                self._send(code, json.dumps(value).encode(), {"Content-Type": "application/json"})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _resolve(self, head: bool):
                # /{owner}/{name}/resolve/{revision}/{path}
                parts = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).split("/")
                repo, revision, path = "/".join(parts[1:3]), parts[4], "/".join(parts[5:])
                files = hub.files_at(repo, revision)
                if files is None or path not in files:
                    self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                    return
                body = files[path]
                headers = {
                    "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                    "X-Repo-Commit": hub.commit_of(repo, revision),
                    "Content-Type": "application/octet-stream",
                }
                self._send(200, body, headers, head)

            def do_HEAD(self):  # noqa: N802 - the name http.server calls
                hub.requests["HEAD " + self.path] += 1
                if "/resolve/" in self.path:
                    self._resolve(head=True)
                else:
                    self._send(404, head=True)

            def do_GET(self):  # noqa: N802
                hub.requests["GET " + self.path] += 1
                path = urllib.parse.urlparse(self.path).path
                if "/resolve/" in path:
                    self._resolve(head=False)
                    return
                if path.startswith("/api/models/"):
                    # /api/models/{owner}/{name}[/revision/{revision} | /tree/{revision}]
                    parts = urllib.parse.unquote(path).split("/")
                    repo = "/".join(parts[3:5])
                    revision = parts[6] if len(parts) > 6 else "main"
                    files = hub.files_at(repo, revision)
                    if len(parts) > 5 and parts[5] == "tree" and files is not None:
                        self._json(
                            200,
                            [
                                {
                                    "type": "file",
                                    "path": name,
                                    "size": len(body),
                                    "oid": hashlib.sha1(body).hexdigest(),
                                }
                                for name, body in sorted(files.items())
                            ],
                        )
                        return
                    if files is None:
                        self._send(404, b"", {"X-Error-Code": "RepoNotFound"})
                        return
                    self._json(
                        200,
                        {
                            "id": repo,
                            "modelId": repo,
                            "sha": hub.commit_of(repo, revision),
                            "siblings": [{"rfilename": name} for name in sorted(files)],
                            "private": False,
                        },
                    )
                    return
                self._send(404)

            def do_POST(self):  # noqa: N802
                hub.requests["POST " + self.path] += 1
                path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
                body = self._body()
                if path == "/api/validate-yaml":  # the model card's metadata: accepted
                    self._json(200, {"warnings": [], "errors": []})
                    return
                if path == "/api/repos/create":
                    request = json.loads(body)
                    repo = f"{request.get('organization') or 'user'}/{request['name']}"
                    hub.repos.setdefault(repo, {"main": {}})
                    hub.commits.setdefault(repo, {"main": "0" * 40})
                    self._json(200, {"url": f"{hub.url}/{repo}", "name": repo})
                    return
                parts = path.split("/")
                if path.startswith("/api/models/") and parts[5] == "preupload":
                    files = json.loads(body)["files"]
                    self._json(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                    return
                if path.startswith("/api/models/") and parts[5] == "commit":
                    repo, revision = "/".join(parts[3:5]), parts[6]
                    files = dict(hub.repos.setdefault(repo, {}).get(revision, {}))
                    for line in body.decode().splitlines():
                        record = json.loads(line)
                        if record["key"] == "file":
                            value = record["value"]
                            files[value["path"]] = base64.b64decode(value["content"])
                    hub.repos[repo][revision] = files
                    digest = hashlib.sha1(json.dumps(sorted(files)).encode() + body).hexdigest()
                    hub.commits.setdefault(repo, {})[revision] = digest
                    self._json(
                        200,
                        {"commitUrl": f"{hub.url}/{repo}/commit/{digest}", "commitOid": digest},
                    )
                    return
                self._send(404)

            def log_message(self, *args):
                pass

        super().__init__(Handler)

    def files_at(self, repo: str, revision: str) -> dict[str, bytes] | None:
        """The files of `repo` at a revision name or a commit hash (None: no such revision)."""
        revisions = self.repos.get(repo, {})
        if revision in revisions:
            return revisions[revision]
        for name, commit in self.commits.get(repo, {}).items():
            if commit == revision:
                return revisions.get(name)
        return None

    def commit_of(self, repo: str, revision: str) -> str:
        commits = self.commits[repo]
        return commits.get(revision, revision)
