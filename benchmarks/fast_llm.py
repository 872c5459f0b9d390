"""A lean OpenAI-compatible streaming model for capacity benchmarks: asyncio streams, no framework.

    .venv/bin/python -m benchmarks.fast_llm --port 8199 [--seconds 6] [--rate 30]

tests/fakes/llm_server.py is built to script replies for tests, not to stream 15,000 chunks a
second. This one answers every chat completion the same way, with one timer for all streams:

- a conversation with no tool result yet: `seconds * rate` text chunks, `rate` a second, each
  `t<wall-clock µs> ` (so a reader measures chunk latency), then one `write_file` tool call;
- after a tool result: "Done." and `finish_reason: stop`.

`GET /stats` answers JSON: streams open now, the peak, chunks sent, and per prompt label
(`run <n>` in the user's text) when its last stream was closed by the client before its end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass, field

LABEL = re.compile(rb"run (\d+)")
SLOTS = 16  # timer slots per chunk period: streams are spread over them, not sent in one burst


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        },
        separators=(",", ":"),
    ).encode()
    data = b"data: " + body + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


_DONE = b"data: [DONE]\n\n"
END = b"%x\r\n%s\r\n0\r\n\r\n" % (len(_DONE), _DONE)
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)
PAGE = "<!doctype html><h1>Bench</h1>"
WRITE_FILE = _chunk(
    {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "write_file",
                    "arguments": json.dumps({"path": "index.html", "content": PAGE}),
                },
            }
        ]
    }
) + _chunk({}, "tool_calls")
FINISH = _chunk({"content": "Done."}) + _chunk({}, "stop")


@dataclass(eq=False)
class Stream:
    writer: asyncio.StreamWriter
    left: int
    label: str
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Server:
    def __init__(self, seconds: float, rate: float) -> None:
        self.chunks = max(1, int(seconds * rate))
        self.period = 1.0 / rate
        self.slots: list[set[Stream]] = [set() for _ in range(SLOTS)]
        self.slot = 0
        self.open = 0
        self.peak = 0
        self.sent = 0
        self.streams = 0
        self.cut: dict[str, float] = {}

    async def tick(self) -> None:
        step = self.period / SLOTS
        next_at = time.monotonic()
        while True:
            next_at += step
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self.slot = (self.slot + 1) % SLOTS
            now = b"%d" % (time.time_ns() // 1000)
            for stream in list(self.slots[self.slot]):
                if stream.writer.is_closing():
                    self.slots[self.slot].discard(stream)
                    continue
                stream.writer.write(_chunk({"content": "t" + now.decode() + " "}))
                self.sent += 1
                stream.left -= 1
                if stream.left <= 0:
                    self.slots[self.slot].discard(stream)
                    stream.writer.write(WRITE_FILE + END)
                    if not stream.done.done():
                        stream.done.set_result(None)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /stats"):
                    payload = json.dumps(
                        {
                            "open": self.open,
                            "peak": self.peak,
                            "sent": self.sent,
                            "streams": self.streams,
                            "cut": self.cut,
                        }
                    ).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                    continue
                if head.startswith(b"POST /reset"):
                    self.peak, self.sent, self.streams, self.cut = self.open, 0, 0, {}
                    writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    continue
                await self.answer(reader, writer, body)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
    ) -> None:
        found = LABEL.search(body)
        label = found.group(1).decode() if found else "?"
        writer.write(HEAD)
        if b'"role":"tool"' in body or b'"role": "tool"' in body:
            writer.write(FINISH + END)
            await writer.drain()
            return
        self.open += 1
        self.streams += 1
        self.peak = max(self.peak, self.open)
        stream = Stream(writer, self.chunks, label)
        self.slots[(self.slot + 1) % SLOTS].add(stream)
        eof = asyncio.ensure_future(reader.read(1))  # the client sends nothing while it reads
        try:
            await asyncio.wait({stream.done, eof}, return_when=asyncio.FIRST_COMPLETED)
            if not stream.done.done():
                self.cut[label] = time.time()
                for slot in self.slots:
                    slot.discard(stream)
                raise ConnectionResetError()
            await writer.drain()
        finally:
            self.open -= 1
            if eof.done() and not eof.cancelled() and eof.result():
                # The next request began already: give its first byte back.
                reader._buffer[0:0] = eof.result()  # type: ignore[attr-defined]  # noqa: SLF001
            eof.cancel()


async def serve(port: int, seconds: float, rate: float) -> None:
    server = Server(seconds, rate)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=4096)
    ticker = asyncio.create_task(server.tick())
    print(f"fast_llm listening on {port}", flush=True)
    async with listener:
        await listener.serve_forever()
    ticker.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.seconds, args.rate))


if __name__ == "__main__":
    main()
