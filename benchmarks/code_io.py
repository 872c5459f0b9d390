"""Code in and out (DESIGN section 18): import, zip, push, each against a baseline in the same run.

    .venv/bin/python -m benchmarks.code_io [--repeat 5]

Against a Git server on 127.0.0.1 (`git http-backend`, tests/fakes/git_server.py):
1. Import of a 2,000-file repository (about 8 MiB): our clone (pinned, shallow, one ref, size
   watched) and the read-back, against a plain `git clone --depth 1` of the same repository.
   Time (median) and peak memory: the Python heap of the import (tracemalloc) and the largest
   resident set of a `git` it ran (RUSAGE_CHILDREN).
2. Zip of a 16 MiB version (512 files of 32 KiB): `zip_stream`, read chunk by chunk as a
   response sends it, against building the same zip in a BytesIO. Time and Python heap peak.
3. Push of a 500-file version as one commit (`git fast-import`) to an empty branch and then on
   top of it, against `git add -A && git commit && git push` of the same files from a work tree.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.git import clone, push, remotes
from orchestrator.sandboxes.snapshot import read_tree
from orchestrator.versions.archive import zip_stream
from tests.fakes.git_server import GIT_ENV, GitServer, git


def text_files(count: int, size: int, seed: int = 0) -> dict[str, str]:
    """`count` source-like files of exactly `size` bytes each, not too compressible."""
    files = {}
    for n in range(count):
        words = " ".join(f"w{(n * 7919 + i * seed + i * i) % 100003:x}" for i in range(size // 4))
        files[f"src/mod{n % 40}/file{n}.js"] = f"// {n}\nexport const v = `{words}"[:size]
    return files


def measure(work: Callable[[], Any], repeat: int) -> tuple[float, int]:
    """Median seconds, and the largest Python heap peak, over `repeat` runs."""
    times, peaks = [], []
    for _ in range(repeat):
        tracemalloc.start()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(times), max(peaks)


def mib(value: float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def imports(server: GitServer, repeat: int) -> None:
    files = text_files(2000, 4096)
    server.repository("big", {path: text.encode() for path, text in files.items()})
    remote = remotes.check(server.url("big"), (server.origin,))

    def ours() -> None:
        with clone.scratch() as folder:
            done = clone.clone(remote, None, folder, token=None, timeout=120, max_bytes=256 << 20)
            kept = read_tree(done.tree)
            assert len(kept.files) == 2000, len(kept.files)

    def plain() -> None:
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(
                ["git", "clone", "--quiet", "--depth", "1", server.url("big"), folder + "/c"],
                env=GIT_ENV,
                check=True,
            )

    ours_time, ours_heap = measure(ours, repeat)
    plain_time, _ = measure(plain, repeat)
    git_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    size = sum(len(t.encode()) for t in files.values())
    print(f"import of 2,000 files ({mib(size)}):")
    print(
        f"  ours (clone + read back): {ours_time * 1000:.0f} ms, Python heap peak {mib(ours_heap)}"
    )
    print(f"  plain git clone --depth 1: {plain_time * 1000:.0f} ms")
    print(f"  ratio {ours_time / plain_time:.2f}x; largest git process RSS {mib(git_rss)}")


def zips(repeat: int) -> None:
    files = text_files(512, 32 * 1024, seed=3)
    size = sum(len(t.encode()) for t in files.values())
    when = datetime(2026, 12, 2, tzinfo=UTC)
    sent: list[int] = []

    def streamed() -> None:
        sent.append(sum(len(chunk) for chunk in zip_stream(files, when)))

    def in_memory() -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(files):
                archive.writestr(path, files[path])
        buffer.getvalue()

    ours_time, ours_heap = measure(streamed, repeat)
    base_time, base_heap = measure(in_memory, repeat)
    print(f"zip of a {mib(size)} version (512 files, {mib(sent[-1])} zipped):")
    print(f"  streamed: {ours_time * 1000:.0f} ms ({size / ours_time / (1 << 20):.0f} MiB/s), "
          f"Python heap peak {mib(ours_heap)}")  # fmt: skip
    print(f"  built in memory: {base_time * 1000:.0f} ms, Python heap peak {mib(base_heap)}")
    print(f"  ratio {ours_time / base_time:.2f}x time, {ours_heap / base_heap:.2f}x memory")


def pushes(server: GitServer, repeat: int) -> None:
    files = text_files(500, 2048, seed=5)
    remote_names = iter(range(10_000))

    def ours() -> None:
        name = f"ours{next(remote_names)}"
        server.bare(name)
        remote = remotes.check(server.url(name), (server.origin,))
        for version in (files, {**files, "extra.js": "x\n"}):
            with clone.scratch() as folder:
                push.push(remote, "main", version, "v", folder, token=None, force=False, timeout=60)

    def plain() -> None:
        name = f"plain{next(remote_names)}"
        server.bare(name)
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            git("init", "--quiet", "--initial-branch=main", str(work))
            for version in (files, {**files, "extra.js": "x\n"}):
                for path, text in version.items():
                    (work / path).parent.mkdir(parents=True, exist_ok=True)
                    (work / path).write_text(text)
                git("add", "-A", cwd=work)
                git("commit", "--quiet", "-m", "v", cwd=work)
                git("push", "--quiet", server.url(name), "main", cwd=work)

    ours_time, _ = measure(ours, repeat)
    plain_time, _ = measure(plain, repeat)
    print("push of a 500-file version, then a second on top (two pushes):")
    print(f"  ours (fetch head + fast-import + push): {ours_time * 1000:.0f} ms")
    print(f"  plain add + commit + push from a work tree: {plain_time * 1000:.0f} ms")
    print(f"  ratio {ours_time / plain_time:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("GIT_CONFIG_GLOBAL", "/dev/null")
    with tempfile.TemporaryDirectory() as root, GitServer(Path(root)) as server:
        imports(server, args.repeat)
        zips(args.repeat)
        pushes(server, args.repeat)


if __name__ == "__main__":
    main()
