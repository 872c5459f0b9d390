from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.sandboxes.base import (
    OUTPUT_LIMIT,
    CommandResult,
    SandboxFileNotFound,
    SandboxLimits,
    SandboxPathError,
)
from orchestrator.sandboxes.local import (
    MAX_LIST_ENTRIES,
    MAX_READ_BYTES,
    MAX_WRITE_BYTES,
    LocalSandbox,
    LocalSandboxFactory,
    SandboxClosed,
)
from orchestrator.sandboxes.local_process import TOOL_ENV, IsolationUnavailable
from orchestrator.sandboxes.local_users import UID_BASE, UidLease
from orchestrator.settings import Settings
from tests.conftest import unavailable, wait_for

HAS_BWRAP = shutil.which("bwrap") is not None
IS_ROOT = os.geteuid() == 0
# Skipped locally without bubblewrap, or when not root; under CI=true they fail instead.
needs_bwrap = pytest.mark.needs_bwrap
needs_root = pytest.mark.needs_root  # commands drop privileges only under root
ISOLATIONS = [
    pytest.param("none", id="subprocess"),
    pytest.param("bwrap", id="bubblewrap", marks=needs_bwrap),
]
LIMITS = SandboxLimits(
    cpu_seconds=20,
    memory_bytes=512 * 1024 * 1024,
    max_processes=64,
    max_file_bytes=1024 * 1024,
)


@pytest.fixture
def root() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private, and as root commands run as another uid.
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def outside() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sandbox-outside-"))
    (path / "secret.txt").write_text("untouched")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def files(root: Path) -> Iterator[LocalSandbox]:
    """A sandbox for the file tests, where isolation makes no difference."""
    sandbox = LocalSandboxFactory(root, LIMITS, isolation="none").create("files", "static")
    yield sandbox
    sandbox.close()


@pytest.fixture(params=ISOLATIONS)
def sandbox(request: pytest.FixtureRequest, root: Path) -> Iterator[LocalSandbox]:
    factory = LocalSandboxFactory(root, LIMITS, isolation=request.param)
    sandbox = factory.create(f"run-{uuid.uuid4().hex[:8]}", "static")
    yield sandbox
    sandbox.close()


@pytest.fixture
def bwrapped(root: Path) -> Iterator[LocalSandbox]:
    if not HAS_BWRAP:
        unavailable("bubblewrap (bwrap) is not installed")
    sandbox = LocalSandboxFactory(root, LIMITS, isolation="bwrap").create("jailed", "static")
    yield sandbox
    sandbox.close()


