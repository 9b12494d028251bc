"""Views of the router tests: a customer writes an item, then reads it back."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from tests.testapp.models import Item


def create_item(request: HttpRequest) -> HttpResponse:
    item = Item.objects.create(name=request.POST["name"])
    return JsonResponse({"id": item.pk}, status=201)


def show_item(request: HttpRequest, name: str) -> HttpResponse:
    item = Item.objects.filter(name=name).first()
    if item is None:
        response = HttpResponse("not found", status=404)
        response["X-Read-From"] = "?"
        return response
    response = HttpResponse(item.name)
    response["X-Read-From"] = item._state.db or ""
    return response


def remember(request: HttpRequest) -> HttpResponse:
    request.session["note"] = request.POST["note"]
    return HttpResponse("saved")


def recall(request: HttpRequest) -> HttpResponse:
    note = request.session.get("note")
    return HttpResponse(note or "", status=200 if note else 404)


urlpatterns = [
    path("notes/", remember),
    path("notes/recall/", recall),
    path("items/", create_item),
    path("items/<str:name>/", show_item),
]
