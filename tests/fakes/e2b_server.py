"""A fake E2B on one local HTTP/1.1 server: the control-plane API and envd, the in-sandbox daemon.

The real `e2b` SDK talks to it unchanged: `FakeE2B().factory_kwargs()` gives `api_url` and
`sandbox_url` (both this server; envd calls name their sandbox in the `E2b-Sandbox-Id` header).
Only what `orchestrator.sandboxes.e2b` uses is faked, with the SDK's own routes and JSON shapes:

    POST   /v2/sandboxes                          create           201 {sandboxID, envdVersion, ...}
    POST   /v2/sandboxes/{id}/connect             connect          200 as create, 404 when gone
    POST   /sandboxes/{id}/timeout                set_timeout      204
    DELETE /sandboxes/{id}                        kill             204, 404 when unknown or dead
    GET    /health                                envd health      204, 502 "... was not found"
    POST   /files?path=                           files.write      multipart or octet-stream
    GET    /files?path=                           files.read       bytes, 404 when missing
    POST   /filesystem.Filesystem/MakeDir         files.make_dir   Connect unary JSON
    POST   /process.Process/Start                 commands.run     Connect server stream
    POST   /process.Process/SendSignal            commands.kill    Connect unary JSON

and what `Template.build` (orchestrator.sandboxes.e2b_templates) sends, recorded in `builds`:

    POST   /v3/templates                          request a build  202 {templateID, buildID, ...}
    GET    /templates/{id}/files/{hash}           upload link      201 {present, url}
    PUT    /uploads/{hash}                        the COPY's tar   200, kept in `uploads`
    POST   /v2/templates/{id}/builds/{build}      start the build  202, its steps kept
    GET    /templates/{id}/builds/{build}/status  build status     200 {status: "ready", ...}

and E2B's edge, which serves each sandbox's ports at `https://{port}-{id}.{domain}`: the fake is
also an HTTP proxy (`preview_proxy`, for a browser) that answers `CONNECT {port}-{id}.{domain}:443`
with TLS under its own certificate (a client ignores its errors) and then serves, as the sandbox's
dev server would, the files of its `/home/user/app` (`/` is `index.html`); 502 as the edge says
when the sandbox is gone or runs no command (no dev server), or for another host. Every request
is kept in `preview_requests`; nothing leaves 127.0.0.1.

Each sandbox's filesystem is a temporary directory (`/home/user/app` lives at
`root/home/user/app`); commands really run there with subprocess, so output, exit codes and
timing are real, but unconfined: this is a fake, not a sandbox. A killed sandbox drops its open
command streams mid-body, as the real proxy does.

    with FakeE2B() as fake:
        factory = E2BSandboxFactory(**fake.factory_kwargs())
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import mimetypes
import os
import queue
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import MIMEPart
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# How often a streaming handler looks at its process and its sandbox's state.
_POLL_SECONDS = 0.02

# Connect error codes to HTTP statuses, as envd answers them.
_CONNECT_STATUS = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "not_found": 404,
    "already_exists": 409,
    "internal": 500,
}


@dataclass(frozen=True)
class Call:
    """One request the SDK made: what tests assert on."""

    method: str
    path: str
    sandbox_id: str | None
    body: Any = None


@dataclass
class FakeProcess:
    command: str
    popen: subprocess.Popen[bytes]

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL its process group and reap it, so a test sees it dead once the call returns."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


@dataclass
class FakeBuild:
    """One template build: the request (name, CPU, memory) and the template it was sent."""

    template_id: str
    build_id: str
    request: dict[str, Any]
    template: dict[str, Any] | None = None


@dataclass
class FakeSandbox:
    id: str
    template: str
    timeout: int
    root: Path
    envs: dict[str, str]
    metadata: dict[str, str]
    access_token: str
    state: str = "alive"
    processes: dict[int, FakeProcess] = field(default_factory=dict)

    def host_path(self, path: str) -> Path:
        """Where a sandbox path lives on this machine (relative paths start at /home/user)."""
        absolute = path if path.startswith("/") else f"/home/user/{path}"
        return self.root / absolute.lstrip("/")

    def sandbox_path(self, host: Path) -> str:
        return "/" + host.relative_to(self.root).as_posix()

    def kill_processes(self) -> None:
        for process in list(self.processes.values()):
            process.kill()


class FakeE2B:
    """The fake server: start it, point a factory at it, read `calls` and `sandboxes`."""

    def __init__(
        self,
        api_key: str = "e2b_fake_key",
        domain: str = "fake.e2b.dev",
        envd_version: str = "0.6.4",
    ) -> None:
        self.api_key = api_key
        self.domain = domain
        self.envd_version = envd_version
        self.calls: list[Call] = []
        self.sandboxes: dict[str, FakeSandbox] = {}
        # Set to (status, message) and every create answers that error instead.
        self.create_error: tuple[int, str] | None = None
        # What a template ships in /home/user/app (a framework's starting project), per create.
        self.template_files: dict[str, str] = {}
        self.builds: list[FakeBuild] = []
        # The tar archives of COPY steps, by the files hash the SDK computed.
        self.uploads: dict[str, bytes] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="fake-e2b-"))
        # Programs a test drops here shadow the host's (e.g. a slow `npm` for the dev server).
        self.bin_dir = self._dir / "bin"
        self.bin_dir.mkdir()
        # The preview pages asked for through the edge: (host, path).
        self.preview_requests: list[tuple[str, str]] = []
        self._tls = _tls_context(self._dir, domain)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def factory_kwargs(self) -> dict[str, Any]:
        """The `E2BSandboxFactory` arguments that point the SDK here, no environment needed."""
        return {
            "api_key": self.api_key,
            "api_url": self.url,
            "sandbox_url": self.url,
            "domain": self.domain,
        }

    @property
    def preview_proxy(self) -> str:
        """The proxy a browser goes through to reach the previews' https URLs (this server)."""
        return self.url

    def add_program(self, name: str, script: str) -> None:
        """Put an executable `name` first on the PATH of every command the fake runs."""
        program = self.bin_dir / name
        program.write_text(script)
        program.chmod(program.stat().st_mode | stat.S_IXUSR)

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def start(self) -> FakeE2B:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Quick: kill every command, stop serving, drop the files; open streams just die."""
        for sandbox in list(self.sandboxes.values()):
            sandbox.state = "killed"
            sandbox.kill_processes()
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeE2B:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state changes, called by the handler --------------------------------------------------

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def create_sandbox(self, body: dict[str, Any]) -> FakeSandbox:
        sandbox_id = "i" + secrets.token_hex(9)
        root = self._dir / sandbox_id
        (root / "home" / "user").mkdir(parents=True)
        for path, content in self.template_files.items():
            target = root / "home" / "user" / "app" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        sandbox = FakeSandbox(
            id=sandbox_id,
            template=body["templateID"],
            timeout=int(body.get("timeout", 300)),
            root=root,
            envs=dict(body.get("envVars") or {}),
            metadata=dict(body.get("metadata") or {}),
            access_token=secrets.token_hex(8),
        )
        with self._lock:
            self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def expire(self, sandbox_id: str) -> None:
        """What E2B does at a sandbox's timeout: it is gone, its processes with it."""
        sandbox = self.sandboxes[sandbox_id]
        sandbox.state = "expired"
        sandbox.kill_processes()

    def alive(self, sandbox_id: str | None) -> FakeSandbox | None:
        sandbox = self.sandboxes.get(sandbox_id or "")
        return sandbox if sandbox is not None and sandbox.state == "alive" else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() must not wait for handlers parked on a long command stream.
    block_on_close = False
    fake: FakeE2B


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_CONNECT(self) -> None:
        """A browser's tunnel to a preview host: TLS under the fake's certificate, then the
        preview's requests on it (E2B's edge in front of a sandbox's dev server)."""
        host = self.path.rsplit(":", 1)[0]
        self.fake.record(Call("CONNECT", self.path, None))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        try:
            tunnel = self.server.fake._tls.wrap_socket(self.connection, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with contextlib.suppress(OSError):
            _PreviewHandler(tunnel, self.client_address, self.server, host)

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def fake(self) -> FakeE2B:
        return self.server.fake

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Connect streaming requests (Start) come chunked: their body is an iterator.
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _api_error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _connect_error(self, code: str, message: str) -> None:
        self._json(_CONNECT_STATUS[code], {"code": code, "message": message})

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self._read_body()
        path = url.path
        if path == "/v2/sandboxes" or path.startswith(("/sandboxes/", "/v2/sandboxes/")):
            self._control_plane(path, raw)
        elif path.startswith(("/v3/templates", "/v2/templates/", "/templates/", "/uploads/")):
            self._templates(path, raw)
        else:
            self._envd(path, query, raw)

    # -- the control plane ---------------------------------------------------------------------

    def _control_plane(self, path: str, raw: bytes) -> None:
        body: dict[str, Any] = json.loads(raw) if raw else {}
        parts = path.strip("/").split("/")
        if self.command == "POST" and path == "/v2/sandboxes":
            return self._create(body)
        if self.command == "POST" and parts[:2] == ["v2", "sandboxes"] and parts[3:] == ["connect"]:
            return self._connect(parts[2], body)
        sandbox_id = parts[1] if len(parts) > 1 else None
        self.fake.record(Call(self.command, path, sandbox_id, body))
        if self.headers.get("X-API-KEY") != self.fake.api_key:
            return self._api_error(401, "Invalid API key")
        sandbox = self.fake.alive(sandbox_id)
        if sandbox is None:
            return self._api_error(404, f"sandbox {sandbox_id} not found")
        if self.command == "DELETE" and len(parts) == 2:
            sandbox.state = "killed"
            sandbox.kill_processes()
            return self._send(204)
        if self.command == "POST" and parts[2:] == ["timeout"]:
            sandbox.timeout = int(body["timeout"])
            return self._send(204)
        return self._api_error(404, f"no route {self.command} {path}")

    def _templates(self, path: str, raw: bytes) -> None:
        parts = path.strip("/").split("/")
        if self.command == "PUT" and parts[0] == "uploads":
            self.fake.record(Call("PUT", path, None))
            self.fake.uploads[parts[1]] = raw
            return self._send(200)
        body: dict[str, Any] = json.loads(raw) if raw else {}
        self.fake.record(Call(self.command, path, None, body))
        if self.headers.get("X-API-KEY") != self.fake.api_key:
            return self._api_error(401, "Invalid API key")
        if self.command == "POST" and parts == ["v3", "templates"]:
            build = FakeBuild("t" + secrets.token_hex(9), "b" + secrets.token_hex(9), body)
            self.fake.builds.append(build)
            names = [body["name"]]
            return self._json(
                202,
                {
                    "templateID": build.template_id,
                    "buildID": build.build_id,
                    "public": False,
                    "names": names,
                    "tags": [],
                    "aliases": names,
                },
            )
        if self.command == "GET" and parts[0] == "templates" and parts[2:3] == ["files"]:
            files_hash = parts[3]
            if files_hash in self.fake.uploads:
                return self._json(201, {"present": True})
            return self._json(
                201, {"present": False, "url": f"{self.fake.url}/uploads/{files_hash}"}
            )
        builds = {b.template_id: b for b in self.fake.builds}
        build = builds.get(parts[2] if parts[0] == "v2" else parts[1])
        if build is None:
            return self._api_error(404, f"no template build at {path}")
        if self.command == "POST" and parts[3:4] == ["builds"]:
            build.template = body
            return self._send(202)
        if self.command == "GET" and parts[-1] == "status":
            status = "ready" if build.template is not None else "waiting"
            return self._json(
                200,
                {
                    "templateID": build.template_id,
                    "buildID": build.build_id,
                    "status": status,
                    "logs": [],
                    "logEntries": [],
                },
            )
        return self._api_error(404, f"no route {self.command} {path}")

    def _connect(self, sandbox_id: str, body: dict[str, Any]) -> None:
        self.fake.record(Call("POST", f"/v2/sandboxes/{sandbox_id}/connect", sandbox_id, body))
        if self.headers.get("X-API-KEY") != self.fake.api_key:
            return self._api_error(401, "Invalid API key")
        sandbox = self.fake.alive(sandbox_id)
        if sandbox is None:  # killed or timed out: E2B no longer knows it
            return self._api_error(404, f"sandbox {sandbox_id} not found")
        # A running sandbox's timeout only ever grows on connect.
        sandbox.timeout = max(sandbox.timeout, int(body.get("timeout") or 0))
        return self._json(200, self._created(sandbox))

    def _created(self, sandbox: FakeSandbox) -> dict[str, Any]:
        return {
            "templateID": sandbox.template,
            "sandboxID": sandbox.id,
            "clientID": "fake",
            "envdVersion": self.fake.envd_version,
            "envdAccessToken": sandbox.access_token,
            # No domain: the SDK falls back to its configured one, as with E2B cloud.
            "domain": None,
        }

    def _create(self, body: dict[str, Any]) -> None:
        error: tuple[int, str] | None = self.fake.create_error
        if self.headers.get("X-API-KEY") != self.fake.api_key:
            error = (401, "Invalid API key")
        if error is not None:
            self.fake.record(Call("POST", "/v2/sandboxes", None, body))
            return self._api_error(*error)
        sandbox = self.fake.create_sandbox(body)
        # Recorded with the new id, so a test can tell which create made which sandbox.
        self.fake.record(Call("POST", "/v2/sandboxes", sandbox.id, body))
        return self._json(201, self._created(sandbox))

    # -- envd ----------------------------------------------------------------------------------

    def _envd(self, path: str, query: dict[str, str], raw: bytes) -> None:
        sandbox_id = self.headers.get("E2b-Sandbox-Id")
        rpc = path.startswith(("/process.", "/filesystem."))
        body: Any = None
        if rpc and raw:
            body = json.loads(_unenvelope(raw) if path.endswith("/Start") else raw)
        self.fake.record(Call(self.command, path, sandbox_id, body if rpc else dict(query)))

        sandbox = self.fake.alive(sandbox_id)
        if sandbox is None:
            # What the E2B proxy answers for a sandbox that was killed or timed out.
            return self._api_error(502, f"The sandbox {sandbox_id} was not found")
        if self.headers.get("X-Access-Token") != sandbox.access_token:
            return self._api_error(401, "invalid access token")

        if path == "/health":
            return self._send(204)
        if path == "/files" and self.command == "POST":
            return self._upload(sandbox, query, raw)
        if path == "/files" and self.command == "GET":
            return self._download(sandbox, query)
        if path == "/filesystem.Filesystem/MakeDir":
            return self._make_dir(sandbox, body)
        if path == "/process.Process/Start":
            return self._start(sandbox, body)
        if path == "/process.Process/SendSignal":
            return self._send_signal(sandbox, body)
        return self._api_error(404, f"no route {self.command} {path}")

    def _upload(self, sandbox: FakeSandbox, query: dict[str, str], raw: bytes) -> None:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
            )
            files = [
                (query.get("path") or part.get_filename() or "", _raw_payload(part))
                for part in message.iter_parts()
            ]
        else:
            files = [(query["path"], raw)]
        written = []
        for sandbox_path, data in files:
            target = sandbox.host_path(sandbox_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(
                {"name": target.name, "type": "file", "path": sandbox.sandbox_path(target)}
            )
        self._json(200, written)

    def _download(self, sandbox: FakeSandbox, query: dict[str, str]) -> None:
        target = sandbox.host_path(query["path"])
        if not target.exists():
            return self._api_error(404, f"path '{query['path']}' does not exist")
        if target.is_dir():
            return self._api_error(400, f"path '{query['path']}' is a directory")
        self._send(200, target.read_bytes(), "application/octet-stream")

    def _make_dir(self, sandbox: FakeSandbox, body: dict[str, Any]) -> None:
        target = sandbox.host_path(body["path"])
        if target.exists():
            return self._connect_error("already_exists", f"'{body['path']}' already exists")
        target.mkdir(parents=True)
        self._json(200, {"entry": _entry(sandbox, target)})

    def _send_signal(self, sandbox: FakeSandbox, body: dict[str, Any]) -> None:
        process = sandbox.processes.get(int(body["process"]["pid"]))
        if process is None or not process.running:
            return self._connect_error("not_found", "process not found")
        process.kill()
        self._json(200, {})

    def _start(self, sandbox: FakeSandbox, body: dict[str, Any]) -> None:
        config = body["process"]
        # The SDK asks for `bash -l -c cmd`; a login shell would read this machine's profile.
        args = [a for a in config.get("args", []) if a != "-l"]
        command = args[-1] if args else config["cmd"]
        cwd = sandbox.host_path(config.get("cwd") or "/home/user")
        self.send_response(200)
        self.send_header("Content-Type", "application/connect+json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not cwd.is_dir():
            message = f"cwd '{config.get('cwd')}' does not exist"
            self._chunk(_envelope({"error": {"code": "invalid_argument", "message": message}}, 2))
            self._chunk(b"")
            return
        env = {
            **os.environ,
            **sandbox.envs,
            **(config.get("envs") or {}),
            "HOME": str(sandbox.host_path("/home/user")),
            "PATH": f"{self.fake.bin_dir}:{os.environ.get('PATH', '')}",
        }
        popen = subprocess.Popen(
            [config["cmd"], *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a kill takes the whole process group
        )
        sandbox.processes[popen.pid] = FakeProcess(command, popen)
        self._stream(sandbox, popen)

    def _stream(self, sandbox: FakeSandbox, popen: subprocess.Popen[bytes]) -> None:
        output: queue.Queue[tuple[str, bytes]] = queue.Queue()
        readers = [
            threading.Thread(target=_pump, args=(name, pipe, output), daemon=True)
            for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr))
        ]
        for reader in readers:
            reader.start()
        attached = self._event({"start": {"pid": popen.pid}})
        open_pipes = 2
        while open_pipes:
            if sandbox.state != "alive":
                return self._drop()
            try:
                name, data = output.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if not data:
                open_pipes -= 1
            elif attached:
                # The client left (a background command): the process runs on, unwatched.
                attached = self._event({"data": {name: _b64(data)}})
        code = popen.wait()
        if sandbox.state != "alive":
            return self._drop()
        if not attached:
            return
        if code >= 0:
            end = {"exitCode": code, "exited": True, "status": f"exit status {code}"}
        else:
            end = {
                "exitCode": -1,
                "exited": False,
                "status": f"signal: {signal.Signals(-code).name}",
            }
        if self._event({"end": end}):
            with contextlib.suppress(OSError):
                self._chunk(_envelope({}, 2))
                self._chunk(b"")

    def _event(self, event: dict[str, Any]) -> bool:
        """Send one StartResponse; False when the client is gone."""
        try:
            self._chunk(_envelope({"event": event}))
        except OSError:
            self.close_connection = True
            return False
        return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        """Cut the stream mid-body, as the proxy does when the sandbox dies under a command."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _PreviewHandler(BaseHTTPRequestHandler):
    """The requests inside one tunnel: a sandbox's dev server, as its preview host serves it."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def __init__(self, request: Any, client_address: Any, server: _Server, host: str) -> None:
        self.host = host
        super().__init__(request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        path = urlsplit(self.path).path
        with fake._lock:
            fake.preview_requests.append((self.host, path))
        label, _, domain = self.host.partition(".")
        sandbox = fake.alive(label.partition("-")[2]) if domain == fake.domain else None
        if sandbox is None or not any(p.running for p in sandbox.processes.values()):
            return self._answer(502, b"The sandbox is not running a server on this port")
        app = sandbox.host_path("/home/user/app")
        target = (app / (path.lstrip("/") or "index.html")).resolve()
        if not target.is_relative_to(app.resolve()) or not target.is_file():
            return self._answer(404, b"not found")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._answer(200, target.read_bytes(), kind)

    def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _tls_context(folder: Path, domain: str) -> ssl.SSLContext:
    """A server context with a self-signed certificate for `*.{domain}`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"*.{domain}")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "edge.crt", folder / "edge.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def _pump(name: str, pipe: Any, output: queue.Queue[tuple[str, bytes]]) -> None:
    with pipe:
        for data in iter(lambda: os.read(pipe.fileno(), 32 * 1024), b""):
            output.put((name, data))
    output.put((name, b""))


def _raw_payload(part: MIMEPart) -> bytes:
    """A multipart part's bytes as sent (get_content() would decode text parts)."""
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _envelope(payload: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(payload).encode()
    return bytes([flags]) + len(data).to_bytes(4, "big") + data


def _unenvelope(raw: bytes) -> bytes:
    """The first message of a Connect streaming request (Start sends exactly one)."""
    length = int.from_bytes(raw[1:5], "big")
    return raw[5 : 5 + length]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _entry(sandbox: FakeSandbox, path: Path) -> dict[str, Any]:
    info = path.lstat()
    kind = "FILE_TYPE_DIRECTORY" if path.is_dir() else "FILE_TYPE_FILE"
    modified = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
    return {
        "name": path.name,
        "type": kind,
        "path": sandbox.sandbox_path(path),
        "size": str(info.st_size),
        "mode": stat.S_IMODE(info.st_mode),
        "permissions": stat.filemode(info.st_mode),
        "owner": "user",
        "group": "user",
        "modifiedTime": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "isSymlink": path.is_symlink(),
    }
