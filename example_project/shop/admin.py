from __future__ import annotations

from django.contrib import admin

from example_project.shop.models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["title", "price", "inventory"]
    search_fields = ["title"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["shopify_order_id", "email", "total_price", "currency", "created_at"]
    search_fields = ["shopify_order_id", "email"]
    date_hierarchy = "created_at"
