"""`warmup webhook` (the webhook receiver, with /metrics) and `warmup metrics` (only /metrics)."""

from __future__ import annotations

import typer

URL_HELP = "Database URL (default: WARMUP_DATABASE_URL)."


def webhook(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Receive Whapi and Cloud API webhooks (replies, delivery statuses, admin chat commands).

    Secrets come from the environment: WARMUP_WEBHOOK_SECRET (Whapi, header X-Warmup-Secret or
    ?secret=), WARMUP_META_APP_SECRET (Cloud API signatures), WARMUP_META_VERIFY_TOKEN (Meta's handshake).
    """
    import uvicorn

    from warmup.admin import open_store
    from warmup.clock import clock_from_settings
    from warmup.config import get_settings
    from warmup.logs import setup_logging
    from warmup.webhook import WebhookConfig, create_app

    setup_logging()
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
        from warmup.errors import UserError

        raise UserError("set WARMUP_WEBHOOK_SECRET (Whapi) and/or WARMUP_META_APP_SECRET (Cloud API) first")
    for name in missing:
        print(f"note: {name} is not set; that provider's webhooks will be refused (503)")
    engine = open_store(url or get_settings().database_url)
    app = create_app(engine, config, clock=clock_from_settings())
    print(f"listening on http://{host}:{port} (POST /webhooks/whapi/PHONE, /webhooks/cloud; GET /metrics)")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        engine.dispose()


def metrics(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(9108, "--port", min=1, max=65535, help="TCP port."),
    url: str | None = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Serve Prometheus metrics of the fleet (read from the database) on /metrics."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from warmup import metrics as m
    from warmup.admin import open_store
    from warmup.clock import clock_from_settings
    from warmup.config import get_settings

    engine = open_store(url or get_settings().database_url)
    clock = clock_from_settings()

    async def endpoint(request: Request) -> Response:
        body = await run_in_threadpool(m.exposition, engine, clock.now)
        return Response(body, media_type=m.CONTENT_TYPE)

    print(f"serving http://{host}:{port}/metrics")
    try:
        uvicorn.run(
            Starlette(routes=[Route("/metrics", endpoint)]), host=host, port=port, log_level="warning"
        )
    finally:
        engine.dispose()


def register(app: typer.Typer, plan_app: typer.Typer) -> None:
    app.command("webhook")(webhook)
    app.command("metrics")(metrics)
