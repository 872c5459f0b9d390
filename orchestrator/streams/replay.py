"""What a client of a run's events gets before it follows the stream live: the replay plan.

The Redis Stream is the live log and the database the durable outcome. When the log cannot give a
client everything it missed (expired, trimmed, or missing events), the client gets the state from
the database instead, as events that carry no id: an id-less `status` on a resumed connection
means "what follows is the whole state; discard what you had". Nothing is ever silently skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.typing import KeyT, StreamIdT
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import TERMINAL, Fragment, Message, Status
from orchestrator.contract import fragment_json
from orchestrator.errors import InvalidRequest
from orchestrator.streams.events import Item as Item  # re-exported: clients read Items
from orchestrator.streams.events import as_text, decode_entry, stream_key

# Redis ids are two unsigned 64-bit numbers; 19 digits always fit.
_STREAM_ID = re.compile(r"^\d{1,19}(-\d{1,19})?$")
# What a cursor may be, for the API's description: an id, maybe padded, or nothing.
CURSOR_PATTERN = r"^[ \t]*([0-9]{1,19}(-[0-9]{1,19})?)?[ \t]*$"
# `done` is appended last, but a worker that lost a race may add a stray event or two after it.
_DONE_LOOKBACK = 8
_BATCH = 500
# XREAD's answer in RESP2, which our clients speak: [(key, [(id, {field: value})])].
_XReadReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


@dataclass(frozen=True)
class RunState:
    """A message's durable outcome so far, as the database has it."""

    status: str
    content: str
    error: str | None
    fragment: dict[str, Any] | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class Replay:
    """Events to send at once, then the stream id to follow live after (None: close)."""

    items: list[Item]
    follow_after: str | None


