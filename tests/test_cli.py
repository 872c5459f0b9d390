"""The `orchestrator` console script, run as operators run it: a subprocess with an environment."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jwt
import pytest

from orchestrator.settings import Settings
from tests.conftest import SECRET as API_SECRET
from tests.conftest import Api, wait_for
from tests.fakes.e2b_server import FakeE2B
from tests.fakes.llm_server import Reply

SECRET = "cli-test-secret-cli-test-secret-0123456789"


def run(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}", AUTH_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.wiring.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_creates_the_user_sets_plan_and_credits_and_prints_only_the_token(
    tmp_path: Path,
) -> None:
    database = tmp_path / "cli.db"
    assert run(database, "db", "upgrade").returncode == 0
    assert run(database, "db", "upgrade").returncode == 0  # idempotent
    made = run(database, "token", "carol", "--credits", "7", "--plan", "PRO")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert "\n" not in token
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "carol"

    from models import User, make_engine, make_sessionmaker, transaction
    from orchestrator import accounts

    factory = make_sessionmaker(make_engine(f"sqlite:///{database}"))
    with transaction(factory) as session:
        user = session.get(User, "carol")
        assert user is not None and (user.plan, user.credits) == ("PRO", 7)
        assert accounts.ledger_balance(session, "carol") == 7
    granted = run(database, "credits", "grant", "carol", "3")
    assert granted.returncode == 0, granted.stderr
    with transaction(factory) as session:
        assert session.get(User, "carol").credits == 10  # type: ignore[union-attr]
        assert accounts.ledger_balance(session, "carol") == 10


def test_ops_commands_answer_in_words(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    run(database, "db", "upgrade")
    assert run(database, "runs", "stuck").returncode == 0
    missing = run(database, "runs", "cancel", "no-such-message")
    assert missing.returncode == 1 and "no such message" in missing.stderr
    assert run(database, "runs", "requeue").returncode == 2


@pytest.mark.parametrize("when", ["queued", "streaming"])
def test_runs_cancel_does_what_delete_does_done_event_revoke_and_the_run_stops(
    api: Api, llm: Any, settings: Settings, db: Any, redis_client: Any, when: str
) -> None:
    from celery.worker import state

    from models import transaction
    from orchestrator.streams.events import EventLog
    from tests.test_events import listen
    from tests.test_runs import _pending_message

    project = api.project()
    if when == "queued":  # stored, never sent: no worker would ever end its stream
        api.get("/api/me")
        with transaction(db) as session:
            pending = _pending_message(session, api, project["id"])
        message_id, run_id = pending.id, pending.run_id
    else:
        llm.script(Reply("word " * 400, chunk_size=5, delay=0.05))
        body = api.send(project["id"]).json()
        message_id, run_id = body["messageId"], body["runId"]
        wait_for(lambda: api.message(message_id)["content"], 15, "the run to stream")
    heard: list[Any] = []
    follower = threading.Thread(target=lambda: heard.append(listen(api.http, message_id)))
    follower.start()
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        AUTH_SECRET=API_SECRET,
        QUEUE_NAME=settings.queue_name,
    )
    # The console script's module: the CLI at the Celery edge, as operators run it.
    command = [sys.executable, "-m", "workers.cli", "runs", "cancel", message_id]
    cancel = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    follower.join(timeout=20)
    assert not follower.is_alive(), "the events stream never ended"
    assert heard, "the events stream broke off before its done event"
    last = heard[0].events[-1]
    assert (last.type, last.data) == ("done", {"status": "CANCELLED"})
    assert api.message(message_id)["status"] == "CANCELLED"
    if when == "streaming":
        assert llm.wait_for_disconnect(timeout=5)  # the run closed the model's stream
    else:
        assert api.get("/api/me").json()["credits"] == 5  # never started: credit back
    wait_for(lambda: run_id in state.revoked, 10, "the worker to get the revoke")
    kinds = [kind for _id, kind, _data in EventLog(redis_client).read(message_id)]
    assert kinds.count("done") == 1
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not being processed" in again.stderr


def test_the_development_mode_prints_a_sign_in_link_with_the_token_in_the_fragment() -> None:
    from orchestrator.wiring.cli import sign_in_link

    link = sign_in_link({"AUTH_SECRET": API_SECRET}, "http://127.0.0.1:5000")
    page, _, fragment = link.split(": ", 1)[1].partition("#")
    assert page == "http://127.0.0.1:5000/" and "?" not in page  # never a query string
    claims = jwt.decode(fragment.removeprefix("token="), API_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "demo" and claims["exp"] > claims["iat"]
    assert "paste a token" in sign_in_link({}, "http://127.0.0.1:5000")


def test_e2b_template_build_registers_the_named_templates_in_the_key_s_team() -> None:
    with FakeE2B() as fake:
        env = dict(os.environ, E2B_API_KEY=fake.api_key, E2B_API_URL=fake.url)
        env["E2B_DOMAIN"] = fake.domain
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.wiring.cli",
                "e2b-template",
                "build",
                "react",
                "vue",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        env.pop("E2B_API_KEY")
        keyless = subprocess.run(
            [sys.executable, "-m", "orchestrator.wiring.cli", "e2b-template", "build"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert built.returncode == 0, built.stderr
    assert [b.request["name"] for b in fake.builds] == ["react-developer", "vue-developer"]
    assert f"REACT: react-developer is built (template id {fake.builds[0].template_id})" in (
        built.stdout
    )
    assert keyless.returncode == 1 and "set E2B_API_KEY" in keyless.stderr
    assert len(fake.builds) == 2


def test_runs_requeue_dates_a_running_run_for_the_next_sweep_and_refuses_a_finished_one(
    api: Api, settings: Settings, db: Any
) -> None:
    from models import Message, Status, transaction
    from tests.test_runs import _pending_message

    api.get("/api/me")
    with transaction(db) as session:
        pending = _pending_message(session, api, api.project()["id"])
        pending.status, pending.lease = Status.STREAMING, "a-lease-of-a-dead-worker"
        message_id = pending.id
    env = dict(os.environ, DATABASE_URL=settings.database_url, AUTH_SECRET=API_SECRET)
    command = [sys.executable, "-m", "orchestrator.wiring.cli", "runs", "requeue", message_id]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    with transaction(db) as session:
        message = session.get(Message, message_id)
        assert message is not None
        assert (message.status, message.lease) == (Status.PENDING, None)
        assert message.updated_at.year == 2000  # older than any grace: the next sweep sends it
        message.status = Status.COMPLETE
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not running (it is COMPLETE)" in again.stderr
