"""WhapiProvider against a real local HTTP server that answers like Whapi (and misbehaves on cue)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest

from tests.http_fixture import Recorded, Reply, ScriptedServer, closed_port_url, server
from warmup.providers.base import OutcomeAction as A
from warmup.providers.base import Provider, ProviderError
from warmup.providers.whapi import (
    WHAPI_METER_URL,
    WhapiProvider,
    clamp_typing,
    parse_meter,
    simulator_meter_url,
    whapi_recipient,
)

__all__ = ["server"]

TOKEN = "WhapiTok3nAbcdefGhijklmnopQRSTUV"
TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # the moment the meter is read
METER = "/services/riskOfBlocking"


def sent(message_id: str = "PsqXn5SAD5v7HRA-wD3nxCl5Q") -> Reply:
    return Reply(201, {"sent": True, "message": {"id": message_id, "status": "pending"}})


def meter(**overrides: Any) -> Reply:
    body = {
        "channel": "ABCDEF-12345",
        "lastUpdateDate": "11/23/2026",
        "lifeTime": 1,
        "riskFactor": 2,
        "riskFactorChats": 3,
        "riskFactorContacts": 2,
    }
    body.update(overrides)
    return Reply(200, {k: v for k, v in body.items() if v is not None})


@pytest.fixture
def provider(server: ScriptedServer) -> Any:
    with WhapiProvider(TOKEN, server.base_url, server.base_url + METER, timeout=2.0) as p:
        yield p


# --- send --------------------------------------------------------------------------------------------


def test_send_text_posts_the_spec_body_with_bearer_token(
    server: ScriptedServer, provider: WhapiProvider
) -> None:
    server.on("POST", "/messages/text", sent("ABCD-1234"))
    result = provider.send_text("+55 11 99999-0001", "Oi, tudo bem?", typing_seconds=3.5)
    assert result.action is A.OK and result.sent
    assert result.provider_message_id == "ABCD-1234" and result.http_status == 201
    (request,) = server.calls("POST", "/messages/text")
    assert request.json == {"to": "5511999990001", "body": "Oi, tudo bem?", "typing_time": 3.5}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("given", "expected"), [(75.0, 60), (60.0, 60), (2.345, 2.3), (4.0, 4)])
def test_typing_time_is_clamped_to_the_spec_range(
    server: ScriptedServer, provider: WhapiProvider, given: float, expected: float
) -> None:
    server.on("POST", "/messages/text", sent())
    provider.send_text("+5511999990001", "hi", typing_seconds=given)
    assert server.calls("POST", "/messages/text")[0].json["typing_time"] == expected


@pytest.mark.parametrize("seconds", [0.0, -3.0, float("nan")])
def test_no_typing_time_when_zero_or_invalid(
    server: ScriptedServer, provider: WhapiProvider, seconds: float
) -> None:
    server.on("POST", "/messages/text", sent())
    provider.send_text("+5511999990001", "hi", typing_seconds=seconds)
    assert "typing_time" not in server.calls("POST", "/messages/text")[0].json


def test_clamp_typing() -> None:
    assert clamp_typing(float("inf")) == 60.0
    assert clamp_typing(0.04) == 0.0
    assert clamp_typing(4) == 4.0 and isinstance(clamp_typing(4), float)


@pytest.mark.parametrize("to", ["", "abc", "+12345", "+1234567890123456", "5511@g.us"])
def test_invalid_recipient_is_skipped_without_a_request(
    server: ScriptedServer, provider: WhapiProvider, to: str
) -> None:
    result = provider.send_text(to, "hi")
    assert result.action is A.SKIP_RECIPIENT
    assert server.calls("POST", "/messages/text") == []


def test_whapi_recipient_normalises_e164() -> None:
    assert whapi_recipient("+1 (650) 555-1234") == "16505551234"
    assert whapi_recipient("not a phone") is None


@pytest.mark.parametrize(
    ("status", "action"),
    [(400, A.FAIL), (401, A.STOP_NUMBER), (402, A.STOP_NUMBER), (403, A.SKIP_RECIPIENT), (413, A.FAIL),
     (429, A.RETRY), (500, A.RETRY), (502, A.UNKNOWN)],
)  # fmt: skip
def test_error_statuses_over_real_http(
    server: ScriptedServer, provider: WhapiProvider, status: int, action: A
) -> None:
    server.on("POST", "/messages/text", Reply(status, {"error": {"code": status, "message": "nope"}}))
    result = provider.send_text("+5511999990001", "hi")
    assert result.action is action
    assert result.http_status == status and result.code == str(status)


def test_429_honours_retry_after(server: ScriptedServer, provider: WhapiProvider) -> None:
    server.on("POST", "/messages/text", Reply(429, {"error": {"code": 429}}, headers={"Retry-After": "42"}))
    result = provider.send_text("+5511999990001", "hi")
    assert result.action is A.RETRY and result.retry_after == 42.0


@pytest.mark.parametrize(
    ("reply", "action"),
    [
        (Reply(201, "<html>ok</html>"), A.UNKNOWN),  # 2xx but HTML: it may have been sent
        (Reply(201, b""), A.UNKNOWN),
        (Reply(201, {"sent": True, "message": {"id": "X"}}, mode="truncate"), A.UNKNOWN),
        (Reply(201, {"unexpected": 1}), A.UNKNOWN),
        (Reply(201, {"sent": False}), A.RETRY),  # the provider says it did not send
        (Reply(201, {"sent": False, "message": {"id": "ABCD-1234"}}), A.UNKNOWN),
        (Reply(201, {"sent": True}), A.OK),  # sent, but no id to match statuses with
        (Reply(200, {}, mode="drop"), A.UNKNOWN),  # connection closed before any answer
        (Reply(500, "<html>Internal Server Error</html>"), A.RETRY),
        (Reply(504, "<html>Gateway Timeout</html>"), A.UNKNOWN),
    ],
    ids=["html-2xx", "empty-2xx", "truncated-2xx", "no-sent-2xx", "sent-false", "sent-false-id", "no-id",
         "dropped", "html-500", "html-504"],
)  # fmt: skip
def test_broken_answers_never_crash_and_ambiguity_is_unknown(
    server: ScriptedServer, provider: WhapiProvider, reply: Reply, action: A
) -> None:
    server.on("POST", "/messages/text", reply)
    result = provider.send_text("+5511999990001", "hi")
    assert result.action is action, result.reason


def test_read_timeout_after_sending_is_unknown(server: ScriptedServer) -> None:
    server.on("POST", "/messages/text", Reply(201, {"sent": True}, delay=1.0))
    with WhapiProvider(TOKEN, server.base_url, timeout=0.3) as provider:
        result = provider.send_text("+5511999990001", "hi")
    assert result.action is A.UNKNOWN
    assert "ReadTimeout" in result.reason
    assert len(server.calls("POST", "/messages/text")) == 1  # the server did get it


def test_connection_refused_is_retry() -> None:
    closed = closed_port_url()
    with WhapiProvider(TOKEN, closed, closed + METER, timeout=1.0) as provider:
        result = provider.send_text("+5511999990001", "hi")
        assert result.action is A.RETRY
        assert "ConnectError" in result.reason
        assert provider.health().action is A.RETRY
        assert provider.fetch_reading(TODAY, NOW) is None
        assert provider.last_reading_error is not None
        with pytest.raises(ProviderError) as info:
            provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC))
        assert info.value.action is A.RETRY


def test_bad_base_url_scheme_stops_the_number() -> None:
    with WhapiProvider(TOKEN, "ftp://127.0.0.1:1", "ftp://127.0.0.1:1" + METER) as provider:
        assert provider.send_text("+5511999990001", "hi").action is A.STOP_NUMBER
        assert provider.health().action is A.STOP_NUMBER  # reads (keep-alive client) agree
        with pytest.raises(ProviderError) as info:
            provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC))
        assert info.value.action is A.STOP_NUMBER
        assert provider.fetch_reading(TODAY, NOW) is None


def test_reads_time_out_as_retry(server: ScriptedServer) -> None:
    server.on("GET", "/health", Reply(200, health_body(4, "AUTH"), delay=1.0))
    server.on("GET", "/messages/list", Reply(200, {"messages": []}, delay=1.0))
    with WhapiProvider(TOKEN, server.base_url, timeout=0.2) as provider:
        health = provider.health()
        assert health.action is A.RETRY and "TimeoutError" in health.reason
        with pytest.raises(ProviderError) as info:
            provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC))
        assert info.value.action is A.RETRY and TOKEN not in info.value.reason


def test_reads_carry_the_token_and_query(server: ScriptedServer, provider: WhapiProvider) -> None:
    server.on("GET", "/messages/list", Reply(200, {"messages": []}))
    assert provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC)) == []
    call = server.calls("GET", "/messages/list")[0]
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.query["from_me"] == ["false"] and call.query["count"] == ["100"]


def test_concurrent_sends_share_one_client(server: ScriptedServer, provider: WhapiProvider) -> None:
    counter = iter(range(10_000))
    lock = threading.Lock()

    def answer(_req: Recorded) -> Reply:
        with lock:
            return sent(f"MSG-{next(counter):05d}")

    server.on("POST", "/messages/text", answer)
    results: list[str | None] = []

    def work() -> None:
        for _ in range(5):
            results.append(provider.send_text("+5511999990001", "hi").provider_message_id)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 30 and len(set(results)) == 30 and None not in results


# --- health ------------------------------------------------------------------------------------------


def health_body(code: int, text: str) -> dict[str, Any]:
    return {"start_at": 1, "uptime": 5, "status": {"code": code, "text": text}}


@pytest.mark.parametrize(
    ("reply", "action", "status"),
    [
        (Reply(200, health_body(4, "AUTH")), A.OK, "AUTH"),
        (Reply(200, health_body(3, "QR")), A.STOP_NUMBER, "QR"),
        (Reply(200, health_body(5, "ERROR")), A.STOP_NUMBER, "ERROR"),
        (Reply(200, health_body(2, "LAUNCH")), A.RETRY, "LAUNCH"),
        (Reply(200, {"status": "weird"}), A.RETRY, "unreadable"),
        (Reply(200, "<html>hi</html>"), A.RETRY, "unreadable"),
        (Reply(401, {"error": {"code": 401, "message": "unauthorized"}}), A.STOP_NUMBER, "HTTP 401"),
        (Reply(402, {"error": {"code": 402}}), A.STOP_NUMBER, "HTTP 402"),
        (Reply(503, b""), A.RETRY, "HTTP 503"),
    ],
)  # fmt: skip
def test_health(
    server: ScriptedServer, provider: WhapiProvider, reply: Reply, action: A, status: str
) -> None:
    server.on("GET", "/health", reply)
    health = provider.health()
    assert (health.action, health.status) == (action, status)
    assert health.reason


# --- risk meter --------------------------------------------------------------------------------------


def test_the_meter_is_the_published_one_whatever_the_base_url() -> None:
    """The meter lives at tools.whapi.cloud, not on the messaging gate: a proxy or partner gateway as
    base URL does not move it (it used to be base + /services/riskOfBlocking: 404 on such gateways)."""
    from warmup.providers.factory import make_provider

    for base in ("https://gate.whapi.cloud", "https://whapi-proxy.example.com/v1", "http://127.0.0.1:9000"):
        assert WhapiProvider(TOKEN, base).meter_url == WHAPI_METER_URL
        whapi = make_provider("whapi", TOKEN, base)
        assert isinstance(whapi, WhapiProvider) and whapi.meter_url == WHAPI_METER_URL
    custom = make_provider("whapi", TOKEN, "https://proxy.example.com", meter_url="https://m.example.com/r")
    assert isinstance(custom, WhapiProvider) and custom.meter_url == "https://m.example.com/r"
    # the simulator serves both, so its meter is next to its API unless told otherwise
    sim = make_provider("simulator", TOKEN, "http://127.0.0.1:9000/")
    assert isinstance(sim, WhapiProvider) and sim.meter_url == "http://127.0.0.1:9000" + METER
    assert simulator_meter_url("http://127.0.0.1:9000/") == "http://127.0.0.1:9000" + METER
    other = make_provider("simulator", TOKEN, "http://127.0.0.1:9000", meter_url="http://127.0.0.1:1/m")
    assert isinstance(other, WhapiProvider) and other.meter_url == "http://127.0.0.1:1/m"


def test_meter_posts_once_per_day_then_gets(server: ScriptedServer, provider: WhapiProvider) -> None:
    server.on("POST", METER, meter())
    server.on("GET", METER, meter(riskFactor=1))
    first = provider.fetch_reading(TODAY, NOW)
    assert first is not None
    assert (first.overall, first.lifetime, first.response_rate, first.contacts) == (2, 1, 3, 2)
    assert first.taken_at == NOW and first.source == "whapi"  # computed when asked: dated then
    assert provider.last_reading_error is None
    second = provider.fetch_reading(TODAY, NOW)
    assert second is not None and second.overall == 1  # came from GET
    assert len(server.calls("POST", METER)) == 1 and len(server.calls("GET", METER)) == 1
    provider.fetch_reading(date(2026, 11, 24), NOW)  # a new day posts again
    assert len(server.calls("POST", METER)) == 2
    assert server.calls("POST", METER)[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_posted_says_whether_to_post(server: ScriptedServer, provider: WhapiProvider) -> None:
    """The caller's knowledge (the fleet's database) overrides this client's memory."""
    server.on("POST", METER, meter())
    server.on("GET", METER, meter())
    assert provider.fetch_reading(TODAY, NOW, posted=True) is not None
    assert len(server.calls("POST", METER)) == 0 and len(server.calls("GET", METER)) == 1
    assert provider.fetch_reading(TODAY, NOW, posted=False) is not None
    assert provider.fetch_reading(TODAY, NOW, posted=False) is not None
    assert len(server.calls("POST", METER)) == 2


