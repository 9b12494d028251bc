"""A real failover: kill the primary, promote the standby, move the endpoint; no restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
from tests.middleware.conftest import assert_unavailable_headers
from tests.middleware.views import REAL_CONTENT

BROWSER_ACCEPT = "text/html,*/*;q=0.8"


@pytest.fixture
def shop_database(
    pg_fresh_cluster: LocalCluster, django_db_blocker: Any, settings: Any
) -> Iterator[LocalCluster]:
    """The views' alias on a cluster of the test's own, migrated and replicated."""
    with (
        django_db_blocker.unblock(),
        database_alias(
            "shop",
            pg_fresh_cluster.endpoint,
            OPTIONS={"connect_timeout": 2, "resilience": {"deadline": 0.5}},
        ),
    ):
        call_command("migrate", "testapp", database="shop", verbosity=0)
        settings.MIDDLEWARE_TESTS_DATABASE = "shop"
        pg_fresh_cluster.wait_for_replay(pg_fresh_cluster.standbys[0])
        yield pg_fresh_cluster


def get_until(client: Client, path: str, status: int, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path, headers={"accept": BROWSER_ACCEPT})
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_killed_primary_gives_503s_then_the_promoted_standby_serves_200(
    shop_database: LocalCluster,
) -> None:
    cluster = shop_database
    client = Client()
    assert client.get("/shop/").status_code == 200

    cluster.kill(cluster.primary)

    page = client.get("/shop/", headers={"accept": BROWSER_ACCEPT})
    assert_unavailable_headers(page)
    assert b"be right back" in page.content
    api = client.get("/api/items/")
    assert api.json() == {
        "error": "database_unavailable",
        "retry_after": assert_unavailable_headers(api),
    }
    post = client.post("/buy/", {"name": "socks"}, headers={"accept": BROWSER_ACCEPT})
    assert_unavailable_headers(post)
    assert b"Your action was not completed." in post.content

    new_primary = cluster.promote(cluster.standbys[0])
    cluster.endpoint.point_to(new_primary)

    back = get_until(client, "/shop/", 200)
    assert back.status_code == 200, back
    assert REAL_CONTENT.encode() in back.content
    bought = client.post("/buy/", {"name": "socks"})
    assert bought.status_code == 201
