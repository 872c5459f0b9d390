"""The API's own description, public like /healthz, so clients and fuzzers can read it."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from web.openapi import describe_api

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(describe_api())
