from __future__ import annotations

from typing import Any

from flask import Response

from orchestrator import contract, messages
from web.api.common import unit_of_work
from web.auth import current_user_id
from web.endpoints import Api, Raw

bp = Api("fragments", __name__)


@bp.operation(
    "GET /api/fragments/<fragment_id>", answer=contract.PublicFragment, fails="404", auth="public"
)
def public(fragment_id: str) -> Any:
    """A fragment, shared publicly by its unguessable id."""
    with unit_of_work() as session:
        return messages.public_fragment(session, fragment_id)


@bp.operation(
    "GET /api/fragments/<fragment_id>/full", answer=contract.FragmentWithOwner, fails="404"
)
def full(fragment_id: str) -> Any:
    """A fragment with its message and project, for its owner."""
    with unit_of_work() as session:
        fragment, message, project = messages.owned_fragment(
            session, current_user_id(), fragment_id
        )
    return contract.FragmentWithOwner.model_validate(
        {"fragment": fragment, "message": message, "project": project}
    )


@bp.operation(
    "GET /api/fragments/<fragment_id>/screenshot",
    answer=Raw("image/png", "The version as its render check saw it (at most 1280x800)"),
    fails="404",
    auth="public",
)
def screenshot(fragment_id: str) -> Any:
    """The version's screenshot, public like its preview; 404 when its checks took none."""
    with unit_of_work() as session:
        png = messages.fragment_screenshot(session, fragment_id)
    response = Response(png, content_type="image/png")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
