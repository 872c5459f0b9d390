"""The `orchestrator` console script, run as operators run it: a subprocess with an environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt

SECRET = "cli-test-secret-cli-test-secret-0123456789"


def run(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}", AUTH_SECRET=SECRET)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
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
