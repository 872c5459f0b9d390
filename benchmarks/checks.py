"""What checking a version costs (DESIGN section 16): a run's wall time with the checks on and off.

    .venv/bin/python -m benchmarks.checks [--runs 20] [--framework STATIC|REACT|NEXTJS]
    .venv/bin/python -m benchmarks.checks --throughput 60 [--open 100] [--concurrency 2]

The same scripted run (the fake model writes a page or a component and finishes: one round,
which passes) executed by the worker's runner in this process, alternately with
PREVIEW_CHECK=chromium and PREVIEW_CHECK=off, so both are measured under the same load. REACT
and NEXTJS need the prepared templates (SANDBOX_TEMPLATES, default /tmp/appforge-ci-templates);
with the checks off their run still builds once (the worker's build of what the model left
unbuilt), so the difference is the render. Prints the wall time per run (p50, p95) for each, the
added time, the build and the render check alone (their `durationMs`), the browser's resident
memory, and what one browser context (one check's page) adds to it.

`--throughput SECONDS`: `--open` runs at once in one process (threads, as a worker's pool runs
them), each rendering a static page over and over through one browser at CHECK_CONCURRENCY
`--concurrency`; prints the checks finished per minute. SQLite and the bundled Redis unless
DATABASE_URL/REDIS_URL say otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from models.migrate import upgrade
from orchestrator.checks.browser import Browser, _descendants, find_chromium
from orchestrator.checks.render import served
from orchestrator.providers.base import Cancelled
from orchestrator.runs.runner import RunServices, execute_run
from orchestrator.settings import ProviderConfig, Settings, normalize_database_url
from orchestrator.stop import StopFlag, never
from orchestrator.tokens import user_token
from orchestrator.wiring.bundled_redis import BundledRedis
from orchestrator.wiring.services import build_run_services
from tests.fakes.llm_server import FakeLLM, Reply, ToolCall
from web import create_app
from workers.app import create_celery

SECRET = "benchmark-secret-benchmark-secret-0123"
PAGE = "<!doctype html><h1>Hello</h1><p>A checked page.</p>\n"
COMPONENT = "export default function App() {\n  return <main><h1>Hello</h1></main>\n}\n"
# A page that never finishes loading: it holds its context open while its memory is read.
HANGS = "<!doctype html><h1>Held</h1><script>while (true) {}</script>\n"
# Where the framework's starter keeps the component the model writes.
COMPONENT_PATHS = {"REACT": "src/App.jsx", "NEXTJS": "app/page.jsx"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def reply(framework: str) -> Reply:
    path = COMPONENT_PATHS.get(framework, "index.html")
    content = COMPONENT if framework in COMPONENT_PATHS else PAGE
    return Reply(
        "",
        tool_calls=[
            ToolCall("write_file", {"path": path, "content": content}),
            ToolCall("finish", {"title": "Bench", "summary": "s"}),
        ],
    )


def one_run(client: Any, services: RunServices, framework: str) -> tuple[float, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {user_token(SECRET, f'bench-{uuid.uuid4().hex}')}"}
    project = client.post(
        "/api/projects", json={"name": "b", "framework": framework}, headers=headers
    ).get_json()
    sent = client.post(
        "/api/messages", json={"message": "Hello", "projectId": project["id"]}, headers=headers
    ).get_json()
    started = time.monotonic()
    status = execute_run(services, sent["messageId"], sent["runId"])
    wall = time.monotonic() - started
    assert status == "COMPLETE", status
    fragment = client.get(f"/api/messages/{sent['messageId']}/fragment", headers=headers)
    return wall, fragment.get_json()["metadata"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--framework", default="STATIC", choices=["STATIC", "REACT", "NEXTJS"])
    parser.add_argument("--throughput", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--open", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium: install the Debian package chromium")
    if args.throughput:
        throughput(chromium, args.throughput, args.open, args.concurrency)
        return

    scratch = Path(tempfile.mkdtemp(prefix="checks-bench-"))
    scratch.chmod(0o755)  # sandbox users pass through it to their workspaces
    bundled = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        bundled = BundledRedis(scratch / "redis").start()
        redis_url = bundled.url
    try:
        measure(args, scratch, redis_url)
    finally:
        if bundled is not None:
            bundled.stop()


def measure(args: argparse.Namespace, scratch: Path, redis_url: str) -> None:
    database_url = normalize_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{scratch / 'bench.db'}"
    )
    upgrade(database_url)
    sandboxes = scratch / "sandboxes"
    sandboxes.mkdir()
    sandboxes.chmod(0o755)
    templates = None
    if args.framework in COMPONENT_PATHS:
        templates = os.environ.get("SANDBOX_TEMPLATES", "/tmp/appforge-ci-templates")

    with FakeLLM() as llm:
        base = Settings(
            database_url=database_url,
            redis_url=redis_url,
            auth_secret=SECRET,
            default_credits=10_000,
            providers=(ProviderConfig("primary", llm.base_url, "k", "bench-model"),),
            sandbox_root=str(sandboxes),
            sandbox_isolation="best-effort",
            sandbox_templates=templates,
            queue_name=f"bench-{uuid.uuid4().hex[:8]}",
        )
        framework = "NEXTJS" if args.framework == "STATIC" else args.framework
        stacks = {}
        for mode in ("chromium", "off"):
            settings = base.model_copy(update=dict(preview_check=mode))
            services = build_run_services(settings)
            client = create_app(settings, celery=create_celery(settings)).test_client()
            stacks[mode] = (client, services)
        walls: dict[str, list[float]] = {"chromium": [], "off": []}
        renders: list[float] = []
        builds: list[float] = []
        for mode in ("chromium", "off"):  # warm up: the first render starts the browser
            llm.script(reply(args.framework))
            one_run(*stacks[mode], framework)
        for _ in range(args.runs):
            for mode in ("chromium", "off"):
                llm.script(reply(args.framework))
                wall, metadata = one_run(*stacks[mode], framework)
                walls[mode].append(wall)
                if mode == "chromium":
                    checks = metadata["checks"]
                    assert checks["status"] == "passed", checks
                    renders.append(checks["render"]["durationMs"] / 1000)
                    if checks["build"]["status"] != "skipped":
                        builds.append(checks["build"]["durationMs"] / 1000)
        checker = stacks["chromium"][1].checker
        assert checker is not None and checker.browser is not None
        memory = checker.browser.memory_bytes() / 2**20
        context_rss, context_pss = context_memory(checker.browser)
        checker.browser.close()

    print(f"{args.framework}, {args.runs} runs each, alternating; wall time per run in seconds")
    print("                    p50     p95    mean")
    for mode, label in (("off", "checks off"), ("chromium", "checks on")):
        values = walls[mode]
        print(
            f"{label:<16} {percentile(values, 0.5):7.3f} {percentile(values, 0.95):7.3f} "
            f"{statistics.mean(values):7.3f}"
        )
    added = statistics.mean(walls["chromium"]) - statistics.mean(walls["off"])
    ratio = statistics.mean(walls["chromium"]) / statistics.mean(walls["off"])
    print(f"added by the checks: {added:.3f} s per run (x{ratio:.2f} the unchecked run)")
    print(
        f"render check alone: p50 {percentile(renders, 0.5):.3f} s, "
        f"p95 {percentile(renders, 0.95):.3f} s"
    )
    if builds:
        print(f"build (the one the worker runs either way): p50 {percentile(builds, 0.5):.3f} s")
    print(f"browser resident memory after the runs: {memory:.0f} MiB")
    print(
        f"one browser context with its page: +{context_rss:.0f} MiB resident, "
        f"+{context_pss:.0f} MiB proportional (shared pages split)"
    )


def _chromium_memory() -> tuple[int, int]:
    """(RSS, PSS) in bytes of the Chromium processes under this one."""
    rss = pss = 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if "chrom" not in comm.read():
                    continue
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    name, _, value = line.partition(":")
                    if name in ("Rss", "Pss"):
                        kib = int(value.split()[0]) * 1024
                        rss, pss = (rss + kib, pss) if name == "Rss" else (rss, pss + kib)
        except (OSError, ValueError):
            continue
    return rss, pss


def context_memory(browser: Browser) -> tuple[float, float]:
    """What one check's context (its page held open) adds to the idle browser, in MiB."""
    idle = _chromium_memory()
    stop = StopFlag()

    def hold() -> None:
        with contextlib.suppress(Cancelled):
            browser.render(served({"index.html": HANGS}), stop)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        deadline = time.monotonic() + 30
        while browser.open_contexts() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the page's renderer is up and has parsed it
        held = _chromium_memory()
    finally:
        stop.request("cancelled")
        holder.join()
    return (held[0] - idle[0]) / 2**20, (held[1] - idle[1]) / 2**20


