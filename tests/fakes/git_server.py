"""A Git server on 127.0.0.1 for the tests: bare repositories served by the real
`git http-backend` (fetch and push), a private one behind basic auth, one that redirects and one
that never answers. It keeps every request line and header, to show what a client sent."""

from __future__ import annotations

import base64
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


class GitServer:
    """`url(name)` is `http://127.0.0.1:<port>/<name>.git`; `private[name] = token` guards one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.private: dict[str, str] = {}
        self.redirects: dict[str, str] = {}  # name -> the Location it answers with
        self.requests: list[str] = []  # request line and headers of each request
        self.hanging = threading.Event()  # set when closing: the hanging request ends
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                outer.handle(self)

            def do_POST(self) -> None:
                outer.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.port = self.http.server_port
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"{self.origin}/{name}.git"

    def bare(self, name: str) -> Path:
        """An empty bare repository `name` that accepts pushes."""
        path = self.root / f"{name}.git"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
        git("config", "http.receivepack", "true", cwd=path)
        return path

    def repository(self, name: str, files: dict[str, bytes], *, links: dict[str, str] = {}) -> str:  # noqa: B006
        """A bare repository `name` whose one commit on main holds `files` and symlinks."""
        bare = self.bare(name)
        work = self.root / f"{name}-work"
        git("init", "--quiet", "--initial-branch=main", str(work))
        for path, data in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_bytes(data)
        for path, target in links.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).symlink_to(target)
        git("add", "-A", "-f", cwd=work)
        git("commit", "--quiet", "-m", "first", cwd=work)
        git("push", "--quiet", str(bare), "main", cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.requests.append(f"{request.requestline}\n{request.headers}")
        path, _, query = request.path.partition("?")
        name = path.lstrip("/").split(".git", 1)[0]
        if name == "hang":
            self.hanging.wait(300)
            return
        if name in self.redirects:
            request.send_response(302)
            request.send_header("Location", self.redirects[name] + path.split(".git", 1)[1])
            request.end_headers()
            return
        if name in self.private and not self._authorized(request, self.private[name]):
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.end_headers()
            return
        self._backend(request, path, query)

    def _authorized(self, request: BaseHTTPRequestHandler, token: str) -> bool:
        sent = request.headers.get("Authorization", "")
        if not sent.startswith("Basic "):
            return False
        _user, _, password = base64.b64decode(sent[6:]).decode().partition(":")
        return password == token

    def _backend(self, request: BaseHTTPRequestHandler, path: str, query: str) -> None:
        body = _body(request)
        env = {
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tester",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode(errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        request.send_response(status)
        for key, value in headers:
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)

    def close(self) -> None:
        self.hanging.set()
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> GitServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _body(request: BaseHTTPRequestHandler) -> bytes:
    """The request's body, sent with a length or in chunks (git's large pushes)."""
    if request.headers.get("Transfer-Encoding", "").lower() != "chunked":
        length = int(request.headers.get("Content-Length") or 0)
        return request.rfile.read(length) if length else b""
    chunks = []
    while size := int(request.rfile.readline().strip().split(b";")[0], 16):
        chunks.append(request.rfile.read(size))
        request.rfile.readline()
    request.rfile.readline()
    return b"".join(chunks)
