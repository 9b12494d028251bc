"""How .ci/django_suite.py reads unittest's summary: what fails CI and what does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("django_suite", ROOT / ".ci" / "django_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


OUTPUT = """\
======================================================================
ERROR: test_connect_pool (backends.postgresql.tests.Tests.test_connect_pool)
----------------------------------------------------------------------
Traceback (most recent call last):
======================================================================
FAIL: test_x (test_utils.tests.Other.test_x)
----------------------------------------------------------------------
======================================================================
ERROR: setUpClass (schema.tests.SchemaTests)
----------------------------------------------------------------------
Ran 7101 tests in 242.596s

FAILED (failures=1, errors=2, skipped=476)
"""


def test_failures_errors_and_fixtures_are_read_by_test_id() -> None:
    result = _runner().parse(OUTPUT, 1)
    assert result.ran == 7101
    assert result.problems == {
        "backends.postgresql.tests.Tests.test_connect_pool": "ERROR",
        "test_utils.tests.Other.test_x": "FAIL",
        "schema.tests.SchemaTests.setUpClass": "ERROR",
    }


def test_only_intended_differences_are_forgiven() -> None:
    runner = _runner()
    result = runner.parse(OUTPUT, 1)
    intended = {"test_utils.tests.Other.test_x": "why it differs"}
    assert runner.unexpected(result, intended) == [
        "ERROR: backends.postgresql.tests.Tests.test_connect_pool",
        "ERROR: schema.tests.SchemaTests.setUpClass",
    ]


def test_a_runner_that_dies_without_a_summary_fails() -> None:
    runner = _runner()
    crashed = runner.parse("Found 7103 test(s).\nTraceback (most recent call last):\n", 1)
    assert runner.unexpected(crashed, {}) == [
        "the runner ended (exit 1) without a summary: a crash"
    ]
    clean = runner.parse("Ran 5 tests in 0.1s\n\nOK\n", 0)
    assert runner.unexpected(clean, {}) == []