def test_meter_post_failure_falls_back_to_get(server: ScriptedServer, provider: WhapiProvider) -> None:
    server.on("POST", METER, Reply(500, "<html>oops</html>"))
    server.on("GET", METER, meter(lastUpdateDate="11/21/2026"))
    reading = provider.fetch_reading(TODAY, NOW)
    # an old computation: as late as a 11/21 date can have been written (11/22 00:00 at UTC-12)
    assert reading is not None and reading.taken_at == datetime(2026, 11, 22, 12, tzinfo=UTC)
    error = provider.last_reading_error or ""  # the POST's failure is kept, not hidden by the GET
    assert error.startswith("risk meter POST: HTTP 500") and error.endswith("(GET) was used")


def test_meter_failures_say_what_failed_with_a_short_class(
    server: ScriptedServer, provider: WhapiProvider
) -> None:
    server.on("POST", METER, Reply(500, {"error": {"code": 500, "message": "meter down"}}))
    read = provider.read_meter(NOW, post=True)
    assert read.reading is None and read.failure == "5xx" and not read.posted
    assert read.error is not None and read.error.startswith("risk meter POST: HTTP 500")
    assert "then GET: HTTP 404" in read.error  # the scripted server has no GET route
    assert provider.read_meter(NOW, post=False).failure == "4xx"
    server.on("GET", METER, Reply(200, {"lifeTime": 1}))
    bad = provider.read_meter(NOW, post=False)
    assert bad.failure == "bad_answer" and bad.error is not None and "'riskFactor' missing" in bad.error


