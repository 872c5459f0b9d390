"""A real HTTP server speaking OpenAI chat completions, scripted request by request.

Tests point the real `openai` client at `FakeLLM().base_url` and script what each request gets:
a `Reply` (streamed text and tool calls), an `Error` status, a `Hang` or a `Cut` connection.
Every answer reports `usage` (about four characters a token, with `cached_tokens` for the start
it shares with the request before); `context_limit` makes it a model with a small context.

    with FakeLLM() as llm:
        llm.script(Reply("Hi"), Error(429, headers={"Retry-After": "1"}))
        client = openai.OpenAI(base_url=llm.base_url, api_key="x", max_retries=0)

What the `openai` SDK (3.x) then raises: `Error(429)` -> `RateLimitError`, `Error(5xx)` ->
`InternalServerError`, `Hang` past the read timeout -> `APITimeoutError`, `Cut` ->
`APIConnectionError` (of which `APITimeoutError` is a subclass). On a stream, status errors come
from `create()`; timeouts and cuts come from iterating, after the chunks already sent.

Standalone, for benchmarks: `python -m tests.fakes.llm_server --port 8089 --delay 0.01`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

# How often a waiting handler looks at its socket and the stop flag.
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes; a str `arguments` is sent verbatim, even if malformed."""

    name: str
    arguments: str | Mapping[str, Any]
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """A successful answer: text in `chunk_size` pieces, `delay` seconds apart, then tool calls.

    With `cut_after`, a streamed answer is cut (TCP shutdown, no finish, no [DONE]) after that
    many deltas, the role's included: a connection lost in the middle of a tool call's arguments.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    chunk_size: int = 8
    delay: float = 0.0
    finish_reason: str | None = None
    cut_after: int | None = None


@dataclass(frozen=True)
class Error:
    """An HTTP error status with an OpenAI-style `{"error": {...}}` body."""

    status: int = 500
    message: str = "fake failure"
    headers: Mapping[str, str] = field(default_factory=dict)
    # The `code` OpenAI puts in the body; None gives its usual one for the status.
    code: str | None = None


def too_long(size: int, limit: int) -> Error:
    """What OpenAI answers a request longer than the model's context."""
    return Error(
        400,
        f"This model's maximum context length is {limit} characters. However, your messages "
        f"resulted in {size} characters. Please reduce the length of the messages.",
        code="context_length_exceeded",
    )


@dataclass(frozen=True)
class Hang:
    """A stall: headers and `after_chunks` chunks of `text`, then silence for `seconds`.

    A streamed request gets its SSE headers at once; a non-streamed one gets nothing at all, as
    a slow upstream sends no headers until its answer is ready. If the client stays for the
    whole stall, the answer then completes normally with the text sent so far.
    """

    seconds: float = 3600
    after_chunks: int = 0
    text: str = "partial "


@dataclass(frozen=True)
class Cut:
    """A broken connection: headers and `after_chunks` chunks, then a TCP shutdown, no [DONE]."""

    after_chunks: int = 1
    text: str = "partial "


Behaviour: TypeAlias = Reply | Error | Hang | Cut
Script: TypeAlias = Behaviour | Callable[[dict[str, Any]], Behaviour]