def throughput(chromium: str, seconds: float, open_runs: int, concurrency: int) -> None:
    """`open_runs` threads each checking a page again and again through one browser."""
    browser = Browser(chromium, concurrency)
    done: list[float] = []
    failed: list[str] = []
    lock = threading.Lock()
    stop = StopFlag()
    target = served({"index.html": PAGE})

    def run() -> None:
        while not stop.requested():
            try:
                found = browser.render(target, stop)
            except Cancelled:
                return
            with lock:
                (done if found.status == "passed" else failed).append(found.duration_ms / 1000)

    browser.render(target, never())  # the browser starts before the clock does
    threads = [threading.Thread(target=run) for _ in range(open_runs)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    with lock:
        finished, failures = len(done), len(failed)
        renders = list(done)
    elapsed = time.monotonic() - started
    peak_waiting = browser.waiting
    stop.request("cancelled")
    for thread in threads:
        thread.join()
    memory = browser.memory_bytes() / 2**20
    browser.close()
    print(
        f"{open_runs} runs open, CHECK_CONCURRENCY={concurrency}, {os.cpu_count()} cores, "
        f"{elapsed:.0f} s"
    )
    rate = finished / elapsed * 60
    print(f"checks finished: {finished} ({rate:.0f} a minute), failed {failures}")
    if renders:
        print(
            f"render check alone: p50 {percentile(renders, 0.5):.3f} s, "
            f"p95 {percentile(renders, 0.95):.3f} s; waiting for a turn at the end: {peak_waiting}"
        )
    print(f"browser resident memory: {memory:.0f} MiB")


if __name__ == "__main__":
    main()
