"""A sandbox created on first use, so a run that only talks never pays for one."""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.errors import SandboxError
from orchestrator.sandboxes.base import DEFAULT_COMMAND_TIMEOUT, CommandResult, Sandbox


class LazySandbox:
    kind = "lazy"

    def __init__(self, create: Callable[[], Sandbox]) -> None:
        self._create = create
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self._killed = False

    @property
    def started(self) -> Sandbox | None:
        return self._sandbox

    @property
    def id(self) -> str:
        return self._sandbox.id if self._sandbox else ""

    @property
    def metadata(self) -> dict[str, object]:
        return dict(self._sandbox.metadata) if self._sandbox else {}

    def _get(self) -> Sandbox:
        with self._lock:
            if self._killed:
                raise SandboxError("the sandbox was stopped")
            if self._sandbox is None:
                self._sandbox = self._create()
                if self._killed:  # killed while it was being created
                    self._sandbox.kill()
                    raise SandboxError("the sandbox was stopped")
            return self._sandbox

    def write(self, path: str, content: str) -> None:
        self._get().write(path, content)

    def read(self, path: str) -> str:
        return self._get().read(path)

    def list(self, path: str = ".") -> list[str]:
        return self._get().list(path)

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        return self._get().run(command, timeout)

    def preview(self) -> str | None:
        return self._sandbox.preview() if self._sandbox else None

    def close(self, keep_alive: bool = False) -> None:
        if self._sandbox is not None:
            self._sandbox.close(keep_alive)

    def kill(self) -> None:
        # Called from the watch thread on cancel: never wait for a create that is under way.
        self._killed = True
        sandbox = self._sandbox
        if sandbox is not None:
            sandbox.kill()
