"""pg_resilience.W106: an option the alias sets needs a newer libpq than psycopg runs on."""

from __future__ import annotations

import psycopg
import pytest
from django.test import override_settings

from django_pg_resilience.checks import check_libpq_version, libpq_too_old

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def test_tcp_user_timeout_needs_libpq_12() -> None:
    assert libpq_too_old({"tcp_user_timeout": 10000}, 110005) == [("tcp_user_timeout", 120000)]
    assert libpq_too_old({"tcp_user_timeout": 10000}, 120000) == []


def test_newer_options_and_session_attributes() -> None:
    options = {"load_balance_hosts": "random", "target_session_attrs": "primary"}
    assert libpq_too_old(options, 130000) == [
        ("load_balance_hosts", 160000),
        ("target_session_attrs", 140000),
    ]
    assert libpq_too_old({"target_session_attrs": "read-write"}, 100000) == []
    assert libpq_too_old(options, 170000) == []


def test_the_libpq_in_use_passes_with_the_backend_defaults() -> None:
    assert psycopg.pq.version() >= 120000  # the binary build bundles a recent libpq
    databases = {
        "default": {"ENGINE": "django_pg_resilience.backend", "NAME": "app", "OPTIONS": {}},
        "geo": {"ENGINE": "django_pg_resilience.backend.postgis", "NAME": "geo", "OPTIONS": {}},
    }
    with override_settings(DATABASES=databases):
        assert check_libpq_version() == []
