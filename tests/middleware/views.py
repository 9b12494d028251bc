"""Views that read the database, for the 503 middleware's tests."""

from __future__ import annotations

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.template.response import TemplateResponse

from django_pg_resilience.unavailable import BARE_503_ATTRIBUTE
from tests.testapp.models import Item

#: Text only the real page shows (the browser test waits for it).
REAL_CONTENT = "The real shop page"


def database() -> str:
    """The alias the views use: a test may point it at its own cluster."""
    return getattr(settings, "MIDDLEWARE_TESTS_DATABASE", "default")


def page(request: HttpRequest) -> HttpResponse:
    count = Item.objects.using(database()).count()
    return HttpResponse(f"<!doctype html><title>Shop</title><h1>{REAL_CONTENT}</h1><p>{count}</p>")


def api_items(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": Item.objects.using(database()).count()})


def buy(request: HttpRequest) -> HttpResponse:
    item = Item.objects.using(database()).create(name=request.POST.get("name", "thing"))
    return HttpResponse(f"bought {item.pk}", status=201)


def whoami(request: HttpRequest) -> HttpResponse:
    # Reading the user loads the session from the database.
    return HttpResponse(f"authenticated={request.user.is_authenticated}")


def remember_cart(request: HttpRequest) -> HttpResponse:
    # No database here: SessionMiddleware saves the new session on the way out.
    request.session["cart"] = ["socks"]
    return HttpResponse("remembered")


_LAZY = engines["django"].from_string("{% for item in items %}{{ item.name }} {% endfor %}")


def lazy_template(request: HttpRequest) -> TemplateResponse:
    # The queryset runs only when the response is rendered, after the view returned.
    return TemplateResponse(request, _LAZY, {"items": Item.objects.using(database()).all()})


def webhook(request: HttpRequest) -> HttpResponse:
    Item.objects.using(database()).count()
    return HttpResponse("ok")


setattr(webhook, BARE_503_ATTRIBUTE, True)


def health(request: HttpRequest) -> HttpResponse:
    with connections[database()].cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok")


health.pg_resilience_passthrough = True  # type: ignore[attr-defined]


def duplicate(request: HttpRequest) -> HttpResponse:
    Item.objects.using(database()).create(name="unique-name")
    Item.objects.using(database()).create(name="unique-name")
    return HttpResponse("unreachable")


def bug(request: HttpRequest) -> HttpResponse:
    raise ValueError("a plain bug")


async def async_page(request: HttpRequest) -> HttpResponse:
    count = await Item.objects.using(database()).acount()
    return HttpResponse(f"{REAL_CONTENT} {count}")