class FakeLLM:
    """The server's lifecycle, its script queue and what it observed, all thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.default: Script = Reply("Hello from the fake LLM.")
        # A model's context, in characters of the request's JSON `messages`: a longer request is
        # answered 400 `context_length_exceeded` (whatever the script says, which it keeps).
        self.context_limit: int | None = None
        self._last_prompt = ""
        self._address = (host, port)
        self._state = threading.Condition()
        self._queue: deque[Script] = deque()
        self._requests: list[dict[str, Any]] = []
        self._disconnects = 0
        self._active = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeLLM is not started")
        return f"http://{self._address[0]}:{self._server.server_port}/v1"

    def start(self) -> FakeLLM:
        self._stopping.clear()
        self._server = _Server(self._address, _Handler, self)
        # Started again after a stop (a provider outage), it comes back at the same address.
        self._address = (self._address[0], self._server.server_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end waiting handlers and drop kept-alive connections."""
        if self._server is None or self._thread is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._state:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._state:
            self._state.wait_for(lambda: self._active == 0, timeout=2.0)
        self._thread.join()
        self._server = self._thread = None

    def script(self, *behaviours: Script) -> None:
        """Queue behaviours; each request takes the next one, or `default` when none is left."""
        with self._state:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        with self._state:
            self._queue.clear()
            self._requests.clear()
            self._disconnects = 0

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._state:
            return list(self._requests)

    @property
    def disconnects(self) -> int:
        """Clients seen hanging up before their answer was complete."""
        with self._state:
            return self._disconnects

    @property
    def active(self) -> int:
        with self._state:
            return self._active

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        with self._state:
            return self._state.wait_for(lambda: len(self._requests) >= n, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        with self._state:
            return self._state.wait_for(lambda: self._disconnects >= count, timeout)

    def _begin(self, request: dict[str, Any]) -> tuple[Script, int]:
        """Record a request and take its script (the caller resolves it outside the lock), and
        how many characters its start shares with the request before (a prompt cache's hit)."""
        prompt = json.dumps(request.get("messages", []))
        with self._state:
            self._requests.append(request)
            self._active += 1
            self._state.notify_all()
            cached = _common_prefix(prompt, self._last_prompt)
            self._last_prompt = prompt
            if self.context_limit is not None and len(prompt) > self.context_limit:
                return too_long(len(prompt), self.context_limit), 0
            return (self._queue.popleft() if self._queue else self.default), cached

    def _end(self) -> None:
        with self._state:
            self._active -= 1
            self._state.notify_all()

    def _note_disconnect(self) -> None:
        with self._state:
            self._disconnects += 1
            self._state.notify_all()

    def _track(self, conn: socket.socket, *, live: bool) -> None:
        with self._state:
            (self._connections.add if live else self._connections.discard)(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[_Handler], llm: FakeLLM) -> None:
        self.llm = llm
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on kept-alive connections (the sync SDK does after every stream).
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 with chunked bodies, as OpenAI does, so a cut stream is detectably incomplete.
    protocol_version = "HTTP/1.1"
    # Small SSE writes must leave at once, not wait out Nagle against a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.llm._track(self.connection, live=True)

    def finish(self) -> None:
        self.server.llm._track(self.connection, live=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown test output

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            _Exchange(self, {}).error(Error(404, f"no route for {self.path}"))
            return
        request = json.loads(body or b"{}")
        llm = self.server.llm
        scripted, cached = llm._begin(request)
        try:
            behaviour = scripted(request) if callable(scripted) else scripted
            _Exchange(self, request, cached).play(behaviour)
        except ConnectionError:
            if not llm._stopping.is_set():  # stop() cutting us off is no client hang-up
                llm._note_disconnect()
            self.close_connection = True
        finally:
            llm._end()


class _Exchange:
    """One request's answer, written in the chat-completions wire format."""

    def __init__(self, handler: _Handler, request: dict[str, Any], cached: int = 0) -> None:
        self.handler = handler
        self.request = request
        self.cached = cached
        self.stream = bool(request.get("stream"))
        self.include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        self.model = request.get("model") or "fake-model"
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def play(self, behaviour: Behaviour) -> None:
        match behaviour:
            case Reply():
                self.reply(behaviour)
            case Error():
                self.error(behaviour)
            case Hang():
                self.hang(behaviour)
            case Cut():
                self.cut(behaviour)
            case _:
                raise TypeError(f"not a FakeLLM behaviour: {behaviour!r}")

    def reply(self, reply: Reply) -> None:
        calls = [(c.id or f"call_{uuid.uuid4().hex[:24]}", c) for c in reply.tool_calls]
        deltas = list(_deltas(reply.text, calls, reply.chunk_size))
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        completion_text = reply.text + "".join(c.arguments_json for _, c in calls)
        if not self.stream:
            if reply.delay and not self.pause(reply.delay * (len(deltas) - 1)):
                return
            self.send_json(200, self.completion(reply.text, calls, finish, completion_text))
            return
        self.start_sse()
        for i, delta in enumerate(deltas):
            if i == reply.cut_after:
                self.hang_up()
                return
            if i and reply.delay and not self.pause(reply.delay):
                return
            self.send_event(self.chunk(delta))
        self.end_sse(finish, completion_text)

    def error(self, error: Error) -> None:
        # The type and code pairs OpenAI sends for rate limits, server faults and bad requests.
        kind, code = (
            ("requests", "rate_limit_exceeded")
            if error.status == 429
            else ("server_error", None)
            if error.status >= 500
            else ("invalid_request_error", None)
        )
        code = error.code or code
        body = {"error": {"message": error.message, "type": kind, "param": None, "code": code}}
        self.send_json(error.status, body, error.headers)

    def hang(self, hang: Hang) -> None:
        text = hang.text * hang.after_chunks
        if self.stream:
            self.start_sse()
            self.send_partial(hang.text, hang.after_chunks)
        if not self.pause(hang.seconds):
            return
        if self.stream:
            self.end_sse("stop", text)
        else:
            self.send_json(200, self.completion(text, [], "stop", text))

    def cut(self, cut: Cut) -> None:
        if self.stream:
            self.start_sse()
            self.send_partial(cut.text, cut.after_chunks)
        else:
            text = cut.text * cut.after_chunks
            body = json.dumps(self.completion(text, [], "stop", text)).encode()
            self.start(200, "application/json", {"Content-Length": str(len(body))})
            self.handler.wfile.write(body[: len(body) // 2])
        self.hang_up()

    def completion(
        self, text: str, calls: list[tuple[str, ToolCall]], finish: str, completion_text: str
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if calls:
            message["tool_calls"] = [
                {"id": id_, "type": "function", "function": _function(call)} for id_, call in calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        usage = self.usage(completion_text)
        return {**self.envelope("chat.completion"), "choices": [choice], "usage": usage}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {**self.envelope("chat.completion.chunk"), "choices": [choice]}
        # With include_usage OpenAI puts `usage: null` on every chunk before the last.
        return chunk | {"usage": None} if self.include_usage else chunk

    def envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
        }

    def usage(self, completion_text: str) -> dict[str, Any]:
        # Roughly four characters a token: deterministic, which is all tests need.
        prompt = len(json.dumps(self.request.get("messages", []))) // 4
        completion = (len(completion_text) + 3) // 4
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            # As OpenAI: the start shared with an earlier request, counted in whole blocks.
            "prompt_tokens_details": {"cached_tokens": self.cached // 4 // 128 * 128},
        }

    def start(
        self, status: int, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", content_type)
        self.handler.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.end_headers()

    def send_json(
        self, status: int, body: object, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        length = {"Content-Length": str(len(data))}
        self.start(status, "application/json", {**(headers or {}), **length})
        self.handler.wfile.write(data)

    def start_sse(self) -> None:
        sse_headers = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        self.start(200, "text/event-stream; charset=utf-8", sse_headers)

    def send_event(self, payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        event = f"data: {data}\n\n".encode()
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))

    def send_partial(self, text: str, chunks: int) -> None:
        """`chunks` pieces of `text`; the first names the role, as OpenAI's first chunk does."""
        for i in range(chunks):
            self.send_event(
                self.chunk({"role": "assistant", "content": text} if i == 0 else {"content": text})
            )

    def end_sse(self, finish: str, completion_text: str) -> None:
        self.send_event(self.chunk({}, finish))
        if self.include_usage:
            usage = {**self.envelope("chat.completion.chunk"), "choices": []}
            self.send_event(usage | {"usage": self.usage(completion_text)})
        self.send_event("[DONE]")
        self.handler.wfile.write(b"0\r\n\r\n")

    def pause(self, seconds: float) -> bool:
        """Wait; False (and the connection given up) if the client hangs up or the server stops."""
        llm, conn = self.handler.server.llm, self.handler.connection
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if llm._stopping.is_set():
                self.handler.close_connection = True
                return False
            readable, _, _ = select.select([conn], [], [], min(left, _POLL_SECONDS))
            if readable and _peer_closed(conn):
                llm._note_disconnect()
                self.handler.close_connection = True
                return False
            if readable:
                time.sleep(min(left, _POLL_SECONDS))  # stray bytes are not a hang-up; don't spin
        return True

    def hang_up(self) -> None:
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)
        self.handler.close_connection = True


def _common_prefix(a: str, b: str) -> int:
    size = min(len(a), len(b))
    if a[:size] == b[:size]:
        return size
    low, high = 0, size  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if a[:middle] == b[:middle] else (low, middle)
    return low


def _deltas(text: str, calls: list[tuple[str, ToolCall]], size: int) -> Iterator[dict[str, Any]]:
    """The deltas OpenAI streams: role, text pieces, then each call's head and argument pieces."""
    yield {"role": "assistant", "content": ""}
    for piece in _pieces(text, size):
        yield {"content": piece}
    for index, (id_, call) in enumerate(calls):
        head = {"name": call.name, "arguments": ""}
        yield {"tool_calls": [{"index": index, "id": id_, "type": "function", "function": head}]}
        for piece in _pieces(call.arguments_json, size):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def _function(call: ToolCall) -> dict[str, str]:
    return {"name": call.name, "arguments": call.arguments_json}


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), max(size, 1)):
        yield text[start : start + max(size, 1)]


def _peer_closed(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset by peer


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake LLM's default reply forever.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    args = parser.parse_args(argv)
    llm = FakeLLM(args.host, args.port)
    llm.default = Reply("Hello from the fake LLM.", delay=args.delay)
    with llm:
        print(llm.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
