"""The built-in offline provider: a scripted agent that builds a small app, no keys needed.

A static page (index.html, styles, script) by default; on the local sandbox's React or Next.js
template a component it then builds (`demo_built`).

It is a real implementation of the Provider protocol (it streams text and tool calls), used only
when no LLM provider is configured, and it says so in the run's metadata.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from orchestrator.providers.base import (
    Cancelled,
    ChatMessage,
    Delta,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from orchestrator.providers.demo_built import built_step, last_tool_result, layout_for
from orchestrator.providers.demo_edits import plan_change
from orchestrator.stop import Stop
from orchestrator.versions.base import paths_in_tree

CHUNK_DELAY_SECONDS = 0.01
# How the worker's checks report a broken app (DESIGN section 16), and the words of a demo prompt
# that asks for one, so `scripts/run` can show a repair.
CHECKS_FAILED = "Checks failed"
WITH_A_BUG = "with a bug"


class DemoProvider:
    name = "demo"
    model = "offline-demo"

    def __init__(self, chunk_delay: float = CHUNK_DELAY_SECONDS) -> None:
        self.chunk_delay = chunk_delay

    def stream(
        self, messages: list[ChatMessage], tools: list[ToolSpec], stop: Stop
    ) -> Iterator[Delta]:
        prompt = _last_user_text(messages)
        step = _steps_since_last_user(messages)
        title = _title_for(prompt)
        tool_names = {t.get("function", {}).get("name") for t in tools}
        system = str(messages[0].get("content") or "") if messages else ""
        existing = paths_in_tree(system)
        layout = layout_for(system)
        if prompt.startswith(CHECKS_FAILED) and {"write_file", "finish"} <= tool_names:
            yield from self._repair(messages, stop)
        elif layout is not None and {"write_file", "run_command", "finish"} <= tool_names:
            result = last_tool_result(messages)
            planned = built_step(layout, title, prompt, step, existing, result)
            yield from self._text(planned.text, stop)
            for index, (name, args) in enumerate(planned.calls):
                yield from _tool_call(index, name, args)
            yield Finish("tool_calls")
        elif "index.html" in existing and {"read_file", "edit_file", "finish"} <= tool_names:
            # A follow-up: change the app that is there, never start a new one.
            yield from self._follow_up(messages, prompt, step, existing, stop)
        elif step == 0:
            text = (
                f"I'll build **{title}** as a small static web app: an `index.html` page, "
                "a stylesheet and a script, so it opens right away in the preview."
            )
            yield from self._text(text, stop)
            if "write_file" in tool_names:
                for index, (path, content) in enumerate(_app_files(title, prompt).items()):
                    yield from _tool_call(index, "write_file", {"path": path, "content": content})
                yield Finish("tool_calls")
            else:
                yield Finish("stop")
        elif "finish" in tool_names:
            yield from self._text(" Done: the app is ready in the preview.", stop)
            summary = f"A static {title} page with its own styles and script."
            yield from _tool_call(0, "finish", {"title": title, "summary": summary})
            yield Finish("tool_calls")
        else:
            yield Finish("stop")
        yield Usage(
            prompt_tokens=sum(len(str(m.get("content"))) for m in messages) // 4,
            completion_tokens=64,
        )

    def _follow_up(
        self,
        messages: list[ChatMessage],
        prompt: str,
        step: int,
        existing: dict[str, int],
        stop: Stop,
    ) -> Iterator[Delta]:
        """Read the app's files, edit them in place, finish saying what changed."""
        if step == 0:
            yield from self._text(
                "I'll change the existing app rather than start over; first I read its files.",
                stop,
            )
            wanted = [p for p in ("index.html", "styles.css", "app.js") if p in existing]
            for index, path in enumerate(wanted):
                yield from _tool_call(index, "read_file", {"path": path})
            yield Finish("tool_calls")
            return
        files = _files_read(messages)
        change = plan_change(prompt, files)
        if step == 1 and change.edits:
            yield from self._text(" Now the edits.", stop)
            for index, item in enumerate(change.edits):
                args = {"path": item.path, "old": item.old, "new": item.new}
                yield from _tool_call(index, "edit_file", args)
            yield Finish("tool_calls")
            return
        summary = change.summary or "I could not find where to make that change in this app."
        yield from self._text(f" Done: {summary}", stop)
        found = re.search(r"<title>(.*?)</title>", files.get("index.html", ""), re.S)
        title = html.unescape(found[1]).strip() if found else "Demo App"
        yield from _tool_call(0, "finish", {"title": title, "summary": summary})
        yield Finish("tool_calls")

    def _repair(self, messages: list[ChatMessage], stop: Stop) -> Iterator[Delta]:
        """The worker's checks found the bug a "with a bug" prompt asked for: write the script
        without it and finish again (DESIGN section 16)."""
        prompt = _last_user_text([m for m in messages if not _is_checks_report(m)])
        title = _title_for(prompt)
        yield from self._text(" The checks found an error in app.js; fixing it.", stop)
        fixed = _app_files(title, re.sub(WITH_A_BUG, "", prompt, flags=re.I))["app.js"]
        yield from _tool_call(0, "write_file", {"path": "app.js", "content": fixed})
        summary = f"A static {title} page; its script no longer throws."
        yield from _tool_call(1, "finish", {"title": title, "summary": summary})
        yield Finish("tool_calls")

    def _text(self, text: str, stop: Stop) -> Iterator[Delta]:
        for piece in re.findall(r"\S+\s*|\s+", text):
            if stop.requested():
                raise Cancelled()
            time.sleep(self.chunk_delay)
            yield TextDelta(piece)


