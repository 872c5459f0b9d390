"""The blueprints the web app serves, in the order it registers them and /openapi.json lists."""

from __future__ import annotations

from flask import Blueprint

from web.api import (
    chat,
    code_io,
    conversations,
    events,
    fragments,
    health,
    me,
    messages,
    page,
    preview,
    projects,
    published,
    versions,
)
from web.endpoints import Api, Endpoint

BLUEPRINTS: tuple[Blueprint, ...] = (
    me.bp,
    projects.bp,
    conversations.bp,
    messages.bp,
    events.bp,
    chat.bp,
    fragments.bp,
    versions.bp,
    code_io.bp,
    published.bp,
    preview.bp,
    health.bp,
    page.bp,
)


def endpoints() -> list[Endpoint]:
    """Every declared endpoint of the app."""
    return [spec for bp in BLUEPRINTS if isinstance(bp, Api) for spec in bp.endpoints]
