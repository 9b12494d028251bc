"""Queued webhook events through an outage: nothing lost, no attempt spent, no spinning.

A handler is running, inside its transaction, when the endpoint is cut
(``point_to(None)``: every connection closed, every new one refused). With
``--max-attempts 1`` and a 5 s lease, an outage that counted as an attempt
would fail that event once the database answers; it must succeed, once, after
the outage (scaled to 12 s here; bench/bench_celery.py runs 10 minutes).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from django.test import Client

from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.webhooks import shopify_request
from tests.jobs import servers, views
from tests.jobs.conftest import StartWorker, wait_ready
from tests.jobs.jobs import JOBS_ALIAS
from tests.jobs.ledger import rows_by_order, wait_until

pytestmark = [pytest.mark.urls("tests.jobs.views"), pytest.mark.slow, pytest.mark.chaos]

Status = WebhookEvent.Status

OUTAGE = 12.0
#: Seconds after the cut by which the backend has given up its first wait
#: (JOBS_OPTIONS' deadline, 2 s) and the breaker holds the outage.
STEADY_AFTER = 4.0
EVENTS = 10


def deliver(client: Client, url: str, order_id: int, **payload: object) -> None:
    delivery = shopify_request(
        {"id": order_id, **payload}, views.SHOPIFY_SECRET, webhook_id=str(uuid.uuid4())
    )
    response = client.post(url, **delivery.client_kwargs())
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["status"] == "queued"


def events() -> dict[int, tuple[str, int]]:
    """order id -> (status, attempts) of every stored event."""
    rows = WebhookEvent.objects.using(JOBS_ALIAS).values_list("payload", "status", "attempts")
    return {int(payload["id"]): (status, attempts) for payload, status, attempts in rows}


def all_succeeded() -> bool:
    return {status for status, _ in events().values()} == {Status.SUCCEEDED}


def cut_while_handling(jobs_cluster: LocalCluster, gate: Path) -> tuple[int, float]:
    """Wait for the gated handler, cut the endpoint under it, let it go on; (tries, seconds)
    the worker made in the outage's steady part."""
    endpoint = jobs_cluster.endpoint
    wait_until(Path(f"{gate}.entered").exists, 60, "the gated handler running")
    endpoint.point_to(None)
    cut = time.monotonic()
    Path(f"{gate}.open").touch()
    time.sleep(STEADY_AFTER)  # the outage, as it happens
    steady_from, tries_before = time.monotonic(), endpoint.accepted
    time.sleep(max(0.0, cut + OUTAGE - time.monotonic()))
    tries, seconds = endpoint.accepted - tries_before, time.monotonic() - steady_from
    endpoint.point_to(jobs_cluster.primary)
    return tries, seconds


def test_process_webhooks_waits_out_an_outage_without_spending_attempts_or_spinning(
    jobs_cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    deliver(client, "/gated", 1, gate=str(gate))
    for order_id in range(2, EVENTS + 1):
        deliver(client, "/gated", order_id)
    env = servers.worker_env(None, jobs_cluster.endpoint, {"WEBHOOK_WORKER_LEASE": 5})
    command = [sys.executable, "-m", "django", "process_webhooks", "--database", JOBS_ALIAS]
    # A busy poll interval: the outage, not --interval, sets the pace while it lasts.
    command += ["--max-attempts", "1", "--interval", "0.2"]
    log = tmp_path / "process_webhooks.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            command, env=env, cwd=servers.ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            tries, seconds = cut_while_handling(jobs_cluster, gate)
            wait_until(all_succeeded, 30, f"every event succeeded: {events()}")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    text = log.read_text()
    assert events() == {order_id: (Status.SUCCEEDED, 1) for order_id in range(1, EVENTS + 1)}
    assert rows_by_order(jobs_cluster.primary) == Counter(range(1, EVENTS + 1))
    # At most one try a second while the database is away (each try: one connection).
    assert 0 < tries <= seconds + 1, (tries, seconds)
    # One line when it went away, one when it came back: not one per try.
    assert text.count("database unavailable") == 1 and text.count("database back after") == 1


def test_queued_events_on_celery_wait_out_an_outage_without_spending_attempts(
    start_worker: StartWorker, jobs_cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    settings = {"WEBHOOK_WORKER_LEASE": 5, "WEBHOOK_MAX_ATTEMPTS": 1, "JOB_OUTAGE_RETRY_CAP": 3}
    with start_worker(settings=settings) as worker:
        wait_ready(worker)
        deliver(client, "/gated-celery", 1, gate=str(gate))
        for order_id in range(2, EVENTS + 1):
            deliver(client, "/gated-celery", order_id)
        cut_while_handling(jobs_cluster, gate)
        wait_until(all_succeeded, 40, f"every event succeeded: {events()}\n{worker.tail()}")
    assert events() == {order_id: (Status.SUCCEEDED, 1) for order_id in range(1, EVENTS + 1)}
    assert rows_by_order(jobs_cluster.primary) == Counter(range(1, EVENTS + 1))
