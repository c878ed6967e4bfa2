"""The simulator's Meta Cloud API routes, for the same channels as Whapi (phone-number-id = their digits).

`POST /{version}/{phone-number-id}/messages` (text or template) and `GET /{version}/{phone-number-id}`
(the default fields `id, display_phone_number, verified_name, quality_rating` plus any of `?fields=status,
messaging_limit_tier,whatsapp_business_manager_messaging_limit,...`), same token as Whapi. A channel is a
Cloud API number once declared (`portfolio` or `cloud` in its spec) or from its first Cloud API call; the
model behind it is `cloud` (portfolios and moving-24 h messaging limits, the customer-service window,
quality from replies and blocks, CONNECTED/FLAGGED/RESTRICTED, tiers, approved templates, signed
`whatsapp_business_account` webhooks for messages, statuses, quality, capability and account alerts).

Errors come in Meta's envelope (`{"error": {message, type, code, error_data: {messaging_product,
details}, fbtrace_id}}`) with Meta's codes: 190 bad token, 100 bad parameter or unknown field, 368 banned
or restricted by policy, 131031 logged out, 131026 forbidden recipient, 131042 trial limit, 130429
throughput (or an injected rate-limit fault), 131047 free-form text outside the 24 h window, 131048 spam
rate limit (quality RED, or the portfolio's messaging limit reached), 132001 template not approved.
131049 (not delivered, ecosystem protection) comes as Meta reports it: the send is accepted, then its
status webhook says `failed` with that error. Not simulated: the 131056 pair rate limit, media and
interactive messages, template parameters, conversation pricing. Faults apply as `cloud_send` and
`cloud_status`.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from warmup.simulator.api_call import json_response, parse_json, run_operation
from warmup.simulator.channels import MetaError, SimError
from warmup.simulator.model import CloudSend
from warmup.simulator.state import SimState

_GRAPH_VERSION = re.compile(r"v[0-9]{1,3}\.[0-9]{1,2}")
_fbtrace = itertools.count(1)


def meta_error(error: SimError) -> tuple[int, Any]:
    """Meta's Graph API envelope for an error; HTTP status and code as the Cloud API uses them."""
    details = error.details.lower()
    if isinstance(error, MetaError):
        status, code, message = error.status, error.code, error.message
    elif error.status == 401 and "banned" in (error.message + details).lower():
        status, code, message = 400, 368, "Temporarily blocked for policies violations"
    elif error.status == 401 and "logged out" in details:
        status, code, message = 400, 131031, "Account has been locked"
    elif error.status == 401:
        status, code, message = 401, 190, "Invalid OAuth access token"
    elif error.status == 402:
        status, code, message = 400, 131042, "Business eligibility payment issue"
    elif error.status == 403:
        status, code, message = 400, 131026, "Message undeliverable"
    elif error.status == 429:
        status, code, message = 429, 130429, "Rate limit hit"
    elif error.status >= 500:
        status, code, message = (
            error.status,
            2 if error.status != 500 else 1,
            "Service temporarily unavailable",
        )
    elif error.status == 404:
        status, code, message = 404, 100, "Unknown path components"
    else:
        status, code, message = 400, 100, "Invalid parameter"
    return status, {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details},
            "fbtrace_id": f"Sim{next(_fbtrace):09d}",
        }
    }


def cloud_send_request(payload: Any) -> CloudSend:
    """The text or template send a Cloud API body asks for; SimError 400 if malformed."""
    if not isinstance(payload, dict) or payload.get("messaging_product") != "whatsapp":
        raise SimError(400, "Bad request", "messaging_product must be 'whatsapp'")
    to = payload.get("to")
    if not isinstance(to, str) or not to:
        raise SimError(400, "Bad request", "'to' is required")
    kind = payload.get("type", "text")
    if kind == "text":
        text = payload.get("text")
        body = text.get("body") if isinstance(text, dict) else None
        if not isinstance(body, str) or not body.strip():
            raise SimError(400, "Bad request", "text.body is required")
        return CloudSend(to, body=body)
    if kind == "template":
        template = payload.get("template")
        name = template.get("name") if isinstance(template, dict) else None
        language = template.get("language") if isinstance(template, dict) else None
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(name, str) or not name or not isinstance(code, str) or not code:
            raise SimError(400, "Bad request", "template.name and template.language.code are required")
        return CloudSend(to, template=name, language=code)
    raise SimError(400, "Bad request", f"message type {kind!r} is not supported by the simulator")


def cloud_routes(state: SimState) -> list[Route]:
    """The Cloud API routes over one state; mount them last, their patterns match the other paths too."""

    async def cloud_send(request: Request) -> Response:
        raw = await request.body()
        version, phone_number_id = request.path_params["version"], request.path_params["pnid"]
        if not _GRAPH_VERSION.fullmatch(version):
            return json_response(
                *meta_error(SimError(404, "Unknown path", f"unknown API version {version!r}"))
            )

        def action(token: str, now: datetime) -> tuple[int, Any]:
            payload = parse_json(raw)
            if state.model.phone_of_token(token) is None:
                raise SimError(401, "Unauthorized", "invalid OAuth access token")
            send = cloud_send_request(payload)
            result = state.model.cloud_send(token, phone_number_id, send, now)
            state.log_send(state.model.last_send())
            return 200, result

        return await run_operation(state, request, "cloud_send", action, meta_error)

    async def cloud_phone(request: Request) -> Response:
        version, phone_number_id = request.path_params["version"], request.path_params["pnid"]
        if not _GRAPH_VERSION.fullmatch(version):
            return json_response(
                *meta_error(SimError(404, "Unknown path", f"unknown API version {version!r}"))
            )
        wanted = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]

        def action(token: str, now: datetime) -> tuple[int, Any]:
            return 200, state.model.phone_info(token, phone_number_id, wanted, now)

        return await run_operation(state, request, "cloud_status", action, meta_error)

    return [
        Route("/{version}/{pnid}/messages", cloud_send, methods=["POST"]),
        Route("/{version}/{pnid}", cloud_phone, methods=["GET"]),
    ]
