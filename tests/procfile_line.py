"""One Procfile line run through honcho, as a platform runs it, its output collected as it comes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class ProcfileLine:
    """One Procfile line under honcho, its output collected by a thread."""

    def __init__(self, name: str, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", "Procfile", name],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def seen(self, marker: str) -> bool:
        return any(marker in line for line in list(self.output))

    def exited(self) -> bool:
        return self.process.poll() is not None or self.seen("exited with code")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)

    def text(self) -> str:
        return "".join(list(self.output))

    def wait_until_seen(self, marker: str, timeout: float) -> None:
        """Until the line prints `marker`; fails with its output if it exits first or the wait
        runs out."""
        deadline = time.monotonic() + timeout
        while not self.seen(marker):
            if self.exited():
                time.sleep(0.5)  # what it printed last
                raise AssertionError(
                    f"{self.name} exited before {marker!r}:\n{self.text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no {marker!r} after {timeout}s:\n{self.text()[-4000:]}"
                )
            time.sleep(0.1)
