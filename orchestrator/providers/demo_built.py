"""The offline demo for a React, Next.js or Angular project the sandbox builds: a component,
then the build.

When the system prompt describes the local sandbox's React template (context.build_guide),
the demo writes src/App.jsx and src/index.css (for Next.js: app/page.jsx and app/globals.css;
for Angular: the root component's class, template and the global styles), runs `npm run build`,
and finishes saying whether it passed; a follow-up reads the component, adds the request to it,
and builds again. On Vue and Svelte it writes its static page, which Vite builds as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BUILD = "npm run build"
CHANGES_MARK = "{/* changes */}"


def _jsx_note(prompt: str) -> str:
    return f"        <li>{_jsx_text(prompt)}</li>\n        {CHANGES_MARK}"


@dataclass(frozen=True)
class Layout:
    """Where a framework's component and styles live, and what names it in the system prompt
    (the template guide's words, kept literal: providers do not import the sandboxes)."""

    name: str
    marker: str
    # The file a follow-up reads and edits at `mark`; the styles; other files of the component.
    app: str
    styles: str
    component: Callable[[str, str], str]
    extra: dict[str, str] = field(default_factory=dict)
    mark: str = CHANGES_MARK
    # What a follow-up puts at `mark` for its request (the mark stays after it).
    note: Callable[[str], str] = _jsx_note


@dataclass(frozen=True)
class Step:
    text: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def layout_for(system_prompt: str) -> Layout | None:
    """The built framework the system prompt describes, or None (a static app)."""
    if f"run_command `{BUILD}`" not in system_prompt:
        return None
    return next((layout for layout in LAYOUTS if layout.marker in system_prompt), None)


def built_step(
    layout: Layout,
    title: str,
    prompt: str,
    step: int,
    existing: dict[str, int],
    last_result: dict[str, Any],
) -> Step:
    """What the demo does at `step` of a run on a React or Next.js template."""
    if layout.app in existing:
        plan = _follow_up_plan(layout, prompt, last_result)
    else:
        plan = _first_plan(layout, title, prompt)
    if step < len(plan):
        return plan[step]
    if step == len(plan):
        return Step(" Now I build it.", [("run_command", {"command": BUILD, "timeout": 180})])
    return _finish(layout, title, last_result)


def _first_plan(layout: Layout, title: str, prompt: str) -> list[Step]:
    text = (
        f"I'll build **{title}** as a {layout.name} component (`{layout.app}`) with its "
        "styles, then run the build so the preview shows the built app."
    )
    files = {
        layout.app: layout.component(title, prompt),
        **layout.extra,
        layout.styles: STYLESHEET,
    }
    return [Step(text, [("write_file", {"path": p, "content": c}) for p, c in files.items()])]


def _follow_up_plan(layout: Layout, prompt: str, last_result: dict[str, Any]) -> list[Step]:
    read = Step(
        f"I'll change the existing {layout.name} app; first I read its component.",
        [("read_file", {"path": layout.app})],
    )
    content = str(last_result.get("content") or "")
    if layout.mark in content:
        note = layout.note(prompt)
        edit = ("edit_file", {"path": layout.app, "old": layout.mark, "new": note})
        return [read, Step(" Now the change.", [edit])]
    # Not the demo's component: write one that carries the request.
    fresh = layout.component("Demo App", prompt)
    files = {layout.app: fresh, **layout.extra}
    writes = [("write_file", {"path": path, "content": c}) for path, c in files.items()]
    return [read, Step(" Now the change.", writes)]


def _finish(layout: Layout, title: str, result: dict[str, Any]) -> Step:
    if result.get("exitCode") == 0:
        text = " Done: the build passed and the preview shows the built app."
        summary = f"A {layout.name} {title} component, built offline in the sandbox."
    else:
        error = str(result.get("stderr") or result.get("stdout") or "")[-300:]
        text = f" The build failed:\n\n```\n{error}\n```"
        summary = f"A {layout.name} {title} component; its build failed."
    return Step(text, [("finish", {"title": title, "summary": summary})])


def last_tool_result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for message in reversed(messages):
        if message.get("role") == "user":
            return {}
        if message.get("role") == "tool":
            try:
                result = json.loads(str(message.get("content") or ""))
            except json.JSONDecodeError:
                return {}
            return result if isinstance(result, dict) else {}
    return {}


def _jsx_text(text: str) -> str:
    """Text as a JSX string expression: nothing in it is read as markup or code."""
    return "{" + json.dumps(text[:200]) + "}"


def app_component(title: str, prompt: str) -> str:
    return f"""import {{ useState }} from 'react'

export default function App() {{
  const [items, setItems] = useState([])
  const [text, setText] = useState('')

  function add(event) {{
    event.preventDefault()
    if (!text.trim()) return
    setItems([...items, {{ text: text.trim(), done: false }}])
    setText('')
  }}

  function toggle(index) {{
    setItems(items.map((item, i) => (i === index ? {{ ...item, done: !item.done }} : item)))
  }}

  return (
    <main className="card">
      <h1>{_jsx_text(title)}</h1>
      <p className="muted">{_jsx_text(prompt)}</p>
      <form onSubmit={{add}}>
        <input value={{text}} onChange={{(e) => setText(e.target.value)}}
          placeholder="Add an item" />
        <button type="submit">Add</button>
      </form>
      <ul>
        {{items.map((item, i) => (
          <li key={{i}} className={{item.done ? 'done' : ''}} onClick={{() => toggle(i)}}>
            {{item.text}}
          </li>
        ))}}
      </ul>
      <p className="muted" id="count">{{items.length}} item{{items.length === 1 ? '' : 's'}}</p>
      <ul className="changes">
        {CHANGES_MARK}
      </ul>
    </main>
  )
}}
"""


STYLESHEET = """* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center;
       font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d1f23; }
.card { width: min(480px, 92vw); background: #fff; border-radius: 12px; padding: 24px;
        box-shadow: 0 8px 24px rgba(0, 0, 0, .08); }
h1 { margin: 0 0 4px; font-size: 1.5rem; }
.muted { color: #6b7280; font-size: .9rem; }
form { display: flex; gap: 8px; margin: 16px 0; }
input { flex: 1; padding: 8px 10px; border: 1px solid #d1d5db; border-radius: 8px; }
button { padding: 8px 14px; border: 0; border-radius: 8px; background: #2563eb; color: #fff; }
li { padding: 6px 0; border-bottom: 1px solid #eee; cursor: pointer; }
li.done { text-decoration: line-through; color: #9ca3af; }
"""


def next_page(title: str, prompt: str) -> str:
    return "'use client'\n\n" + app_component(title, prompt)


ANGULAR_MARK = "/* changes */"


def angular_component(title: str, prompt: str) -> str:
    # Texts go in as JSON string literals, which are TypeScript string literals too.
    return f"""import {{ Component }} from '@angular/core';

@Component({{
  selector: 'app-root',
  standalone: true,
  templateUrl: './app.component.html',
  styleUrl: './app.component.css',
}})
export class AppComponent {{
  title = {json.dumps(title[:200])};
  prompt = {json.dumps(prompt[:200])};
  text = '';
  items: {{ text: string; done: boolean }}[] = [];
  changes: string[] = [
    {ANGULAR_MARK}
  ];

  add(event: Event) {{
    event.preventDefault();
    if (!this.text.trim()) return;
    this.items = [...this.items, {{ text: this.text.trim(), done: false }}];
    this.text = '';
  }}

  toggle(index: number) {{
    this.items = this.items.map((item, i) =>
      i === index ? {{ ...item, done: !item.done }} : item,
    );
  }}
}}
"""


ANGULAR_TEMPLATE = """<main class="card">
  <h1>{{ title }}</h1>
  <p class="muted">{{ prompt }}</p>
  <form (submit)="add($event)">
    <input [value]="text" (input)="text = $any($event.target).value" placeholder="Add an item" />
    <button type="submit">Add</button>
  </form>
  <ul>
    @for (item of items; track $index) {
      <li [class.done]="item.done" (click)="toggle($index)">{{ item.text }}</li>
    }
  </ul>
  <p class="muted" id="count">{{ items.length }} item{{ items.length === 1 ? '' : 's' }}</p>
  <ul class="changes">
    @for (change of changes; track $index) {
      <li>{{ change }}</li>
    }
  </ul>
</main>
"""


def _angular_note(prompt: str) -> str:
    return f"{json.dumps(prompt[:200])},\n    {ANGULAR_MARK}"


LAYOUTS = (
    Layout("React", "React 18 + Vite app", "src/App.jsx", "src/index.css", app_component),
    Layout("Next.js", "Next.js 14 app", "app/page.jsx", "app/globals.css", next_page),
    Layout(
        "Angular",
        "Angular 18 app",
        "src/app/app.component.ts",
        "src/styles.css",
        angular_component,
        extra={"src/app/app.component.html": ANGULAR_TEMPLATE},
        mark=ANGULAR_MARK,
        note=_angular_note,
    ),
)
