"""A real failover in the middle of handle(), and a database that is not there."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import LocalCluster, Node
from django_pg_resilience.testing.webhooks import shopify_request
from tests.live_server import live_server, send
from tests.testapp.models import Item
from tests.webhooks.views import SHOPIFY_SECRET, calls

pytestmark = [pytest.mark.urls("tests.webhooks.urls")]


def effects(node: Node, key: str) -> tuple[int, list[tuple[str, int]]]:
    (items,) = node.query(
        f"SELECT count(*) FROM {Item._meta.db_table} WHERE name = %s",
        [f"shopify:{key}"],
    )[0]
    events = node.query(
        f"SELECT status, attempts FROM {WebhookEvent._meta.db_table} WHERE key = %s",
        [key],
    )
    return items, events


def test_primary_killed_during_handle_gets_503_then_the_retry_processes_once(
    fresh_alias: LocalCluster,
) -> None:
    cluster = fresh_alias
    standby = cluster.standbys[0]
    cluster.wait_for_replay(standby)
    delivery = shopify_request({"id": 7001}, SHOPIFY_SECRET, webhook_id="killed-mid-handle")
    calls.block = True

    with live_server() as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(send, delivery.urllib_request(url + "/fresh/shopify"))
        assert calls.entered.wait(20), "handle() was never reached"
        cluster.kill(cluster.primary)
        calls.proceed.set()
        reply = first.result(60)

        assert reply.status == 503, reply.body
        retry_after = int(reply.headers["Retry-After"])
        assert json.loads(reply.body) == {
            "error": "database_unavailable",
            "retry_after": retry_after,
        }
        assert retry_after >= 1

        new = cluster.promote(standby)
        cluster.endpoint.point_to(new)
        calls.block = False
        retry = send(delivery.urllib_request(url + "/fresh/shopify"))
        again = send(delivery.urllib_request(url + "/fresh/shopify"))

    assert (retry.status, json.loads(retry.body)) == (200, {"status": "processed"})
    assert (again.status, json.loads(again.body)) == (200, {"status": "duplicate"})
    assert effects(new, "killed-mid-handle") == (1, [("succeeded", 1)])


def test_unreachable_database_is_503_with_retry_after_and_no_store(
    fresh_alias: LocalCluster, client: Client
) -> None:
    fresh_alias.endpoint.point_to(None)
    delivery = shopify_request({"id": 7002}, SHOPIFY_SECRET, webhook_id="db-away")
    response = client.post("/fresh/shopify", **delivery.client_kwargs())

    assert response.status_code == 503
    retry_after = int(response["Retry-After"])
    assert json.loads(response.content) == {
        "error": "database_unavailable",
        "retry_after": retry_after,
    }
    assert retry_after >= 1
    # The package's one 503: Django's never-cache headers, as from the middleware.
    assert "no-store" in response["Cache-Control"] and "Expires" in response
    assert calls.keys == []
