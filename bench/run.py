#!/usr/bin/env python3
"""Every benchmark behind one command: ``python3 bench/run.py [--quick] [--only NAME ...]``.

Runs, each in a fresh process (they configure Django each their own way):

* ``bench_backend.py``, ``bench_middleware.py``, ``bench_webhooks.py``,
  ``bench_health.py``, ``bench_celery.py``, ``bench_bounded_time.py``: each module's
  ``main(argv) -> dict``; a missing one is skipped with a message;
* the failover drill twice, on django-pg-resilience and with ``--engine stock``.

Prints a summary table and writes ``bench/results/summary.json`` (each
benchmark also writes its own ``bench/results/<name>.json``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ("backend", "middleware", "webhooks", "health", "celery", "bounded_time")
#: The figures the README's table shows, per benchmark: (label, flattened key).
HEADLINES: dict[str, tuple[tuple[str, str], ...]] = {
    "backend": (
        ("happy-path time per query, ours / stock (median)", "happy_path.ratio_median"),
        ("happy-path time per query, ours / stock (total)", "happy_path.ratio_total"),
        ("recovery lag p50 / p99, ours (ms)", "recovery_lag.ours_p50_ms|recovery_lag.ours_p99_ms"),
        (
            "recovery lag p50 / p99, stock (ms)",
            "recovery_lag.stock_p50_ms|recovery_lag.stock_p99_ms",
        ),
        ("2 s failover, 16 threads: errors to callers", "short_failover.errors_to_callers"),
        (
            "2 s failover, 16 threads: worst read beyond the outage (ms)",
            "short_failover.longest_read_minus_outage_ms",
        ),
        (
            "connect attempts/s in an outage, ours / stock",
            "outage_load.ours_attempts_per_s|outage_load.stock_attempts_per_s",
        ),
    ),
    "middleware": (
        (
            "time to 503, refused, ours p50 / p99 (ms)",
            "refused.resilient.p50_ms|refused.resilient.p99_ms",
        ),
        ("time to 503, refused, stock p50 / p99 (ms)", "refused.stock.p50_ms|refused.stock.p99_ms"),
        (
            "time to 503, blackhole, ours p50 / p99 (ms)",
            "blackhole.resilient.p50_ms|blackhole.resilient.p99_ms",
        ),
        (
            "time to 503, blackhole, stock p50 / p99 (ms)",
            "blackhole.stock.p50_ms|blackhole.stock.p99_ms",
        ),
    ),
    "webhooks": (
        ("Shopify view throughput / plain view", "shopify_vs_plain_ratio"),
        ("plain view in transaction.atomic / plain view", "plain_atomic_vs_plain_ratio"),
        ("Shopify view, process_async / plain view", "shopify_async_vs_plain_ratio"),
        (
            "deliveries/s: plain / Shopify / durable ack",
            "phases.plain.per_second|phases.shopify.per_second|phases.durable.per_second",
        ),
        ("durable ack adds p50 / p99 (ms)", "durable_ack_added_p50_ms|durable_ack_added_p99_ms"),
    ),
    "health": (
        ("manage.py health wall time, healthy (s)", "healthy.wall_median_s"),
        ("manage.py health wall time, blackholed node (s)", "blackholed.wall_median_s"),
        ("python -m django start-up alone (s)", "startup.wall_median_s"),
    ),
    "celery": (
        ("idempotent task adds over a plain task, p50 (ms)", "overhead_vs_plain_p50_ms"),
        (
            "task p50: plain / idempotent / replay (ms)",
            "plain.p50_ms|idempotent.p50_ms|replay.p50_ms",
        ),
    ),
    "bounded_time": (
        (
            "silent endpoint: worst in-flight read, persistent / pool (s)",
            "silent_proxy_persistent.in_flight.worst_s|silent_proxy_pool.in_flight.worst_s",
        ),
        (
            "silent endpoint: later errors p99, persistent / pool (ms)",
            "silent_proxy_persistent.later.error_p99_ms|silent_proxy_pool.later.error_p99_ms",
        ),
        (
            "silent endpoint: first read after the move, persistent / pool (s)",
            "silent_proxy_persistent.return.first_success_after_move_s"
            "|silent_proxy_pool.return.first_success_after_move_s",
        ),
        ("peer that sends nothing: worst in-flight read (s)", "silent_netns.in_flight.worst_s"),
        ("pg_sleep on a healthy server: liveness checks/s", "long_query.liveness_checks_per_s"),
        (
            "pool burst: PoolTimeout / DatabaseUnavailable / other",
            "pool_burst.pool_timeouts|pool_burst.database_unavailable|pool_burst.other_errors",
        ),
        ("pool burst: breaker stayed closed", "pool_burst.breaker_stayed_closed"),
        (
            "statement found alive, then silence: still waiting at the cap",
            "late_fault.still_waiting_at_cap",
        ),
    ),
}
#: Otherwise (a benchmark's keys changed): keys with these substrings.
HEADLINE_HINTS = (
    "ratio",
    "p50",
    "p99",
    "lag",
    "throughput",
    "wall_median",
    "time_to_503",
    "per_second",
    "overhead",
)
#: ...but not these: spreads, settings and counts say less than a median or a p99.
HEADLINE_NOISE = ("min", "max", "mean", "machine", "target", "runs", "requests", "warm_up")
MAX_HEADLINES = 16
DRILL_ROWS = (
    ("500 responses", ("requests", "by_status", "500")),
    ("503 responses", ("requests", "by_status", "503")),
    ("no answer (reset, timeout)", ("requests", "by_status", "no answer")),
    ("storefront errors", ("storefront", "errors")),
    ("storefront latency max (s)", ("storefront", "latency_max")),
    ("storefront errors window (s)", ("requests", "storefront_error_window")),
    ("recovery lag (s)", ("requests", "recovery_lag")),
    ("webhooks acknowledged", ("webhooks", "acknowledged")),
    ("webhook deliveries given up", ("webhooks", "gave_up")),
    ("lost acknowledged orders", ("orders", "lost")),
    ("duplicated orders", ("orders", "duplicated")),
    ("invariants hold", ("ok",)),
)


def _say(text: str) -> None:
    print(text, flush=True)


# --- one benchmark, in a child process ----------------------------------------


def run_child(name: str, argv: list[str], out: Path) -> None:
    """Import bench_<name>.py, call its main(argv), write the returned dict to ``out``."""
    path = ROOT / "bench" / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    result = module.main(argv)
    out.write_text(json.dumps(result if isinstance(result, dict) else {"result": result}))


def run_benchmark(name: str, argv: list[str], timeout: float) -> dict[str, Any]:
    path = ROOT / "bench" / f"bench_{name}.py"
    if not path.exists():
        _say(f"[{name}] skipped: {path.relative_to(ROOT)} does not exist")
        return {"skipped": f"{path.name} does not exist"}
    _say(f"[{name}] running {path.relative_to(ROOT)} {' '.join(argv)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--", *argv]
        try:
            env = {**os.environ, "BENCH_CHILD_OUT": str(out)}
            done = subprocess.run(command, cwd=ROOT, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"failed": f"did not finish in {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            return {"failed": f"exited with {done.returncode}"}
        result: dict[str, Any] = json.loads(out.read_text())
    _say(f"[{name}] done in {time.monotonic() - started:.1f} s")
    return result


def run_drill(engine: str, argv: list[str], timeout: float) -> dict[str, Any]:
    out = RESULTS / f"drill-{engine}.json"
    _say(f"[drill] --engine {engine} {' '.join(argv)}")
    command = [
        sys.executable,
        "-m",
        "example_project.drill",
        "--engine",
        engine,
        "--quiet",
        "--json",
        str(out),
        "--server-log",
        str(ROOT / "out" / f"drill-{engine}-server.log"),
        *argv,
    ]
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"failed": f"did not finish in {timeout:.0f} s"}
    # Exit 1 means "an invariant broke": expected for stock, still a result.
    if done.returncode not in (0, 1) or not out.exists():
        _say(done.stdout[-2000:] + done.stderr[-2000:])
        return {"failed": f"exited with {done.returncode}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- the summary --------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def headlines(name: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures of a benchmark's result worth a line in the table, formatted."""
    if "skipped" in result or "failed" in result:
        return [("status", str(result.get("skipped") or result.get("failed")))]
    flat = flatten(result)
    curated = [
        (label, " / ".join(_cell(flat[key]) for key in keys.split("|")))
        for label, keys in HEADLINES.get(name, ())
        if all(key in flat for key in keys.split("|"))
    ]
    if curated:
        return curated
    figures = [
        (key, value)
        for key, value in flat.items()
        if isinstance(value, int | float)
        and not isinstance(value, bool)
        and any(hint in key.lower() for hint in HEADLINE_HINTS)
        and not any(noise in key.lower() for noise in HEADLINE_NOISE)
    ]
    return [(key, _cell(value)) for key, value in figures[:MAX_HEADLINES]]


