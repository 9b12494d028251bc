"""The chaos suite: every test is marked ``chaos``; the report is written at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos import report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session", autouse=True)
def chaos_report() -> Iterator[None]:
    """Writes out/chaos-report.md and out/chaos-report.json once the chaos tests are done."""
    yield
    report.write()


@pytest.fixture
def unblocked_db(django_db_blocker: object) -> Iterator[None]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        yield
