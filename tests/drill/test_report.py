"""The drill's accounting, on made-up records (no servers)."""

from __future__ import annotations

from typing import Any

from example_project.drill.report import render, summarize


def attempt(kind: str, end: float, status: int, **extra: Any) -> dict[str, Any]:
    record = {
        "kind": kind,
        "start": end - 0.01,
        "end": end,
        "status": status,
        "answer": "",
        "order_id": 0,
        "delivery": "",
        "attempt": 1,
        "redelivery": False,
    }
    record.update(extra)
    return record


def summary_of(
    attempts: list[dict[str, Any]],
    orders_in_db: list[int],
    *,
    on_old_primary: list[int] | None = None,
    durable_ack: bool = False,
) -> dict[str, Any]:
    return summarize(
        options={
            "scenario": "crash",
            "engine": "resilient",
            "duration": 5,
            "promotion_delay": 2,
            "durable_ack": durable_ack,
        },
        traffic={
            "attempts": attempts,
            "deliveries": [
                {"webhook_id": "w1", "order_id": 1},
                {"webhook_id": "w2", "order_id": 2},
            ],
            "gave_up": [],
        },
        events={"fault": 1.0, "promoted": 3.0, "endpoint_moved": 3.1},
        orders_in_db=orders_in_db,
        on_old_primary=on_old_primary,
        started_at=100.0,
        health_before={"status": "OK"},
        health_after={"status": "OK"},
    )


def test_an_acknowledged_order_missing_from_the_database_is_lost() -> None:
    summary = summary_of(
        [
            attempt("webhook", 100.5, 200, answer="processed", order_id=1, delivery="w1"),
            attempt("webhook", 101.5, 200, answer="processed", order_id=2, delivery="w2"),
        ],
        orders_in_db=[1],
    )
    assert summary["orders"]["lost"] == 1
    assert summary["orders"]["lost_order_ids"] == [2]
    assert summary["invariants"]["no_acknowledged_order_lost_by_the_app"] is False
    assert summary["ok"] is False
    assert summary["orders"]["old_primary_asked"] is False
    assert "not known (not asked)" in render(summary)


TWO_ACKNOWLEDGED = [
    attempt("webhook", 100.5, 200, answer="processed", order_id=1, delivery="w1"),
    attempt("webhook", 100.99, 200, answer="processed", order_id=2, delivery="w2"),
]


def test_an_order_lost_with_the_old_primarys_unreplicated_wal_is_asynchronous_replication() -> None:
    summary = summary_of(TWO_ACKNOWLEDGED, orders_in_db=[1], on_old_primary=[2])

    assert summary["orders"]["lost"] == 1
    assert summary["orders"]["lost_unreplicated"] == 1
    assert summary["invariants"]["no_acknowledged_order_lost_by_the_app"] is True
    assert summary["ok"] is True
    text = render(summary)
    assert "--durable-ack closes this window" in text
    assert "lost=1 (1 never replicated)" in text


def test_with_durable_ack_an_unreplicated_order_is_still_lost_by_the_app() -> None:
    summary = summary_of(TWO_ACKNOWLEDGED, orders_in_db=[1], on_old_primary=[2], durable_ack=True)

    assert summary["orders"]["lost_unreplicated"] == 1
    assert summary["invariants"]["no_acknowledged_order_lost_by_the_app"] is False
    assert "durable_ack was on" in render(summary)


def test_an_order_missing_on_the_old_primary_too_is_lost_by_the_app() -> None:
    summary = summary_of(TWO_ACKNOWLEDGED, orders_in_db=[1], on_old_primary=[])

    assert summary["orders"]["old_primary_asked"] is True
    assert summary["orders"]["lost_unreplicated"] == 0
    assert summary["ok"] is False


def test_the_same_order_stored_twice_is_duplicated() -> None:
    summary = summary_of(
        [attempt("webhook", 100.5, 200, answer="processed", order_id=1, delivery="w1")],
        orders_in_db=[1, 1],
    )
    assert summary["orders"]["duplicated"] == 1
    assert summary["ok"] is False


def test_a_503_that_was_retried_and_acknowledged_keeps_the_invariants() -> None:
    summary = summary_of(
        [
            attempt("read", 100.2, 200),
            attempt("webhook", 101.2, 503, order_id=1, delivery="w1"),
            attempt("webhook", 102.4, 0, order_id=1, delivery="w1", attempt=2),
            attempt(
                "webhook", 103.3, 200, answer="processed", order_id=1, delivery="w1", attempt=3
            ),
            attempt("webhook", 103.5, 200, answer="duplicate", order_id=1, delivery="w1"),
            attempt("read", 101.5, 503),
            attempt("read", 102.0, 0),
            attempt("read", 104.0, 200),
        ],
        orders_in_db=[1],
    )
    assert summary["ok"] is True
    requests = summary["requests"]
    assert requests["first_503"] == 1.2
    assert requests["last_503"] == 1.5
    assert requests["first_storefront_error"] == 1.5
    assert requests["storefront_error_window"] == 0.5  # storefront errors at 1.5 s and 2.0 s
    assert requests["recovery_lag"] == 0.2  # moved at 3.1, first 2xx at 3.3
    assert requests["promotion_time"] == 2.0
    assert summary["webhooks"]["answers_503"] == 1
    assert summary["webhooks"]["answered_duplicate"] == 1
    assert [row["2xx"] for row in summary["timeline"]] == [1, 0, 0, 2, 1]
    assert summary["timeline"][1]["503"] == 2
    assert "Drill PASSED" in render(summary)


def test_a_500_breaks_the_drill() -> None:
    summary = summary_of([attempt("read", 101.0, 500)], orders_in_db=[])
    assert summary["invariants"]["no_500"] is False
    assert "[FAIL] no 500" in render(summary)
