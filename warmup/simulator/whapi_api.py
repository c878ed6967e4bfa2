"""The simulator's Whapi routes, risk meter included, over the `SimModel`.

Operations: `POST /messages/text`, `GET /health`, `GET /messages/list`, `GET|PATCH /settings`,
`POST|GET /services/riskOfBlocking`. Auth: `Authorization: Bearer <token>` (or `?token=`), one token per
channel. Errors use Whapi's `{"error": {code, message, details}}` envelope; faults apply per operation
(`send`, `health`, `list`, `settings`, `meter`) through `api_call.run_operation`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from warmup.simulator.api_call import bool_param, int_param, number_param, parse_json, run_operation
from warmup.simulator.state import SimState

METER_PATH = "/services/riskOfBlocking"


def whapi_routes(state: SimState) -> list[Route]:
    """The Whapi routes over one state, in the order the app must try them."""

    async def send_text(request: Request) -> Response:
        raw = await request.body()

        def action(token: str, now: datetime) -> tuple[int, Any]:
            payload = parse_json(raw)
            result = state.model.send_text(token, payload, now)
            state.log_send(state.model.last_send())
            return 201, result

        return await run_operation(state, request, "send", action)

    async def health(request: Request) -> Response:
        return await run_operation(
            state, request, "health", lambda token, now: (200, state.model.health(token, now))
        )

    async def list_messages(request: Request) -> Response:
        q = request.query_params

        def action(token: str, now: datetime) -> tuple[int, Any]:
            result = state.model.list_messages(
                token,
                now,
                from_me=bool_param(q.get("from_me"), "from_me"),
                time_from=number_param(q.get("time_from"), "time_from"),
                time_to=number_param(q.get("time_to"), "time_to"),
                count=int_param(q.get("count"), "count", 100),
                offset=int_param(q.get("offset"), "offset", 0),
                sort=q.get("sort", "desc"),
            )
            return 200, result

        return await run_operation(state, request, "list", action)

    async def settings(request: Request) -> Response:
        if request.method == "GET":
            return await run_operation(
                state, request, "settings", lambda token, now: (200, state.model.get_settings(token))
            )
        raw = await request.body()
        return await run_operation(
            state,
            request,
            "settings",
            lambda token, now: (200, state.model.update_settings(token, parse_json(raw))),
        )

    async def meter(request: Request) -> Response:
        if request.method == "POST":
            return await run_operation(
                state, request, "meter", lambda token, now: (200, state.model.meter_compute(token, now))
            )
        return await run_operation(
            state, request, "meter", lambda token, now: (200, state.model.meter_last(token))
        )

    return [
        Route("/messages/text", send_text, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/messages/list", list_messages, methods=["GET"]),
        Route("/settings", settings, methods=["GET", "PATCH"]),
        Route(METER_PATH, meter, methods=["GET", "POST"]),
    ]