@pytest.mark.parametrize("status", [401, 402, 403])
def test_meter_not_on_plan_means_unavailable(
    server: ScriptedServer, provider: WhapiProvider, status: int
) -> None:
    server.on("POST", METER, Reply(status, {"error": {"code": status, "message": "no"}}))
    server.on("GET", METER, meter())
    assert provider.fetch_reading(TODAY, NOW) is None
    assert provider.last_reading_error is not None
    assert provider.last_reading_error.startswith("meter unavailable on this channel")
    assert provider.read_meter(NOW, post=True).failure == "no_access"
    assert server.calls("GET", METER) == []  # same credentials: no point asking again


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (meter(riskFactor=None), "'riskFactor' missing"),
        (meter(lifeTime=7), "out of range"),
        (meter(riskFactorChats=0), "out of range"),
        (meter(riskFactorContacts="good"), "not a number"),
        (meter(riskFactor=True), "not a number"),
        (meter(riskFactor=2.5), "not a number"),
        (meter(riskFactor="2" * 5000), "not a number"),
        (meter(lastUpdateDate="2026-11-23"), "not M/D/YYYY"),
        (meter(lastUpdateDate="2/30/2026"), "not a real date"),
        (meter(lastUpdateDate="12/25/2026"), "in the future"),
        (meter(lastUpdateDate="11/25/2026"), "in the future"),  # no zone shows 11/25 at 11/23 15:30 UTC
        (Reply(200, [1, 2, 3]), "not a JSON object"),
        (Reply(200, "<html>login</html>"), "not a JSON object"),
        (Reply(200, b'{"lifeTime": 1,'), "not a JSON object"),
    ],
)
def test_meter_bad_answers_are_unavailable_with_a_reason(
    server: ScriptedServer, provider: WhapiProvider, reply: Reply, words: str
) -> None:
    server.on("POST", METER, reply)
    server.on("GET", METER, reply)
    assert provider.fetch_reading(TODAY, NOW) is None
    assert provider.last_reading_error is not None and words in provider.last_reading_error


