"""The baseline for the POST benchmark: a bare Flask endpoint doing two inserts and one push."""

from __future__ import annotations

import json
import os
import uuid

import redis
from flask import Flask, jsonify, request
from sqlalchemy import Column, MetaData, String, Table, Text, insert

from models import make_engine
from orchestrator.settings import normalize_database_url

metadata = MetaData()
rows = Table(
    "bench_rows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("body", Text),
)


def create_app() -> Flask:
    engine = make_engine(normalize_database_url(os.environ["DATABASE_URL"]))
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    app = Flask(__name__)

    @app.post("/bench")
    def bench():  # type: ignore[no-untyped-def]
        body = request.get_json()
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(
                insert(rows), [{"id": first, "body": json.dumps(body)}, {"id": second, "body": ""}]
            )
        client.lpush("bench-queue", json.dumps({"id": second}))
        return jsonify({"id": first, "messageId": second}), 201

    return app
