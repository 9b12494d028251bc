"""No secret or password in anything the package says: logs, exceptions, output, rows.

Representative flows run with every log record captured (DEBUG, all loggers)
and stdout/stderr captured; then everything is scanned for the secrets.
"""

from __future__ import annotations

import io
import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client, override_settings

from django_pg_resilience.backend.alias import reset as reset_alias_states
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import EndpointProxy, LocalCluster
from django_pg_resilience.testing.django import database_alias
from django_pg_resilience.testing.webhooks import shopify_request
from django_pg_resilience.webhooks.processing import describe_error
from tests.webhooks.views import SHOPIFY_OLD_SECRET, SHOPIFY_SECRET, calls

PASSWORD = "Pw-" + uuid.uuid4().hex
WRONG_PASSWORD = "Wrong-" + uuid.uuid4().hex
HEALTH_TOKEN = "tok-" + uuid.uuid4().hex


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    # Some package loggers may not propagate; hook them directly as well.
    for name in ("django_pg_resilience", "django", "django.request", "django.db.backends"):
        logging.getLogger(name).addHandler(caplog.handler)
    yield caplog
    for name in ("django_pg_resilience", "django", "django.request", "django.db.backends"):
        logging.getLogger(name).removeHandler(caplog.handler)
    assert root is logging.getLogger()


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def _exception_text(exc: BaseException) -> str:
    chain = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{exc!s}\n{exc!r}\n{chain}"


def _assert_clean(texts: list[str], *needles: str) -> None:
    for text in texts:
        for needle in needles:
            assert needle not in text, f"secret found in: {text[:500]}"


@pytest.fixture
def secret_user(pg_cluster: LocalCluster) -> str:
    name = f"chaos_{uuid.uuid4().hex[:8]}"
    pg_cluster.create_user(name, PASSWORD)
    return name


@pytest.mark.django_db
def test_connect_failures_never_show_the_password(
    pg_cluster: LocalCluster,
    secret_user: str,
    everything_logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts: list[str] = []
    reset_alias_states()
    # A wrong password, the right password to a database that is away, a missing database.
    cases: list[tuple[Any, dict[str, str]]] = [
        (pg_cluster.primary, {"PASSWORD": WRONG_PASSWORD, "USER": secret_user}),
        (pg_cluster.primary, {"PASSWORD": PASSWORD, "USER": secret_user, "NAME": "no_such_db"}),
    ]
    with EndpointProxy(None) as nowhere:
        cases.append((nowhere, {"PASSWORD": PASSWORD, "USER": secret_user}))
        for n, (address, extra) in enumerate(cases):
            alias = f"secret_{n}"
            options = {"connect_timeout": 2, "resilience": {"deadline": 0.5}}
            with database_alias(alias, address, OPTIONS=options, **extra):
                with pytest.raises(Exception) as failed:
                    connections[alias].ensure_connection()
                texts.append(_exception_text(failed.value))
                # The health check of the same alias, in every format.
                for fmt in ("table", "json", "prometheus", "nagios"):
                    out = io.StringIO()
                    with pytest.raises(SystemExit):
                        call_command(
                            "health", "--database", alias, "--format", fmt, stdout=out, stderr=out
                        )
                    texts.append(out.getvalue())
    captured = capsys.readouterr()
    texts += [_log_text(everything_logged), captured.out, captured.err]
    assert any("password" in t.lower() for t in texts)  # the failure was about the password
    _assert_clean(texts, PASSWORD, WRONG_PASSWORD)
    reset_alias_states()


@pytest.mark.django_db
@pytest.mark.urls("tests.hostile.urls")
def test_readyz_with_token_shows_no_password(
    pg_cluster: LocalCluster, secret_user: str, client: Client
) -> None:
    with (
        database_alias("secret_ready", pg_cluster.primary, USER=secret_user, PASSWORD=PASSWORD),
        override_settings(PG_RESILIENCE={"HEALTH_TOKEN": HEALTH_TOKEN}),
    ):
        detailed = client.get("/readyz", headers={"X-Health-Token": HEALTH_TOKEN})
        anonymous = client.get("/readyz")
    body = detailed.content.decode()
    assert "secret_ready" in body  # the token unlocked the details
    assert HEALTH_TOKEN not in body
    _assert_clean([body, anonymous.content.decode()], PASSWORD)


@pytest.mark.django_db
@pytest.mark.urls("tests.webhooks.urls")
def test_webhook_failures_leak_neither_secrets_nor_signatures(
    client: Client,
    everything_logged: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls.reset()
    texts: list[str] = []
    good = shopify_request({"id": 1}, SHOPIFY_SECRET, webhook_id="secret-scan-ok")
    signatures = [good.headers["X-Shopify-Hmac-Sha256"]]
    responses = [client.post("/shopify/orders", **good.client_kwargs())]
    forged = shopify_request({"id": 2}, "attacker-guess", webhook_id="secret-scan-forged")
    responses.append(client.post("/shopify/orders", **forged.client_kwargs()))
    # A handler that fails with both secrets in its message (a careless f-string).
    calls.fail_with = RuntimeError(f"upstream said {SHOPIFY_SECRET} / {SHOPIFY_OLD_SECRET}")
    failing = shopify_request({"id": 3}, SHOPIFY_OLD_SECRET, webhook_id="secret-scan-fails")
    signatures.append(failing.headers["X-Shopify-Hmac-Sha256"])
    responses.append(client.post("/shopify/orders", **failing.client_kwargs()))
    calls.reset()

    assert [r.status_code for r in responses] == [200, 401, 500]
    texts += [r.content.decode() for r in responses]
    rows = list(WebhookEvent.objects.values())
    assert {row["key"] for row in rows} == {"secret-scan-ok", "secret-scan-fails"}
    texts += [json.dumps(row, default=str) for row in rows]
    captured = capsys.readouterr()
    texts += [_log_text(everything_logged), captured.out, captured.err]
    assert "***" in json.dumps([row["last_error"] for row in rows])  # masked, not dropped
    _assert_clean(texts, SHOPIFY_SECRET, SHOPIFY_OLD_SECRET, *signatures)


def test_a_secret_used_stripped_is_masked_in_errors_too() -> None:
    # secrets=[env("SECRET")] with a trailing newline: the code that used it
    # stripped shows the stripped form in its error.
    padded = f"  {SHOPIFY_SECRET}\n"
    error = RuntimeError(f"upstream refused key {SHOPIFY_SECRET}")
    for with_traceback in (False, True):
        text = describe_error(error, [padded], with_traceback=with_traceback)
        assert SHOPIFY_SECRET not in text and "***" in text
