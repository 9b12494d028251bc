"""System checks of the replica router's configuration."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_pg_resilience.checks import check_replica_router
from tests.routers.conftest import MIDDLEWARE, ROUTER

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def _entry(**resilience: Any) -> dict[str, Any]:
    return {
        "ENGINE": "django_pg_resilience.backend",
        "NAME": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "1",
        "OPTIONS": {"resilience": resilience} if resilience else {},
    }


@pytest.fixture
def router_settings(settings: SettingsWrapper) -> SettingsWrapper:
    settings.DATABASE_ROUTERS = [ROUTER]
    settings.MIDDLEWARE = [MIDDLEWARE, *settings.MIDDLEWARE]
    settings.DEBUG = False
    settings.SESSION_COOKIE_SECURE = True  # a site served over https
    settings.DATABASES = {
        "default": _entry(),
        "replica": _entry(read_write=False, deadline=0.3, max_attempts=1),
    }
    return settings


def _ids(settings: SettingsWrapper) -> list[str]:
    """The ids of the router's check messages under ``settings``."""
    return [message.id or "" for message in check_replica_router()]


def test_a_good_configuration_passes(router_settings: SettingsWrapper) -> None:
    assert _ids(router_settings) == []


def test_nothing_is_checked_without_the_router(router_settings: SettingsWrapper) -> None:
    router_settings.DATABASE_ROUTERS = []
    router_settings.PG_RESILIENCE = {"REPLICA_PRIMARY": "nowhere"}
    assert _ids(router_settings) == []


def test_unknown_aliases_and_modes_are_errors(router_settings: SettingsWrapper) -> None:
    router_settings.PG_RESILIENCE = {
        "REPLICA_PRIMARY": "nowhere",
        "REPLICA_ALIASES": ["replica", "missing"],
        "READ_YOUR_WRITES": "cache",
    }
    messages = check_replica_router()
    assert [m.id for m in messages] == ["pg_resilience.E501"] * 3
    text = " ".join(m.msg for m in messages)
    assert "'nowhere'" in text and "'missing'" in text and "'cache'" in text


def test_no_replica_is_a_warning(router_settings: SettingsWrapper) -> None:
    router_settings.DATABASES = {"default": _entry()}
    assert _ids(router_settings) == ["pg_resilience.W501"]


def test_a_replica_that_waits_long_is_a_warning(router_settings: SettingsWrapper) -> None:
    router_settings.DATABASES = {
        "default": _entry(),
        "replica": _entry(read_write=False, deadline=4.0),
    }
    messages = check_replica_router()
    assert [m.id for m in messages] == ["pg_resilience.W502"]
    assert "deadline" in (messages[0].hint or "")


def test_the_router_without_its_middleware_is_a_warning(router_settings: SettingsWrapper) -> None:
    router_settings.MIDDLEWARE = [m for m in router_settings.MIDDLEWARE if m != MIDDLEWARE]
    assert _ids(router_settings) == ["pg_resilience.W503"]


def test_the_middleware_on_the_wrong_side_of_sessions_is_a_warning(
    router_settings: SettingsWrapper,
) -> None:
    sessions = "django.contrib.sessions.middleware.SessionMiddleware"
    others = [m for m in router_settings.MIDDLEWARE if m != MIDDLEWARE]
    after_sessions = [*others[: others.index(sessions) + 1], MIDDLEWARE]
    router_settings.MIDDLEWARE = after_sessions
    messages = check_replica_router()
    assert [m.id for m in messages] == ["pg_resilience.W504"]
    assert "before" in messages[0].msg

    router_settings.PG_RESILIENCE = {"READ_YOUR_WRITES": "session"}
    assert _ids(router_settings) == []
    router_settings.MIDDLEWARE = [MIDDLEWARE, *others]
    messages = check_replica_router()
    assert [m.id for m in messages] == ["pg_resilience.W504"]
    assert "after" in messages[0].msg


def test_a_cookie_that_may_go_over_plain_http_is_a_warning(
    router_settings: SettingsWrapper,
) -> None:
    router_settings.SESSION_COOKIE_SECURE = False
    [message] = check_replica_router()
    assert message.id == "pg_resilience.W505"
    assert "SESSION_COOKIE_SECURE" in (message.hint or "")
    router_settings.CSRF_COOKIE_SECURE = True  # the site's cookies are Secure: so is ours
    assert _ids(router_settings) == []
    router_settings.CSRF_COOKIE_SECURE = False
    router_settings.PG_RESILIENCE = {"READ_YOUR_WRITES_COOKIE_SECURE": True}
    assert _ids(router_settings) == []
    router_settings.PG_RESILIENCE = {"READ_YOUR_WRITES": "session"}  # no cookie of ours
    assert "pg_resilience.W505" not in _ids(router_settings)
    router_settings.PG_RESILIENCE = {}
    router_settings.DEBUG = True  # plain http in development is expected
    assert _ids(router_settings) == []
