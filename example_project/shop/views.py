from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from example_project.shop.models import Order, Product


def storefront(request: HttpRequest) -> HttpResponse:
    """The shop's front page: what readers hit while the database fails over."""
    products = Product.objects.all()[:50]
    return render(
        request,
        "shop/storefront.html",
        {"products": products, "order_count": Order.objects.count()},
    )
