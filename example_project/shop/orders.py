"""A small orders API: a customer places an order, then looks at it at once.

With a read replica configured (``REPLICA_DATABASE_URL``), the router sends
the reads to the replica unless it lags, is down, or has not replayed the
customer's own order yet; ``X-Read-From`` says which alias answered (the
drill's replica scenario counts them).
"""

from __future__ import annotations

import secrets

from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from example_project.shop.models import Order

READ_FROM_HEADER = "X-Read-From"


@csrf_exempt  # an API for scripted clients, which hold no CSRF cookie
@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    while True:
        try:
            order = Order.objects.create(
                shopify_order_id=secrets.randbelow(2**62) + 1,
                email=request.POST.get("email", ""),
                line_item_count=1,
            )
        except IntegrityError:  # the id was taken: draw another
            continue
        return JsonResponse({"id": order.shopify_order_id}, status=201)


@require_GET
def show_order(request: HttpRequest, order_id: int) -> HttpResponse:
    # Route once and keep the answer: the header must name the alias that was read.
    alias = Order.objects.db
    order = Order.objects.using(alias).filter(shopify_order_id=order_id).first()
    if order is None:
        response: HttpResponse = JsonResponse({"error": "not found"}, status=404)
    else:
        response = JsonResponse({"id": order.shopify_order_id, "email": order.email})
    response[READ_FROM_HEADER] = alias
    return response


@require_GET
def recent_orders(request: HttpRequest) -> HttpResponse:
    alias = Order.objects.db
    orders = Order.objects.using(alias)[:10]
    response = JsonResponse({"ids": [order.shopify_order_id for order in orders]})
    response[READ_FROM_HEADER] = alias
    return response
