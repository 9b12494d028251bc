"""run_once on the real database: the key record commits with the body's writes, or not at all."""

from __future__ import annotations

import datetime
import threading
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from django_pg_resilience.contrib.celery import job_key, once, run_once
from django_pg_resilience.contrib.celery.models import JobRecord
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.django import database_alias
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
    assert record.key == "0:,9:make-item,1:1," and record.outcome == first.outcome
    assert not record.legacy_key


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
    with pytest.raises(ValueError, match="empty"):
        job_key("")


def test_keys_are_scoped_and_unambiguous() -> None:
    assert job_key(("fulfil-order", 42), scope="shop.fulfil_order") == (
        "17:shop.fulfil_order,12:fulfil-order,2:42,"
    )
    # Joined with ":" these were one key; length-prefixed they are three.
    assert len({job_key(("a:b", "c")), job_key(("a", "b:c")), job_key("a:b:c")}) == 3
    assert job_key("k", scope="task.a") != job_key("k", scope="task.b") != job_key("k")
    # A scope is not a part: ("t", "k") in no scope is not "k" in scope "t".
    assert job_key(("t", "k")) != job_key("k", scope="t")


def test_the_same_key_in_two_tasks_is_two_units_unless_they_share_a_scope() -> None:
    first = run_once(("item", 7), create_item, "of task a", name="tests.task_a")
    second = run_once(("item", 7), create_item, "of task b", name="tests.task_b")
    assert not first.replayed and not second.replayed
    assert sorted(Item.objects.values_list("name", flat=True)) == ["of task a", "of task b"]
    shared = run_once(("item", 8), create_item, "shared", name="tests.task_a", scope="items")
    again = run_once(("item", 8), create_item, "not run", name="tests.task_b", scope="items")
    assert again.replayed and again.outcome == shared.outcome
    assert Item.objects.filter(name="not run").count() == 0


def test_a_unit_recorded_by_0_1_0_dev0_is_not_run_again_after_the_upgrade() -> None:
    recorded_at = timezone.now()
    JobRecord.objects.create(
        key="make-item:9",
        task="tests.task_a",
        outcome={"item": -9},
        recorded_at=recorded_at,
        legacy_key=True,
    )
    JobRecord.objects.create(
        key="make-item:10",
        task="tests.task_other",
        outcome={"item": -10},
        recorded_at=recorded_at,
        legacy_key=True,
    )
    once._legacy_seen.clear()
    replay = run_once(("make-item", 9), create_item, "x", name="tests.task_a")
    assert replay.replayed and replay.outcome == {"item": -9}
    assert not Item.objects.exists()
    # Found once under its old form, it is kept under the new one too.
    stored = JobRecord.objects.get(key=job_key(("make-item", 9), scope="tests.task_a"))
    assert stored.outcome == {"item": -9} and not stored.legacy_key
    # An old row of another task is that task's, not this one's.
    fresh = run_once(("make-item", 10), create_item, "y", name="tests.task_a")
    assert not fresh.replayed and Item.objects.get().name == "y"
    # A shared scope counts old rows of any task (they were global then).
    shared = run_once(("make-item", 10), create_item, "z", name="tests.task_b", scope="")
    assert shared.replayed and shared.outcome == {"item": -10}


def test_prune_job_records_deletes_only_old_keys() -> None:
    old = timezone.now() - datetime.timedelta(days=40)
    JobRecord.objects.create(key="old", task="t", recorded_at=old)
    JobRecord.objects.create(key="new", task="t", recorded_at=timezone.now())
    call_command("prune_job_records", "--older-than", "30d", "--batch-size", "1", verbosity=0)
    assert list(JobRecord.objects.values_list("key", flat=True)) == ["new"]


def test_the_migration_marks_the_rows_of_0_1_0_dev0_legacy_and_only_those(
    pg_fresh_cluster: LocalCluster, django_db_blocker: Any
) -> None:
    app = "pg_resilience_celery"
    with django_db_blocker.unblock(), database_alias("upgrade", pg_fresh_cluster.primary) as alias:
        call_command("migrate", app, "0001", database=alias, verbosity=0)
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "INSERT INTO pg_resilience_celery_jobrecord (key, task, recorded_at) "
                "VALUES ('fulfil-order:42', 'shop.fulfil_order', now())"
            )
        call_command("migrate", app, database=alias, verbosity=0)
        old = JobRecord.objects.using(alias).get()
        assert old.key == "fulfil-order:42" and old.legacy_key
        once._legacy_seen.pop(alias, None)
        result = run_once(
            ("fulfil-order", 42), create_item, "x", using=alias, name="shop.fulfil_order"
        )
        assert result.replayed
        new = run_once(("fulfil-order", 43), lambda: None, using=alias, name="shop.fulfil_order")
        assert not new.replayed
        assert list(
            JobRecord.objects.using(alias).filter(legacy_key=True).values_list("key", flat=True)
        ) == ["fulfil-order:42"]
        once._legacy_seen.pop(alias, None)
