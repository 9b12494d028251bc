"""bench/run.py's summary: the figures it picks and how it copes with a missing benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parent.parent.parent / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_under_test", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_known_figures_get_their_label(bench_run: ModuleType) -> None:
    result = {"happy_path": {"ratio_median": 1.0123, "ratio_total": 1.5}, "other": 3}
    lines = dict(bench_run.headlines("backend", result))
    assert lines["happy-path time per query, ours / stock (median)"] == "1.01"
    assert lines["happy-path time per query, ours / stock (total)"] == "1.5"
    assert len(lines) == 2  # the figures whose keys are missing are left out


def test_unknown_layout_falls_back_to_medians_and_ratios(bench_run: ModuleType) -> None:
    result = {"a": {"p50_ms": 2.0, "max_ms": 9.0, "runs": 10}, "speed_ratio": 0.9, "name": "x"}
    assert bench_run.headlines("newbench", result) == [("a.p50_ms", "2"), ("speed_ratio", "0.9")]


def test_a_missing_benchmark_is_reported_as_skipped(bench_run: ModuleType) -> None:
    result = bench_run.run_benchmark("does_not_exist", [], timeout=5)
    assert "skipped" in result
    summary = {
        "date": "today",
        "machine": {"cpus": 2, "cpu": "CPU", "postgres": "PostgreSQL"},
        "benchmarks": {"does_not_exist": result},
        "drill": {
            "resilient": {"requests": {"by_status": {"500": 0}}, "ok": True},
            "stock": {"requests": {"by_status": {"500": 12}}, "ok": False},
        },
    }
    text = bench_run.render(summary)
    assert "bench_does_not_exist.py does not exist" in text
    assert "500 responses" in text and "12" in text
    assert "invariants hold" in text and "NO" in text
