"""The E2B template definitions of sandbox-templates/, checked here without E2B: each Dockerfile
through the e2b SDK's own parser and serializer (what `build()` sends), each start command run
with a stand-in `npm`, each name against what the sandbox asks for."""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from e2b import Template
from e2b_dockerfile_utils import parse_dockerfile_ast

from orchestrator.errors import ConfigError
from orchestrator.sandboxes.e2b import DEV_SERVERS, WORKSPACE
from orchestrator.sandboxes.e2b_templates import build, definition, load
from orchestrator.sandboxes.templates import STARTERS
from tests.conftest import unavailable
from tests.fakes.e2b_server import FakeE2B

FRAMEWORKS = sorted(DEV_SERVERS)
# What E2B's Dockerfile conversion turns into template steps (it drops EXPOSE and LABEL, and
# only prints a warning for anything else, so the check is ours).
KNOWN_INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER"}
# A full version in the tag (node:20.20.2-bookworm-slim, not node:20 or latest), or a digest.
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|(:[\w.-]+)?@sha256:[0-9a-f]{64})$")
START_SCRIPT = posixpath.join(posixpath.dirname(WORKSPACE), "start.sh")


def folder(framework: str) -> Path:
    return STARTERS / framework.lower()


def steps(framework: str) -> dict[str, Any]:
    """The template as the SDK would send it to E2B (COPY sources hashed, so they must exist)."""
    return json.loads(Template.to_json(definition(load(framework))))  # type: ignore[no-any-return]