def test_meter_accepts_numeric_strings() -> None:
    data = {"lastUpdateDate": "1/2/2026", "lifeTime": "3", "riskFactor": 2.0, "riskFactorChats": " 1 ",
            "riskFactorContacts": 3}  # fmt: skip
    reading = parse_meter(data, datetime(2026, 1, 2, 9, tzinfo=UTC), "simulator")
    assert not isinstance(reading, str)
    assert (reading.overall, reading.lifetime, reading.response_rate, reading.contacts) == (2, 3, 1, 3)
    assert reading.source == "simulator"


def test_meter_url_is_configurable(server: ScriptedServer) -> None:
    server.on("POST", "/custom/meter", meter())
    with WhapiProvider(TOKEN, "http://127.0.0.1:1", meter_url=server.base_url + "/custom/meter") as provider:
        assert provider.fetch_reading(TODAY, NOW) is not None


# --- inbound -----------------------------------------------------------------------------------------


def message(
    i: int, *, from_me: bool = False, chat: str | None = None, ts: int = 1_795_000_000
) -> dict[str, Any]:
    return {
        "id": f"IN-{i:05d}",
        "type": "text",
        "chat_id": chat or f"55119999{i % 10000:04d}@s.whatsapp.net",
        "from_me": from_me,
        "timestamp": ts + i,
        "text": {"body": f"reply {i}"},
    }


