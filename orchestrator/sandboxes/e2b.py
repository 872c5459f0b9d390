"""The E2B sandbox: one cloud VM per run, driven through the e2b SDK's sync API.

The model's paths are relative to `WORKSPACE` inside the VM; commands run there under `bash -l -c`.
The preview is the framework's dev server, started in the background, at `https://{get_host(port)}`.

Constraints of the SDK (e2b 2.63; read in its source, checked against tests/fakes/e2b_server.py):
- Its HTTP stack is pyqwest (Rust reqwest/hyper on a tokio runtime), one pool per process cached in
  `e2b/api/client_sync/__init__.py` (`_transports`). A process that made a request and then forks
  leaves its child a runtime without threads: the child's calls hang, request timeouts included.
  Make the first call after the fork (inside a Celery task, never in the parent at start-up).
  Importing the SDK before the fork is fine.
- A sync call blocks inside Rust, out of gevent's reach: under gevent it stalls the hub for the
  whole call. Run it in a real thread (gevent's threadpool) or use a threads/prefork pool.
- Pools and clients are thread-safe, so `kill()` from another thread is just another request.
  A command's event stream is a generator: it cannot be closed from another thread, but killing the
  sandbox ends it (the proxy cuts it), so a blocked `run()` returns within a moment of `kill()`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shlex
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from e2b import (
    CommandExitException,
    FileNotFoundException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    TimeoutException,
)
from e2b import Sandbox as SDKSandbox

from orchestrator.errors import SandboxError
from orchestrator.sandboxes.base import (
    DEFAULT_COMMAND_TIMEOUT,
    MAX_COMMAND_TIMEOUT,
    OUTPUT_LIMIT,
    CommandResult,
    SandboxFileNotFound,
    SandboxPathError,
)
from orchestrator.sandboxes.output import HeadTailText
from orchestrator.sandboxes.paths import safe_relative_path
from orchestrator.sandboxes.snapshot import SKIPPED_DIRS, Snapshot

log = logging.getLogger(__name__)

WORKSPACE = "/home/user/app"
# What timeout(1) exits with, so a timed-out command reads the same in both sandboxes.
TIMED_OUT_EXIT_CODE = 124
# kill() must never hang, whatever the API does.
KILL_REQUEST_TIMEOUT = 5.0
# The local sandbox's limits, so the model meets the same rules in both.
MAX_WRITE_BYTES = 2 * 1024 * 1024
MAX_READ_BYTES = 2 * 1024 * 1024
MAX_LIST_ENTRIES = 1000
MIN_COMMAND_TIMEOUT = 1.0  # also: a deadline of 0 would mean "none" to the SDK
# A VM outlives its run's deadline by this much, so the run's last steps (the preview, the final
# write) still find it up; the preview then extends it to `preview_ttl`.
TIMEOUT_MARGIN = 120
# Settings.run_deadline's default, for a factory built without one.
DEFAULT_RUN_DEADLINE = 900.0


def sandbox_timeout(run_deadline: float) -> int:
    """The VM timeout a run with this deadline needs: never expire under a run still going."""
    return math.ceil(run_deadline) + TIMEOUT_MARGIN


# The path checks run in the VM, on $1 relative to the workspace, and their exit codes.
_ESCAPES, _MISSING = 45, 44
# Symlinks resolved, does $1 leave the workspace? realpath prints it absolute when it does.
_INSIDE_SCRIPT = f'case "$(realpath -m --relative-base=. -- "$1")" in /*) exit {_ESCAPES};; esac'
# The files under $1 as the local sandbox lists them: no node_modules or .git, sorted, capped.
_LIST_SCRIPT = (
    f'{_INSIDE_SCRIPT}; [ -e "$1" ] || exit {_MISSING}; '
    r'find "$1" \( -name node_modules -o -name .git \) -prune -o -type f -print '
    f"| LC_ALL=C sort | head -n {MAX_LIST_ENTRIES}"
)

# Every entry under the workspace as `kind<TAB>size<TAB>path<NUL>` (f file, l link, d skipped
# folder, o other); find never follows a symlink, and skipped folders are pruned, not entered.
_SKIPPED = " -o ".join(f"-name {shlex.quote(name)}" for name in sorted(SKIPPED_DIRS))
_TREE_SCRIPT = (
    rf"find . -mindepth 1 \( -type d \( {_SKIPPED} \) -printf 'd\t0\t%P\0' -prune \) "
    r"-o -type f -printf 'f\t%s\t%P\0' -o -type l -printf 'l\t0\t%P\0' "
    r"-o ! -type d -printf 'o\t0\t%P\0'"
    # An unreadable folder is left out, not a reason to lose the whole listing.
    " 2>/dev/null; exit 0"
)
_SEED_BATCH = 100


@dataclass(frozen=True)
class DevServer:
    """How a framework's app is served: its default template, the dev server command, its port."""

    template: str
    command: str
    port: int


