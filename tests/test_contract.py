"""The wire shapes (orchestrator/contract): written from rows byte for byte as DESIGN section 3
pins them, and described in /openapi.json by the same models."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from models import Fragment, Message
from orchestrator import contract
from web.openapi import describe_api

NAIVE = datetime(2026, 1, 2, 3, 4, 5, 678901)  # SQLite hands times back without a zone
PARIS = datetime(2026, 1, 2, 4, 4, 5, 678901, tzinfo=timezone(timedelta(hours=1)))


def message(**values: object) -> Message:
    row = dict(
        id="m1",
        conversation_id="c1",
        project_id="p1",
        user_id="u1",
        role="ASSISTANT",
        content="héllo",
        type="RESULT",
        status="COMPLETE",
        run_id=None,
        tool_calls=None,
        image_url=None,
        error=None,
        run_metadata=None,
        created_at=NAIVE,
        updated_at=PARIS,
    )
    return Message(**(row | values))


def fragment(**values: object) -> Fragment:
    row = dict(
        id="f1",
        message_id="m1",
        sandbox_id=None,
        sandbox_url=None,
        title="T",
        files={"b.js": "b", "a.js": "a"},
        fragment_metadata={"summary": "S", "usage": {"promptTokens": 3}, "stopReason": "finish"},
        framework="REACT",
        image_url=None,
        design_spec=None,
        version=1,
        parent_id=None,
        changes=None,
        created_at=NAIVE,
        updated_at=NAIVE,
    )
    return Fragment(**(row | values))


def test_a_message_is_written_in_design_order_with_nulls_empties_and_utc_milliseconds() -> None:
    written = json.dumps(contract.Message.model_validate(message()).wire(), ensure_ascii=False)
    assert written == (
        '{"id": "m1", "conversationId": "c1", "projectId": "p1", "userId": "u1", '
        '"role": "ASSISTANT", "content": "héllo", "type": "RESULT", "status": "COMPLETE", '
        '"runId": null, "toolCalls": [], "imageUrl": null, "error": null, "metadata": {}, '
        '"createdAt": "2026-01-02T03:04:05.678Z", "updatedAt": "2026-01-02T03:04:05.678Z"}'
    )


def test_a_sent_message_keeps_run_id_in_its_place_and_adds_success_and_message_id() -> None:
    user = contract.Message.model_validate(message(role="USER"))
    sent = contract.SentMessage.of(user, run_id="r1", message_id="m2").wire()
    keys = list(contract.Message.model_validate(message()).wire()) + ["success", "messageId"]
    assert list(sent) == keys
    assert (sent["runId"], sent["success"], sent["messageId"]) == ("r1", True, "m2")


def test_a_fragment_lists_files_or_sorted_paths_and_shares_only_public_metadata() -> None:
    full = contract.Fragment.model_validate(fragment()).wire()
    assert full["files"] == {"b.js": "b", "a.js": "a"}
    assert full["changes"] == {"added": [], "modified": [], "deleted": []}
    paths = contract.FragmentPaths.model_validate(fragment()).wire()
    assert list(paths) == [k for k in full if k != "files"] + ["filePaths"]
    assert paths["filePaths"] == ["a.js", "b.js"]
    public = contract.PublicFragment.model_validate(fragment()).wire()
    assert public["metadata"] == {"summary": "S", "stopReason": "finish"}  # no usage
    assert contract.fragment_json(fragment()) == full


def test_the_document_describes_each_shape_as_its_model_writes_it() -> None:
    schemas = describe_api()["components"]["schemas"]
    for name, model, row in [
        ("Message", contract.Message, message()),
        ("Fragment", contract.Fragment, fragment()),
        ("FragmentPaths", contract.FragmentPaths, fragment()),
        ("PublicFragment", contract.PublicFragment, fragment()),
    ]:
        written = model.model_validate(row).wire()
        assert schemas[name]["required"] == list(written), name
        assert schemas[name]["additionalProperties"] is False, name
    created = schemas["Message"]["properties"]["createdAt"]
    assert created["pattern"] == r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def test_times_are_utc_whatever_zone_they_come_in() -> None:
    assert contract.iso(PARIS) == contract.iso(NAIVE) == "2026-01-02T03:04:05.678Z"
    assert contract.iso(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00.000Z"
    assert contract.iso(None) is None
