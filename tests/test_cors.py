"""CORS_ORIGINS (DESIGN section 13): a front end on an allowed origin may call /api/* and read the
event stream; any other origin, and every origin by default, gets no CORS headers at all."""

from __future__ import annotations

from typing import Any

from orchestrator.settings import Settings
from tests.conftest import Api

FRONT = "https://front.example"
FOREIGN = "https://evil.example"


def client(settings: Settings, celery_app: Any, origins: tuple[str, ...] = (FRONT,)) -> Any:
    from web import create_app

    return create_app(
        settings.model_copy(update=dict(cors_origins=origins)), celery=celery_app
    ).test_client()


def test_cors_origins_are_read_from_the_environment() -> None:
    env = {"AUTH_SECRET": "x", "CORS_ORIGINS": " https://a.example, https://b.example:8443 ,"}
    assert Settings.from_env(env).cors_origins == ("https://a.example", "https://b.example:8443")
    assert Settings.from_env({}).cors_origins == ()


def test_an_allowed_origin_may_call_the_api_and_preflight_a_post_with_authorization(
    settings: Settings, celery_app: Any, make_api: Any
) -> None:
    api: Api = make_api()
    http = client(settings, celery_app)
    response = http.get(
        "/api/me", headers={"Origin": FRONT, "Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer tokens, no cookies
    assert "retry-after" in response.headers["Access-Control-Expose-Headers"].lower()

    preflight = http.options(
        "/api/messages",
        headers={
            "Origin": FRONT,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == FRONT
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip() for h in allowed.split(",")
    }


def test_an_allowed_origin_reads_the_event_stream(
    settings: Settings, celery_app: Any, api: Api
) -> None:
    project = api.project()
    sent = api.send(project["id"]).json()
    api.wait_terminal(sent["messageId"])
    token = api.post(f"/api/messages/{sent['messageId']}/events/token").json()["token"]
    response = client(settings, celery_app).get(
        f"/api/messages/{sent['messageId']}/events?token={token}", headers={"Origin": FRONT}
    )
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Access-Control-Allow-Origin"] == FRONT
    assert "event: done" in response.get_data(as_text=True)


def test_a_foreign_origin_and_the_default_configuration_get_no_cors_headers(
    settings: Settings, celery_app: Any, make_api: Any
) -> None:
    api: Api = make_api()
    preflight_headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for http, origin in (
        (client(settings, celery_app), FOREIGN),
        (client(settings, celery_app, origins=()), FRONT),  # the default: none
    ):
        got = http.get(
            "/api/me", headers={"Origin": origin, "Authorization": f"Bearer {api.token}"}
        )
        preflight = http.options("/api/messages", headers={"Origin": origin, **preflight_headers})
        for response in (got, preflight):
            cors = [
                k for k, _ in response.headers.items() if k.lower().startswith("access-control-")
            ]
            assert cors == [], (origin, cors)
    assert Settings().cors_origins == ()


def test_cors_stays_on_the_api_and_off_the_page_and_previews(
    settings: Settings, celery_app: Any
) -> None:
    http = client(settings, celery_app)
    for path in ("/", "/static/app.js", "/healthz"):
        response = http.get(path, headers={"Origin": FRONT})
        assert "Access-Control-Allow-Origin" not in response.headers, path
