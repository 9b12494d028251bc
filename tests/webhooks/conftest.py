from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_pg_resilience import stats
from tests.webhooks.views import calls


@pytest.fixture(autouse=True)
def fresh_calls() -> Iterator[None]:
    calls.reset()
    stats.reset()
    yield
    calls.proceed.set()  # never leave a server thread blocked in handle()