def id_key(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair ("5" is "5-0", as Redis reads it)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def parse_cursor(raw: str | None) -> str | None:
    """A client's Last-Event-ID, checked; None or empty means from the start."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if not _STREAM_ID.match(raw):
        raise InvalidRequest("Last-Event-ID is not an event id of this stream")
    return None if id_key(raw) == (0, 0) else raw  # "0-0" is the start, as in XREAD


def xread(
    client: redis.Redis, streams: Mapping[str, str], *, count: int, block: int | None = None
) -> list[tuple[str, list[Item]]]:
    """XREAD over several streams: (key, entries) for those with entries after their cursor."""
    request: dict[KeyT, StreamIdT] = {key: cursor for key, cursor in streams.items()}
    reply = cast("_XReadReply | None", client.xread(request, count=count, block=block))
    return [(as_text(k), [decode_entry(i, f) for i, f in entries]) for k, entries in reply or []]


def read_after(client: redis.Redis, message_id: str, after: str) -> list[Item]:
    """One batch of the entries after `after`, without blocking."""
    return [i for _key, items in xread(client, {stream_key(message_id): after}, count=_BATCH)
            for i in items]  # fmt: skip


def load_run_state(session: Session, message_id: str) -> RunState:
    message = session.get(Message, message_id)
    if message is None:  # deleted under us: as good as over
        return RunState(Status.CANCELLED, "", None, None)
    fragment = None
    if message.status in TERMINAL:  # only a finished run's state is sent with its fragment
        fragment = session.scalar(select(Fragment).where(Fragment.message_id == message_id))
    return RunState(
        message.status,
        message.content or "",
        message.error,
        fragment_json(fragment) if fragment else None,
    )


def finished_streams(session: Session, keys: list[str]) -> dict[str, str]:
    """Of these stream keys, those whose run is over (or deleted): key -> final status."""
    by_id = {key.removeprefix("run:").removesuffix(":events"): key for key in keys}
    found = dict(
        session.execute(select(Message.id, Message.status).where(Message.id.in_(list(by_id))))
        .tuples()
        .all()
    )
    return {
        key: found.get(message_id) or Status.CANCELLED
        for message_id, key in by_id.items()
        if found.get(message_id) in (None, *TERMINAL)
    }


def plan(
    client: redis.Redis,
    message_id: str,
    cursor: str | None,
    load: Callable[[], RunState],
    open_stream: Callable[[str], object] | None = None,
) -> Replay:
    """Decide what a client connecting with `cursor` gets first, and where it follows from.

    The stream is read before the database: a worker writes its outcome to the database before
    it appends the closing events, so a `done` seen in the stream implies a terminal state.
    `open_stream(status)` appends a `status` event to a run's stream if it is still empty,
    atomically: a client that comes before the worker's first entry then reads that entry, id
    and all, like every later client of the run (DESIGN section 13).
    """
    key = stream_key(message_id)
    info = _stream_info(client, key)
    if info is None:
        state = load()
        if state.terminal:  # the log expired; the database holds the outcome
            return Replay([Item.synthesized("done", status=state.status)], None)
        if cursor is None and not state.content and open_stream is not None:
            # Not claimed yet, or claimed a moment ago: the worker has yet to write its first
            # entry. Whether this call or the worker writes it, the client reads it from the log.
            open_stream(state.status)
            return Replay([], "0-0")
        if cursor is None and state.status == Status.PENDING:
            return Replay([Item.synthesized("status", status=state.status)], "0-0")
        return Replay(_snapshot(state), "0-0")  # running, but its log was lost
    first, last_id, trimmed = info
    done = _find_done(client, key)
    if cursor is not None and done is not None and id_key(cursor) >= id_key(done.id or "0"):
        return Replay([], None)
    if cursor is None:
        gap = trimmed if trimmed is not None else first.type != "status"
    else:
        # Ids a client holds came from this stream, so one below its first entry was trimmed.
        gap = id_key(cursor) < id_key(first.id or "0")
    # The database is read only when the log alone cannot answer: most connections need neither.
    if gap:
        state = load()
        if state.terminal:
            return Replay(_snapshot(state) + [_done(state, done)], None)
        return Replay(_snapshot(state), last_id)
    if cursor is None and done is not None:
        return _verified_replay(client, message_id, load(), done)
    if cursor is None and first.type != "status":
        return Replay([_status(load())], "0-0")
    return Replay([], cursor or "0-0")


def _verified_replay(client: redis.Redis, message_id: str, state: RunState, done: Item) -> Replay:
    """A finished run from the start: its log if the deltas add up to the content, else state."""
    items: list[Item] = []
    after = "0-0"
    while batch := read_after(client, message_id, after):
        after = batch[-1].id or after
        items.extend(batch)
        if any(i.type == "done" for i in batch):
            break
    end = next((n for n, i in enumerate(items) if i.type == "done"), None)
    items = items[: end + 1] if end is not None else []
    text = "".join(json.loads(i.data).get("text", "") for i in items if i.type == "delta")
    if not items or text != state.content:
        return Replay(_snapshot(state) + [_done(state, done)], None)
    lead = [] if items[0].type == "status" else [_status(state)]
    return Replay(lead + items, None)


def _snapshot(state: RunState) -> list[Item]:
    items = [_status(state)]
    if state.content:
        items.append(Item.synthesized("delta", text=state.content))
    if state.terminal and state.fragment is not None:
        items.append(Item.synthesized("fragment", fragment=state.fragment))
    if state.status == Status.FAILED and state.error:
        items.append(Item.synthesized("error", error=state.error))
    return items


def _status(state: RunState) -> Item:
    return Item.synthesized("status", status=state.status)


def _done(state: RunState, done: Item | None) -> Item:
    """The log's own `done` when it has one, so a client can resume from its id."""
    return done if done is not None else Item.synthesized("done", status=state.status)


def _stream_info(client: redis.Redis, key: str) -> tuple[Item, str, bool | None] | None:
    """(first entry, last id, trimmed?) of a stream, or None when it does not exist."""
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise
    if not info.get("first-entry"):
        return None
    first = decode_entry(*info["first-entry"])
    last = info.get("last-entry")
    last_id = decode_entry(*last).id if last else first.id
    added = info.get("entries-added")  # Redis 7; older servers cannot tell, see plan()
    trimmed = None if added is None else int(added) > int(info["length"])
    return first, last_id or "0-0", trimmed


def _find_done(client: redis.Redis, key: str) -> Item | None:
    for entry_id, fields in client.xrevrange(key, count=_DONE_LOOKBACK) or []:
        if entry_id is not None and fields is not None:
            item = decode_entry(entry_id, fields)
            if item.type == "done":
                return item
    return None
