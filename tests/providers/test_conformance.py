"""The bodies our clients send (and the samples our parsers are tested with) against the PUBLISHED specs.

The specs are copies of ../shared/specs (the project's published copies) kept in tests/specs, so a
clean clone checks against them with nothing beside it. They are loaded once per session. OpenAPI
schemas are not plain JSON Schema, so two documented adaptations:
* OpenAPI 3.0 (Whapi): `nullable: true` becomes a `"null"` type; `exclusiveMinimum/Maximum` booleans
  become the numeric form.
* OpenAPI 3.1 (Meta): an `allOf` branch with `additionalProperties: false` (TextMessage does this) would
  reject the properties of its sibling branches under JSON Schema rules, which is not what the authors
  meant; it becomes `unevaluatedProperties: false` on the `allOf` owner — just as strict about unknown
  fields, but aware of every branch.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import IN_CI
from tests.paths import REPO_ROOT
from tests.providers.test_webhooks import CLOUD_MESSAGES, CLOUD_STATUSES, WHAPI_MESSAGES, WHAPI_STATUSES
from warmup.providers.cloud_api import CloudApiProvider
from warmup.providers.whapi import WhapiProvider

SPECS = REPO_ROOT / "tests" / "specs"
WHAPI_SPEC = SPECS / "whapi-openapi-1.8.7.yaml"
META_SPEC = SPECS / "meta-business-messaging-api-v23.0.yaml"


def load_yaml(path: Path) -> Any:
    """PyYAML's C loader when installed (~0.3 s for the 1 MB Meta spec), else ruamel (~2 s)."""
    try:
        import yaml

        return yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    except (ImportError, AttributeError):
        from ruamel.yaml import YAML

        return YAML(typ="safe", pure=False).load(path.read_bytes())


