"""The router's configuration, resolved from the settings, and its one monitor per process."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_pg_resilience import conf
from django_pg_resilience.backend.alias import alias_state
from django_pg_resilience.routers.monitor import ReplicaMonitor

__all__ = ["READ_YOUR_WRITES_MODES", "RouterConfig", "replica_monitor", "router_config"]

READ_YOUR_WRITES_MODES = ("cookie", "session", "request")


@dataclass(frozen=True)
class RouterConfig:
    primary: str
    replicas: tuple[str, ...]
    max_lag: float
    read_your_writes: str
    key: str
    max_age: float
    #: The cookie's Secure flag: None follows SESSION_COOKIE_SECURE / CSRF_COOKIE_SECURE.
    cookie_secure: bool | None = None


def _replica_aliases(primary: str, configured: tuple[str, ...]) -> tuple[str, ...]:
    if configured:
        return configured
    return tuple(
        alias
        for alias, entry in settings.DATABASES.items()
        if alias != primary and not conf.backend_settings(alias, entry).read_write
    )


def router_config_errors() -> list[str]:
    """What is wrong with the router's settings, as messages with the fix."""
    app = conf.app_settings()
    errors = []
    if app.REPLICA_PRIMARY not in settings.DATABASES:
        errors.append(
            f"PG_RESILIENCE['REPLICA_PRIMARY'] is {app.REPLICA_PRIMARY!r}, which is not in "
            "DATABASES; name the read/write alias."
        )
    for alias in app.REPLICA_ALIASES:
        if alias not in settings.DATABASES:
            errors.append(
                f"PG_RESILIENCE['REPLICA_ALIASES'] names {alias!r}, which is not in DATABASES."
            )
        elif alias == app.REPLICA_PRIMARY:
            errors.append(
                f"PG_RESILIENCE['REPLICA_ALIASES'] names the primary {alias!r}; list only "
                "read-only aliases."
            )
    if app.READ_YOUR_WRITES not in READ_YOUR_WRITES_MODES:
        errors.append(
            f"PG_RESILIENCE['READ_YOUR_WRITES'] is {app.READ_YOUR_WRITES!r}; it must be one of "
            f"{', '.join(map(repr, READ_YOUR_WRITES_MODES))}."
        )
    return errors


@functools.lru_cache(maxsize=1)
def router_config() -> RouterConfig:
    """The router's settings, validated (``ImproperlyConfigured`` says what to fix)."""
    errors = router_config_errors()
    if errors:
        raise ImproperlyConfigured(" ".join(errors))
    app = conf.app_settings()
    return RouterConfig(
        primary=app.REPLICA_PRIMARY,
        replicas=_replica_aliases(app.REPLICA_PRIMARY, app.REPLICA_ALIASES),
        max_lag=app.MAX_REPLICA_LAG,
        read_your_writes=app.READ_YOUR_WRITES,
        key=app.READ_YOUR_WRITES_KEY,
        max_age=app.READ_YOUR_WRITES_MAX_AGE,
        cookie_secure=app.READ_YOUR_WRITES_COOKIE_SECURE,
    )


_monitor_lock = threading.Lock()


def replica_monitor() -> ReplicaMonitor:
    """This process's monitor of the configured replicas (made on first use).

    It is routing state of the primary alias, so it lives in the primary's
    :class:`~django_pg_resilience.backend.alias.AliasState`, and goes with it on a reset.
    """
    config = router_config()
    state = alias_state(config.primary)
    monitor = state.replica_monitor
    if monitor is None:
        with _monitor_lock:
            monitor = state.replica_monitor
            if monitor is None:
                app = conf.app_settings()
                monitor = state.replica_monitor = ReplicaMonitor(
                    config.primary,
                    config.replicas,
                    interval=app.REPLICA_CHECK_INTERVAL,
                    timeout=app.REPLICA_CHECK_TIMEOUT,
                )
    return cast(ReplicaMonitor, monitor)


def reset_replica_monitor() -> None:
    """Forget the monitor and its measurements (settings changed; tests)."""
    try:
        primary = router_config().primary
    except ImproperlyConfigured:
        primary = None
    router_config.cache_clear()
    if primary is not None:
        state = alias_state(primary)
        monitor, state.replica_monitor = state.replica_monitor, None
        if monitor is not None:
            monitor.close()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "DATABASES"):
        # The monitor goes with the primary's AliasState, which resets itself.
        router_config.cache_clear()