def live_processes(marker: str, uid: int | None) -> list[int]:
    """Pids not yet dead (zombies excluded) whose command line has `marker` or that run as `uid`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            state = Path(entry.path, "stat").read_text().rpartition(")")[2].split()[0]
            cmdline = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
            owner = entry.stat().st_uid
        except (OSError, IndexError):
            continue
        if state != "Z" and (marker in cmdline or owner == uid):
            found.append(int(entry.name))
    return found


def leftovers(marker: str, uid: int | None, grace: float = 3.0) -> list[int]:
    """What is still alive after `grace` seconds: SIGKILLed processes may take a moment to exit."""
    give_up = time.monotonic() + grace
    while (found := live_processes(marker, uid)) and time.monotonic() < give_up:
        time.sleep(0.05)
    return found


def run_timed(sandbox: LocalSandbox, command: str, timeout: float) -> tuple[CommandResult, float]:
    started = time.monotonic()
    result = sandbox.run(command, timeout=timeout)
    return result, time.monotonic() - started


# Files


def test_written_files_read_back_and_are_listed_recursively(files: LocalSandbox) -> None:
    files.write("index.html", "<h1>hi</h1>")
    files.write("src/app.js", "console.log('é')")
    files.write("./a/b/c.txt", "deep")

    assert files.read("src/app.js") == "console.log('é')"
    assert files.read("a/b/c.txt") == "deep"
    assert files.list() == ["a/b/c.txt", "index.html", "src/app.js"]
    assert files.list("src") == ["src/app.js"]
    assert files.list("index.html") == ["index.html"]


def test_writing_again_replaces_the_whole_file(files: LocalSandbox) -> None:
    files.write("notes.txt", "a long first version")
    files.write("notes.txt", "short")

    assert files.read("notes.txt") == "short"


def test_listing_skips_node_modules_git_and_symlinks_leading_outside(
    files: LocalSandbox, outside: Path
) -> None:
    files.write("package.json", "{}")
    files.write("node_modules/react/index.js", "")
    files.write(".git/HEAD", "ref")
    files.write("lib/util.js", "")
    (files.workspace / "escape").symlink_to(outside / "secret.txt")
    (files.workspace / "escape-dir").symlink_to(outside)
    (files.workspace / "alias.js").symlink_to(files.workspace / "lib" / "util.js")

    assert files.list() == ["alias.js", "lib/util.js", "package.json"]


def test_listing_stops_at_the_entry_cap(files: LocalSandbox) -> None:
    for number in range(MAX_LIST_ENTRIES + 50):
        (files.workspace / f"f{number:04}.txt").touch()

    assert len(files.list()) == MAX_LIST_ENTRIES


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../x", "~/x", "../x"])
def test_paths_that_escape_the_workspace_are_refused(files: LocalSandbox, path: str) -> None:
    passwd = Path("/etc/passwd").read_bytes()

    with pytest.raises(SandboxPathError):
        files.write(path, "pwned")
    with pytest.raises(SandboxPathError):
        files.read(path)
    with pytest.raises(SandboxPathError):
        files.list(path)

    assert Path("/etc/passwd").read_bytes() == passwd
    assert not (files.workspace.parent / "x").exists()


def test_a_symlinked_folder_leading_outside_is_neither_written_nor_read_through(
    files: LocalSandbox, outside: Path
) -> None:
    (files.workspace / "link").symlink_to(outside)
    (files.workspace / "etc").symlink_to("/etc")

    for path in ("link/new.txt", "link/sub/new.txt", "link/secret.txt", "etc/sandbox-test"):
        with pytest.raises(SandboxPathError):
            files.write(path, "pwned")
    for path in ("link/secret.txt", "etc/passwd"):
        with pytest.raises(SandboxPathError):
            files.read(path)

    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "untouched"
    assert not Path("/etc/sandbox-test").exists()


def test_a_symlinked_file_leading_outside_is_neither_written_nor_read_through(
    files: LocalSandbox, outside: Path
) -> None:
    (files.workspace / "secret.txt").symlink_to(outside / "secret.txt")
    (files.workspace / "dangling.txt").symlink_to(outside / "created.txt")

    for path in ("secret.txt", "dangling.txt"):
        with pytest.raises(SandboxPathError):
            files.write(path, "pwned")
    with pytest.raises(SandboxPathError):
        files.read("secret.txt")

    assert (outside / "secret.txt").read_text() == "untouched"
    assert not (outside / "created.txt").exists()


def test_content_over_the_size_cap_is_refused(files: LocalSandbox) -> None:
    with pytest.raises(ValueError, match="2 MiB"):
        files.write("big.txt", "x" * (MAX_WRITE_BYTES + 1))

    assert not (files.workspace / "big.txt").exists()


def test_reading_is_capped_for_a_huge_file(files: LocalSandbox) -> None:
    (files.workspace / "huge.log").write_bytes(b"y" * (MAX_READ_BYTES + 4096))

    text = files.read("huge.log")

    assert text.startswith("y" * 100)
    assert "truncated" in text
    assert len(text) < MAX_READ_BYTES + 200


def test_reading_a_missing_file_or_a_folder_is_a_clear_error(files: LocalSandbox) -> None:
    files.write("src/app.js", "")

    with pytest.raises(SandboxFileNotFound):
        files.read("nope.txt")
    with pytest.raises(SandboxFileNotFound):
        files.list("nope")
    with pytest.raises(IsADirectoryError, match="folder"):
        files.read("src")
    with pytest.raises(IsADirectoryError, match="folder"):
        files.write("src", "x")


def test_create_starts_clean_when_an_earlier_attempt_left_a_workspace(root: Path) -> None:
    factory = LocalSandboxFactory(root, LIMITS, isolation="none")
    first = factory.create("retry", "static")
    first.write("stale.txt", "old")

    second = factory.create("retry", "static")

    assert second.list() == []
    assert second.id == "local-retry"
    assert second.metadata == {"sandbox": "local", "isolation": "subprocess", "framework": "static"}
    first.close()
    second.close()


def test_run_ids_that_cannot_name_a_folder_are_refused(root: Path) -> None:
    factory = LocalSandboxFactory(root, LIMITS, isolation="none")

    for run_id in ("../x", ".uids", "a/b", ""):
        with pytest.raises(ValueError):
            factory.create(run_id, "static")


# Commands


def test_a_command_runs_in_the_workspace_with_a_clean_environment(
    sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "s3cr3t")
    sandbox.write("hello.txt", "hi")

    result = sandbox.run('cat hello.txt; echo; echo "home=$HOME"; env')

    assert result.exit_code == 0
    assert result.stdout.startswith("hi\nhome=")
    assert "s3cr3t" not in result.stdout
    assert not result.truncated and not result.timed_out


def test_exit_code_stdout_and_stderr_are_reported(sandbox: LocalSandbox) -> None:
    result = sandbox.run("echo out; echo err >&2; exit 3")

    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_files_written_by_the_agent_can_be_changed_by_commands(sandbox: LocalSandbox) -> None:
    sandbox.write("data/notes.txt", "one\n")

    result = sandbox.run("echo two >> data/notes.txt && mkdir data/more && touch data/more/x")

    assert result.exit_code == 0, result.stderr
    assert sandbox.read("data/notes.txt") == "one\ntwo\n"
    assert sandbox.list("data") == ["data/more/x", "data/notes.txt"]


def test_a_symlink_made_by_a_command_does_not_leak_outside_files(sandbox: LocalSandbox) -> None:
    sandbox.run("ln -s /etc/passwd leak && ln -s /etc etc")

    with pytest.raises(SandboxPathError):
        sandbox.read("leak")
    with pytest.raises(SandboxPathError):
        sandbox.write("etc/sandbox-test", "x")
    assert sandbox.list() == []


@pytest.mark.parametrize(
    "command", ["sleep 1000.{n}", "while true; do :; done # {n}"], ids=["sleep", "busy-loop"]
)
def test_a_command_that_runs_forever_ends_at_the_timeout_and_leaves_nothing(
    sandbox: LocalSandbox, command: str
) -> None:
    marker = str(uuid.uuid4().int % 10**9)

    result, elapsed = run_timed(sandbox, command.replace("{n}", marker), timeout=1.5)

    assert result.timed_out
    assert result.exit_code == 124
    assert "timed out" in result.stderr
    assert elapsed < 5
    assert leftovers(marker, sandbox.uid) == []


@pytest.mark.parametrize(
    "bomb",
    ["for i in $(seq 5000); do sleep 30.{n} & done; wait", "f(){ f|f& }; f; sleep 100 # {n}"],
    ids=["thousands-of-sleeps", "recursive"],
)
def test_a_fork_bomb_is_contained_and_cleaned_up(sandbox: LocalSandbox, bomb: str) -> None:
    marker = str(uuid.uuid4().int % 10**9)
    peak = 0
    running = True

    def watch() -> None:
        nonlocal peak
        while running:
            peak = max(peak, len(live_processes(marker, sandbox.uid)))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result, elapsed = run_timed(sandbox, bomb.replace("{n}", marker), timeout=2)
    finally:
        running = False
        watcher.join()

    assert "fork" in result.stderr  # bash saw RLIMIT_NPROC refuse it
    assert elapsed < 6
    # RLIMIT_NPROC counts per uid; without root it also counts our own processes.
    if IS_ROOT:
        assert peak <= LIMITS.max_processes
    assert leftovers(marker, sandbox.uid) == []


def test_a_process_that_leaves_the_process_group_is_killed_too(
    sandbox: LocalSandbox,
) -> None:
    if sandbox.metadata["isolation"] == "subprocess" and not IS_ROOT:
        pytest.skip("without root or bubblewrap only the process group is killed")
    marker = str(uuid.uuid4().int % 10**9)

    result = sandbox.run(f"setsid sleep 1000.{marker} > /dev/null 2>&1 & echo started")

    assert result.stdout == "started\n"
    assert leftovers(marker, sandbox.uid) == []


def test_writable_memory_is_limited_but_reserved_address_space_is_not(
    sandbox: LocalSandbox,
) -> None:
    """RLIMIT_DATA: touching more memory than the limit fails; reserving address space (as
    node does, ~10 GB per WebAssembly instance) does not count against it."""
    over = LIMITS.memory_bytes + 64 * 1024 * 1024
    grab = sandbox.run(f"python3 -c 'b = bytearray({over}); print(len(b))'", timeout=20)
    assert grab.exit_code != 0 and "MemoryError" in grab.stderr, grab
    reserve = (
        "import mmap; m = mmap.mmap(-1, 16 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,"
        " prot=0); print('reserved')"
    )
    held = sandbox.run(f'python3 -c "{reserve}"', timeout=20)
    assert held.exit_code == 0 and "reserved" in held.stdout, held


def test_a_huge_file_stops_at_the_file_size_limit(sandbox: LocalSandbox) -> None:
    result = sandbox.run("head -c 1G /dev/zero > big")

    assert result.exit_code == 128 + signal.SIGXFSZ
    assert (sandbox.workspace / "big").stat().st_size <= LIMITS.max_file_bytes


def test_megabytes_of_output_come_back_truncated_without_blocking(sandbox: LocalSandbox) -> None:
    result, elapsed = run_timed(sandbox, "yes | head -c 50000000; echo done >&2", timeout=30)

    assert result.exit_code == 0
    assert result.truncated and not result.timed_out
    assert result.stdout.startswith("y\ny\n")
    assert len(result.stdout.encode()) <= OUTPUT_LIMIT
    assert "50000000 bytes" in result.stdout
    assert result.stdout.endswith("y\ny\n")  # the end too, where a build's error is
    assert result.stderr == "done\n"
    assert elapsed < 20


def test_long_output_keeps_its_start_and_its_end(sandbox: LocalSandbox) -> None:
    result = sandbox.run("echo FIRST; yes é | head -c 100001; echo; echo LAST >&2; echo END")

    assert result.exit_code == 0 and result.truncated
    assert result.stdout.startswith("FIRST\né\n") and result.stdout.endswith("é\né\nEND\n")
    assert "[output truncated: 100012 bytes in all; the start and the end are shown]" in (
        result.stdout
    )
    assert "\ufffd" not in result.stdout  # no character cut in half at either edge
    assert len(result.stdout.encode()) <= OUTPUT_LIMIT
    assert result.stderr == "LAST\n"


def test_kill_from_another_thread_stops_a_running_command(sandbox: LocalSandbox) -> None:
    marker = str(uuid.uuid4().int % 10**9)
    results: list[CommandResult] = []
    runner = threading.Thread(target=lambda: results.append(sandbox.run(f"sleep 1000.{marker}")))
    runner.start()
    wait_for(lambda: live_processes(marker, None), 5, "the command to start")

    sandbox.kill()
    runner.join(timeout=5)  # the command had 1000 s to go: ending at all is the kill's doing

    assert not runner.is_alive(), "the command outlived the kill"
    assert results[0].exit_code == -9 and not results[0].timed_out
    assert not sandbox.workspace.exists()
    assert leftovers(marker, sandbox.uid) == []
    sandbox.kill()  # idempotent
    with pytest.raises(SandboxClosed):
        sandbox.run("true")


def test_close_removes_the_workspace_and_refuses_later_calls(sandbox: LocalSandbox) -> None:
    sandbox.write("index.html", "<p>bye</p>")

    sandbox.close()

    assert not sandbox.workspace.exists()
    assert sandbox.preview() is None
    with pytest.raises(SandboxClosed):
        sandbox.write("index.html", "again")
    with pytest.raises(SandboxClosed):
        sandbox.read("index.html")
    sandbox.close()


def test_out_of_range_timeouts_are_clamped(sandbox: LocalSandbox) -> None:
    assert sandbox.run("echo ok", timeout=0).stdout == "ok\n"
    assert sandbox.run("echo ok", timeout=float("nan")).stdout == "ok\n"
    assert sandbox.run("echo ok", timeout=10**9).stdout == "ok\n"


@needs_root
def test_commands_run_as_a_sandbox_uid_of_their_own(root: Path) -> None:
    factory = LocalSandboxFactory(root, LIMITS, isolation="none")
    first, second = factory.create("one", "static"), factory.create("two", "static")

    assert first.run("id -u").stdout.strip() == str(first.uid)
    assert first.uid not in (None, 0) and second.uid not in (None, 0, first.uid)
    first.close()
    second.close()


def _processes_of(uid: int) -> list[int]:
    """The live processes of `uid` (a zombie waiting for its parent is dead already)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
                found.append(int(status.parent.name))
    return found


