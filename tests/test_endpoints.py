"""An endpoint declared once (web/endpoints.py) is routed, checks its caller, parses its body and
query, writes its answer with its model, and is described by web/openapi.py from the same lines."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from flask import Flask, Response
from pydantic import Field

from orchestrator.contract import Shape
from orchestrator.settings import Settings
from orchestrator.tokens import user_token
from tests.conftest import SECRET
from web.endpoints import Api, Raw
from web.openapi import describe
from web.schemas import Body, Query


class NewThing(Body):
    display_name: str = Field(min_length=3)


class Things(Query):
    sort: Literal["name", "age"] = "name"


class Thing(Shape):
    """A thing."""

    thing_id: str
    display_name: str
    note: str | None


bp = Api("things", __name__)


@bp.operation(
    "POST /api/things/<owner_id>",
    answer=Thing,
    status=201,
    fails="404",
    body=NewThing,
    query=Things,
)
def make(owner_id: str, body: NewThing, query: Things) -> Any:
    """Make a thing.

    What follows the first paragraph is not the summary."""
    if body.display_name == "broken":
        return {"thing_id": owner_id}  # lacks what its model needs
    return Thing(thing_id=owner_id, display_name=body.display_name, note=None), {
        "X-Sort": query.sort
    }


@bp.operation(
    "GET /api/things.png",
    answer=Raw("image/png", "The picture"),
    auth="public",
    headers={"X-Painter": "Who painted it"},
)
def picture() -> Any:
    """A picture."""
    return Response(b"\x89PNG", mimetype="image/png", headers={"X-Painter": "me"})


@pytest.fixture(scope="module")
def app(settings: Settings, celery_app: Any) -> Flask:
    from web import create_app

    made = create_app(settings.model_copy(), celery=celery_app)
    made.register_blueprint(bp)
    return made


def auth(user: str = "thing-maker") -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(SECRET, user)}"}


def test_the_view_gets_its_parsed_body_and_query_and_its_model_writes_the_answer(
    app: Flask,
) -> None:
    answer = app.test_client().post(
        "/api/things/o1?sort=age", json={"displayName": "Lamp"}, headers=auth()
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    # camelCase, in the order the model declares, null present rather than missing
    assert answer.get_data(as_text=True) == '{"thingId":"o1","displayName":"Lamp","note":null}\n'
    assert answer.headers["X-Sort"] == "age"


def test_the_caller_is_checked_before_the_body_is_read(app: Flask) -> None:
    client = app.test_client()
    unauthenticated = client.post("/api/things/o1", data=b"{not json")
    assert unauthenticated.status_code == 401
    assert client.get("/api/things.png").status_code == 200  # a public one needs no token


@pytest.mark.parametrize(
    "body, query, named",
    [
        ({"displayName": "no"}, "", "displayName"),
        ({"display_name": "Lamp"}, "", "displayName"),  # the wire name is camelCase only
        ({"displayName": "Lamp"}, "?sort=size", "sort"),
    ],
)
def test_a_body_or_query_its_models_refuse_is_400_naming_the_field(
    app: Flask, body: dict[str, Any], query: str, named: str
) -> None:
    answer = app.test_client().post(f"/api/things/o1{query}", json=body, headers=auth())
    assert answer.status_code == 400
    assert set(answer.get_json()) == {"error"} and named in answer.get_json()["error"]


def test_an_answer_its_model_cannot_write_is_a_500_not_a_malformed_body(app: Flask) -> None:
    answer = app.test_client().post(
        "/api/things/o1", json={"displayName": "broken"}, headers=auth()
    )
    assert answer.status_code == 500
    assert answer.get_json() == {"error": "Internal server error"}


def test_a_non_json_answer_goes_out_as_the_view_made_it(app: Flask) -> None:
    answer = app.test_client().get("/api/things.png")
    assert (answer.content_type, answer.data) == ("image/png", b"\x89PNG")


def test_the_declaration_is_the_description() -> None:
    document = describe(bp.endpoints)
    made = document["paths"]["/api/things/{ownerId}"]["post"]
    assert made["security"] == [{"bearerAuth": []}]
    assert made["summary"] == "Make a thing."
    # 404 was declared; 400 (a parameter), 401 (a token) and 413 (a body) every such one has.
    assert sorted(made["responses"]) == ["201", "400", "401", "404", "413"]
    created = made["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/Thing"}
    schemas = document["components"]["schemas"]
    assert schemas["Thing"]["required"] == ["thingId", "displayName", "note"]
    assert schemas["Thing"]["additionalProperties"] is False
    assert schemas["NewThing"]["properties"]["displayName"]["minLength"] == 3
    assert made["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewThing"
    }
    parameters = {(p["name"], p["in"]): p for p in made["parameters"]}
    assert parameters[("ownerId", "path")]["required"] is True
    assert parameters[("sort", "query")]["schema"]["enum"] == ["name", "age"]
    picture = document["paths"]["/api/things.png"]["get"]
    assert picture["security"] == []
    assert picture["responses"] == {
        "200": {
            "description": "The picture",
            "content": {"image/png": {"schema": {}}},
            "headers": {
                "X-Painter": {"description": "Who painted it", "schema": {"type": "string"}}
            },
        }
    }
