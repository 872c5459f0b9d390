"""The sandbox seam: where the agent's files live and its commands run.

Two implementations sit beside this file: `local` (a workspace directory, bubblewrap when present)
and `e2b` (a cloud sandbox through the e2b SDK). Paths given to a sandbox are already checked by
`paths.safe_relative_path`; implementations check again against their own filesystem (symlinks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.sandboxes.snapshot import Snapshot

# What a command may print back to the model, per stream, before it is cut.
OUTPUT_LIMIT = 16 * 1024
DEFAULT_COMMAND_TIMEOUT = 60.0
MAX_COMMAND_TIMEOUT = 300.0


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False
    timed_out: bool = False

    def as_tool_result(self) -> dict[str, object]:
        result: dict[str, object] = {
            "exitCode": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "truncated": self.truncated,
        }
        if self.timed_out:
            result["timedOut"] = True
        return result


class SandboxPathError(ValueError):
    """A path escapes the workspace (absolute, `..`, or through a symlink)."""


class SandboxFileNotFound(FileNotFoundError):
    """read_file/list_files on a path that does not exist in the workspace."""


class Sandbox(Protocol):
    """One isolated workspace for one run. Every method may raise; kill() must never hang."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def metadata(self) -> dict[str, object]: ...

    def write(self, path: str, content: str) -> None: ...

    def read(self, path: str) -> str: ...

    def list(self, path: str = ".") -> list[str]: ...

    def run(self, command: str, timeout: float = DEFAULT_COMMAND_TIMEOUT) -> CommandResult: ...

    # -- versions (DESIGN section 12) --
    def seed(self, files: dict[str, str]) -> None:
        """Write a base version's files into the empty workspace, before the model's first step."""
        ...

    def snapshot(self) -> Snapshot:
        """The workspace's regular text files, read back (see `snapshot`); never follows links."""
        ...

    def preview(self) -> str | None:
        """Start what serves the app; its public URL, or None when the web app serves it."""
        ...

    def close(self, keep_alive: bool = False) -> None:
        """End of the run: release resources; keep_alive leaves a previewable sandbox running."""
        ...

    def kill(self) -> None:
        """Stop now, from any thread: running commands die, resources are released. Idempotent."""
        ...


class SandboxFactory(Protocol):
    # What its sandboxes preview, so the model is told what to build: "static" (the files as they
    # are, no build tooling), "build" (the framework's template, built by the model; its output
    # served) or "dev-server" (the framework's project and its dev server).
    serves: str

    def create(self, run_id: str, framework: str) -> Sandbox: ...


@runtime_checkable
class ChecksFrameworks(Protocol):
    """A factory that can say before a run starts that it cannot make its framework's sandbox."""

    def check_ready(self, framework: str) -> None: ...


@runtime_checkable
class Builds(Protocol):
    """A sandbox whose app is built: its last build, whether that build was of given sources
    (`built`), the command that builds it, and the output to serve."""

    @property
    def build(self) -> dict[str, object] | None: ...

    @property
    def build_command(self) -> str | None: ...

    def built(self, sources: dict[str, str]) -> bool: ...

    def build_output(self) -> Snapshot | None: ...


@dataclass
class SandboxLimits:
    """Resource limits for a local command (E2B enforces its own)."""

    cpu_seconds: int = 120
    memory_bytes: int = 1024 * 1024 * 1024
    max_processes: int = 256
    max_file_bytes: int = 64 * 1024 * 1024
    output_limit: int = OUTPUT_LIMIT
