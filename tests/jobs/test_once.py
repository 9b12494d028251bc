"""run_once on the real database: the key record commits with the body's writes, or not at all."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from django_pg_resilience.contrib.celery import job_key, run_once
from django_pg_resilience.contrib.celery.models import JobRecord
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def create_item(name: str) -> dict[str, Any]:
    item = Item.objects.create(name=name)
    return {"item": item.pk}


def test_a_committed_key_replays_its_stored_outcome_without_running() -> None:
    first = run_once(("make-item", 1), create_item, "one")
    second = run_once(("make-item", 1), create_item, "one")
    assert not first.replayed and second.replayed
    assert second.outcome == first.outcome == {"item": Item.objects.get().pk}
    record = JobRecord.objects.get()
    assert record.key == "make-item:1" and record.outcome == first.outcome


def test_a_body_that_raises_leaves_no_key_and_the_next_run_takes_effect() -> None:
    def fail(name: str) -> None:
        Item.objects.create(name=name)
        raise RuntimeError("the body failed after writing")

    with pytest.raises(RuntimeError):
        run_once("flaky", fail, "lost")
    assert not JobRecord.objects.exists() and not Item.objects.exists()
    result = run_once("flaky", create_item, "kept")
    assert not result.replayed
    assert list(Item.objects.values_list("name", flat=True)) == ["kept"]


def test_a_none_outcome_is_replayed_as_none() -> None:
    calls: list[str] = []

    def record(name: str) -> None:
        calls.append(name)

    assert run_once("nothing", record, "a").outcome is None
    replay = run_once("nothing", record, "a")
    assert replay.replayed and replay.outcome is None and calls == ["a"]


def test_an_outcome_that_is_not_json_rolls_the_unit_back_with_a_clear_error() -> None:
    def unserializable(name: str) -> object:
        Item.objects.create(name=name)
        return object()

    with pytest.raises(TypeError, match="not JSON-serializable"):
        run_once("bad-outcome", unserializable, "x")
    assert not Item.objects.exists() and not JobRecord.objects.exists()


def test_concurrent_duplicates_run_the_body_once_and_both_get_its_outcome() -> None:
    entered, release = threading.Event(), threading.Event()
    outcomes: list[Any] = []
    runs: list[str] = []

    def slow_item(name: str) -> dict[str, Any]:
        runs.append(name)
        entered.set()
        assert release.wait(30)
        return create_item(name)

    def run(name: str) -> None:
        try:
            outcomes.append(run_once("same-instant", slow_item, name))
        finally:
            connections.close_all()

    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    # The duplicate's insert waits on the first one's key until it commits.
    second.join(0.5)
    assert second.is_alive()
    release.set()
    first.join(30)
    second.join(30)
    assert runs == ["first"]
    assert sorted(result.replayed for result in outcomes) == [False, True]
    assert outcomes[0].outcome == outcomes[1].outcome
    assert Item.objects.count() == 1


def test_long_keys_are_hashed_to_fit_and_stay_distinct() -> None:
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert len(job_key(long_a)) == 255 and job_key(long_a) != job_key(long_b)
    assert job_key(("fulfil-order", 42)) == "fulfil-order:42"
    with pytest.raises(ValueError, match="empty"):
        job_key("")


def test_prune_job_records_deletes_only_old_keys() -> None:
    old = timezone.now() - datetime.timedelta(days=40)
    JobRecord.objects.create(key="old", task="t", recorded_at=old)
    JobRecord.objects.create(key="new", task="t", recorded_at=timezone.now())
    call_command("prune_job_records", "--older-than", "30d", "--batch-size", "1", verbosity=0)
    assert list(JobRecord.objects.values_list("key", flat=True)) == ["new"]
