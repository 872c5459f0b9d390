"""A sandbox created on first use, so a run that only talks never pays for one."""

from __future__ import annotations

import threading
from collections.abc import Callable

from orchestrator.errors import SandboxError
from orchestrator.sandboxes.base import DEFAULT_COMMAND_TIMEOUT, CommandResult, Sandbox
from orchestrator.sandboxes.snapshot import Snapshot, VersionBudget


class LazySandbox:
    kind = "lazy"

    def __init__(
        self,
        create: Callable[[], Sandbox],
        seed: dict[str, str] | None = None,
        budget: VersionBudget | None = None,
    ) -> None:
        self._create = create
        # The base version's files: the workspace holds them from its creation on.
        self._seed = seed or {}
        # What a new sandbox held before the run touched it: a template's files, else nothing.
        self.starting_files: dict[str, str] = dict(self._seed)
        # write_file's view of the version's caps (commands' files are capped when read back).
        self.budget = budget or VersionBudget.holding(self._seed)
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
        if self._sandbox is None:
            return {}
        meta = dict(self._sandbox.metadata)
        if self._seed:  # how the base reached the workspace: its files written into a new one
            meta["base"] = {"how": "written", "files": len(self._seed)}
        return meta

    def _get(self) -> Sandbox:
        with self._lock:
            if self._killed:
                raise SandboxError("the sandbox was stopped")
            if self._sandbox is None:
                sandbox = self._create()
                try:
                    if self._seed:
                        sandbox.seed(self._seed)
                    elif getattr(sandbox, "starts_from_template", False):
                        self.starting_files = sandbox.snapshot().files
                        self.budget.sizes.update(VersionBudget.holding(self.starting_files).sizes)
                except BaseException:
                    sandbox.kill()
                    raise
                self._sandbox = sandbox
                if self._killed:  # killed while it was being created
                    self._sandbox.kill()
                    raise SandboxError("the sandbox was stopped")
            return self._sandbox

    def write(self, path: str, content: str) -> None:
        sandbox = self._get()
        size = len(content.encode())
        self.budget.check(path, size)
        sandbox.write(path, content)
        self.budget.record(path, size)

    def read(self, path: str) -> str:
        return self._get().read(path)

    def list(self, path: str = ".") -> list[str]:
        return self._get().list(path)

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult:
        return self._get().run(command, timeout)

    def seed(self, files: dict[str, str]) -> None:
        self._get().seed(files)

    def snapshot(self) -> Snapshot:
        return self._get().snapshot()

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