def _is_checks_report(message: ChatMessage) -> bool:
    return message.get("role") == "user" and str(message.get("content")).startswith(CHECKS_FAILED)


def _tool_call(index: int, name: str, args: dict[str, Any]) -> Iterator[Delta]:
    raw = json.dumps(args)
    yield ToolCallDelta(index=index, id=f"demo_{name}_{index}", name=name, arguments="")
    for start in range(0, len(raw), 256):
        yield ToolCallDelta(index=index, arguments=raw[start : start + 256])


def _files_read(messages: list[ChatMessage]) -> dict[str, str]:
    """What read_file returned since the prompt: {path: content}."""
    files: dict[str, str] = {}
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "tool":
            try:
                result = json.loads(str(message.get("content") or ""))
            except json.JSONDecodeError:
                continue
            if isinstance(result, dict) and isinstance(result.get("content"), str):
                files.setdefault(str(result.get("path")), result["content"])
    return files


def _last_user_text(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content or "")
    return ""


def _steps_since_last_user(messages: list[ChatMessage]) -> int:
    steps = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant":
            steps += 1
    return steps


def _title_for(prompt: str) -> str:
    lowered = prompt.lower()
    if "todo" in lowered or "to-do" in lowered:
        return "To-Do List App"
    words = re.findall(r"[A-Za-z0-9]+", prompt)[:6]
    return " ".join(words).title() or "Demo App"


def _app_files(title: str, prompt: str) -> dict[str, str]:
    safe_title = html.escape(title)
    safe_prompt = html.escape(prompt)
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{safe_title}</title>
  <link rel="stylesheet" href="styles.css">
</head>
<body>
  <main class="card">
    <h1>{safe_title}</h1>
    <p class="prompt">{safe_prompt}</p>
    <form id="add-form">
      <input id="item-input" placeholder="Add an item" autocomplete="off" required>
      <button type="submit">Add</button>
    </form>
    <ul id="items"></ul>
    <p id="count" class="muted">0 items</p>
  </main>
  <script type="module" src="app.js"></script>
</body>
</html>
"""
    styles = """* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center;
       font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d1f23; }
.card { width: min(480px, 92vw); background: #fff; border-radius: 12px; padding: 24px;
        box-shadow: 0 8px 24px rgba(0, 0, 0, .08); }
h1 { margin: 0 0 4px; font-size: 1.5rem; }
.prompt, .muted { color: #6b7280; font-size: .9rem; }
form { display: flex; gap: 8px; margin: 16px 0; }
input { flex: 1; padding: 8px 10px; border: 1px solid #d1d5db; border-radius: 8px; }
button { padding: 8px 14px; border: 0; border-radius: 8px; background: #2563eb; color: #fff; }
li { display: flex; justify-content: space-between; padding: 6px 0; border-bottom: 1px solid #eee; }
li.done span { text-decoration: line-through; color: #9ca3af; }
"""
    script = """const form = document.getElementById("add-form");
const input = document.getElementById("item-input");
const list = document.getElementById("items");
const count = document.getElementById("count");
// The preview runs on an opaque origin, where storage may be refused: keep working without it.
function load() {
  try { return JSON.parse(localStorage.getItem("items") || "[]"); } catch { return []; }
}
const items = load();

function render() {
  list.innerHTML = "";
  items.forEach((item, i) => {
    const li = document.createElement("li");
    li.className = item.done ? "done" : "";
    const label = document.createElement("span");
    label.textContent = item.text;
    label.onclick = () => { item.done = !item.done; save(); };
    const remove = document.createElement("button");
    remove.textContent = "×";
    remove.onclick = () => { items.splice(i, 1); save(); };
    li.append(label, remove);
    list.append(li);
  });
  count.textContent = `${items.length} item${items.length === 1 ? "" : "s"}`;
}

function save() {
  try { localStorage.setItem("items", JSON.stringify(items)); } catch { /* preview only */ }
  render();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  items.push({ text: input.value.trim(), done: false });
  input.value = "";
  save();
});

render();
"""
    if WITH_A_BUG in prompt.lower():
        script = (
            "const shown = missingList.items; // the bug: missingList is not defined\n" + script
        )
    return {"index.html": page, "styles.css": styles, "app.js": script}
