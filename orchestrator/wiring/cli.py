"""The `orchestrator` console script: database, tokens, and the ops commands operators need.

orchestrator db upgrade
orchestrator token USER_ID [--credits N] [--plan PRO]
orchestrator runs stuck | cancel MESSAGE_ID | requeue MESSAGE_ID
orchestrator credits grant USER_ID N
orchestrator sandbox prepare [FRAMEWORK ...]   # the local sandbox's templates (default: all)
orchestrator dev            # everything in the Procfile, on embedded defaults
orchestrator e2b-template build [FRAMEWORK ...]   # build and register E2B templates

The console script is `workers.cli:main`, this CLI with Celery's revoke handed in (the core does
not import Celery); run as `python -m orchestrator.wiring.cli`, a cancel cannot drop a queued
task, which then finds its run CANCELLED and does nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import RUNNING, Message, Plan, make_engine, make_sessionmaker, transaction
from models.migrate import upgrade
from orchestrator import accounts
from orchestrator.errors import AppError, ConfigError
from orchestrator.runs import lifecycle
from orchestrator.sandboxes.prepare import prepare
from orchestrator.sandboxes.templates import SPECS, TemplateStore, spec_for
from orchestrator.settings import Settings, env_data_dir, environ
from orchestrator.tokens import user_token
from orchestrator.wiring import dev_secret

# Given the settings, how to revoke a run's task (dropping it if still queued).
RevokeFactory = Callable[[Settings], Callable[[str], None]]


def _no_revoke(settings: Settings) -> Callable[[str], None]:
    return lambda run_id: None


def main(argv: list[str] | None = None, *, revoke: RevokeFactory = _no_revoke) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])

    token = commands.add_parser("token", help="print a JWT for a user (creating the user)")
    token.add_argument("user_id")
    token.add_argument("--credits", type=int, help="set the user's credit balance")
    token.add_argument("--plan", choices=[p.value for p in Plan])
    token.add_argument("--ttl", type=int, default=30 * 24 * 3600, help="seconds of validity")

    runs = commands.add_parser("runs", help="inspect and steer runs")
    runs.add_argument("action", choices=["stuck", "cancel", "requeue"])
    runs.add_argument("message_id", nargs="?")

    credits = commands.add_parser("credits", help="grant credits")
    credits.add_argument("action", choices=["grant"])
    credits.add_argument("user_id")
    credits.add_argument("amount", type=int)

    sandbox = commands.add_parser("sandbox", help="the local sandbox's framework templates")
    sandbox.add_argument("action", choices=["prepare"])
    sandbox.add_argument(
        "frameworks",
        nargs="*",
        metavar="FRAMEWORK",
        help=f"any of {', '.join(spec.folder for spec in SPECS.values())} (default: all)",
    )

    commands.add_parser("dev", help="run every Procfile line on embedded defaults")

    e2b_template = commands.add_parser(
        "e2b-template", help="build and register the E2B templates of sandbox-templates/"
    )
    e2b_template.add_argument("action", choices=["build"])
    e2b_template.add_argument(
        "frameworks", nargs="*", metavar="FRAMEWORK", help="react, vue, ...; all by default"
    )

    args = parser.parse_args(argv)
    try:
        return _dispatch(args, revoke)
    except AppError as exc:
        print(f"orchestrator: {exc.message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, revoke: RevokeFactory) -> int:
    settings = Settings.from_env(environ())
    if args.command == "dev":
        return dev(settings)
    if args.command == "sandbox":
        return _prepare(settings, args.frameworks)
    if args.command == "e2b-template":
        return _build_e2b_templates(settings, args.frameworks)
    if args.command == "db":
        upgrade(settings.database_url)
        print("database is up to date")
        return 0
    factory = make_sessionmaker(make_engine(settings.database_url))
    if args.command == "token":
        secret = _signing_secret(settings)  # before anything is written
        with transaction(factory) as session:
            user = accounts.ensure_user(session, args.user_id, settings.default_credits)
            if args.credits is not None:
                user = accounts.set_credits(
                    session, args.user_id, args.credits, settings.default_credits
                )
            if args.plan:  # after set_credits, whose refresh would discard it
                user.plan = args.plan
        print(user_token(secret, args.user_id, args.ttl))
        return 0
    if args.command == "credits":
        with transaction(factory) as session:
            accounts.ensure_user(session, args.user_id, settings.default_credits)
            accounts.give_credit(session, args.user_id, args.amount, "grant", None)
        print(f"granted {args.amount} credits to {args.user_id}")
        return 0
    return _runs(factory, settings, args.action, args.message_id, revoke)


def _prepare(settings: Settings, frameworks: list[str]) -> int:
    """`sandbox prepare`: named frameworks, or all of them (the Procfile's release step)."""
    from orchestrator.wiring.sandboxes import sandbox_places

    named = bool(frameworks)
    if not named and settings.sandbox != "local":
        print(f"SANDBOX={settings.sandbox}: no local template to prepare")
        return 0
    if settings.sandbox_templates is None:
        if not named:
            print("SANDBOX_TEMPLATES is off: no template to prepare (static apps only)")
            return 0
        raise ConfigError("SANDBOX_TEMPLATES is off: there is nowhere to prepare templates")
    places = sandbox_places(settings)
    assert places.templates is not None
    if places.moved:
        print(places.moved, flush=True)
    store = TemplateStore(places.templates)
    frameworks = frameworks or [spec.folder for spec in SPECS.values()]
    for framework in frameworks:
        spec_for(framework)  # an unknown name fails before anything is installed
    for framework in frameworks:
        if store.prepared(framework) is None:
            print(f"{framework}: installing in {store.root / framework} ...", flush=True)
        done = prepare(store, framework)
        what = "installed" if done.installed else "already prepared"
        print(f"{framework}: {what} in {done.path} ({done.seconds:.1f} s)", flush=True)
    return 0


def _build_e2b_templates(settings: Settings, frameworks: list[str]) -> int:
    from orchestrator.sandboxes.e2b import DEV_SERVERS
    from orchestrator.sandboxes.e2b_templates import build, load

    if not settings.e2b_api_key:
        raise ConfigError("set E2B_API_KEY to the key of the E2B team the templates are for")
    configs = [load(framework) for framework in frameworks or sorted(DEV_SERVERS)]
    for config in configs:
        print(f"building {config.name} from {config.folder}", flush=True)
        template_id = build(
            config,
            api_key=settings.e2b_api_key,
            domain=settings.e2b_domain,
            api_url=settings.e2b_api_url,
        )
        print(f"{config.framework}: {config.name} is built (template id {template_id})")
    return 0


def _signing_secret(settings: Settings) -> str:
    """AUTH_SECRET, else the development mode's secret; else say what to set."""
    if settings.auth_secret:
        return settings.auth_secret
    if settings.auth_jwks_url:
        raise ConfigError(
            "AUTH_JWKS_URL is set without AUTH_SECRET: HS256 tokens are refused, so sign users "
            "in with your identity provider (or set AUTH_SECRET)"
        )
    found = dev_secret.read(Path(settings.data_dir))
    if found is None:
        raise ConfigError(
            "no AUTH_SECRET is set and no development secret exists under "
            f"{settings.data_dir}/ (scripts/run makes one): set AUTH_SECRET to sign tokens"
        )
    return found


def _runs(
    factory: sessionmaker[Session],
    settings: Settings,
    action: str,
    message_id: str | None,
    revoke: RevokeFactory,
) -> int:
    if action == "stuck":
        with transaction(factory) as session:
            query = select(Message).where(Message.status.in_(RUNNING)).order_by(Message.created_at)
            for m in session.scalars(query):
                beat = m.heartbeat_at.isoformat() if m.heartbeat_at else "-"
                print(f"{m.id}  {m.status:<9}  attempts={m.attempts}  heartbeat={beat}")
        return 0
    if not message_id:
        print(f"runs {action} needs a MESSAGE_ID", file=sys.stderr)
        return 2
    with transaction(factory) as session:
        message = session.get(Message, message_id)
        if message is None:
            print("no such message", file=sys.stderr)
            return 1
        owner = message.user_id
        if action == "requeue" and not lifecycle.requeue_now(session, message_id):
            print(f"requeue {message_id}: not running (it is {message.status})", file=sys.stderr)
            return 1
    if action == "cancel":
        _cancel(factory, settings, owner, message_id, revoke(settings))
    print(f"{action} {message_id}: done")
    return 0


def dev_environment(env: dict[str, str]) -> dict[str, str]:
    """The development mode alone may run without configured auth: it makes a random secret."""
    if not env.get("AUTH_SECRET") and not env.get("AUTH_JWKS_URL"):
        data_dir = env_data_dir(env)
        env["AUTH_SECRET"] = dev_secret.ensure(data_dir)
        print(f"development mode: tokens are signed with the secret in {dev_secret.path(data_dir)}")
    return env


DEMO_USER = "demo"


def sign_in_link(env: dict[str, str], public_url: str) -> str:
    """What the development mode prints: the web page, signed in as the demo user (DESIGN 13)."""
    secret = env.get("AUTH_SECRET")
    if not secret:
        return f"open {public_url}/ and paste a token from your identity provider"
    token = user_token(secret, DEMO_USER, 7 * 24 * 3600)
    # In the fragment, which browsers never send to a server; the page moves it to sessionStorage.
    return f"sign in as {DEMO_USER!r}: {public_url}/#token={token}"


def _cancel(
    factory: sessionmaker[Session],
    settings: Settings,
    owner: str,
    message_id: str,
    revoke: Callable[[str], None],
) -> None:
    """What DELETE does: CANCELLED, the cancel flag, the `done` event, the revoke."""
    import redis

    from orchestrator.runs.cancellation import cancel_run
    from orchestrator.streams.events import EventLog

    client = redis.Redis.from_url(settings.redis_url)
    try:
        events = EventLog(
            client, maxlen=settings.event_stream_maxlen, ttl=settings.event_stream_ttl
        )
        cancel_run(factory, client, events, owner, message_id, revoke)
    finally:
        client.close()


def dev(settings: Settings) -> int:
    """Migrate, start a bundled Redis unless REDIS_URL is set, and run the Procfile with honcho."""
    from orchestrator.wiring.bundled_redis import BundledRedis

    env = dev_environment(dict(environ()))
    bundled = None
    if not env.get("REDIS_URL"):
        bundled = BundledRedis(env_data_dir(env) / "redis").start()
        env["REDIS_URL"] = bundled.url
        print(f"started the bundled Redis at {bundled.url}")
    upgrade(settings.database_url)
    # Honcho gives each process its own PORT; the worker must still write the web's URLs.
    env.setdefault("PUBLIC_URL", settings.public_url)
    print(sign_in_link(env, env["PUBLIC_URL"]))
    # The Procfile names gunicorn and celery: find them beside this interpreter (the venv).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    procfile = Path(__file__).resolve().parents[2] / "Procfile"  # the repository's
    honcho = [
        sys.executable, "-m", "honcho", "start",
        "-f", str(procfile), "-d", os.getcwd(), "-p", str(settings.port),
        # Flower's line is optional: `honcho start flower` beside it when wanted.
        "web", "worker", "beat", "reaper",
    ]  # fmt: skip
    child = subprocess.Popen(honcho, env=env)
    try:
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        return child.wait()
    finally:
        if bundled is not None:
            bundled.stop()


if __name__ == "__main__":
    raise SystemExit(main())
