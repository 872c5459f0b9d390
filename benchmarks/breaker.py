"""Time to first delta with a hanging primary, with and without the shared circuit breaker.

    .venv/bin/python -m benchmarks.breaker [--runs 10] [--read-timeout 1.0]

The real provider chain (the `openai` client, tenacity retries, the fallback) against two fake
OpenAI-compatible servers: the primary accepts each request and never answers, the fallback
answers at once. Runs go one after the other; each measures the time from its first model call
to its first text delta. Without a breaker every run waits out its retries on the primary
(3 attempts x the read time-out); with it, the runs after the breaker opened (5 failed
attempts) go to the fallback at once. Uses REDIS_URL when set, else the bundled Redis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from orchestrator.providers.base import TextDelta
from orchestrator.providers.breaker import Breaker, BreakerConfig, breaker_client
from orchestrator.providers.chain import ProviderChain
from orchestrator.providers.openai_compat import OpenAICompatProvider
from orchestrator.providers.retry import BackoffWait
from orchestrator.settings import ProviderConfig
from orchestrator.stop import never
from orchestrator.wiring.bundled_redis import BundledRedis
from tests.fakes.llm_server import FakeLLM, Hang, Reply


def first_delta_seconds(chain: ProviderChain) -> float:
    started = time.monotonic()
    messages = [{"role": "user", "content": "Build a to-do list app"}]
    for delta in chain.stream(messages, [], never()):
        if isinstance(delta, TextDelta):
            return time.monotonic() - started
    raise RuntimeError("the chain gave no text")


def measure(
    label: str, runs: int, providers: list[OpenAICompatProvider], breaker: Breaker | None
) -> list[float]:
    wait = BackoffWait(base=0.05, cap=0.05)
    seconds = []
    for _ in range(runs):
        chain = ProviderChain(providers, attempts_per_provider=3, wait=wait, breaker=breaker)
        seconds.append(first_delta_seconds(chain))
    print(
        f"{label:<16} first delta: mean {statistics.mean(seconds):6.3f}s  "
        f"median {statistics.median(seconds):6.3f}s  max {max(seconds):6.3f}s  "
        f"per run: {' '.join(f'{s:.2f}' for s in seconds)}"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--read-timeout", type=float, default=1.0)
    args = parser.parse_args()

    bundled = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        bundled = BundledRedis(Path(tempfile.mkdtemp(prefix="breaker-bench-"))).start()
        redis_url = bundled.url
    with FakeLLM() as primary, FakeLLM() as fallback:
        primary.default = Hang(3600)
        fallback.default = Reply("From the fallback.")
        providers = [
            OpenAICompatProvider(
                ProviderConfig(name, llm.base_url, "x", f"{name}-model"),
                read_timeout=args.read_timeout,
                connect_timeout=2.0,
            )
            for name, llm in (("primary", primary), ("fallback", fallback))
        ]
        print(f"primary hangs; read time-out {args.read_timeout}s, 3 attempts, {args.runs} runs")
        without = measure("without breaker", args.runs, providers, None)
        primary.reset()
        breaker = Breaker(
            breaker_client(redis_url),
            f"bench-{uuid.uuid4().hex[:8]}",
            BreakerConfig(failures=5, window=60, cooldown=300),
        )
        with_breaker = measure("with breaker", args.runs, providers, breaker)
        after_open = with_breaker[2:]
        print(
            f"once open (runs 3..{args.runs}): median {statistics.median(after_open) * 1000:.1f} ms"
            f" vs {statistics.median(without):.2f} s without; primary requests: "
            f"{len(primary.requests)} with the breaker vs {3 * args.runs} without"
        )
    if bundled is not None:
        bundled.stop()


if __name__ == "__main__":
    main()
