"""Everything this process knows about one database alias, in one object.

::

    state = alias_state("default")
    state.settings          # BackendSettings: OPTIONS["resilience"] over PG_RESILIENCE
    state.breaker           # the circuit breaker, built with those settings
    state.identity          # which server the alias talks to (failover detection)
    state.liveness          # silent-peer checks of statements waiting on the alias
    state.connect_slots     # the connection budget: attempts at a time
    state.busy              # "too many clients" episodes
    state.prober            # the open circuit's background prober (once the backend connected)
    state.pool_drain_pending
    state.replica_monitor   # the read-replica router's measurements (of a primary alias)

A newcomer looks here first: the rest of the package holds no per-alias state
of its own. :func:`reset` forgets it all (tests, ``setting_changed``); a forked
child (gunicorn, Celery prefork) starts with none of its parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from django.core.signals import setting_changed

from django_pg_resilience import conf
from django_pg_resilience.backend.busy import BusyEpisode
from django_pg_resilience.backend.identity import IdentityTracker
from django_pg_resilience.backend.liveness import LivenessMonitor
from django_pg_resilience.backend.prober import BackgroundProber, Probe
from django_pg_resilience.backend.slots import ConnectSlots
from django_pg_resilience.breaker import CircuitBreaker

__all__ = ["AliasState", "alias_state", "reset"]


class Closable(Protocol):
    def close(self) -> None: ...


class AliasState:
    """The resolved settings and the live state of one alias in this process."""

    def __init__(self, alias: str, settings: conf.BackendSettings) -> None:
        self.alias = alias
        self.settings = settings
        self.breaker = CircuitBreaker(alias, settings.breaker_settings)
        self.identity = IdentityTracker(alias)
        self.liveness = LivenessMonitor(alias, self.breaker, self.identity)
        self.connect_slots = ConnectSlots(alias, settings.connect_concurrency)
        self.busy = BusyEpisode(alias)
        #: Set once the backend knows how to connect (see :meth:`use_probe`).
        self.prober: BackgroundProber | None = None
        #: A failover was detected on a connection the pool opened: the pool is
        #: drained at its next checkout, outside the pool's own worker thread.
        self.pool_drain_pending = False
        #: The read-replica router's measurements of the replicas of this (primary) alias
        #: (a ``routers.monitor.ReplicaMonitor``, made by the router on first use).
        self.replica_monitor: Closable | None = None

    def use_probe(self, probe: Probe) -> None:
        """Probe an open circuit with ``probe`` in the background (the backend's connect params)."""
        prober = self.prober
        if prober is None:
            prober = self.prober = BackgroundProber(
                self.breaker, probe, timeout=float(self.settings.connect_timeout)
            )
            self.breaker.background_probe = prober.ensure_running
        else:
            prober.probe = probe  # the newest parameters (a password rotated, say)

    def close(self) -> None:
        """Stop what runs on the alias's behalf (the prober's thread, the replica monitor)."""
        if self.prober is not None:
            self.prober.stop()
        if self.replica_monitor is not None:
            self.replica_monitor.close()


_states: dict[str, AliasState] = {}
_lock = threading.Lock()


def _settings_for(alias: str, settings_dict: Mapping[str, Any] | None) -> conf.BackendSettings:
    if settings_dict is None:
        from django.conf import settings

        settings_dict = settings.DATABASES.get(alias)
    if settings_dict is None:
        return conf.BackendSettings()  # not a DATABASES alias (a unit test's breaker, say)
    return conf.backend_settings(alias, settings_dict)


def alias_state(alias: str, settings_dict: Mapping[str, Any] | None = None) -> AliasState:
    """The state of ``alias`` in this process, made on first use.

    ``settings_dict`` is the alias's DATABASES entry (the backend passes its own);
    by default it is looked up in ``settings.DATABASES``.
    """
    state = _states.get(alias)
    if state is None:
        with _lock:
            state = _states.get(alias)
            if state is None:
                state = _states[alias] = AliasState(alias, _settings_for(alias, settings_dict))
    return state


def reset(alias: str | None = None) -> None:
    """Forget what this process knows of ``alias`` (or of every alias): the next use starts anew."""
    with _lock:
        if alias is None:
            dropped = list(_states.values())
            _states.clear()
        else:
            state = _states.pop(alias, None)
            dropped = [] if state is None else [state]
    for state in dropped:
        state.close()


def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PG_RESILIENCE", "DATABASES"):
        reset()


setting_changed.connect(_reset_on_setting_change, dispatch_uid="django_pg_resilience.alias_state")


def _forget_in_child() -> None:
    # Locks and threads do not cross a fork: a child (a gunicorn worker, a Celery
    # pool process) starts with no state of its parent's.
    global _lock
    _lock = threading.Lock()
    _states.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
