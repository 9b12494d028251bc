"""The 503 response without a database: content negotiation, Retry-After, the template."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, OperationalError
from django.test import RequestFactory
from django.utils import translation

from django_pg_resilience.errors import DatabaseUnavailable, FailoverError
from django_pg_resilience.unavailable import (
    response_kind,
    retry_after_for,
    unavailable_response,
    wants_json,
)
from tests.middleware.conftest import RETRY_AFTER, assert_unavailable_headers

# These tests have no django_db mark: pytest-django makes any database access fail.


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", True),
        ("application/json, text/plain, */*", True),  # axios
        ("application/problem+json", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
        ("*/*", False),
        ("", False),
        ("text/html, application/json", False),  # a tie goes to the page
        ("application/json;q=0.9, text/html", False),
        ("text/html;q=0.5, application/json", True),
        ("application/json;q=0", False),
        ("application/json;q=oops", False),
    ],
)
def test_wants_json(accept: str, expected: bool) -> None:
    assert wants_json(accept) is expected


def test_json_path_prefixes_come_from_the_setting(settings: Any) -> None:
    settings.PG_RESILIENCE = {"JSON_PATH_PREFIXES": ["/graphql", "/v2/"]}
    factory = RequestFactory()

    assert response_kind(factory.get("/graphql")) == "json"
    assert response_kind(factory.get("/v2/orders/")) == "json"
    assert response_kind(factory.get("/api/orders/")) == "html"
    assert response_kind(factory.get("/api/orders/"), bare=True) == "webhook"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DatabaseUnavailable("down", retry_after=2.1), 3),
        (DatabaseUnavailable("down", retry_after=0.001), 1),  # never 0
        (FailoverError("lost"), RETRY_AFTER),
        (OperationalError("refused"), RETRY_AFTER),
        (None, RETRY_AFTER),
    ],
)
def test_retry_after(error: BaseException | None, expected: int) -> None:
    assert retry_after_for(error) == expected


def test_retry_after_is_found_on_a_wrapped_error() -> None:
    try:
        try:
            raise DatabaseUnavailable("down", retry_after=7.5)
        except DatabaseUnavailable as inner:
            raise OperationalError("wrapped") from inner
    except OperationalError as outer:
        assert retry_after_for(outer) == 8


def test_page_renders_without_the_database_and_without_a_request_context() -> None:
    # No django_db mark: a query anywhere in here would raise, and the tests'
    # TEMPLATES have the auth and messages context processors, which would
    # read the session and the user if the page were rendered with the request.
    request = RequestFactory().get("/shop/")
    request.session = _Exploding("session")  # type: ignore[assignment]
    request.user = _Exploding("user")  # type: ignore[assignment]

    response = unavailable_response(request, DatabaseUnavailable("down", retry_after=4))

    assert_unavailable_headers(response, retry_after=4)
    assert b"be right back" in response.content


def test_project_template_override_is_used(settings: Any) -> None:
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {
                # A loader that can reach nothing but these strings.
                "loaders": [
                    (
                        "django.template.loaders.locmem.Loader",
                        {
                            "django_pg_resilience/unavailable.html": (
                                "<h1>Our shop is restocking</h1>"
                                "{% if unsafe_method %}<p>resend</p>{% endif %}"
                                "<p>back in {{ retry_after }} s</p>"
                            )
                        },
                    )
                ],
            },
        }
    ]

    get = unavailable_response(RequestFactory().get("/"), DatabaseUnavailable("x", retry_after=2))
    post = unavailable_response(RequestFactory().post("/"), None)

    assert get.content == b"<h1>Our shop is restocking</h1><p>back in 2 s</p>"
    assert (
        post.content
        == f"<h1>Our shop is restocking</h1><p>resend</p><p>back in {RETRY_AFTER} s</p>".encode()
    )


@pytest.mark.parametrize("template_source", ["{% if %}broken", "{% url 'no-such-view' %}", None])
def test_a_broken_or_missing_template_still_gives_a_503(
    settings: Any, template_source: str | None
) -> None:
    templates = (
        {}
        if template_source is None
        else {"django_pg_resilience/unavailable.html": template_source}
    )
    settings.TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "OPTIONS": {"loaders": [("django.template.loaders.locmem.Loader", templates)]},
        }
    ]

    get = unavailable_response(RequestFactory().get("/"), None)
    post = unavailable_response(RequestFactory().post("/"), None)

    assert_unavailable_headers(get)
    assert b"right back" in get.content and b"http-equiv=refresh" in get.content
    assert b"not completed" in post.content and b"http-equiv" not in post.content


@pytest.mark.parametrize(
    ("accept_language", "heading", "unsafe_wording"),
    [
        (
            "fr-FR,fr;q=0.9",
            "Nous revenons tout de suite",
            "Votre action n\u2019a pas",
        ),
        ("de", "Wir sind gleich wieder da", "Ihre Aktion wurde nicht ausgeführt."),
        ("en-GB,en;q=0.8", "We'll be right back", "Your action was not completed."),
    ],
)
def test_page_speaks_the_visitors_language(
    accept_language: str, heading: str, unsafe_wording: str
) -> None:
    # Read from the request's headers, no LocaleMiddleware and no database.
    factory = RequestFactory(headers={"accept-language": accept_language})

    get = unavailable_response(factory.get("/"), None).content.decode()
    post = unavailable_response(factory.post("/"), None).content.decode()

    assert heading in get
    assert unsafe_wording in post
    assert translation.get_language() == "en-us"  # the request's language did not leak


def test_integrity_error_and_driver_errors_are_told_apart() -> None:
    from django_pg_resilience.errors import is_availability_error

    assert not is_availability_error(IntegrityError("duplicate key"))
    assert is_availability_error(psycopg.OperationalError("connection refused"))


class _Exploding:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"the 503 page touched request.{self.name}.{attribute}")
