"""The suite's database: the plugin's session cluster, behind its endpoint proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from django_pg_resilience.testing import EndpointProxy


@pytest.fixture(scope="session")
def django_db_modify_db_settings(pg_session_endpoint: EndpointProxy) -> Iterator[None]:
    """pytest-django calls this before creating the test database."""
    settings.DATABASES["default"].update(
        HOST=pg_session_endpoint.host, PORT=str(pg_session_endpoint.port)
    )
    yield
