"""Fragments, the versions they are (DESIGN section 12) and their previews, on the wire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, computed_field

from models import Framework
from orchestrator.contract.shape import Shape, Time, Uuid, or_empty

# All a public share shows of a fragment's metadata: an allow-list, so a key added later stays
# private until someone decides otherwise. Attempt logs, provider errors, usage and the sandbox's
# details are the owner's alone (DESIGN section 15).
PUBLIC_METADATA = ("summary", "title", "steps", "stopReason")


class Changes(Shape):
    """What a version changed against its parent: sorted paths."""

    added: list[str]
    modified: list[str]
    deleted: list[str]


NO_CHANGES: dict[str, list[str]] = {"added": [], "modified": [], "deleted": []}


class Fragment(Shape):
    id: Uuid
    message_id: Uuid
    sandbox_id: str | None
    sandbox_url: str | None
    title: str
    files: Annotated[dict[str, str], or_empty(dict)]
    metadata: Annotated[dict[str, Any], or_empty(dict)] = Field(
        validation_alias="fragment_metadata"
    )
    framework: Framework
    image_url: str | None
    design_spec: Annotated[Any, Field(description="Any JSON value, or null.")]
    version: int = Field(ge=1)
    parent_id: Uuid | None
    changes: Annotated[Changes, or_empty(lambda: NO_CHANGES)]
    created_at: Time
    updated_at: Time


def fragment_json(row: Any) -> dict[str, Any]:
    """A fragment row as the API and the run's `fragment` event carry it."""
    return Fragment.model_validate(row).wire()


class FragmentPaths(Fragment):
    """A fragment listed with `fragmentFiles=paths`: its sorted file paths instead of the files,
    which `GET /api/messages/<id>/fragment` serves, so a page does not grow with the code."""

    files: Annotated[dict[str, str], or_empty(dict)] = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def file_paths(self) -> list[str]:
        return sorted(self.files)


def _public(metadata: Any) -> dict[str, Any]:
    found = metadata or {}
    return {key: found[key] for key in PUBLIC_METADATA if key in found}


PublicMetadata = Annotated[
    dict[str, Any],
    BeforeValidator(_public),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {key: {} for key in PUBLIC_METADATA},
            "additionalProperties": False,
        }
    ),
]


class PublicFragment(Fragment):
    """A fragment as anyone holding its id sees it: no internal details in `metadata`."""

    metadata: PublicMetadata = Field(validation_alias="fragment_metadata")


class Version(Shape):
    """A version as the project's list shows it: everything but the files."""

    id: Uuid
    message_id: Uuid
    version: int = Field(ge=1)
    parent_id: Uuid | None
    title: str
    changes: Annotated[Changes, or_empty(lambda: NO_CHANGES)]
    created_at: Time


class FileDiff(Shape):
    path: str
    change: Literal["added", "modified", "deleted"]
    diff: str = Field(description="A unified diff against the parent")


class FragmentDiff(Shape):
    fragment_id: Uuid
    parent_id: Uuid | None
    files: list[FileDiff]


class LivePreview(Shape):
    """Where a version's live preview answers; `expiresAt` is null when it does not expire."""

    sandbox_url: str
    sandbox_id: str | None
    expires_at: Time | None
