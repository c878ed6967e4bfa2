"""Token references, the masked Secret, redaction and the logging filter."""

from __future__ import annotations

import logging
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmup.core.errors import UserError
from warmup.secrets import (
    MASK,
    RedactingFilter,
    Secret,
    SecretError,
    install_log_redaction,
    looks_like_token,
    parse_token_ref,
    redact,
    redact_processor,
    register_secret,
    resolve_token,
)

WHAPI_TOKEN = "Lb7Xc4qPz9TnR2mVw8KjH5sYd3FgA6eU"  # shaped like a real Whapi token (32 chars)
META_TOKEN = "EAAGm0PX4ZCpsBAO3xAmplEZBtokenZCZCwithSomeMoreCharsZD"


@pytest.mark.parametrize("ref", ["${WHAPI_TOKEN_1}", "WHAPI_TOKEN_1", "  ${ WHAPI_TOKEN_1 }  "])
def test_resolve_token_reads_the_env_var(ref: str) -> None:
    secret = resolve_token(ref, env={"WHAPI_TOKEN_1": WHAPI_TOKEN})
    assert secret.reveal() == WHAPI_TOKEN
    assert secret.name == "WHAPI_TOKEN_1"


def test_resolve_token_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARMUP_TEST_TOKEN", WHAPI_TOKEN)
    assert resolve_token("${WARMUP_TEST_TOKEN}").reveal() == WHAPI_TOKEN


@pytest.mark.parametrize(
    "literal", [WHAPI_TOKEN, META_TOKEN, "${" + WHAPI_TOKEN + "}", "abc.def-ghi", "tok=en"]
)
def test_literal_tokens_are_refused_without_repeating_them(literal: str) -> None:
    with pytest.raises(SecretError) as info:
        resolve_token(literal, env={})
    assert isinstance(info.value, UserError)
    assert "environment variable" in str(info.value)
    assert literal.strip("${}") not in str(info.value)


def test_missing_or_empty_variable_names_it() -> None:
    for env in ({}, {"WHAPI_TOKEN_9": "  "}):
        with pytest.raises(SecretError, match="WHAPI_TOKEN_9 is not set"):
            resolve_token("${WHAPI_TOKEN_9}", env=env)
    with pytest.raises(SecretError, match="empty"):
        parse_token_ref("${}")


def test_looks_like_token() -> None:
    for name in ("WHAPI_TOKEN_1", "TOKEN", "my_token", "CLOUD_API_TOKEN_FOR_SAO_PAULO_NUMBER_2"):
        assert not looks_like_token(name)
    for token in (WHAPI_TOKEN, META_TOKEN, "ABCDEFGHIJKLMNOPQRSTUVWXYZ123456", "a-b"):
        assert looks_like_token(token)


def test_secret_is_masked_everywhere() -> None:
    secret = Secret(WHAPI_TOKEN, name="WHAPI_TOKEN_1")
    views = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", str.format("{}", secret),
             repr([secret]), repr({"token": secret})]  # fmt: skip
    for view in views:
        assert WHAPI_TOKEN not in view
    assert repr(Secret(WHAPI_TOKEN)) == "Secret('***')"
    assert repr(secret) == "Secret('***', name='WHAPI_TOKEN_1')"
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_secret_equality_and_hash() -> None:
    assert Secret(WHAPI_TOKEN) == Secret(WHAPI_TOKEN)
    assert Secret(WHAPI_TOKEN) != Secret(META_TOKEN)
    assert len({Secret(WHAPI_TOKEN), Secret(WHAPI_TOKEN)}) == 1
    assert Secret(WHAPI_TOKEN) != WHAPI_TOKEN


def test_redact_masks_given_registered_and_bearer_values() -> None:
    register_secret("registered-secret-value-42")
    text = f"given={WHAPI_TOKEN} registered=registered-secret-value-42 Authorization: Bearer abc.def.ghi"
    out = redact(text, [WHAPI_TOKEN])
    assert WHAPI_TOKEN not in out and "registered-secret-value-42" not in out and "abc.def.ghi" not in out
    assert out.count(MASK) == 3
    assert redact("nothing to hide here") == "nothing to hide here"


def test_redact_masks_a_longer_token_whole() -> None:
    short, long = "abcd1234efgh", "abcd1234efgh-and-more"
    out = redact(f"x {long} y", [short, long])
    assert out == f"x {MASK} y"


@given(prefix=st.text(max_size=30), suffix=st.text(max_size=30))
@settings(max_examples=100, deadline=None)
def test_redact_always_removes_the_token(prefix: str, suffix: str) -> None:
    assert WHAPI_TOKEN not in redact(prefix + WHAPI_TOKEN + suffix + WHAPI_TOKEN, [WHAPI_TOKEN])


def test_logging_filter_masks_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    secret = resolve_token("${T}", env={"T": META_TOKEN})
    caplog.handler.addFilter(RedactingFilter())
    log = logging.getLogger("warmup.test.secrets")
    with caplog.at_level(logging.INFO):
        log.info("calling with %s and %r", secret.reveal(), {"auth": f"Bearer {secret.reveal()}"})
        log.warning(f"f-string leak {secret.reveal()}")
        try:
            raise RuntimeError(f"provider said: bad token {secret.reveal()}")
        except RuntimeError:
            log.exception("send failed")
    assert len(caplog.records) == 3
    assert META_TOKEN not in caplog.text
    assert caplog.text.count(MASK) >= 4
    assert "provider said: bad token ***" in caplog.text


def test_install_log_redaction_adds_one_filter_per_handler() -> None:
    logger = logging.getLogger("warmup.test.install")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        install_log_redaction(logger)
        install_log_redaction(logger)
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_structlog_processor() -> None:
    secret = Secret(WHAPI_TOKEN)
    event = {"event": f"sending with {WHAPI_TOKEN}", "token": secret, "count": 3}
    out = redact_processor(None, "info", event)
    assert out == {"event": f"sending with {MASK}", "token": MASK, "count": 3}


def test_short_values_are_not_registered() -> None:
    register_secret("ab")
    assert redact("ab cab abba") == "ab cab abba"


@pytest.mark.parametrize(
    "literal",
    [
        "abcdef0123456789abcd",
        "ABCDEF0123456789ABCD",
        "f3a90c7be1d24a6f",
        "a1b2c3d4e5f6g7h8",
        "Abc_Def_Ghi_Jk1",
    ],
)
def test_an_unset_name_that_might_be_a_token_is_not_echoed(literal: str) -> None:
    """Issue 14 item 5: a token in one letter case under 24 characters passes `looks_like_token`;
    the "not set" error shows its first 2 characters and its length, never the rest."""
    assert not looks_like_token(literal)
    with pytest.raises(SecretError) as info:
        resolve_token("${" + literal + "}", env={})
    message = str(info.value)
    assert literal not in message and literal[2:8] not in message
    assert f"{literal[:2]}… ({len(literal)} characters) is not set" in message


@pytest.mark.parametrize(
    "name", ["WHAPI_TOKEN_9", "SIM_TOKEN_1", "my_token", "TOKEN", "CLOUD_API_TOKEN_FOR_SAO_PAULO"]
)
def test_an_unset_variable_name_is_still_named(name: str) -> None:
    with pytest.raises(SecretError, match=f"environment variable {name} is not set"):
        resolve_token(name, env={})