def test_list_inbound_pages_oldest_first(server: ScriptedServer, provider: WhapiProvider) -> None:
    pages = {0: [message(i) for i in range(100)], 100: [message(i) for i in range(95, 130)]}

    def answer(req: Recorded) -> Reply:
        offset = int(req.query["offset"][0])
        return Reply(200, {"messages": pages.get(offset, []), "count": 100, "offset": offset, "total": 100})

    server.on("GET", "/messages/list", answer)
    since = datetime.fromtimestamp(1_795_000_000, UTC)
    found = provider.list_inbound(since)
    assert [m.provider_message_id for m in found] == [f"IN-{i:05d}" for i in range(130)]  # deduplicated
    assert found[0].chat_phone == "+551199990000" and found[0].text == "reply 0" and not found[0].from_me
    calls = server.calls("GET", "/messages/list")
    assert [c.query["offset"] for c in calls] == [["0"], ["100"]]
    assert calls[0].query["from_me"] == ["false"] and calls[0].query["time_from"] == ["1795000000"]
    assert calls[0].query["sort"] == ["asc"] and calls[0].query["count"] == ["100"]


def test_list_inbound_skips_groups_own_old_and_malformed(
    server: ScriptedServer, provider: WhapiProvider
) -> None:
    items = [
        message(1),
        message(2, from_me=True),
        message(3, chat="120363000000000000@g.us"),
        message(4, ts=1_000),  # older than `since`
        {"id": "broken"},
        "not even an object",
    ]
    server.on("GET", "/messages/list", Reply(200, {"messages": items}))
    found = provider.list_inbound(datetime.fromtimestamp(1_795_000_000, UTC))
    assert [m.provider_message_id for m in found] == ["IN-00001"]


@pytest.mark.parametrize(
    ("reply", "action"),
    [(Reply(500, b""), A.RETRY), (Reply(401, {"error": {"code": 401}}), A.STOP_NUMBER),
     (Reply(200, "<html/>"), A.RETRY), (Reply(200, {"messages": "nope"}), A.RETRY)],
)  # fmt: skip
def test_list_inbound_errors_raise_provider_error(
    server: ScriptedServer, provider: WhapiProvider, reply: Reply, action: A
) -> None:
    server.on("GET", "/messages/list", reply)
    with pytest.raises(ProviderError) as info:
        provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC))
    assert info.value.action is action


