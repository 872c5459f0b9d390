"""The wire contract: one pydantic model per JSON shape the API answers (DESIGN sections 3, 4, 12).

The views return these, the run engine puts a `Fragment` in its `fragment` event, and
`/openapi.json` is generated from them, so the three cannot drift. They live in the core, not in
`web/`, because the engine needs them too and `orchestrator/` never imports `web/`.
"""

from __future__ import annotations

from orchestrator.contract.fragments import (
    Changes,
    FileDiff,
    Fragment,
    FragmentDiff,
    FragmentPaths,
    LivePreview,
    PublicFragment,
    Version,
    fragment_json,
)
from orchestrator.contract.resources import (
    Attachment,
    Conversation,
    FragmentWithOwner,
    ListedMessage,
    Me,
    Message,
    Project,
    Restored,
    SentMessage,
)
from orchestrator.contract.shape import Shape, Time, iso

__all__ = [
    "Attachment",
    "Changes",
    "Conversation",
    "FileDiff",
    "Fragment",
    "FragmentDiff",
    "FragmentPaths",
    "FragmentWithOwner",
    "ListedMessage",
    "LivePreview",
    "Me",
    "Message",
    "Project",
    "PublicFragment",
    "Restored",
    "SentMessage",
    "Shape",
    "Time",
    "Version",
    "fragment_json",
    "iso",
]