def resolved_steps(framework: str) -> Iterator[tuple[str, str, str, list[str]]]:
    """(type, user, workdir, args) of each step, with the workdir and user in force at it."""
    user, workdir = "root", "/"
    for step in steps(framework)["steps"]:
        kind, args = step["type"], step["args"]
        if kind == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, args[0]))
        elif kind == "USER":
            user = args[0]
        yield kind, user, workdir, args


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_framework_has_a_template_named_as_the_sandbox_asks(framework: str) -> None:
    raw = tomllib.loads((folder(framework) / "e2b.toml").read_text())

    assert raw["template_name"] == DEV_SERVERS[framework].template
    assert (folder(framework) / raw["dockerfile"]).is_file()
    assert raw["start_cmd"] == START_SCRIPT
    assert (folder(framework) / "start.sh").is_file()
    assert raw["cpu_count"] >= 1
    assert raw["memory_mb"] >= 512 and raw["memory_mb"] % 2 == 0  # E2B wants an even number


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dockerfile_has_known_instructions_and_a_pinned_base(framework: str) -> None:
    ast = parse_dockerfile_ast((folder(framework) / "e2b.Dockerfile").read_text())
    names = [instruction.name for instruction in ast.instructions]
    [base] = [i.args[0] for i in ast.instructions if i.name == "FROM"]

    assert set(names) <= KNOWN_INSTRUCTIONS, set(names) - KNOWN_INSTRUCTIONS
    assert not ast.warnings
    assert PINNED_IMAGE.match(base), base
    assert steps(framework)["fromImage"] == base


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_template_installs_the_starter_in_the_sandbox_workspace(framework: str) -> None:
    copies = {}
    installs = []
    for kind, user, workdir, args in resolved_steps(framework):
        if kind == "COPY":
            source, target, owner = args[0], args[1], args[2]
            assert (folder(framework) / source).exists(), source
            assert owner.split(":")[0] == "user"  # the sandbox's commands run as `user`
            copies[source.rstrip("/")] = posixpath.normpath(posixpath.join(workdir, target))
        elif kind == "RUN" and "npm" in args[0]:
            installs.append((user, workdir, args[0]))

    assert copies == {"app": WORKSPACE, "start.sh": START_SCRIPT}
    assert (folder(framework) / "app" / "package-lock.json").is_file()
    # The lock file's tree, installed as the sandbox's user in the workspace.
    assert installs == [("user", WORKSPACE, "npm ci --no-audit --no-fund")]
    assert steps(framework)["startCmd"] == START_SCRIPT


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_start_script_is_valid_bash(framework: str) -> None:
    checked = subprocess.run(
        ["bash", "-n", str(folder(framework) / "start.sh")], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stderr
    assert os.access(folder(framework) / "start.sh", os.X_OK)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_start_script_runs_the_dev_server_the_sandbox_previews(
    framework: str, tmp_path: Path
) -> None:
    # A stand-in npm that records where and how it was started.
    record = tmp_path / "npm.args"
    npm = tmp_path / "npm"
    npm.write_text(f'#!/bin/sh\nprintf "%s\\n" "$PWD" "$@" > {shlex.quote(str(record))}\n')
    npm.chmod(0o755)

    started = subprocess.run(
        [str(folder(framework) / "start.sh")],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert started.returncode == 0, started.stderr
    cwd, *argv = record.read_text().splitlines()
    # Beside the script, as app/ is beside start.sh in the VM: the workspace.
    assert Path(cwd) == folder(framework) / "app"
    server = DEV_SERVERS[framework]
    assert ["npm", *argv] == shlex.split(server.command)
    assert str(server.port) in argv


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_starter_ships_the_program_its_dev_server_command_runs(framework: str) -> None:
    npm, exec_, dashes, program, *_ = shlex.split(DEV_SERVERS[framework].command)
    lock = json.loads((folder(framework) / "app" / "package-lock.json").read_text())
    root = lock["packages"][""]
    direct = {**root.get("dependencies", {}), **root.get("devDependencies", {})}

    # `npm exec` finds it installed by `npm ci`, from a package the starter depends on.
    assert [npm, exec_, dashes] == ["npm", "exec", "--"]
    assert [
        name
        for name in direct
        if program in lock["packages"][f"node_modules/{name}"].get("bin", {})
    ]


def test_the_angular_starter_can_serve() -> None:
    # `ng serve` (the E2B template's dev server) needs a serve target; `ng build` does not.
    angular = json.loads((folder("ANGULAR") / "app" / "angular.json").read_text())

    [project] = angular["projects"].values()
    assert project["architect"]["serve"]["builder"] == "@angular/build:dev-server"


class _Page(BaseHTTPRequestHandler):
    """Answers `/` with the status its server holds (200: the dev server has the page)."""

    def do_GET(self) -> None:
        self.send_response(getattr(self.server, "status", 200) if self.path == "/" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_ready_command_waits_for_the_dev_server_page(framework: str) -> None:
    if shutil.which("node") is None:
        unavailable("node is not installed (Debian: apt-get install nodejs)")
    ready = load(framework).ready_cmd
    url = f"http://127.0.0.1:{DEV_SERVERS[framework].port}/"
    assert ready.endswith(f" {url}")

    # The same command against a page that answers, one still failing, then nothing.
    page = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    check = ["bash", "-c", ready.replace(url, f"http://127.0.0.1:{page.server_port}/")]
    try:
        up = subprocess.run(check, timeout=30).returncode
        page.status = 500  # type: ignore[attr-defined]
        failing = subprocess.run(check, timeout=30).returncode
    finally:
        page.shutdown()
        page.server_close()
    down = subprocess.run(check, timeout=30, capture_output=True).returncode

    assert (up, failing != 0, down != 0) == (0, True, True)


def test_a_missing_template_is_a_config_error_that_names_it() -> None:
    with pytest.raises(ConfigError, match="COBOL"):
        load("COBOL")


def test_build_registers_the_template_under_its_name_with_the_starter(tmp_path: Path) -> None:
    # A copy of the folder as a developer may leave it: a local install inside app/.
    shutil.copytree(folder("REACT"), tmp_path / "react")
    (tmp_path / "react/app/node_modules/vite").mkdir(parents=True)
    (tmp_path / "react/app/node_modules/vite/index.js").write_text("x")
    config = load("REACT", root=tmp_path)

    with FakeE2B() as fake:
        template_id = build(config, api_key=fake.api_key, api_url=fake.url, domain=fake.domain)

    [made] = fake.builds
    assert template_id == made.template_id
    assert made.request == {"name": "react-developer", "cpuCount": 2, "memoryMB": 2048}
    assert made.template is not None
    assert made.template["fromImage"] == steps("REACT")["fromImage"]
    assert (made.template["startCmd"], made.template["readyCmd"]) == (
        START_SCRIPT,
        config.ready_cmd,
    )
    # The starter went up as its COPY's archive: sources and lock file, not the local install.
    [app_hash] = [s["filesHash"] for s in made.template["steps"] if s["args"][0] == "app/"]
    with tarfile.open(fileobj=io.BytesIO(fake.uploads[app_hash]), mode="r:*") as archive:
        names = archive.getnames()
    assert "app/package-lock.json" in names and "app/src" in names
    assert not [name for name in names if "node_modules" in name]