# --- secrets -----------------------------------------------------------------------------------------


def test_token_never_leaks(server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    echo = Reply(401, {"error": {"code": 401, "message": f"token {TOKEN} is not valid", "details": TOKEN}})
    for path in ("/messages/text", "/health", "/messages/list"):
        server.on("GET" if path != "/messages/text" else "POST", path, echo)
    server.on("POST", METER, Reply(500, {"error": {"code": 500, "message": f"meter failed for {TOKEN}"}}))
    server.on("GET", METER, Reply(200, {"channel": TOKEN, "lifeTime": TOKEN}))
    caplog.set_level(logging.DEBUG)
    with WhapiProvider(TOKEN, server.base_url, server.base_url + METER) as provider:
        texts = [repr(provider), str(provider)]
        texts.append(provider.send_text("+5511999990001", "hi").reason)
        texts.append(provider.health().reason)
        assert provider.fetch_reading(TODAY, NOW) is None
        texts.append(str(provider.last_reading_error))
        with pytest.raises(ProviderError) as info:
            provider.list_inbound(datetime(2026, 11, 23, tzinfo=UTC))
        texts.append(str(info.value))
    texts.append(caplog.text)
    assert any("***" in t for t in texts)
    for text in texts:
        assert TOKEN not in text


def test_whapi_provider_satisfies_the_protocol(provider: WhapiProvider) -> None:
    assert isinstance(provider, Provider)


# --- against the project's simulator (real uvicorn server, seeded model, manual clock) -------------

SIM_START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PHONE_A, PHONE_B = "+5511999990001", "+5511999990002"
TOKEN_A, TOKEN_B = "SimTokenAlpha0123456789abcdefXYZ", "SimTokenBravo0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def simulator() -> Any:
    from warmup.clock import ManualClock
    from warmup.simulator import SimulatorServer

    clock = ManualClock(SIM_START)
    sim = SimulatorServer(clock=clock, tick_seconds=0.05)
    sim.start()
    try:
        yield sim, clock
    finally:
        sim.stop()


@pytest.fixture
def sim(simulator: Any) -> Any:
    """The running simulator, reset, with channels A and B registered; yields (admin client, clock)."""
    import httpx

    server, clock = simulator
    with httpx.Client(base_url=server.base_url, timeout=5.0) as admin:
        admin.post("/_sim/reset", json={"seed": 7}).raise_for_status()
        for token, phone in ((TOKEN_A, PHONE_A), (TOKEN_B, PHONE_B)):
            body = {
                "token": token,
                "phone": phone,
                "registered": "2026-10-01",
                "forbidden": ["5511888880000"],
            }
            admin.post("/_sim/channels", json=body).raise_for_status()
        yield admin, clock


def sim_provider(admin: Any, token: str = TOKEN_A, timeout: float = 5.0) -> WhapiProvider:
    from warmup.providers.factory import make_provider

    provider = make_provider("simulator", token, str(admin.base_url), timeout=timeout)
    assert isinstance(provider, WhapiProvider)
    return provider


def sends(admin: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = admin.get("/_sim/sends").json()["sends"]
    return result


def test_sim_send_lands_in_the_send_log(sim: Any) -> None:
    admin, _ = sim
    with sim_provider(admin) as provider:
        result = provider.send_text("+5511977770001", "Bom dia!", typing_seconds=4)
    assert result.action is A.OK
    (record,) = sends(admin)
    assert record["to"] == "+5511977770001" and record["body"] == "Bom dia!"
    assert record["message_id"] == result.provider_message_id


def test_sim_health_meter_and_refusals(sim: Any) -> None:
    admin, _ = sim
    with sim_provider(admin) as provider:
        assert provider.health().action is A.OK
        reading = provider.fetch_reading(SIM_START.date(), SIM_START)
        assert reading is not None and reading.source == "simulator", provider.last_reading_error
        assert provider.fetch_reading(SIM_START.date(), SIM_START) == reading  # GET: the saved one
        assert provider.send_text("+5511888880000", "hi").action is A.SKIP_RECIPIENT  # forbidden: 403
        admin.patch(f"/_sim/channels/{PHONE_A}", json={"meter": False}).raise_for_status()
        assert provider.fetch_reading(date(2026, 11, 24), SIM_START) is None
        assert str(provider.last_reading_error).startswith("meter unavailable")
        admin.patch(f"/_sim/channels/{PHONE_A}", json={"trial_limit": 0}).raise_for_status()
        assert provider.send_text("+5511977770001", "hi").action is A.STOP_NUMBER  # 402
        admin.patch(f"/_sim/channels/{PHONE_A}", json={"status": "logged_out"}).raise_for_status()
        assert (provider.health().action, provider.health().status) == (A.STOP_NUMBER, "QR")
        assert provider.send_text("+5511977770001", "hi").action is A.STOP_NUMBER  # 401
        admin.patch(
            f"/_sim/channels/{PHONE_A}", json={"status": "banned", "reason": "test"}
        ).raise_for_status()
        assert (provider.health().action, provider.health().status) == (A.STOP_NUMBER, "ERROR")
    assert sends(admin) == []


@pytest.mark.parametrize("fault", ["malformed", "truncated", "empty"])
def test_sim_ambiguous_answers_after_a_real_send_are_unknown(sim: Any, fault: str) -> None:
    admin, _ = sim
    admin.put("/_sim/faults", json={"faults": {fault: 1.0, "operations": ["send"]}}).raise_for_status()
    with sim_provider(admin) as provider:
        result = provider.send_text("+5511977770001", "hi")
    assert result.action is A.UNKNOWN, result.reason
    assert len(sends(admin)) == 1  # it WAS sent: retrying would have sent it twice


def test_sim_timeout_after_send_is_unknown_and_was_sent(sim: Any) -> None:
    admin, _ = sim
    faults = {"timeout_after_send": 1.0, "hold_seconds": 1.0, "operations": ["send"]}
    admin.put("/_sim/faults", json={"faults": faults}).raise_for_status()
    with sim_provider(admin, timeout=0.3) as provider:
        result = provider.send_text("+5511977770001", "hi")
    assert result.action is A.UNKNOWN and "ReadTimeout" in result.reason
    assert len(sends(admin)) == 1


def test_sim_rate_limit_is_retry_with_retry_after_and_not_sent(sim: Any) -> None:
    admin, _ = sim
    faults = {"rate_limit": 1.0, "retry_after": 3, "operations": ["send"]}
    admin.put("/_sim/faults", json={"faults": faults}).raise_for_status()
    with sim_provider(admin) as provider:
        result = provider.send_text("+5511977770001", "hi")
    assert (result.action, result.retry_after, result.http_status) == (A.RETRY, 3.0, 429)
    assert sends(admin) == []


def test_sim_list_inbound_sees_a_peer_message(sim: Any) -> None:
    admin, clock = sim
    since = clock.now()
    with sim_provider(admin, TOKEN_A) as a, sim_provider(admin, TOKEN_B) as b:
        assert a.send_text(PHONE_B, "oi, tudo bem?").action is A.OK
        assert b.list_inbound(since) == []  # not delivered yet in simulated time
        clock.advance(120)
        inbound = b.list_inbound(since)
    assert [(m.chat_phone, m.text, m.from_me) for m in inbound] == [(PHONE_A, "oi, tudo bem?", False)]


def test_numbers_share_one_client_and_each_request_carries_its_own_token(server: ScriptedServer) -> None:
    """Every provider of a process sends through one httpx client: the token is per request, never
    mixed up between numbers sending at the same time."""
    from warmup.providers.http import shared_client

    server.on("POST", "/messages/text", sent())
    tokens = [f"Tok3n{i:02d}AbcdefGhijklmnopQRSTUV" for i in range(4)]
    providers = [WhapiProvider(token, server.base_url, timeout=5.0) for token in tokens]

    def work(i: int) -> None:
        for n in range(10):
            providers[i].send_text("+5511999990001", f"from {i} #{n}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = server.calls("POST", "/messages/text")
    assert len(calls) == 40
    for call in calls:
        sender = int(call.json["body"].split()[1])
        assert call.headers["Authorization"] == f"Bearer {tokens[sender]}"
    assert shared_client() is shared_client()