def openapi_to_jsonschema(node: Any, openapi_30: bool) -> Any:
    """A JSON Schema 2020-12 reading of an OpenAPI document (see the module doc)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(item, openapi_30) for item in node]
    if not isinstance(node, dict):
        return node
    out = {str(k): openapi_to_jsonschema(v, openapi_30) for k, v in node.items()}
    if openapi_30:
        if out.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(bound), bool):
                if out[bound] and limit in out:
                    out[bound] = out.pop(limit)
                else:
                    del out[bound]
    branches = out.get("allOf")
    if isinstance(branches, list):
        for branch in branches:
            if isinstance(branch, dict) and branch.get("additionalProperties") is False:
                del branch["additionalProperties"]
                out["unevaluatedProperties"] = False
    return out


class Spec:
    def __init__(self, path: Path, uri: str) -> None:
        if not path.is_file():
            message = f"published spec missing: {path} (a copy of ../shared/specs belongs in tests/specs)"
            if IN_CI:
                pytest.fail(message + " — CI must have it", pytrace=False)
            pytest.skip(message)
        raw = load_yaml(path)
        self.raw = raw
        self.uri = uri
        self.doc = openapi_to_jsonschema(raw, str(raw.get("openapi", "")).startswith("3.0"))
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(uri, resource)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{self.uri}#{pointer}"}, registry=self.registry)

    def request_schema_pointer(self, path: str, method: str = "post") -> str:
        """Where the JSON request body schema of an operation lives (followed, not hard-coded)."""
        schema = self.doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        ref = schema.get("$ref")
        assert isinstance(ref, str) and ref.startswith("#/"), schema
        return ref[1:]


@cache
def _whapi() -> Spec:
    return Spec(WHAPI_SPEC, "urn:spec:whapi")


@cache
def _meta() -> Spec:
    return Spec(META_SPEC, "urn:spec:meta")


@pytest.fixture(scope="session")
def whapi_spec() -> Spec:
    return _whapi()


@pytest.fixture(scope="session")
def meta_spec() -> Spec:
    return _meta()


def errors_of(validator: Draft202012Validator, body: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


@pytest.fixture(scope="module")
def whapi() -> Any:
    provider = WhapiProvider("conformance-token-not-used", "http://127.0.0.1:9")
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def cloud() -> Any:
    provider = CloudApiProvider("conformance-token-not-used", "106540352242922", "http://127.0.0.1:9")
    yield provider
    provider.close()


# --- Whapi -----------------------------------------------------------------------------------------


def test_whapi_send_text_refers_to_sender_text(whapi_spec: Spec) -> None:
    assert whapi_spec.request_schema_pointer("/messages/text") == "/components/schemas/SenderText"


phones = st.text(string.digits, min_size=10, max_size=15).map(lambda d: "+" + d)
texts = st.text(min_size=1, max_size=300)
typing = st.floats(min_value=-10, max_value=500, allow_nan=False) | st.just(float("inf"))


@given(to=phones, body=texts, seconds=typing)
@settings(max_examples=150, deadline=None)
def test_whapi_text_bodies_conform(whapi: WhapiProvider, to: str, body: str, seconds: float) -> None:
    validator = _whapi().validator(_whapi().request_schema_pointer("/messages/text"))
    assert errors_of(validator, whapi.build_text_body(to, body, seconds)) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"to": "+5511999990001", "body": "hi"},  # the spec's pattern has no '+': why we strip it
        {"to": "5511999990001", "body": "hi", "typing_time": 61},
        {"to": "5511999990001"},
        {"to": "123", "body": "hi"},
    ],
)
def test_whapi_schema_really_checks(whapi_spec: Spec, bad: dict[str, Any]) -> None:
    validator = whapi_spec.validator(whapi_spec.request_schema_pointer("/messages/text"))
    assert errors_of(validator, bad) != []


@pytest.mark.parametrize("payload", [WHAPI_MESSAGES, WHAPI_STATUSES], ids=["messages", "statuses"])
def test_whapi_webhook_samples_conform(whapi_spec: Spec, payload: dict[str, Any]) -> None:
    extra = {k: v for k, v in payload.items() if k not in ("event", "channel_id")}
    assert errors_of(whapi_spec.validator("/components/schemas/WebhookPayload"), extra) == []


# --- Meta Cloud API --------------------------------------------------------------------------------

MESSAGES_PATH = "/{Version}/{Phone-Number-ID}/messages"


def test_meta_send_refers_to_message(meta_spec: Spec) -> None:
    assert meta_spec.request_schema_pointer(MESSAGES_PATH) == "/components/schemas/Message"


@given(to=phones.filter(lambda p: len(p) >= 8), body=texts)
@settings(max_examples=100, deadline=None)
def test_meta_text_bodies_conform(cloud: CloudApiProvider, to: str, body: str) -> None:
    validator = _meta().validator(_meta().request_schema_pointer(MESSAGES_PATH))
    assert errors_of(validator, cloud.build_text_body(to, body)) == []


@pytest.mark.parametrize(
    ("language", "components"),
    [
        ("en_US", None),
        ("pt_BR", [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]),
    ],
)
def test_meta_template_bodies_conform(
    meta_spec: Spec, cloud: CloudApiProvider, language: str, components: list[dict[str, Any]] | None
) -> None:
    validator = meta_spec.validator(meta_spec.request_schema_pointer(MESSAGES_PATH))
    body = cloud.build_template_body("+16505551234", "hello_world", language, components)
    assert errors_of(validator, body) == []


@pytest.mark.parametrize(
    "mutation",
    [
        lambda b: b.pop("recipient_type"),  # required by BaseMessageProperties (the README example omits it)
        lambda b: b.pop("messaging_product"),
        lambda b: b.update(color="red"),  # unknown top-level field
        lambda b: b["text"].update(font="bold"),  # unknown field in text
        lambda b: b.update(type="telegram"),
    ],
)
def test_meta_schema_really_checks(meta_spec: Spec, cloud: CloudApiProvider, mutation: Any) -> None:
    validator = meta_spec.validator(meta_spec.request_schema_pointer(MESSAGES_PATH))
    body = cloud.build_text_body("+16505551234", "hi")
    mutation(body)
    assert errors_of(validator, body) != []


@pytest.mark.parametrize("payload", [CLOUD_MESSAGES, CLOUD_STATUSES], ids=["messages", "statuses"])
def test_meta_webhook_samples_conform(meta_spec: Spec, payload: dict[str, Any]) -> None:
    """The envelope, metadata, contacts and statuses are checked as published. Incoming message ITEMS
    cannot be: the spec's `IncomingMessage` maps `text` to the OUTBOUND `TextMessage` (it requires
    `to`, `recipient_type`, ...), which no real inbound message has — so items are checked for the
    fields the parser reads, against the shape of the spec's own inbound examples (`from`, `id`,
    `timestamp`, `type`, `context: {from, id}`)."""
    entries = []
    for entry in payload["entry"]:
        # the group change in CLOUD_STATUSES is deliberately incomplete (the parser must skip it)
        changes = []
        for change in entry["changes"]:
            if change["field"] != "messages":
                continue
            value = dict(change["value"])
            for item in value.get("messages", []):
                assert {"from", "id", "timestamp", "type"} <= set(item)
                assert set(item.get("context", {})) <= {"from", "id"}
            if "messages" in value:
                value["messages"] = []
            changes.append({**change, "value": value})
        entries.append({**entry, "changes": changes})
    sample = {**payload, "entry": entries}
    assert errors_of(meta_spec.validator("/components/schemas/WebhookPayload"), sample) == []


def test_meta_error_envelope_sample_conforms(meta_spec: Spec) -> None:
    from tests.providers.test_cloud_api import meta_error

    body = meta_error(400, 131026, "Message undeliverable").body
    assert errors_of(meta_spec.validator("/components/schemas/GraphAPIError"), body) == []
