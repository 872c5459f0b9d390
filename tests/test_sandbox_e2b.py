"""The E2B sandbox through the real e2b SDK, against a local fake of E2B's API and envd."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from orchestrator.errors import ConfigError, SandboxError
from orchestrator.sandboxes.base import OUTPUT_LIMIT, SandboxFileNotFound, SandboxPathError
from orchestrator.sandboxes.e2b import (
    DEV_SERVERS,
    MAX_READ_BYTES,
    MAX_WRITE_BYTES,
    WORKSPACE,
    E2BSandbox,
    E2BSandboxFactory,
)
from orchestrator.sandboxes.e2b_templates import load
from orchestrator.settings import Settings
from orchestrator.wiring.sandboxes import build_sandboxes
from tests.fakes.e2b_server import FakeE2B

# A dev server that just stays up, standing in for `npm run dev` in the fake.
SLOW_NPM = "#!/bin/sh\nexec sleep 30\n"


@pytest.fixture
def fake() -> Iterator[FakeE2B]:
    with FakeE2B() as server:
        yield server


@pytest.fixture
def factory(fake: FakeE2B) -> E2BSandboxFactory:
    return E2BSandboxFactory(**fake.factory_kwargs())


@pytest.fixture
def sandbox(factory: E2BSandboxFactory) -> Iterator[E2BSandbox]:
    sandbox = factory.create("run-1", "NEXTJS")
    yield sandbox
    sandbox.kill()


@pytest.mark.parametrize("framework", sorted(DEV_SERVERS))
def test_each_framework_gets_its_template(
    fake: FakeE2B, factory: E2BSandboxFactory, framework: str
) -> None:
    sandbox = factory.create("run-1", framework)

    template = DEV_SERVERS[framework].template
    assert fake.sandboxes[sandbox.id].template == template
    assert fake.sandboxes[sandbox.id].metadata == {"runId": "run-1", "framework": framework}
    assert fake.sandboxes[sandbox.id].timeout >= 900  # above the default run deadline
    assert sandbox.kind == "e2b"
    assert sandbox.metadata == {"sandbox": "e2b", "template": template, "sandboxId": sandbox.id}


def test_templates_and_env_can_be_configured(fake: FakeE2B) -> None:
    factory = E2BSandboxFactory(
        **fake.factory_kwargs(), templates={"vue": "my-vue"}, timeout=120, extra_env={"A": "1"}
    )

    sandbox = factory.create("run-1", "VUE")

    assert fake.sandboxes[sandbox.id].template == "my-vue"
    assert fake.sandboxes[sandbox.id].timeout == 120
    assert sandbox.run("echo $A").stdout == "1\n"


def test_the_deployment_names_its_templates_per_framework(fake: FakeE2B) -> None:
    env = {
        "SANDBOX": "e2b",
        "E2B_API_KEY": fake.api_key,
        "E2B_API_URL": fake.url,
        "E2B_SANDBOX_URL": fake.url,
        "E2B_DOMAIN": fake.domain,
        "E2B_TEMPLATE_REACT": "team-react",
        "E2B_TEMPLATE_NEXTJS": "team-next:v2",
        "E2B_TEMPLATE_VUE": "",  # empty: the default
    }
    sandboxes = build_sandboxes(Settings.from_env(env))
    configured = {"REACT": "team-react", "NEXTJS": "team-next:v2"}

    for framework in sorted(DEV_SERVERS):
        sandbox = sandboxes.create("run-1", framework)
        sandbox.kill()

        # Otherwise the name its template definition registers (sandbox-templates/*/e2b.toml).
        expected = configured.get(framework, load(framework).name)
        assert fake.sandboxes[sandbox.id].template == expected


def test_a_template_variable_for_no_framework_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="E2B_TEMPLATE_REACTJS names no framework"):
        Settings.from_env({"E2B_TEMPLATE_REACTJS": "team-react"})


def test_unknown_framework_is_a_sandbox_error(factory: E2BSandboxFactory) -> None:
    with pytest.raises(SandboxError, match="COBOL"):
        factory.create("run-1", "COBOL")


@pytest.mark.parametrize(
    ("error", "api_key", "message"),
    [((500, "the cluster is on fire"), None, "the cluster is on fire"), (None, "wrong", "401")],
)
def test_a_failed_create_is_a_sandbox_error(
    fake: FakeE2B, error: tuple[int, str] | None, api_key: str | None, message: str
) -> None:
    fake.create_error = error
    kwargs = fake.factory_kwargs() | ({"api_key": api_key} if api_key else {})

    with pytest.raises(SandboxError, match=message):
        E2BSandboxFactory(**kwargs).create("run-1", "NEXTJS")

    assert fake.sandboxes == {}


def test_files_round_trip_in_the_workspace(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    sandbox.write("src/app/page.tsx", "export default 1 // é\n")
    sandbox.write("./README.md", "hi")

    assert sandbox.read("src/app/page.tsx") == "export default 1 // é\n"
    root = fake.sandboxes[sandbox.id].host_path(WORKSPACE)
    assert (root / "src/app/page.tsx").read_text() == "export default 1 // é\n"


def test_list_shows_files_like_the_local_sandbox(sandbox: E2BSandbox) -> None:
    for path in ["src/app/page.tsx", "README.md", "node_modules/x/index.js", ".git/HEAD"]:
        sandbox.write(path, "x")

    assert sandbox.list() == ["README.md", "src/app/page.tsx"]
    assert sandbox.list("src") == ["src/app/page.tsx"]
    assert sandbox.list("README.md") == ["README.md"]


def test_reads_and_writes_are_capped(sandbox: E2BSandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.write("big.txt", "x" * (MAX_WRITE_BYTES + 1))
    sandbox.run(f"head -c {MAX_READ_BYTES + 10} /dev/zero | tr '\\0' x > big.txt")

    text = sandbox.read("big.txt")

    assert text.startswith("x" * MAX_READ_BYTES + "\n[file truncated")


def test_a_missing_file_is_not_found(sandbox: E2BSandbox) -> None:
    with pytest.raises(SandboxFileNotFound):
        sandbox.read("nope.txt")
    with pytest.raises(SandboxFileNotFound):
        sandbox.list("nope")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "~/.bashrc", "", "."])
def test_escaping_paths_are_refused_before_any_request(
    fake: FakeE2B, sandbox: E2BSandbox, path: str
) -> None:
    before = len(fake.calls)

    with pytest.raises(SandboxPathError):
        sandbox.write(path, "x")
    with pytest.raises(SandboxPathError):
        sandbox.read(path)

    assert len(fake.calls) == before


def test_a_symlink_out_of_the_workspace_is_refused(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    outside = fake.sandboxes[sandbox.id].host_path("/home/user/outside")
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    sandbox.run(f"ln -s {outside} link")

    with pytest.raises(SandboxPathError):
        sandbox.write("link/x.txt", "x")
    with pytest.raises(SandboxPathError):
        sandbox.read("link/secret.txt")
    with pytest.raises(SandboxPathError):
        sandbox.list("link")

    assert not (outside / "x.txt").exists()


def test_run_returns_exit_code_and_output(sandbox: E2BSandbox) -> None:
    result = sandbox.run("echo out; echo err >&2; basename $(pwd)")

    assert result.as_tool_result() == {
        "exitCode": 0,
        "stdout": "out\napp\n",
        "stderr": "err\n",
        "truncated": False,
    }


def test_a_non_zero_exit_is_a_result_not_an_error(sandbox: E2BSandbox) -> None:
    result = sandbox.run("echo partial; echo boom >&2; exit 3")

    assert (result.exit_code, result.stdout, result.stderr) == (3, "partial\n", "boom\n")


def test_long_output_keeps_its_start_and_its_end_with_a_note(sandbox: E2BSandbox) -> None:
    result = sandbox.run(
        f"echo FIRST; head -c {OUTPUT_LIMIT * 3} /dev/zero | tr '\\0' x; echo LAST"
    )

    assert result.truncated and result.exit_code == 0
    assert len(result.stdout) == OUTPUT_LIMIT
    assert result.stdout.startswith("FIRST\nxxx") and result.stdout.endswith("xxxLAST\n")
    assert f"x\n[output truncated: {OUTPUT_LIMIT * 3 + 11} characters in all;" in result.stdout


def test_a_command_past_its_timeout_is_timed_out_and_killed(
    fake: FakeE2B, sandbox: E2BSandbox
) -> None:
    result = sandbox.run("echo started; sleep 30", timeout=1)

    assert result.timed_out and result.exit_code == 124
    assert result.stdout == "started\n"
    assert fake.calls_to("POST", "/process.Process/SendSignal")
    assert not any(p.running for p in fake.sandboxes[sandbox.id].processes.values())


def test_preview_starts_the_dev_server_in_the_background(
    fake: FakeE2B, sandbox: E2BSandbox
) -> None:
    fake.add_program("npm", SLOW_NPM)

    url = sandbox.preview()

    assert url == f"https://3000-{sandbox.id}.{fake.domain}"
    [server] = fake.sandboxes[sandbox.id].processes.values()
    assert server.command == DEV_SERVERS["NEXTJS"].command
    assert server.running  # preview() did not wait for it
    assert [c.body for c in fake.calls_to("POST", f"/sandboxes/{sandbox.id}/timeout")] == [
        {"timeout": 3600}
    ]
    assert sandbox.preview() == url
    assert len(fake.calls_to("POST", "/process.Process/Start")) == 1


def test_close_with_keep_alive_leaves_the_preview_running(
    fake: FakeE2B, sandbox: E2BSandbox
) -> None:
    fake.add_program("npm", SLOW_NPM)
    sandbox.preview()

    sandbox.close(keep_alive=True)

    assert fake.sandboxes[sandbox.id].state == "alive"
    assert not fake.calls_to("DELETE", f"/sandboxes/{sandbox.id}")


def test_close_kills_the_sandbox(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    sandbox.close()

    assert fake.sandboxes[sandbox.id].state == "killed"
    assert len(fake.calls_to("DELETE", f"/sandboxes/{sandbox.id}")) == 1


def test_kill_is_idempotent_and_quiet_when_already_gone(
    fake: FakeE2B, factory: E2BSandboxFactory
) -> None:
    first, second = factory.create("run-1", "NEXTJS"), factory.create("run-2", "NEXTJS")
    first.kill()
    first.kill()
    first.close()
    fake.sandboxes[second.id].state = "killed"  # E2B ended it on its own (timeout)
    second.kill()

    assert len(fake.calls_to("DELETE", f"/sandboxes/{first.id}")) == 1
    assert len(fake.calls_to("DELETE", f"/sandboxes/{second.id}")) == 1


def test_kill_from_another_thread_ends_a_blocked_run(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    killer = threading.Timer(0.3, sandbox.kill)
    killer.start()
    started = time.monotonic()

    with pytest.raises(SandboxError, match="stopped"):
        sandbox.run("sleep 30", timeout=20)

    killer.join()
    assert time.monotonic() - started < 10
    assert fake.sandboxes[sandbox.id].state == "killed"


def test_a_killed_sandbox_refuses_work(sandbox: E2BSandbox) -> None:
    sandbox.kill()

    with pytest.raises(SandboxError, match="stopped"):
        sandbox.write("a.txt", "x")
    with pytest.raises(SandboxError, match="stopped"):
        sandbox.run("true")


@pytest.mark.skipif(not os.environ.get("E2B_API_KEY"), reason="needs E2B_API_KEY (real E2B)")
def test_live_e2b_round_trip() -> None:
    # "base" is E2B's public default template, so this needs no template of ours.
    factory = E2BSandboxFactory(
        os.environ["E2B_API_KEY"], templates={"NEXTJS": "base"}, timeout=120
    )
    sandbox = factory.create("live-test", "NEXTJS")
    try:
        sandbox.write("hello.txt", "hello from the test")
        assert sandbox.read("hello.txt") == "hello from the test"
        result = sandbox.run("echo hi")
        assert (result.exit_code, result.stdout) == (0, "hi\n")
    finally:
        sandbox.kill()
