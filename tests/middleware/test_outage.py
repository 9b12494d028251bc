"""The middleware with the test database really down (its endpoint refuses connections)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client

from django_pg_resilience import signals, stats
from django_pg_resilience.errors import is_availability_error
from tests.middleware.conftest import Outage, assert_unavailable_headers
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PAGE_HEADING = "be right back"


def counted() -> float:
    return stats.snapshot().get("unavailable_responses", {}).get("default", 0)


def assert_page(response: Any) -> str:
    assert_unavailable_headers(response)
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert PAGE_HEADING in body
    assert "Traceback" not in body and "Server Error" not in body
    return body


def test_browser_get_gets_the_page_that_retries_by_itself(outage: Outage) -> None:
    response = Client().get("/shop/", headers={"accept": BROWSER_ACCEPT})

    body = assert_page(response)
    seconds = int(response["Retry-After"])
    assert f'<meta http-equiv="refresh" content="{seconds}">' in body
    assert "window.location.reload()" in body
    assert "not completed" not in body
    assert "<link" not in body and "src=" not in body  # no external assets


def test_json_client_gets_json(outage: Outage) -> None:
    response = Client().get("/shop/", headers={"accept": "application/json"})

    seconds = assert_unavailable_headers(response)
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "database_unavailable", "retry_after": seconds}


def test_api_prefix_gets_json_whatever_it_accepts(outage: Outage) -> None:
    response = Client().get("/api/items/", headers={"accept": BROWSER_ACCEPT})

    assert_unavailable_headers(response)
    assert response.json()["error"] == "database_unavailable"


def test_post_is_told_its_action_was_not_completed(outage: Outage) -> None:
    response = Client().post("/buy/", {"name": "socks"}, headers={"accept": BROWSER_ACCEPT})

    body = assert_page(response)
    assert "Your action was not completed." in body
    assert "safe to repeat it" in body
    # Never resubmitted by itself: no refresh, no polling script.
    assert "http-equiv" not in body and "<script" not in body


def test_database_backed_session_read_by_auth_gives_the_page(outage: Outage) -> None:
    client = Client()
    outage.end()
    client.force_login(_user())  # a session row in the database
    outage.begin()

    response = client.get("/whoami/", headers={"accept": BROWSER_ACCEPT})

    assert_page(response)


def test_session_saved_by_session_middleware_gives_the_page(outage: Outage) -> None:
    # The error is raised in SessionMiddleware.process_response, which Django
    # turns into a 500 (and reports through got_request_exception) before this
    # middleware sees it; the test client would re-raise what it saw reported.
    response = Client(raise_request_exception=False).get(
        "/cart/", headers={"accept": BROWSER_ACCEPT}
    )

    assert_page(response)


def test_error_raised_by_a_middleware_before_the_view_gives_the_page(outage: Outage) -> None:
    response = Client(raise_request_exception=False).get(
        "/mw-query/page/", headers={"accept": BROWSER_ACCEPT}
    )

    assert_page(response)


def test_lazy_queryset_rendered_after_the_view_gives_the_page(outage: Outage) -> None:
    response = Client().get("/lazy/", headers={"accept": BROWSER_ACCEPT})

    assert_page(response)


def test_webhook_view_gets_the_webhook_views_own_503(outage: Outage) -> None:
    response = Client().post("/hooks/orders/", b"{}", content_type="application/json")

    seconds = assert_unavailable_headers(response)
    # The same JSON the webhook views answer themselves: never the HTML page.
    assert json.loads(response.content) == {"error": "database_unavailable", "retry_after": seconds}


def test_webhook_flag_is_found_when_the_view_was_never_reached(outage: Outage) -> None:
    response = Client(raise_request_exception=False).post(
        "/mw-query/hooks/orders/", b"{}", content_type="application/json"
    )

    seconds = assert_unavailable_headers(response)
    assert json.loads(response.content) == {"error": "database_unavailable", "retry_after": seconds}


def test_passthrough_view_is_left_alone(outage: Outage) -> None:
    response = Client(raise_request_exception=False).get("/readyz/")

    assert response.status_code == 500
    assert "Retry-After" not in response


def test_each_503_sends_the_signal_counts_and_logs_without_secrets(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs)

    signals.database_unavailable_response.connect(receiver)
    before = counted()
    try:
        with caplog.at_level(logging.WARNING, logger="django_pg_resilience.middleware"):
            response = Client().get("/shop/?token=s3cret-token", headers={"accept": BROWSER_ACCEPT})
    finally:
        signals.database_unavailable_response.disconnect(receiver)

    assert counted() == before + 1
    assert len(received) == 1
    sent = received[0]
    assert sent["alias"] == "default"
    assert sent["retry_after"] == int(response["Retry-After"])
    assert is_availability_error(sent["error"])
    assert sent["request"].path == "/shop/"
    lines = [r.getMessage() for r in caplog.records if r.name == "django_pg_resilience.middleware"]
    assert len(lines) == 1
    assert "503" in lines[0] and "/shop/" in lines[0]
    assert "s3cret-token" not in lines[0]
    assert str(sent["error"]) not in lines[0]


def test_a_failing_signal_receiver_does_not_stop_the_503(outage: Outage) -> None:
    def broken(sender: object, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.database_unavailable_response.connect(broken)
    try:
        response = Client().get("/shop/")
    finally:
        signals.database_unavailable_response.disconnect(broken)

    assert response.status_code == 503


def test_async_stack_gives_the_page_and_json(outage: Outage) -> None:
    client = AsyncClient(raise_request_exception=False)

    html = async_to_sync(client.get)("/async/", headers={"accept": BROWSER_ACCEPT})
    api = async_to_sync(client.get)("/async/", headers={"accept": "application/json"})
    saved_session = async_to_sync(client.get)("/cart/", headers={"accept": BROWSER_ACCEPT})

    assert_page(html)
    assert api.json() == {
        "error": "database_unavailable",
        "retry_after": assert_unavailable_headers(api),
    }
    assert_page(saved_session)


# --- not an outage: left alone ---


def test_integrity_error_stays_a_500() -> None:
    response = Client(raise_request_exception=False).get("/duplicate/")

    assert response.status_code == 500
    assert "Retry-After" not in response
    assert Item.objects.filter(name="unique-name").count() == 1


def test_a_bug_stays_a_500() -> None:
    with pytest.raises(ValueError, match="a plain bug"):
        Client().get("/bug/")
    response = Client(raise_request_exception=False).get("/bug/")
    assert response.status_code == 500
    assert "Retry-After" not in response


def test_pages_are_served_normally_while_the_database_is_up() -> None:
    Item.objects.create(name="socks")

    response = Client().get("/shop/")

    assert response.status_code == 200
    assert b"The real shop page" in response.content


def _user() -> Any:
    from django.contrib.auth.models import User

    return User.objects.create_user("shopper", password="not-used-here")
