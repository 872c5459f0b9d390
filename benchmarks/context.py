"""What a run sends the model, with the context budget and without it (DESIGN section 17).

    .venv/bin/python -m benchmarks.context [--steps 25] [--files 50] [--file-kb 4]

A scripted run of the real agent loop, provider chain and `openai` client against the fake LLM
(which counts four characters a token, as its `usage` reports), in a local sandbox: the model
writes a FILES-file app ten files a step, lists it, then reads a file and builds (a command that
prints every source, as a build log does) in turns until the last step finishes. The same
script runs without a budget (the baseline), with the default 128,000-token context and with a
32,000-token one. Printed: the prompt tokens of every step, the run's total, the largest
request against the budget, the CPU time the budgeting took per request, and how the total
grows in a run twice as long (2x is linear growth, 4x quadratic).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from orchestrator.providers.base import ChatMessage, Provider, ToolSpec
from orchestrator.providers.chain import ProviderChain
from orchestrator.providers.openai_compat import OpenAICompatProvider
from orchestrator.providers.retry import BackoffWait
from orchestrator.runs.agent import run_agent
from orchestrator.runs.budget import RunBudget
from orchestrator.runs.context import SERVES_STATIC, system_prompt
from orchestrator.sandboxes.base import SandboxLimits
from orchestrator.sandboxes.local import LocalSandboxFactory
from orchestrator.settings import ProviderConfig
from orchestrator.stop import never
from tests.fakes.llm_server import FakeLLM, Reply, ToolCall

MAX_OUTPUT = 8192


class TimedBudget(RunBudget):
    """The run's budget, with the CPU time of each `fit` recorded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit_ns: list[int] = []

    def fit(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec],
        provider: Provider,
        *,
        tighter: bool,
    ) -> tuple[list[ChatMessage], int]:
        started = time.thread_time_ns()
        try:
            return super().fit(messages, tools, provider, tighter=tighter)
        finally:
            self.fit_ns.append(time.thread_time_ns() - started)


def script(steps: int, files: int, file_kb: int) -> list[Reply]:
    paths = [f"src/module{n:02d}.js" for n in range(files)]
    body = "export function f() {\n" + "  return 'some code of the app';\n" * (file_kb * 32) + "}\n"
    replies = []
    for start in range(0, files, 10):
        writes = [ToolCall("write_file", {"path": p, "content": body}) for p in paths[start:][:10]]
        replies.append(Reply("Writing files.", tool_calls=writes))
    replies.append(Reply("", tool_calls=[ToolCall("list_files", {"path": "src"})]))
    turn = 0
    while len(replies) < steps - 1:
        if turn % 2 == 0:
            call = ToolCall("read_file", {"path": paths[turn % files]})
        else:
            call = ToolCall("run_command", {"command": "cat src/*.js"})
        replies.append(Reply("", tool_calls=[call]))
        turn += 1
    finish = ToolCall("finish", {"title": "App", "summary": "Built."})
    return [*replies[: steps - 1], Reply("Done.", tool_calls=[finish])]


def one_run(
    steps: int, files: int, file_kb: int, context: int | None
) -> tuple[list[int], TimedBudget | None, int]:
    """The prompt tokens of each step (as the provider counted them), the budget used, and the
    prompt tokens the provider served from its cache."""
    root = Path(tempfile.mkdtemp(prefix="bench-context-"))
    limits = SandboxLimits(cpu_seconds=20, memory_bytes=512 * 1024 * 1024, max_processes=64)
    sandbox = LocalSandboxFactory(root, limits, isolation="none").create("bench", "static")
    try:
        with FakeLLM() as llm:
            llm.script(*script(steps, files, file_kb))
            config = ProviderConfig("primary", llm.base_url, "k", "m", context or 10**9)
            provider = OpenAICompatProvider(config, max_output_tokens=MAX_OUTPUT)
            budget = TimedBudget(max_output_tokens=MAX_OUTPUT) if context else None
            chain = ProviderChain([provider], wait=BackoffWait(cap=0.05), fitter=budget)
            messages: list[ChatMessage] = [
                {"role": "system", "content": system_prompt("REACT", SERVES_STATIC)},
                {"role": "user", "content": f"Build an app of {files} modules."},
            ]
            outcome = run_agent(messages, chain, sandbox, lambda _: None, never(), max_steps=steps)
            assert outcome.steps == steps, outcome.steps
            sent = [len(json.dumps(r["messages"])) // 4 for r in llm.requests]
            return sent, budget, chain.cached_tokens
    finally:
        sandbox.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--file-kb", type=int, default=4)
    args = parser.parse_args()
    variants = [("no budget", None), ("budget 128k", 128_000), ("budget 32k", 32_000)]

    print(
        f"A {args.steps}-step run writing, reading and building {args.files} files of "
        f"~{args.file_kb} KB (prompt tokens per request, as the fake LLM counts them)\n"
    )
    results = {label: one_run(args.steps, args.files, args.file_kb, c) for label, c in variants}
    print("step " + "".join(f"{label:>14}" for label, _ in variants))
    for step in range(args.steps):
        print(
            f"{step + 1:>4} " + "".join(f"{results[label][0][step]:>14,}" for label, _ in variants)
        )
    baseline = sum(results["no budget"][0])
    print()
    for label, context in variants:
        sent, budget, cached = results[label]
        line = f"{label:<12} total {sum(sent):>10,} tokens ({sum(sent) / baseline:5.2f}x baseline,"
        line += f" {1 - cached / sum(sent):4.0%} uncached)"
        line += f"  largest request {max(sent):>8,}"
        if context:
            limit = context - MAX_OUTPUT
            line += f" of a budget of {limit:,} ({max(sent) / limit:4.0%})"
        print(line)
        if budget is not None:
            micros = [ns / 1000 for ns in budget.fit_ns]
            print(
                f"{'':<12} budgeting CPU per request: mean {statistics.mean(micros):7.1f} us, "
                f"max {max(micros):7.1f} us"
            )

    print("\nThe total of a run twice as long (2x is linear growth, 4x quadratic):")
    for label, context in variants:
        short = sum(results[label][0])
        long = sum(one_run(args.steps * 2, args.files, args.file_kb, context)[0])
        print(
            f"{label:<12} {args.steps} steps {short:>10,}  {args.steps * 2} steps {long:>10,}  "
            f"x{long / short:4.2f}"
        )


if __name__ == "__main__":
    main()
