"""The build check of a framework app (DESIGN section 16), on the prepared React template.

The check's build is the one the worker runs when the model left its change unbuilt: a version
is built once per round, never twice. The template is prepared once per machine (see
tests/test_framework_builds.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.checks.browser import find_chromium
from orchestrator.settings import Settings
from tests.conftest import prepared_templates, unavailable
from tests.fakes.llm_server import FakeLLM, Reply, ToolCall
from tests.test_checks import Stack, check_events, checks_failed, make_stack

COMPONENT = """export default function App() {
  return <main><h1>Hello from the component</h1></main>
}
"""
BROKEN = """export default function App() {
  return <main><h1>Unclosed</main>
}
"""


@pytest.fixture(scope="module")
def templates_dir() -> Path:
    return prepared_templates("react")


@pytest.fixture(scope="module")
def stack(settings: Settings, templates_dir: Path) -> Iterator[Stack]:
    if find_chromium() is None:
        unavailable("no Chromium: install the Debian package chromium")
    checked = settings.model_copy(
        update=dict(
            sandbox_templates=str(templates_dir),
            preview_check="chromium",
            check_max_rounds=2,
            agent_max_steps=8,
        )
    )
    yield from make_stack(checked, framework="REACT")


def component(content: str) -> Reply:
    """The model writes its component and finishes without building it."""
    return Reply(
        "",
        tool_calls=[
            ToolCall("write_file", {"path": "src/App.jsx", "content": content}),
            ToolCall("finish", {"title": "App", "summary": "s"}),
        ],
    )


def test_a_build_error_goes_back_to_the_model_and_its_fix_is_built_and_rendered(
    stack: Stack, llm: FakeLLM
) -> None:
    llm.script(component(BROKEN), component(COMPONENT))
    message, fragment, _ = stack.run("Say hello")
    assert message["status"] == "COMPLETE", message
    assert len(llm.requests) == 2
    told = checks_failed(llm)
    assert len(told) == 1 and "Build:" in told[0] and "App.jsx" in told[0], told
    checks = fragment["metadata"]["checks"]
    assert checks["status"] == "passed" and checks["rounds"] == 2, checks
    assert checks["build"]["status"] == "passed" and checks["build"]["exitCode"] == 0
    assert checks["build"]["errors"] == []
    assert checks["render"]["status"] == "passed", checks["render"]
    # One build per round, each the worker's, and none more when the version is saved.
    builds = [c["id"] for c in message["toolCalls"] if c["id"].startswith("final_build")]
    assert builds == ["final_build", "final_build_2"], builds
    assert fragment["metadata"]["build"]["status"] == "passed"
    events = [(e["phase"], e["status"]) for e in check_events(stack, message["id"])]
    assert events == [
        ("build", "running"),
        ("build", "failed"),
        ("build", "running"),
        ("build", "passed"),
        ("render", "running"),
        ("render", "passed"),
    ]
    shot = stack.client.get(f"/api/fragments/{fragment['id']}/screenshot")
    assert shot.status_code == 200 and shot.content_type == "image/png"