@needs_root
def test_a_uid_left_by_a_crashed_sandbox_is_cleaned_when_leased_again(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that ran a command under its sandbox's uid dies outright (SIGKILL), leaving a
    # process behind; the next lease of that uid must kill it first.
    script = f"""
import os, subprocess, sys
from pathlib import Path
from orchestrator.sandboxes.local_users import UidLease
lease = UidLease.acquire(Path({str(root / ".uids")!r}))
lease.mark_used()
subprocess.Popen(["sleep", "300"], user=lease.uid, group=lease.uid, start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(lease.uid, flush=True)
os.kill(os.getpid(), 9)
"""
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert crashed.returncode == -9, crashed.stderr
    uid = int(crashed.stdout)
    try:
        assert _processes_of(uid), "the crashed holder's command should still be running"
        monkeypatch.setattr(random, "randrange", lambda _n: uid - UID_BASE)
        lease = UidLease.acquire(root / ".uids")
        assert lease.uid == uid
        assert _processes_of(uid) == []
        lease.release(clean=True)
        assert (root / ".uids" / f"{uid - UID_BASE}.lock").read_bytes() == b""
    finally:
        subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)


@needs_root
def test_a_sandbox_that_ran_commands_leaves_its_uid_clean_for_the_next(root: Path) -> None:
    factory = LocalSandboxFactory(root, LIMITS, isolation="none")
    idle = factory.create("idle", "static")
    assert isinstance(idle.uid, int)
    idle.write("index.html", "<p>no command ran</p>")
    idle_lock = root / ".uids" / f"{idle.uid - UID_BASE}.lock"
    assert idle_lock.read_bytes() == b""  # nothing ran under the uid: nothing to clean
    idle.close()

    sandbox = factory.create("one", "static")
    assert isinstance(sandbox.uid, int)
    lock = root / ".uids" / f"{sandbox.uid - UID_BASE}.lock"
    sandbox.run("true")
    assert lock.read_bytes() == b"1"  # a crash now would leave the uid to be cleaned
    sandbox.close()
    assert lock.read_bytes() == b""  # no helper process is needed to lease it again


