"""The drill's numbers: a timeline, the failover window, the webhook accounting, the invariants.

:func:`summarize` is pure (records in, a JSON-ready dict out), so it is easy to
test; :func:`render` makes the terminal table; :func:`plot` the optional PNG.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STATUS_COLUMNS = ("2xx", "503", "500", "other", "no answer")


def status_class(status: int) -> str:
    """The report's column for an HTTP status (0: no answer at all)."""
    if 200 <= status < 300:
        return "2xx"
    if status in (500, 503):
        return str(status)
    if status == 0:
        return "no answer"
    return "other"


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def drained_after_move(attempts: Iterable[Mapping[str, Any]], moved: float) -> float | None:
    """Seconds from the endpoint's move to the last acknowledgement of a delivery that met the
    outage (one sent before the move and acknowledged after it); None if there was none.

    ``attempts`` carry times relative to the traffic's start, like ``moved``.
    """
    first_sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    for attempt in attempts:
        if attempt["kind"] != "webhook":
            continue
        delivery = attempt["delivery"] + ("/r" if attempt["redelivery"] else "")
        first_sent[delivery] = min(first_sent.get(delivery, math.inf), attempt["start"])
        if 200 <= attempt["status"] < 300:
            acked[delivery] = attempt["end"]
    backlog = [
        end - moved for delivery, end in acked.items() if first_sent[delivery] < moved <= end
    ]
    return max(backlog, default=None)


def acknowledged_order_ids(attempts: Iterable[Mapping[str, Any]]) -> set[int]:
    """The orders whose webhook some delivery got a 2xx for: the sender will not resend them."""
    return {a["order_id"] for a in attempts if a["kind"] == "webhook" and 200 <= a["status"] < 300}


