"""The orders/create webhook as a plain Django site often writes it (the drill's "stock").

It checks the signature and inserts the order. There is no deduplication: a
redelivery hits the unique constraint (a 500, and Shopify retries it for hours),
and a database outage is a 500 too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from example_project.shop.models import Order


@csrf_exempt
@require_POST
def orders_create(request: HttpRequest) -> HttpResponse:
    received = request.headers.get("X-Shopify-Hmac-Sha256", "")
    secret = settings.SHOPIFY_WEBHOOK_SECRETS[0].encode()
    expected = base64.b64encode(hmac.new(secret, request.body, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(received, expected):
        return JsonResponse({"error": "invalid_signature"}, status=401)
    Order.objects.create(**Order.fields_from_payload(json.loads(request.body)))
    return JsonResponse({"status": "processed"})