def _dig(summary: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    postgres = ""
    try:
        from django_pg_resilience.testing import find_bindir

        postgres = subprocess.run(
            [str(find_bindir() / "postgres"), "--version"], capture_output=True, text=True
        ).stdout.strip()
    except Exception as exc:  # a description, not a requirement
        postgres = f"unknown ({type(exc).__name__})"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": postgres,
    }


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"Benchmarks, {summary['date']} on {summary['machine']['cpus']} x "
        f"{summary['machine']['cpu'] or 'CPU'}, {summary['machine']['postgres']}",
        "",
        f"  {'benchmark':<12} {'figure':<50} value",
    ]
    for name, result in summary["benchmarks"].items():
        for label, value in headlines(name, result):
            lines.append(f"  {name:<12} {label:<50} {value}")
    drill = summary.get("drill") or {}
    if drill:
        ours, stock = drill.get("resilient", {}), drill.get("stock", {})
        options = ours.get("options") or stock.get("options") or {}
        lines += [
            "",
            f"Failover drill ({options.get('scenario', '?')}, {options.get('duration', '?')} s, "
            f"promotion delay {options.get('promotion_delay', '?')} s)",
            f"  {'':<32} {'django-pg-resilience':>22} {'stock Django':>14}",
        ]
        for label, path in DRILL_ROWS:
            lines.append(
                f"  {label:<32} {_cell(_dig(ours, path)):>22} {_cell(_dig(stock, path)):>14}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 bench/run.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="pass --quick to each benchmark")
    parser.add_argument(
        "--only",
        action="append",
        choices=[*BENCHMARKS, "drill"],
        help="run only these (repeatable)",
    )
    parser.add_argument("--drill-duration", type=float, default=20.0)
    parser.add_argument("--scenario", default="crash")
    parser.add_argument("--timeout", type=float, default=900.0, help="per benchmark, seconds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.rest, Path(os.environ["BENCH_CHILD_OUT"]))
        return 0

    selected = args.only or [*BENCHMARKS, "drill"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "benchmarks": {},
    }
    for name in BENCHMARKS:
        if name in selected:
            summary["benchmarks"][name] = run_benchmark(
                name, ["--quick"] if args.quick else [], args.timeout
            )
    if "drill" in selected:
        drill_args = ["--scenario", args.scenario, "--duration", f"{args.drill_duration:g}"]
        summary["drill"] = {
            engine: run_drill(engine, drill_args, args.timeout) for engine in ("resilient", "stock")
        }
    summary["headlines"] = {
        name: dict(headlines(name, result)) for name, result in summary["benchmarks"].items()
    }
    _say("")
    _say(render(summary))
    out = RESULTS / "summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    _say(f"\nSummary: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if "--child" not in sys.argv:  # a child runs in the venv its parent made
        sys.path.insert(0, str(ROOT / ".ci"))
        from bootstrap import bootstrap

        bootstrap()
    elif str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
