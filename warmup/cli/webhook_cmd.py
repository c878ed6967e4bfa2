"""`warmup webhook` (the webhook receiver, with /metrics) and `warmup metrics` (only /metrics)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from warmup.cli.common import database_url, database_url_option, settings
from warmup.core.errors import UserError

if TYPE_CHECKING:
    from warmup.clock import Clock
    from warmup.store.db import Engine


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed: a busy port is one clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host!r} is not an address this machine has: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (another process uses it? pick --port)"
        ) from None
    sock.listen(128)
    return sock


def _serve(url: str | None, host: str, port: int, build: Callable[[Engine, Clock], tuple[Any, str]]) -> None:
    """Open the store, bind the port, then serve the app `build(engine, clock)` returns with its banner."""
    import uvicorn

    from warmup.clock import clock_from_settings
    from warmup.services.admin import open_store

    engine = open_store(database_url(url))
    try:
        clock = clock_from_settings()
        sock = _bind(host, port)
        try:
            app, banner = build(engine, clock)
            print(banner, flush=True)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
            server.run(sockets=[sock])
        finally:
            sock.close()
    finally:
        engine.dispose()


webhook_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@webhook_app.callback(invoke_without_command=True)
def webhook(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    url: str | None = database_url_option(),
) -> None:
    """Receive Whapi and Cloud API webhooks (replies, delivery statuses, admin chat commands).

    Secrets come from the environment: WARMUP_WEBHOOK_SECRET (Whapi, header X-Warmup-Secret or
    ?secret=), WARMUP_META_APP_SECRET (Cloud API signatures), WARMUP_META_VERIFY_TOKEN (Meta's handshake).
    `warmup webhook register BASE_URL` points the Whapi numbers' webhooks at it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from warmup.logs import setup_logging
    from warmup.webhook import WebhookConfig, create_app

    loaded = settings()
    config = WebhookConfig.from_env()
    missing = [
        name
        for name, value in (
            ("WARMUP_WEBHOOK_SECRET", config.webhook_secret),
            ("WARMUP_META_APP_SECRET", config.meta_app_secret),
        )
        if value is None
    ]
    if len(missing) == 2:
        raise UserError(
            "set WARMUP_WEBHOOK_SECRET (Whapi) or WARMUP_META_APP_SECRET (Cloud API), or both: "
            "without one every webhook would be refused"
        )

    def build(engine: Engine, clock: Clock) -> tuple[Any, str]:
        setup_logging(loaded.log_format, loaded.log_level)
        for name in missing:
            print(f"note: {name} is not set; that provider's webhooks will be refused (503)")
        banner = (
            f"listening on http://{host}:{port} (POST /webhooks/whapi/PHONE, /webhooks/cloud; GET /metrics)"
        )
        return create_app(engine, config, clock=clock), banner

    _serve(url, host, port, build)


def metrics(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(9108, "--port", min=1, max=65535, help="TCP port."),
    url: str | None = database_url_option(),
) -> None:
    """Serve Prometheus metrics of the fleet (read from the database) on /metrics."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from warmup.services import metrics as m

    def build(engine: Engine, clock: Clock) -> tuple[Any, str]:
        async def endpoint(request: Request) -> Response:
            body = await run_in_threadpool(m.exposition, engine, clock.now)
            return Response(body, media_type=m.CONTENT_TYPE)

        return Starlette(routes=[Route("/metrics", endpoint)]), f"serving http://{host}:{port}/metrics"

    _serve(url, host, port, build)


@webhook_app.command("register")
def register_webhooks(
    base_url: str = typer.Argument(
        ..., metavar="BASE_URL", help="Where Whapi reaches `warmup webhook`, e.g. https://warmup.example.com"
    ),
    phone: str | None = typer.Argument(
        None, metavar="[PHONE]", help="Only this number (default: every one)."
    ),
    url: str | None = database_url_option(),
) -> None:
    """Set each Whapi number's webhook (PATCH /settings) to BASE_URL/webhooks/whapi/PHONE.

    Events `messages` and `statuses`, posted as a JSON body with the secret WARMUP_WEBHOOK_SECRET in the
    X-Warmup-Secret header; the channel's other webhooks are kept. Exit 1 if any number failed.
    """
    from warmup.services.admin import open_store
    from warmup.services.webhook_setup import register_webhooks as register_all
    from warmup.webhook import WebhookConfig

    secret = WebhookConfig.from_env().webhook_secret
    if secret is None:
        raise UserError(
            "set WARMUP_WEBHOOK_SECRET: the receiver refuses Whapi webhooks without it, and it is sent "
            "to Whapi as the X-Warmup-Secret header of each webhook"
        )
    engine = open_store(database_url(url))
    try:
        done = register_all(engine, base_url, secret, phone=phone)
    finally:
        engine.dispose()
    failed = [r for r in done if not r.done]
    for result in done:
        if result.done:
            others = f"; {result.kept} other webhook(s) kept" if result.kept else ""
            print(f"{result.phone}: webhook set to {result.url} (messages, statuses){others}")
        else:
            print(f"{result.phone}: NOT set ({result.url}): {result.error}")
    if failed:
        raise UserError(f"{len(failed)} of {len(done)} webhook(s) not set; see above")


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")
    app.command("metrics")(metrics)