def summarize(
    *,
    options: Mapping[str, Any],
    traffic: Mapping[str, Any],
    events: Mapping[str, float],
    orders_in_db: Iterable[int],
    started_at: float,
    health_before: Mapping[str, Any],
    health_after: Mapping[str, Any],
    on_old_primary: Iterable[int] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, with times in seconds since the traffic started.

    ``on_old_primary``: which of the missing acknowledged orders the old primary,
    started again after the drill, holds (None: it was not asked).
    """
    attempts = traffic["attempts"]

    def rel(t: float) -> float:
        return t - started_at

    timeline: dict[int, Counter[str]] = defaultdict(Counter)
    for attempt in attempts:
        timeline[int(rel(attempt["end"]))][status_class(attempt["status"])] += 1
    last_second = max(timeline, default=-1)
    timeline_rows = [
        {"second": s, **{c: timeline[s].get(c, 0) for c in STATUS_COLUMNS}}
        for s in range(last_second + 1)
    ]

    with_503 = [a for a in attempts if a["status"] == 503]
    # What a shopper sees: the storefront's failed pages. (Webhook senders retry.)
    ends = sorted(
        rel(a["end"])
        for a in attempts
        if a["kind"] == "read" and status_class(a["status"]) != "2xx"
    )
    moved = events.get("endpoint_moved")
    fault = events.get("fault")
    recovered = None
    if moved is not None:
        after = [
            rel(a["end"])
            for a in attempts
            if status_class(a["status"]) == "2xx" and rel(a["end"]) >= moved
        ]
        recovered = min(after, default=None)

    reads = [a for a in attempts if a["kind"] == "read"]
    read_latency = [a["end"] - a["start"] for a in reads if status_class(a["status"]) == "2xx"]
    webhook_attempts = [a for a in attempts if a["kind"] == "webhook"]
    acked_ids = acknowledged_order_ids(webhook_attempts)
    sent_ids = {d["order_id"] for d in traffic["deliveries"]}
    stored = list(orders_in_db)
    stored_ids = set(stored)
    answers = Counter(a["answer"] for a in webhook_attempts if 200 <= a["status"] < 300)

    statuses = Counter(status_class(a["status"]) for a in attempts)
    lost = sorted(acked_ids - stored_ids)
    # An order the old primary committed and acknowledged, then died before streaming
    # to the standby, is gone with it: asynchronous replication's window, PostgreSQL's
    # and not the app's, unless durable_ack was on, whose promise is to close it.
    unreplicated = sorted(set(lost) & set(on_old_primary or ()))
    excused = 0 if options.get("durable_ack") else len(unreplicated)
    duplicated = len(stored) - len(stored_ids)
    invariants = {
        "no_500": statuses.get("500", 0) == 0,
        "no_acknowledged_order_lost_by_the_app": len(lost) == excused,
        "no_duplicated_order": duplicated == 0,
    }
    return {
        "options": dict(options),
        "events": {name: _rounded(t) for name, t in events.items()},
        "requests": {
            "total": len(attempts),
            "by_status": {c: statuses.get(c, 0) for c in STATUS_COLUMNS},
            "first_503": _rounded(min((rel(a["end"]) for a in with_503), default=None)),
            "last_503": _rounded(max((rel(a["end"]) for a in with_503), default=None)),
            "first_storefront_error": _rounded(ends[0] if ends else None),
            "last_storefront_error": _rounded(ends[-1] if ends else None),
            "storefront_error_window": _rounded(ends[-1] - ends[0] if ends else 0.0),
            "promotion_time": _rounded(
                events["promoted"] - fault if "promoted" in events and fault is not None else None
            ),
            "recovery_lag": _rounded(
                recovered - moved if recovered is not None and moved else None
            ),
            "webhooks_drained_after_move": _rounded(
                None
                if moved is None
                else drained_after_move(
                    (
                        {**a, "start": rel(a["start"]), "end": rel(a["end"])}
                        for a in webhook_attempts
                    ),
                    moved,
                )
            ),
        },
        "storefront": {
            "requests": len(reads),
            "errors": sum(1 for a in reads if status_class(a["status"]) != "2xx"),
            "latency_p50": _rounded(_percentile(read_latency, 0.50)),
            "latency_p99": _rounded(_percentile(read_latency, 0.99)),
            "latency_max": _rounded(max(read_latency, default=None)),
        },
        "webhooks": {
            "orders_sent": len(sent_ids),
            "http_attempts": len(webhook_attempts),
            "redeliveries": sum(
                1 for a in webhook_attempts if a["redelivery"] and a["attempt"] == 1
            ),
            "acknowledged": sum(answers.values()),
            "answered_processed": answers.get("processed", 0),
            "answered_duplicate": answers.get("duplicate", 0),
            "answers_503": sum(1 for a in webhook_attempts if a["status"] == 503),
            "answers_500": sum(1 for a in webhook_attempts if a["status"] == 500),
            "no_answer": sum(1 for a in webhook_attempts if a["status"] == 0),
            "gave_up": len(traffic["gave_up"]),
        },
        "orders": {
            "unique_acknowledged": len(acked_ids),
            "in_database": len(stored),
            "unique_in_database": len(stored_ids),
            "lost": len(lost),
            "lost_order_ids": lost[:20],
            "old_primary_asked": on_old_primary is not None,
            "lost_unreplicated": len(unreplicated),
            "duplicated": duplicated,
            "stored_but_never_acknowledged": len(stored_ids - acked_ids),
        },
        "timeline": timeline_rows,
        "health": {"before": dict(health_before), "after": dict(health_after)},
        "invariants": invariants,
        "ok": all(invariants.values()),
    }


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f} {unit}".rstrip()
    return str(value)


def health_lines(title: str, health: Mapping[str, Any]) -> list[str]:
    """The health command's verdict, and each node's role and problems."""
    report = health.get("report")
    if not isinstance(report, Mapping):
        reason = f": {health['error']}" if health.get("error") else ""
        return [f"{title}: {health.get('status')}{reason}"]
    lines = [f"{title}: {health.get('status')} ({report.get('summary', '')})"]
    for node in report.get("nodes") or []:
        problems = [
            check.get("message", "")
            for check in node.get("checks") or []
            if check.get("status") not in ("OK", None)
        ]
        if not node.get("reachable", True) and node.get("error"):
            problems = [str(node["error"])]
        role = node.get("role") or "-"
        detail = f"  {'; '.join(problems)}" if problems else ""
        line = f"  {node.get('name', '?'):<10} {role:<8} {node.get('status', '?'):<9}{detail}"
        lines.append(line.rstrip())
    return lines


def render(summary: Mapping[str, Any]) -> str:
    """The terminal report."""
    lines: list[str] = []
    options = summary["options"]
    events = summary["events"]
    requests = summary["requests"]
    lines.append(
        f"Drill: scenario={options['scenario']} engine={options['engine']} "
        f"duration={options['duration']} s promotion delay={options['promotion_delay']} s"
        + (f" outage={options['outage']} s" if options.get("outage") else "")
        + (" durable-ack" if options.get("durable_ack") else "")
    )
    lines.append("")
    lines.append("Timeline (responses per second, by status)")
    marks: dict[int, list[str]] = defaultdict(list)
    for name, t in events.items():
        if t is not None:
            marks[int(t)].append(f"{name} @{t:.2f}s")
    header = f"  {'t (s)':>5}  " + "  ".join(f"{c:>9}" for c in STATUS_COLUMNS)
    lines.append(header)
    for row in summary["timeline"]:
        cells = "  ".join(f"{row[c] or '.':>9}" for c in STATUS_COLUMNS)
        note = ("  <- " + ", ".join(marks[row["second"]])) if marks.get(row["second"]) else ""
        lines.append(f"  {row['second']:>5}  {cells}{note}")
    lines.append("")
    store = summary["storefront"]
    lines.append("Failover")
    rows = [
        ("fault injected at", _fmt(events.get("fault"))),
        ("standby promoted after", _fmt(requests["promotion_time"])),
        ("endpoint moved at", _fmt(events.get("endpoint_moved"))),
        ("first / last 503", f"{_fmt(requests['first_503'])} / {_fmt(requests['last_503'])}"),
        ("storefront errors (first to last)", _fmt(requests["storefront_error_window"])),
        ("recovery lag (endpoint moved -> first 2xx)", _fmt(requests["recovery_lag"])),
        (
            "webhook backlog drained (endpoint moved -> last)",
            _fmt(requests.get("webhooks_drained_after_move")),
        ),
        ("storefront requests / errors", f"{store['requests']} / {store['errors']}"),
        (
            "storefront latency p50 / p99 / max",
            f"{_fmt(store['latency_p50'])} / {_fmt(store['latency_p99'])} / "
            f"{_fmt(store['latency_max'])}",
        ),
    ]
    lines += [f"  {label:<46} {value}" for label, value in rows]
    lines.append("")
    hooks = summary["webhooks"]
    orders = summary["orders"]
    lines.append("Webhooks and orders")
    rows = [
        ("orders sent (unique)", hooks["orders_sent"]),
        ("HTTP deliveries (incl. redeliveries, retries)", hooks["http_attempts"]),
        ("redeliveries (some at the same instant)", hooks["redeliveries"]),
        ("acknowledged (2xx)", hooks["acknowledged"]),
        (
            "  answered processed / duplicate",
            f"{hooks['answered_processed']} / {hooks['answered_duplicate']}",
        ),
        ("503 answers (the sender retries)", hooks["answers_503"]),
        ("500 answers (the sender retries)", hooks["answers_500"]),
        ("no answer: timeout or reset (retried)", hooks["no_answer"]),
        ("deliveries given up", hooks["gave_up"]),
        ("unique acknowledged orders", orders["unique_acknowledged"]),
        (
            "orders in the database (unique)",
            f"{orders['in_database']} ({orders['unique_in_database']})",
        ),
        ("LOST acknowledged orders", orders["lost"]),
    ]
    if orders.get("lost_unreplicated"):
        window = (
            "durable_ack was on: it should have kept them"
            if options.get("durable_ack")
            else "asynchronous replication; --durable-ack closes this window"
        )
        rows.append(
            (
                "  on the old primary, never replicated",
                f"{orders['lost_unreplicated']} ({window})",
            )
        )
    elif orders["lost"] and not orders.get("old_primary_asked"):
        rows.append(("  on the old primary, never replicated", "not known (not asked)"))
    rows += [
        ("DUPLICATED orders", orders["duplicated"]),
    ]
    lines += [f"  {label:<46} {value}" for label, value in rows]
    lines.append("")
    for when in ("before", "after"):
        lines += health_lines(f"Health {when} (manage.py health)", summary["health"][when])
    lines.append("")
    by_status = requests["by_status"]
    for name, ok in summary["invariants"].items():
        lines.append(f"  [{'PASS' if ok else 'FAIL'}] {name.replace('_', ' ')}")
    verdict = "PASSED" if summary["ok"] else "FAILED"
    unreplicated = orders.get("lost_unreplicated", 0)
    lost = f"{orders['lost']}" + (f" ({unreplicated} never replicated)" if unreplicated else "")
    lines.append(
        f"Drill {verdict}: {requests['total']} requests, {by_status['500']} x 500, "
        f"{by_status['503']} x 503, lost={lost}, duplicated={orders['duplicated']}"
    )
    return "\n".join(lines)


def plot(summary: Mapping[str, Any], path: Path) -> str:
    """Draw the timeline as a stacked bar chart; return a message saying what happened."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (
            "plot: matplotlib is not installed; install the extra with "
            "`.venv/bin/pip install -e '.[plot]'` and run again"
        )
    rows = summary["timeline"]
    seconds = [row["second"] for row in rows]
    colors = {
        "2xx": "#4caf50",
        "503": "#ff9800",
        "500": "#d32f2f",
        "other": "#9e9e9e",
        "no answer": "#212121",
    }
    fig, ax = plt.subplots(figsize=(10, 4.5))
    bottom = [0] * len(rows)
    for column in STATUS_COLUMNS:
        values = [row[column] for row in rows]
        # Second s holds the responses that completed in [s, s + 1).
        ax.bar(
            seconds,
            values,
            bottom=bottom,
            color=colors[column],
            label=column,
            width=0.9,
            align="edge",
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    top = max(bottom, default=1) * 1.3 or 1
    ax.set_ylim(0, top)
    events = summary["events"]
    if events.get("fault") is not None and events.get("endpoint_moved") is not None:
        ax.axvspan(events["fault"], events["endpoint_moved"], color="#1565c0", alpha=0.08)
    labels: dict[float, list[str]] = defaultdict(list)
    for name, t in events.items():
        if t is not None:
            labels[round(t, 1)].append(name.replace("_", " "))
    for t, names in labels.items():
        ax.axvline(t, color="#1565c0", linestyle="--", linewidth=1)
        ax.text(t, top, " " + " + ".join(names), rotation=90, va="top", ha="right", fontsize=8)
    options = summary["options"]
    ax.set_title(f"Failover drill: {options['scenario']}, engine {options['engine']}")
    ax.set_xlabel("seconds since traffic started")
    ax.set_ylabel("responses")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(STATUS_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"
