"""Schemathesis against the real server: no 5xx, and every answer matches /openapi.json.

Generated ids alone would only ever reach the 404 branches, so in schema-valid cases most ids
are swapped for real ones of the fuzzing user: then prompts really run, attachments are stored
with generated text, and the answers with data in them are checked against the schema too.
Deterministic (Hypothesis derandomized, no example database) and bounded in examples.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from models import make_engine, make_sessionmaker, transaction
from orchestrator import accounts
from orchestrator.runs import lifecycle
from orchestrator.runs.lifecycle import FragmentValues
from orchestrator.settings import Settings
from tests.conftest import Api, reset_llm, settle
from tests.fakes.llm_server import FakeLLM
from web.openapi import describe_api

CONFIG = schemathesis.Config.from_dict(
    {
        # NUL is refused with a 400 by contract (PostgreSQL cannot store it), which a schema
        # cannot say for every string; tests/test_hostile_bodies.py covers it instead.
        "generation": {"allow-x00": False, "deterministic": True},
        "checks": {
            # Schema-valid requests may still meet the state: a run in progress (409), a
            # reused Idempotency-Key (422), the plan (403), someone else's or no such id (404).
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
            }
        },
        "operations": [
            {
                # "projectId or conversationId is required" is beyond what parameters can say.
                "include-name": "GET /api/messages",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}
                },
            },
            *(
                {
                    # Where a Git URL may go (IMPORT_ALLOWED_HOSTS, public addresses) and what a
                    # ref or branch may be named are beyond what a schema says: 400 in words.
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "404", "409"]
                        }
                    },
                }
                for name in (
                    "POST /api/projects/{projectId}/imports",
                    "POST /api/fragments/{fragmentId}/push",
                )
            ),
            {
                # That the last of the messages is the user's, with 3 to 1000 characters of
                # text, is beyond what JSON Schema can say of a list.
                "include-name": "POST /api/chat",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "403", "404", "409", "422", "429"]
                    }
                },
            },
        ],
    }
)
# The event stream stays open while a run goes on; its description is checked, not fuzzed.
schema = schemathesis.openapi.from_dict(describe_api(), config=CONFIG).exclude(
    method="GET", path="/api/messages/{messageId}/events"
)


@dataclass(frozen=True)
class Owned:
    """The fuzzing user and real ids of theirs, to swap in for generated ones."""

    api: Api
    ids: dict[str, list[str]]

    def swap(self, name: str, generated: Any) -> Any:
        choices = self.ids.get(name)
        if not choices or not isinstance(generated, str):
            return generated
        # Deterministic, unlike hash(): one generated id in four is kept, to reach the 404s.
        pick = zlib.crc32(generated.encode("utf-8", "replace"))
        return generated if pick % 4 == 0 else choices[pick % len(choices)]


@pytest.fixture(scope="module")
def owned(server: str, worker: Any, settings: Settings, llm: FakeLLM) -> Iterator[Owned]:
    # Module-scoped: set up before the per-test reset, so it settles the shared stack itself.
    settle(settings)
    reset_llm(llm)
    api = Api(server, "fuzz_user")
    project = api.project("Fuzzed")
    sent = api.send(project["id"]).json()
    api.wait_terminal(sent["messageId"])
    db = make_sessionmaker(make_engine(settings.database_url))
    with transaction(db) as session:
        # Plenty of credits: every accepted prompt spends one, and 402 would hide the rest.
        accounts.set_credits(session, api.user_id, 100_000, settings.default_credits)
        fragment = lifecycle.upsert_fragment(
            session,
            sent["messageId"],
            FragmentValues(
                title="Fuzzed",
                files={"index.html": "<h1>fuzz</h1>"},
                framework="NEXTJS",
                sandbox_id=None,
                sandbox_url=None,
                metadata={},
            ),
        )
        fragment_id = fragment.id
    attached = api.post(
        f"/api/messages/{sent['id']}/attachments", json={"url": "https://x.test/a", "size": 1}
    )
    assert attached.status_code == 201, attached.text
    yield Owned(
        api,
        {
            "projectId": [project["id"]],
            "conversationId": [sent["conversationId"]],
            "messageId": [sent["id"], sent["messageId"]],
            "fragmentId": [fragment_id],
        },
    )
    api.http.close()


def adopt_real_ids(case: Any, owned: Owned) -> None:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return  # swapping could turn a case meant to be invalid into a valid one
    for bag in (case.path_parameters, case.query):
        for name in list(bag or {}):
            bag[name] = owned.swap(name, bag[name])
    if isinstance(case.body, dict):
        for name in ("projectId", "conversationId", "messageId"):
            if name in case.body:
                case.body[name] = owned.swap(name, case.body[name])


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_without_5xx_and_as_described(case: Any, server: str, owned: Owned) -> None:
    adopt_real_ids(case, owned)
    case.call_and_validate(
        base_url=server, headers={"Authorization": f"Bearer {owned.api.token}"}, timeout=30
    )


def test_the_description_is_served_without_auth_and_is_valid_openapi_3_1(server: str) -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    answer = httpx.get(f"{server}/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    assert document == describe_api()
    assert document["openapi"].startswith("3.1")
    assert list(OPENAPI_31_VALIDATOR.iter_errors(document)) == []


def test_every_route_of_the_app_is_described(server: str, settings: Settings) -> None:
    """A new route without a description fails here, before a client trips over it."""
    from web import create_app

    app = create_app(settings)
    described = {
        (method.upper(), path) for path, item in describe_api()["paths"].items() for method in item
    }
    # Not API routes: the schema itself, the served previews and published apps (their
    # folders' redirects and index pages), and the web page (its HTML).
    undocumented = {
        "/openapi.json",
        "/preview/<fragment_id>",
        "/preview/<fragment_id>/",
        "/apps/<slug>",
        "/apps/<slug>/",
        "/",
    }
    for rule in app.url_map.iter_rules():
        if rule.rule in undocumented or rule.endpoint == "static":
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", "{" + camel(name) + "}")
            path = path.replace(f"<path:{name}>", "{" + camel(name) + "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, path) in described, f"{method} {rule.rule} is not in /openapi.json"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
