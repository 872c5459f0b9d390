"""What a running run writes as it goes: its heartbeat and its content so far.

Each write is fenced by the run's lease as every status change is (`lifecycle.still_leased`),
so a writer that is no longer the run's (cancelled, reaped, taken over) changes nothing and learns
so from the rows it did not touch. The per-process forms (`heartbeat_many`, `flush_many`) write
every run a process holds in one statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import TextClause, bindparam, text, update
from sqlalchemy.orm import Session

from models import Message, Status, utcnow
from orchestrator.runs.lifecycle import Lease, still_leased


def heartbeat(session: Session, lease: Lease) -> bool:
    """Prove the worker is alive; False means the run is no longer ours (cancelled or reaped)."""
    now = utcnow()
    result = session.execute(
        update(Message)
        .where(still_leased(lease))
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(cast(Any, result).rowcount) == 1


def heartbeat_many(session: Session, leases: list[Lease]) -> set[str]:
    """One heartbeat for all the runs a process holds; returns the lease tokens still leased.

    A lease token names one claim of one run, so `lease IN (...)` and STREAMING fence each row
    as `heartbeat` does; the rows it did not touch are runs that are no longer ours.
    """
    now = utcnow()
    still_ours: set[str] = set()
    for start in range(0, len(leases), 500):
        chunk = leases[start : start + 500]
        result = session.execute(
            update(Message)
            .where(
                Message.id.in_([lease.message_id for lease in chunk]),
                Message.lease.in_([lease.token for lease in chunk]),
                Message.status == Status.STREAMING,
            )
            .values(heartbeat_at=now)
            .returning(Message.lease)
            .execution_options(synchronize_session=False)
        )
        still_ours.update(token for token in result.scalars() if token is not None)
    return still_ours


def _flush_statement(with_tool_calls: bool) -> TextClause:
    # Built once: a flush runs for every run several times a second, and building and compiling
    # an ORM update each time cost more CPU than the rest of a chunk's way (README, Capacity).
    table = Message.__table__
    calls = ", tool_calls = :tool_calls" if with_tool_calls else ""
    statement = text(
        f"UPDATE {Message.__tablename__} SET content = substr(content, 1, :after) || :tail, "
        f"heartbeat_at = :now, updated_at = :now{calls} "
        "WHERE id = :message_id AND run_id = :run_id AND lease = :lease AND status = :status"
    ).bindparams(bindparam("now", type_=table.c.heartbeat_at.type))
    if with_tool_calls:
        statement = statement.bindparams(bindparam("tool_calls", type_=table.c.tool_calls.type))
    return statement


_FLUSH = _flush_statement(with_tool_calls=False)
_FLUSH_WITH_CALLS = _flush_statement(with_tool_calls=True)


def flush(
    session: Session,
    lease: Lease,
    *,
    tail: str,
    after: int,
    tool_calls: list[dict[str, Any]] | None,
) -> bool:
    """The text streamed since the last flush, appended after its first `after` characters.

    Only the new text travels; cutting at `after` first makes a flush that was committed but
    looked failed (a connection lost at commit) harmless to send again. The tool calls are
    written only when given (they changed). Fenced by the lease, as `lifecycle.still_leased` fences.
    """
    params: dict[str, Any] = {
        "after": after,
        "tail": tail,
        "now": utcnow(),
        "message_id": lease.message_id,
        "run_id": lease.run_id,
        "lease": lease.token,
        "status": Status.STREAMING.value,
    }
    if tool_calls is not None:
        params["tool_calls"] = tool_calls
    result = session.execute(_FLUSH if tool_calls is None else _FLUSH_WITH_CALLS, params)
    return int(cast(Any, result).rowcount) == 1


@dataclass(frozen=True)
class Tail:
    """A run's text streamed since its last flush, to go after its first `after` characters."""

    lease: Lease
    after: int
    text: str


# One statement for the new text of every run a process holds: the batch travels as one JSON
# array, read as rows by each database's JSON table function, each row fenced as `flush` is.
_FLUSH_MANY = {
    "postgresql": (
        "UPDATE messages AS m SET content = substr(m.content, 1, v.keep) || v.tail, "
        "heartbeat_at = :now, updated_at = :now "
        "FROM jsonb_to_recordset(CAST(:batch AS jsonb)) "
        "AS v(id text, run_id text, lease text, keep int, tail text) "
        "WHERE m.id = v.id AND m.run_id = v.run_id AND m.lease = v.lease AND m.status = :status "
        "RETURNING m.lease"
    ),
    "sqlite": (
        "UPDATE messages SET content = substr(messages.content, 1, v.keep) || v.tail, "
        "heartbeat_at = :now, updated_at = :now "
        "FROM (SELECT json_extract(value, '$.id') AS id, "
        "json_extract(value, '$.run_id') AS run_id, "
        "json_extract(value, '$.lease') AS lease, json_extract(value, '$.keep') AS keep, "
        "json_extract(value, '$.tail') AS tail FROM json_each(:batch)) AS v "
        "WHERE messages.id = v.id AND messages.run_id = v.run_id AND messages.lease = v.lease "
        "AND messages.status = :status RETURNING messages.lease"
    ),
}
_FLUSH_MANY_STATEMENTS = {
    dialect: text(sql).bindparams(bindparam("now", type_=Message.__table__.c.heartbeat_at.type))
    for dialect, sql in _FLUSH_MANY.items()
}


def flush_many(session: Session, tails: list[Tail]) -> set[str]:
    """`flush` for many runs in one statement; returns the lease tokens of the rows it wrote.

    A run whose token is missing is no longer ours (cancelled, reaped, taken over).
    """
    statement = _FLUSH_MANY_STATEMENTS[session.get_bind().dialect.name]
    batch = json.dumps(
        [
            {
                "id": tail.lease.message_id,
                "run_id": tail.lease.run_id,
                "lease": tail.lease.token,
                "keep": tail.after,
                "tail": tail.text,
            }
            for tail in tails
        ]
    )
    params = {"batch": batch, "now": utcnow(), "status": Status.STREAMING.value}
    return {token for token in session.execute(statement, params).scalars() if token}