# `npm exec` runs the starter's own binary: the starters (sandbox-templates/*/app) have no dev
# script of their own, only the build the local sandbox runs.
_VITE = "npm exec -- vite --host 0.0.0.0 --port 5173 --strictPort"

# The templates are built from sandbox-templates/<framework>/ (README "E2B templates"), whose
# e2b.toml names them as here and whose start.sh runs this command: each ships its starter with
# its node_modules installed, with `WORKSPACE` as its home. `templates=` in the factory overrides
# the names (E2B_TEMPLATE_<FRAMEWORK> in Settings).
DEV_SERVERS: dict[str, DevServer] = {
    "NEXTJS": DevServer("nextjs-developer", "npm exec -- next dev -H 0.0.0.0 -p 3000", 3000),
    "REACT": DevServer("react-developer", _VITE, 5173),
    "VUE": DevServer("vue-developer", _VITE, 5173),
    "SVELTE": DevServer("svelte-developer", _VITE, 5173),
    # Angular 18's dev server checks no host (and takes no --disable-host-check).
    "ANGULAR": DevServer(
        "angular-developer", "npm exec -- ng serve --host 0.0.0.0 --port 4200", 4200
    ),
}


class E2BSandboxFactory:
    """Creates one E2B sandbox per run from its framework's template.

    `api_url`, `sandbox_url` and `domain` left to None fall back to the SDK's defaults (E2B cloud,
    or its `E2B_*` environment variables); tests point them at a local fake.
    """

    serves = "dev-server"  # the template's project, its dependencies and its dev server

    def __init__(
        self,
        api_key: str,
        *,
        templates: Mapping[str, str] | None = None,
        run_deadline: float = DEFAULT_RUN_DEADLINE,
        timeout: int | None = None,
        preview_ttl: int = 3600,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        domain: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self._api_key = api_key
        self._templates = {k.upper(): v for k, v in (templates or {}).items()}
        # The VM's life while the run works; `timeout` overrides it (tests), never below need.
        self._timeout = timeout if timeout is not None else sandbox_timeout(run_deadline)
        self._preview_ttl = preview_ttl
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        self._domain = domain
        self._extra_env = dict(extra_env or {})

    def create(self, run_id: str, framework: str) -> E2BSandbox:
        key = framework.upper()
        server = DEV_SERVERS.get(key)
        if server is None:
            raise SandboxError(f"No E2B template for framework {framework!r}")
        template = self._templates.get(key, server.template)
        try:
            sdk = SDKSandbox.create(
                template=template,
                timeout=self._timeout,
                metadata={"runId": run_id, "framework": key},
                envs=self._extra_env,
                api_key=self._api_key,
                api_url=self._api_url,
                sandbox_url=self._sandbox_url,
                domain=self._domain,
                debug=False,  # E2B_DEBUG would silently swap the cloud for localhost
            )
        except Exception as exc:  # the SDK raises assorted types (auth and 503 are not its base)
            raise SandboxError(
                f"E2B could not start a sandbox from template {template!r}: {exc}"
            ) from exc
        sandbox = E2BSandbox(sdk, template=template, server=server, preview_ttl=self._preview_ttl)
        try:
            # Commands run in the workspace, so it must exist before the first one.
            sdk.files.make_dir(WORKSPACE)
        except Exception as exc:
            sandbox.kill()
            raise SandboxError(f"E2B sandbox {sdk.sandbox_id} is not usable: {exc}") from exc
        return sandbox

    @property
    def preview_ttl(self) -> int:
        return self._preview_ttl

    def connect(self, sandbox_id: str, framework: str) -> E2BSandbox | None:
        """A still-running sandbox, kept up `preview_ttl` more seconds; None once it is gone."""
        server = DEV_SERVERS.get(framework.upper())
        if server is None:
            raise SandboxError(f"No E2B template for framework {framework!r}")
        try:
            sdk = SDKSandbox.connect(
                sandbox_id,
                timeout=self._preview_ttl,
                api_key=self._api_key,
                api_url=self._api_url,
                sandbox_url=self._sandbox_url,
                domain=self._domain,
                debug=False,
            )
        except SandboxNotFoundException:
            return None
        except Exception as exc:
            raise SandboxError(f"E2B could not reach sandbox {sandbox_id}: {exc}") from exc
        return E2BSandbox(sdk, template="", server=server, preview_ttl=self._preview_ttl)


class E2BSandbox:
    """One run's E2B VM behind the `Sandbox` protocol."""

    kind = "e2b"
    # Its workspace starts with the framework template's project, not empty.
    starts_from_template = True

    def __init__(
        self, sdk: SDKSandbox, *, template: str, server: DevServer, preview_ttl: int
    ) -> None:
        self._sdk = sdk
        self._server = server
        self._preview_ttl = preview_ttl
        self.id: str = sdk.sandbox_id
        self.metadata: dict[str, object] = {
            "sandbox": "e2b",
            "template": template,
            "sandboxId": sdk.sandbox_id,
        }
        self._preview_url: str | None = None
        self._killed = False
        self._lock = threading.Lock()

    def write(self, path: str, content: str) -> None:
        relative = _file_path(path)
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ValueError(f"content is {len(data)} bytes; files are limited to 2 MiB")
        with self._sdk_errors("write", path):
            self._check_inside(relative)
            self._sdk.files.write(_absolute(relative), data)

    def read(self, path: str) -> str:
        relative = _file_path(path)
        with self._sdk_errors("read", path):
            self._check_inside(relative)
            data = self._sdk.files.read(_absolute(relative), format="bytes")
        text = bytes(data[:MAX_READ_BYTES]).decode("utf-8", errors="replace")
        if len(data) > MAX_READ_BYTES:
            text += f"\n[file truncated: only the first {MAX_READ_BYTES} bytes are shown]"
        return text

    def list(self, path: str = ".") -> list[str]:
        """The files under `path` (or `path` itself), relative to the workspace, sorted."""
        relative = safe_relative_path(path)
        with self._sdk_errors("list", path):
            found = self._script(_LIST_SCRIPT, relative)
        return [line.removeprefix("./") for line in found.splitlines() if line]

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        if math.isnan(timeout):
            timeout = DEFAULT_COMMAND_TIMEOUT
        deadline = min(max(timeout, MIN_COMMAND_TIMEOUT), MAX_COMMAND_TIMEOUT)
        self._ensure_alive()
        stdout, stderr = HeadTailText(OUTPUT_LIMIT), HeadTailText(OUTPUT_LIMIT)
        handle = None
        try:
            # In the background only to learn the pid, so a timed-out command can be killed.
            handle = self._sdk.commands.run(
                command, background=True, cwd=WORKSPACE, timeout=deadline, retain_output=False
            )
            exit_code = handle.wait(on_stdout=stdout.add, on_stderr=stderr.add).exit_code
        except CommandExitException as exc:
            exit_code = exc.exit_code
        except (SandboxNotRunningException, SandboxUnreachableException) as exc:
            raise self._error("run", exc) from exc
        except TimeoutException as exc:
            if self._killed:
                raise self._error("run", exc) from exc
            # The deadline only ends our stream; the process would carry on in the VM.
            if handle is not None:
                self._kill_process(handle.pid)
            return CommandResult(
                exit_code=TIMED_OUT_EXIT_CODE,
                stdout=stdout.text,
                stderr=stderr.text,
                truncated=stdout.truncated or stderr.truncated,
                timed_out=True,
            )
        except Exception as exc:
            raise self._error("run", exc) from exc
        return CommandResult(
            exit_code=exit_code,
            stdout=stdout.text,
            stderr=stderr.text,
            truncated=stdout.truncated or stderr.truncated,
        )

    # -- versions (DESIGN section 12) ------------------------------------------------------
    def seed(self, files: dict[str, str]) -> None:
        """A base's files in a few multipart uploads rather than one request per file."""
        entries = [
            {"path": _absolute(_file_path(path)), "data": content.encode("utf-8")}
            for path, content in sorted(files.items())
        ]
        with self._sdk_errors("seed", "."):
            for start in range(0, len(entries), _SEED_BATCH):
                self._sdk.files.write_files(entries[start : start + _SEED_BATCH])  # type: ignore[arg-type]

    def snapshot(self) -> Snapshot:
        """The workspace read back: listed by `find` in the VM, each file read by the files API."""
        snapshot = Snapshot()
        with self._sdk_errors("snapshot", "."):
            listing = self._sdk.commands.run(_TREE_SCRIPT, cwd=WORKSPACE, timeout=60).stdout
            entries = [e.split("\t", 2) for e in listing.split("\0") if e.count("\t") >= 2]
            for kind, size, path in sorted(entries, key=lambda e: e[2]):
                if kind == "d":
                    snapshot.skip(path + "/", "dependency or build folder")
                elif kind == "l":
                    snapshot.skip(path, "symlink")
                elif kind != "f":
                    snapshot.skip(path, "not a regular file")
                elif snapshot.room_for(path, int(size)):
                    try:
                        data = self._sdk.files.read(_absolute(path), format="bytes")
                    except FileNotFoundException:  # gone since it was listed
                        continue
                    snapshot.add(path, bytes(data))
        return snapshot

    def host_url(self) -> str:
        """Where the dev server of this sandbox answers, started or not."""
        return f"https://{self._sdk.get_host(self._server.port)}"

    def preview(self) -> str:
        """Start the dev server in the background and keep the VM up `preview_ttl` seconds."""
        if self._preview_url is not None:
            return self._preview_url
        host = self._sdk.get_host(self._server.port)
        try:
            self._sdk.set_timeout(self._preview_ttl)
            handle = self._sdk.commands.run(
                self._server.command,
                background=True,
                cwd=WORKSPACE,
                # Vite refuses requests for hosts it does not know; this is the preview's host.
                envs={"__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS": host},
            )
            # Let go of the output stream: the server keeps running, nothing waits on it.
            handle.disconnect()
        except Exception as exc:
            raise self._error("preview", exc) from exc
        self._preview_url = f"https://{host}"
        return self._preview_url

    def close(self, keep_alive: bool = False) -> None:
        """keep_alive leaves the VM to its timeout (the preview's, once `preview()` ran)."""
        if not keep_alive:
            self.kill()

    def kill(self) -> None:
        with self._lock:
            if self._killed:
                return
            self._killed = True
        try:
            # False when E2B no longer knows the sandbox: already gone is fine.
            self._sdk.kill(request_timeout=KILL_REQUEST_TIMEOUT)
        except Exception as exc:
            log.warning("E2B sandbox %s: kill failed, it ends at its timeout: %s", self.id, exc)

    def _check_inside(self, relative: str) -> None:
        """Refuse a path that a symlink in the VM leads out of the workspace.

        A command, because envd has no "resolve" call and its Stat sees the last component only.
        """
        self._script(_INSIDE_SCRIPT, relative)

    def _script(self, script: str, relative: str) -> str:
        """Run one of our path scripts on `relative` in the workspace; its stdout."""
        try:
            result = self._sdk.commands.run(
                f"set -- {shlex.quote(relative)}; {script}",
                cwd=WORKSPACE,
                timeout=MAX_COMMAND_TIMEOUT,
            )
        except CommandExitException as exc:
            if exc.exit_code == _ESCAPES:
                raise SandboxPathError(f"path escapes the workspace: {relative}") from None
            if exc.exit_code == _MISSING:
                raise SandboxFileNotFound(f"no such file or directory: {relative}") from None
            raise
        return result.stdout

    def _kill_process(self, pid: int) -> None:
        try:
            self._sdk.commands.kill(pid, request_timeout=KILL_REQUEST_TIMEOUT)
        except Exception as exc:
            log.warning("E2B sandbox %s: could not kill pid %s: %s", self.id, pid, exc)

    def _ensure_alive(self) -> None:
        if self._killed:
            raise SandboxError(f"E2B sandbox {self.id} was stopped")

    def _error(self, action: str, exc: Exception) -> SandboxError:
        if self._killed:
            return SandboxError(f"E2B sandbox {self.id} was stopped")
        return SandboxError(f"E2B sandbox {self.id}: {action} failed: {exc}")

    @contextlib.contextmanager
    def _sdk_errors(self, action: str, path: str) -> Iterator[None]:
        """Turn the SDK's errors into ours, so callers never see an e2b type."""
        self._ensure_alive()
        try:
            yield
        except (SandboxPathError, SandboxFileNotFound):
            raise
        except FileNotFoundException as exc:
            raise SandboxFileNotFound(f"no such file or directory: {path}") from exc
        except Exception as exc:
            raise self._error(f"{action} {path}", exc) from exc


def _absolute(relative: str) -> str:
    return WORKSPACE if relative == "." else f"{WORKSPACE}/{relative}"


def _file_path(path: str) -> str:
    """The model's path, checked and relative to the workspace; it must name a file."""
    relative = safe_relative_path(path)
    if relative == ".":
        raise SandboxPathError(f"not a file path: {path}")
    return relative