# Bubblewrap


@needs_bwrap
def test_auto_isolation_picks_bubblewrap_when_it_works(root: Path) -> None:
    factory = LocalSandboxFactory(root, LIMITS)

    assert factory.create("auto", "static").metadata["isolation"] == "bubblewrap"


def test_without_bwrap_auto_falls_back_and_bwrap_is_refused(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")

    with pytest.raises(IsolationUnavailable, match="not installed"):
        LocalSandboxFactory(root, LIMITS, isolation="bwrap")
    factory = LocalSandboxFactory(root, LIMITS)

    assert factory.isolation == "subprocess"
    assert factory.create("fallback", "static").run("echo ok").stdout == "ok\n"


def test_the_network_is_unreachable_under_bubblewrap_only(
    bwrapped: LocalSandbox, root: Path
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = f"echo > /dev/tcp/127.0.0.1/{port} && echo connected"
        plain = LocalSandboxFactory(root, LIMITS, isolation="none").create("plain", "static")

        assert plain.run(connect).stdout == "connected\n"  # the check itself works
        assert bwrapped.run(connect).exit_code != 0
        assert bwrapped.run("echo > /dev/tcp/127.0.0.1/6379").exit_code != 0
        plain.close()


def test_only_the_workspace_and_a_private_tmp_are_writable_under_bubblewrap(
    bwrapped: LocalSandbox,
) -> None:
    for target in ("/usr/sandbox-test", "/etc/sandbox-test", "/sandbox-test"):
        assert bwrapped.run(f"touch {target}").exit_code != 0, target
    result = bwrapped.run("pwd; echo ok > w && cat w && touch /tmp/t && ls /tmp && ls /root")

    assert result.stdout == "/workspace\nok\nt\n"
    assert "/root" in result.stderr  # not there at all
    assert not Path("/usr/sandbox-test").exists() and not Path("/etc/sandbox-test").exists()
    assert bwrapped.read("w") == "ok\n"


# The worker's secrets (DESIGN section 15)

# A stand-in for a worker process: its secrets are in its initial environment, as a worker's are
# (what /proc/<pid>/environ shows), and it runs commands that go looking for them.
_WORKER = r"""
import ctypes, json, os, sys
from pathlib import Path
from orchestrator.sandboxes.local import LocalSandboxFactory

root, isolation, as_uid = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if as_uid:  # a worker started by an unprivileged user, not root that dropped its privileges
    os.setgroups([])
    os.setresgid(as_uid, as_uid, as_uid)
    os.setresuid(as_uid, as_uid, as_uid)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE 1: undo what setuid did to it
own = Path(f"/proc/{os.getpid()}/environ").read_bytes().decode()
factory = LocalSandboxFactory(root, isolation=isolation)
sandbox = factory.create("secrets", "static")
found = {"isolation": factory.isolation, "uid": os.getuid()}
found["own secret"] = own.split("AUTH_SECRET=")[1].split("\0")[0]
for name, command in {
    "env": "env",
    "parent": "cat /proc/$PPID/environ",
    "worker": f"cat /proc/{os.getpid()}/environ",
    "every process": "cat /proc/[0-9]*/environ",
    "worker memory": f"grep -c SECRET /proc/{os.getpid()}/mem",
}.items():
    result = sandbox.run(command)
    found[name] = result.stdout + result.stderr
found["env names"] = sorted(line.split("=")[0] for line in sandbox.run("env").stdout.splitlines())
sandbox.close()
print(json.dumps(found))
"""

WORKERS = [
    pytest.param("none", 0, id="subprocess"),
    pytest.param("none", 65534, id="subprocess-same-uid", marks=needs_root),
    pytest.param("bwrap", 0, id="bubblewrap", marks=needs_bwrap),
]


@pytest.mark.parametrize(("isolation", "as_uid"), WORKERS)
def test_commands_find_none_of_the_workers_secrets(root: Path, isolation: str, as_uid: int) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    if as_uid:
        os.chown(root, as_uid, as_uid)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "AUTH_SECRET": secret,
        "E2B_API_KEY": secret,
        "OPENROUTER_API_KEY": secret,
    }
    worker = subprocess.run(
        [sys.executable, "-c", _WORKER, str(root), isolation, str(as_uid)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    found = json.loads(worker.stdout)

    expected_isolation = "bubblewrap" if isolation == "bwrap" else "subprocess"
    assert (found["isolation"], found["uid"]) == (expected_isolation, as_uid or os.getuid())
    assert found.pop("own secret") == secret  # the worker's /proc shows it, to whom may look
    leaks = {name: output for name, output in found.items() if secret in str(output)}
    assert leaks == {}
    allowed = {"PATH", "HOME", "LANG", "TERM", "PWD", "SHLVL", "_", *TOOL_ENV}
    assert set(found["env names"]) <= allowed


def test_isolation_is_required_unless_the_environment_says_best_effort() -> None:
    assert Settings.from_env({}).sandbox_isolation == "required"
    assert Settings.from_env({"SANDBOX_ISOLATION": "best-effort"}).sandbox_isolation == (
        "best-effort"
    )
    with pytest.raises(ConfigError, match="SANDBOX_ISOLATION"):
        Settings.from_env({"SANDBOX_ISOLATION": "none"})


def test_a_worker_that_requires_isolation_refuses_to_start_without_bubblewrap(
    root: Path,
) -> None:
    root.chmod(0o755)  # as root, sandbox uids must reach through it
    venv_bin = Path(sys.executable).parent
    env = {
        "PATH": f"{venv_bin}:/nonexistent",  # no bwrap on it, whatever this machine has
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "DATA_DIR": str(root),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: the check comes first
        "SANDBOX_ISOLATION": "required",
    }
    argv = [str(venv_bin / "celery"), "-A", "workers.celery_app", "worker", "--pool", "threads"]
    worker = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=root
    )

    assert worker.returncode != 0
    assert "SANDBOX_ISOLATION=required" in worker.stderr
    assert "bwrap is not installed" in worker.stderr
    assert "SANDBOX_ISOLATION=best-effort" in worker.stderr
    assert "ready" not in worker.stdout + worker.stderr


_DOOMED_WORKER = r"""
import ctypes, os, sys, threading
from pathlib import Path
from orchestrator.sandboxes.local import LocalSandboxFactory

root, isolation, as_uid, command = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
if as_uid:
    os.setgroups([])
    os.setresgid(as_uid, as_uid, as_uid)
    os.setresuid(as_uid, as_uid, as_uid)
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
sandbox = LocalSandboxFactory(root, isolation=isolation).create("doomed", "static")
threading.Thread(target=sandbox.run, args=(command,), daemon=True).start()
print("running", flush=True)
threading.Event().wait()
"""


@pytest.mark.parametrize(("isolation", "as_uid"), WORKERS)
def test_a_command_dies_with_a_worker_killed_outright(
    root: Path, isolation: str, as_uid: int
) -> None:
    marker = str(uuid.uuid4().int % 10**9)
    if as_uid:
        os.chown(root, as_uid, as_uid)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [sys.executable, "-c", _DOOMED_WORKER, str(root), isolation, str(as_uid)]
    worker = subprocess.Popen(
        [*argv, f"sleep 1000.{marker}"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline() == "running\n"

        # The worker's own argv carries the marker too: wait for the command itself.
        def command_started() -> bool:
            for pid in live_processes(marker, None):
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
                        return True
            return False

        wait_for(command_started, 10, "the command to start")
    finally:
        worker.kill()  # SIGKILL: no cleanup of its own runs
        worker.wait(timeout=10)

    left = leftovers(marker, None)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
