"""What must hold after every fault (DESIGN sections 4, 5 and 9), checked on the rows themselves.

Scoped to the users a scenario created, so one scenario's failure cannot blame the next one.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from pathlib import Path

import psutil
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import CreditLedger, Fragment, Message, Role, Status, User, transaction
from orchestrator.sandboxes.local_users import UID_BASE


def check_rows(db: sessionmaker[Session], since: datetime) -> list[str]:
    """Every rule the database must keep; returns the names of the rules it checked."""
    with transaction(db) as session:
        users = list(session.scalars(select(User).where(User.created_at >= since)))
        ids = [u.id for u in users]
        messages = list(session.scalars(select(Message).where(Message.user_id.in_(ids))))
        ledger = list(session.scalars(select(CreditLedger).where(CreditLedger.user_id.in_(ids))))
        assistant_ids = [m.id for m in messages if m.role == Role.ASSISTANT]
        fragments = list(
            session.scalars(select(Fragment).where(Fragment.message_id.in_(assistant_ids)))
        )

    running = [(m.id, m.status) for m in messages if m.status in (Status.PENDING, Status.STREAMING)]
    assert not running, f"messages left running: {running}"

    for user in users:
        total = sum(row.delta for row in ledger if row.user_id == user.id)
        assert total == user.credits, f"ledger of {user.id} sums to {total}, balance {user.credits}"

    per_conversation = Counter((m.conversation_id, m.role) for m in messages)
    for conversation in {m.conversation_id for m in messages}:
        prompts = per_conversation[(conversation, Role.USER)]
        replies = per_conversation[(conversation, Role.ASSISTANT)]
        assert prompts == replies, (
            f"conversation {conversation}: {prompts} prompts, {replies} replies"
        )

    spent = Counter(row.message_id for row in ledger if row.reason == "prompt")
    refunds = Counter(row.message_id for row in ledger if row.reason.startswith("refund"))
    for message in messages:
        if message.role != Role.ASSISTANT:
            continue
        assert spent[message.id] == 1, f"{message.id}: {spent[message.id]} credits taken"
        refunded = refunds[message.id]
        assert refunded == int(message.credit_refunded), f"{message.id}: {refunded} refunds"
        if message.status == Status.FAILED:
            assert message.credit_refunded and message.error, f"{message.id} failed unrefunded"
    orphan_spends = set(spent) - set(assistant_ids)
    assert not orphan_spends, f"credits taken for messages that do not exist: {orphan_spends}"

    per_message = Counter(f.message_id for f in fragments)
    assert all(n == 1 for n in per_message.values()), f"duplicate fragments: {per_message}"
    status = {m.id: m.status for m in messages}
    stray = [i for i in per_message if status[i] != Status.COMPLETE]
    assert not stray, f"fragments of messages that did not complete: {stray}"
    return [
        f"{len(messages)} messages of {len(users)} users: none PENDING/STREAMING",
        "ledger balances",
        "prompts paired",
        "one credit per reply, refunds match",
        "<=1 fragment, only on COMPLETE",
    ]


def check_sandbox_root(root: Path) -> str:
    left = (
        sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        if root.exists()
        else []
    )
    assert not left, f"orphan sandbox workspaces under {root}: {left}"
    return "no orphan workspace"


def child_pids() -> set[int]:
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)}


def check_processes(before: set[int], groups: set[int], sandbox_root: Path) -> str:
    """No process the scenario started outlives it: not a child of ours, not a member of a
    worker's process group (even one re-parented after its worker died), not one running as a
    uid leased under our sandbox root (other test runs on this machine have their own)."""
    leftover = []
    mine = child_pids() - before
    slots = {int(p.stem) for p in (sandbox_root / ".uids").glob("*.lock")}
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            uids = proc.info["uids"]
            ours = proc.pid in mine or os.getpgid(proc.pid) in groups
            sandboxed = bool(uids) and uids.real - UID_BASE in slots
        except (psutil.Error, ProcessLookupError):
            continue
        if ours or sandboxed:
            leftover.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:80]}")
    assert not leftover, f"orphan processes: {leftover}"
    return "no orphan process"
