"""Versions: restoring a version into a workspace, reading a workspace back, the first request.

    .venv/bin/python -m benchmarks.versions [--repeat 15]

1. Restore: a 200-file, 2 MiB version seeded into a fresh local workspace (`LocalSandbox.seed`,
   every write through the path guard with O_NOFOLLOW), against a plain copy of the same files
   in the same run (`Path.write_text` into a fresh directory). Medians, and their ratio.
2. Read back: a workspace holding a 50-file app beside an `npm install`-sized `node_modules`
   (8,000 files, 32 MiB), a `.next` build folder, a symlink out, binaries and an oversized file:
   `read_tree` against a naive walk that reads every file. Time, and what was kept and skipped.
3. The first request of a follow-up to a 50-file app: bytes (and ~tokens at 4 bytes a token) of
   its messages and tools, against the same request without the file tree and with every file's
   contents inlined instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.runs.context import system_prompt
from orchestrator.runs.tools import TOOL_SPECS
from orchestrator.sandboxes.local import LocalSandboxFactory
from orchestrator.sandboxes.snapshot import read_tree
from orchestrator.versions.base import BaseVersion, with_file_tree


def app_files(count: int, total_bytes: int) -> dict[str, str]:
    size = total_bytes // count
    folders = ["src", "src/components", "src/lib", "src/pages", "public", "styles"]
    return {
        f"{folders[i % len(folders)]}/file_{i:03d}.tsx": (f"// file {i}\n" + "x" * 79 + "\n")
        * (size // 91)
        for i in range(count)
    }


def median_seconds(action: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def restore(root: Path, repeat: int) -> None:
    files = app_files(200, 2 * 1024 * 1024)
    size = sum(len(v.encode()) for v in files.values())
    factory = LocalSandboxFactory(root / "sandboxes", isolation="none")
    counter = iter(range(10**6))

    def seed() -> None:
        sandbox = factory.create(f"bench-{next(counter)}", "NEXTJS")
        sandbox.seed(files)
        sandbox.kill()

    def plain_copy() -> None:
        target = root / f"copy-{next(counter)}"
        for path, content in files.items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_text(content)
        shutil.rmtree(target)

    ours, plain = median_seconds(seed, repeat), median_seconds(plain_copy, repeat)
    print(f"restore {len(files)} files, {size / 2**20:.2f} MiB into a local workspace:")
    print(f"  seed (path guard, O_NOFOLLOW)  {ours * 1000:7.1f} ms  (median of {repeat})")
    print(f"  plain copy (write_text)        {plain * 1000:7.1f} ms")
    print(f"  ratio                          {ours / plain:7.2f}x")


def npm_sized_workspace(root: Path) -> Path:
    workspace = root / "readback"
    for path, content in app_files(50, 200 * 1024).items():
        (workspace / path).parent.mkdir(parents=True, exist_ok=True)
        (workspace / path).write_text(content)
    blob = b"x" * 4096
    for package in range(400):
        folder = workspace / "node_modules" / f"pkg-{package}" / "lib"
        folder.mkdir(parents=True)
        for i in range(20):
            (folder / f"m{i}.js").write_bytes(blob)
    (workspace / ".next" / "cache").mkdir(parents=True)
    for i in range(300):
        (workspace / ".next" / "cache" / f"c{i}.json").write_bytes(blob)
    (workspace / "public" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (workspace / "data.json").write_text("[" + "1," * 1_500_000 + "1]")
    os.symlink("/etc/passwd", workspace / "passwd")
    return workspace


def naive_walk(workspace: Path) -> int:
    total = 0
    for directory, _dirs, names in os.walk(workspace):
        for name in names:
            path = Path(directory, name)
            if path.is_file():
                total += len(path.read_bytes())
    return total


def read_back(root: Path, repeat: int) -> None:
    workspace = npm_sized_workspace(root)
    snapshot = read_tree(workspace)
    ours = median_seconds(lambda: read_tree(workspace), repeat)
    naive = median_seconds(lambda: naive_walk(workspace), max(3, repeat // 3))
    kept = sum(len(v.encode()) for v in snapshot.files.values())
    print("read back a workspace with a 50-file app + node_modules (8,000 files, 32 MiB) + .next:")
    print(f"  read_tree                      {ours * 1000:7.1f} ms  (median of {repeat})")
    print(f"  naive walk reading every file  {naive * 1000:7.1f} ms")
    print(f"  kept {len(snapshot.files)} files, {kept / 1024:.0f} KiB; skipped:")
    for item in snapshot.skipped:
        print(f"    {item['path']}: {item['reason']}")


def first_request() -> None:
    files = app_files(50, 100 * 1024)
    base = BaseVersion("f", 3, files)
    history = [
        {"role": "system", "content": system_prompt("NEXTJS")},
        {"role": "user", "content": "Build a dashboard"},
        {"role": "assistant", "content": "I built the dashboard with charts and a sidebar."},
        {"role": "user", "content": "Now make the header blue"},
    ]

    def size(messages: list[dict[str, object]]) -> int:
        return len(json.dumps({"messages": messages, "tools": TOOL_SPECS}).encode())

    plain = size(history)
    tree = size(with_file_tree(history, base))
    inlined = [{**history[0], "content": str(history[0]["content"]) + json.dumps(files)}]
    full = size(inlined + history[1:])
    print("first request of a follow-up to a 50-file, 100 KiB app (messages + tools, JSON):")
    print(f"  without the file tree   {plain:7d} bytes  ~{plain // 4:6d} tokens")
    print(f"  with the file tree      {tree:7d} bytes  ~{tree // 4:6d} tokens  (what we send)")
    print(f"  with every file inlined {full:7d} bytes  ~{full // 4:6d} tokens")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp:
        os.chmod(tmp, 0o755)  # sandbox users (when we are root) must reach the workspaces
        restore(Path(tmp), args.repeat)
        read_back(Path(tmp), args.repeat)
    first_request()


if __name__ == "__main__":
    main()
