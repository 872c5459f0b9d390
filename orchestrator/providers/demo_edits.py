"""How the offline demo changes an app it built: small, exact edits, described in words.

The demo is scripted, not clever: it knows the anchors of its own app and makes a dark mode, an
accent colour or, for anything else, a visible note from the request. An edit whose anchor is not
in the file (the app changed since) is left out, so every edit_file it sends applies.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Change:
    edits: list[Edit]
    summary: str


COLOURS = {
    "red": "#dc2626",
    "green": "#16a34a",
    "purple": "#7c3aed",
    "orange": "#ea580c",
    "pink": "#db2777",
    "teal": "#0d9488",
    "black": "#111827",
    "blue": "#1d4ed8",
}
# The buttons' colour, whatever it is now.
ACCENT = re.compile(r"button \{[^}]*?background: (#[0-9a-fA-F]{6});")

DARK_CSS = """
body.dark { background: #111827; color: #e5e7eb; }
body.dark .card { background: #1f2937; box-shadow: none; }
body.dark input { background: #111827; color: #e5e7eb; border-color: #374151; }
.theme-toggle { float: right; background: #374151; }"""
DARK_JS = """
// Dark mode: the toggle flips a class on <body>.
document.getElementById("theme-toggle").addEventListener("click", (event) => {
  const dark = document.body.classList.toggle("dark");
  event.target.textContent = dark ? "☀️ Light mode" : "🌙 Dark mode";
});"""


def plan_change(prompt: str, files: dict[str, str]) -> Change:
    """The edits that carry out `prompt` on `files` (the app as read), and what they do."""
    lowered = prompt.lower()
    if "dark" in lowered:
        return _keep_applicable(
            [
                Edit(
                    "index.html",
                    '<main class="card">',
                    '<main class="card">\n    <button id="theme-toggle" type="button" '
                    'class="theme-toggle">🌙 Dark mode</button>',
                ),
                Edit(
                    "styles.css",
                    "* { box-sizing: border-box; }",
                    "* { box-sizing: border-box; }" + DARK_CSS,
                ),  # fmt: skip
                Edit("app.js", "const items = load();", "const items = load();" + DARK_JS),
            ],
            files,
            "Added a dark mode toggle: a 🌙 button in index.html, dark colours in styles.css and "
            "the switch in app.js; everything else is unchanged.",
        )
    colour = next((name for name in COLOURS if re.search(rf"\b{name}\b", lowered)), None)
    accent = ACCENT.search(files.get("styles.css", ""))
    if colour is not None and accent is not None:
        old = accent[0]
        new = old.replace(f"background: {accent[1]};", f"background: {COLOURS[colour]};")
        return _keep_applicable(
            [Edit("styles.css", old, new)],
            files,
            f"Made the buttons {colour} ({COLOURS[colour]}) in styles.css; nothing else changed.",
        )
    note = html.escape(prompt.strip()[:200])
    return _keep_applicable(
        [Edit("index.html", "</h1>", f'</h1>\n    <p class="update">Update: {note}</p>')],
        files,
        "Added your request as an update note under the title in index.html (the offline demo "
        "cannot do more; with an LLM key the model makes the real change).",
    )


def _keep_applicable(edits: list[Edit], files: dict[str, str], summary: str) -> Change:
    kept = [e for e in edits if files.get(e.path, "").count(e.old) == 1]
    return Change(kept, summary if kept else "")
