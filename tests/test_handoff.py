"""The loop-to-thread handoff of deltas: batches, joined text, no lost wake-up."""

from __future__ import annotations

import threading

from orchestrator.providers.base import Finish, TextDelta, ToolCallDelta
from orchestrator.providers.handoff import END, WAKE, Handoff


def test_text_added_while_the_reader_is_busy_comes_as_one_delta_in_order() -> None:
    box = Handoff()
    for piece in ("Hel", "lo", ", ", "world"):
        box.put(TextDelta(piece))
    call = ToolCallDelta(index=0, id="c1", name="write_file", arguments="{}")
    box.put(call)
    box.put(TextDelta("!"))
    box.put(Finish("stop"))
    box.put(END)
    assert box.take(timeout=1) == [
        TextDelta("Hello, world"),
        call,
        TextDelta("!"),
        Finish("stop"),
        END,
    ]
    assert box.take(timeout=0.01) == []


def test_a_reader_waiting_is_woken_by_the_first_item_and_sees_every_later_one() -> None:
    box = Handoff()
    seen: list[object] = []
    done = threading.Event()

    def read() -> None:
        while True:
            items = box.take(timeout=5)
            assert items, "the reader waited 5 s without being woken"
            seen.extend(items)
            if END in items:
                done.set()
                return

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(2_000):
        box.put(TextDelta(str(n % 10)))
        if n % 97 == 0:
            box.put(WAKE)
    box.put(END)
    reader.join(timeout=10)
    assert done.is_set(), "the reader never saw the end"
    text = "".join(item.text for item in seen if isinstance(item, TextDelta))
    assert text == "".join(str(n % 10) for n in range(2_000))
